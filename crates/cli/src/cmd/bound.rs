//! `tokenscale bound`: evaluate Υ(n), fit λ to a measured D(n), and the n_balance(n) curve.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use tokenscale_fsio::write_atomic;
use tokenscale_law::bound::{evaluate, read_distance_csv, read_psi_csv, PsiSource};
use tokenscale_plot::{BalanceFigure, DistanceFigure, Figure, PsiFigure};

#[derive(clap::Args)]
pub struct Args {
    /// ψ curves as CSV: n, psi_eq, psi_ab and psi_aabb (or psi_aa [+ psi_bb]); the probe's psi.csv.
    #[arg(long, conflicts_with_all = ["psi_eq", "psi_aa", "psi_ab"])]
    pub psi: Option<PathBuf>,
    /// Constant ψ_eq (mean cosine similarity of A and B at the same position).
    #[arg(long)]
    pub psi_eq: Option<f64>,
    /// Constant ψ_cross^(AABB) (or ψ_AA).
    #[arg(long)]
    pub psi_aa: Option<f64>,
    /// Constant ψ_cross^(AB).
    #[arg(long)]
    pub psi_ab: Option<f64>,
    /// Measured distance curve (n, d_mean[, d_std]) to fit λ in E[D(n)] ≈ λ√Υ(n).
    #[arg(long)]
    pub distance: Option<PathBuf>,
    /// Largest n.
    #[arg(long)]
    pub max_n: usize,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the figures.
    #[arg(long)]
    pub no_figures: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

pub fn run(args: Args) -> Result<()> {
    let psi = match (&args.psi, args.psi_eq, args.psi_aa, args.psi_ab) {
        (Some(p), _, _, _) => {
            PsiSource::Curve(read_psi_csv(p).with_context(|| format!("reading {}", p.display()))?)
        }
        (None, Some(psi_eq), Some(psi_aa), Some(psi_ab)) => {
            PsiSource::Constant { psi_eq, psi_aa, psi_ab }
        }
        _ => bail!("give either --psi FILE.csv or all of --psi-eq, --psi-aa and --psi-ab"),
    };
    let distance = match &args.distance {
        Some(p) => Some(read_distance_csv(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let report = evaluate(&psi, args.max_n, distance.as_deref())?;
    write_report(&report, &args.out, args.max_n, args.no_figures)
}

/// Writes `bound.json`, `bound.csv` and (unless `no_figures`) the figures of a bound report.
pub fn write_report(
    report: &tokenscale_law::bound::BoundReport,
    out: &std::path::Path,
    max_n: usize,
    no_figures: bool,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("bound.json"), serde_json::to_string_pretty(report)?.as_bytes())?;
    let mut csv = String::from("n,psi_eq,psi_aa,psi_ab,delta_psi,upsilon,sqrt_upsilon,bound,n_balance,regime,d_mean,d_std\n");
    for r in &report.rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.n,
            r.psi_eq,
            r.psi_aa,
            r.psi_ab,
            r.delta_psi,
            r.upsilon,
            opt(r.sqrt_upsilon),
            opt(r.bound),
            opt(r.n_balance),
            r.regime,
            opt(r.d_mean),
            opt(r.d_std)
        );
    }
    write_atomic(&out.join("bound.csv"), csv.as_bytes())?;
    if !no_figures {
        let n: Vec<f64> = report.rows.iter().map(|r| r.n as f64).collect();
        let (fit, label) = match report.lambda {
            Some(l) => (
                report.rows.iter().map(|r| r.bound).collect(),
                format!("lambda sqrt(Upsilon(n)), lambda = {l:.4}"),
            ),
            None => (
                report.rows.iter().map(|r| r.sqrt_upsilon).collect(),
                "sqrt(Upsilon(n)) (lambda not fitted: no --distance)".to_string(),
            ),
        };
        DistanceFigure {
            title: "E[D(n)] and the bound".into(),
            n: n.clone(),
            d_mean: report.rows.iter().map(|r| r.d_mean).collect(),
            d_std: report.rows.iter().map(|r| r.d_std).collect(),
            fit,
            fit_label: label,
        }
        .save(out, "bound_distance")?;
        if report.rows.iter().any(|r| r.n_balance.is_some()) {
            BalanceFigure {
                title: "n_balance(n) against y = n".into(),
                n: n.clone(),
                n_balance: report.rows.iter().map(|r| r.n_balance).collect(),
            }
            .save(out, "bound_balance")?;
        }
        let none = vec![None; n.len()];
        PsiFigure {
            title: "psi terms used by the bound".into(),
            n,
            psi_eq: report.rows.iter().map(|r| Some(r.psi_eq)).collect(),
            psi_aa: none.clone(),
            psi_bb: none,
            psi_aabb: report.rows.iter().map(|r| Some(r.psi_aa)).collect(),
            psi_ab: report.rows.iter().map(|r| Some(r.psi_ab)).collect(),
        }
        .save(out, "bound_psi")?;
    }
    match report.lambda {
        Some(l) => eprintln!(
            "lambda = {l:.6} (RMSE {:.4}, R2 {:.4})",
            report.lambda_rmse.unwrap_or(0.0),
            report.lambda_r2.unwrap_or(0.0)
        ),
        None => eprintln!("lambda not fitted (no --distance)"),
    }
    match report.balance_point {
        Some(n) => eprintln!("n_balance(n) meets y = n at n = {n}"),
        None => eprintln!("n_balance(n) stays above y = n (or is undefined) up to n = {}", max_n),
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    eprintln!("wrote bound.json, bound.csv and figures in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tokenscale-bound-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn constants_with_distance_fit_lambda() {
        let dir = tmp("c");
        let dist = dir.join("d.csv");
        let mut body = String::from("n,d_mean,d_std\n");
        for n in 1..=100 {
            let ups = tokenscale_law::bound::upsilon(n as f64, 0.5, 0.375, 0.3125);
            let _ = writeln!(body, "{n},{},{}", 3.0 * ups.sqrt(), 0.2);
        }
        std::fs::write(&dist, body).unwrap();
        let out = dir.join("out");
        run(Args {
            psi: None,
            psi_eq: Some(0.5),
            psi_aa: Some(0.375),
            psi_ab: Some(0.3125),
            distance: Some(dist),
            max_n: 100,
            out: out.clone(),
            no_figures: false,
        })
        .unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bound.json")).unwrap())
                .unwrap();
        assert!((j["lambda"].as_f64().unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(j["balance_point"], 7);
        let csv = std::fs::read_to_string(out.join("bound.csv")).unwrap();
        assert_eq!(csv.lines().count(), 101);
        for f in ["bound_distance.png", "bound_distance.svg", "bound_balance.png", "bound_psi.svg"]
        {
            assert!(std::fs::metadata(out.join(f)).unwrap().len() > 500, "{f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn psi_curve_without_balance_has_no_nan() {
        let dir = tmp("p");
        let psi = dir.join("psi.csv");
        let mut body = String::from("n,psi_eq,psi_aa,psi_bb,psi_ab\n1,0.9,,,\n");
        for n in 2..=20 {
            let _ = writeln!(body, "{n},0.8,0.30,0.32,0.40");
        }
        std::fs::write(&psi, body).unwrap();
        let out = dir.join("out");
        run(Args {
            psi: Some(psi),
            psi_eq: None,
            psi_aa: None,
            psi_ab: None,
            distance: None,
            max_n: 50,
            out: out.clone(),
            no_figures: false,
        })
        .unwrap();
        let text = std::fs::read_to_string(out.join("bound.json")).unwrap()
            + &std::fs::read_to_string(out.join("bound.csv")).unwrap();
        assert!(!text.to_lowercase().contains("nan") && !text.contains("inf,"));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bound.json")).unwrap())
                .unwrap();
        assert!(j["notes"][0].as_str().unwrap().contains("n_balance undefined"));
        assert!(!out.join("bound_balance.png").exists());
        // Neither source of psi given.
        assert!(run(Args {
            psi: None,
            psi_eq: Some(0.5),
            psi_aa: None,
            psi_ab: None,
            distance: None,
            max_n: 5,
            out,
            no_figures: true
        })
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

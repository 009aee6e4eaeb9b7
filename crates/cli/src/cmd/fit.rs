//! `tokenscale fit`: fit scaling laws to a score table; write fits.json, fits.md and figures.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tokenscale_base::progress::Progress;
use tokenscale_fsio::write_atomic;
use tokenscale_law::data::SeriesData;
use tokenscale_law::fit::{fit_series, validate, FitOptions, FitResult, Space};
use tokenscale_law::{Direction, Law, LawError};
use tokenscale_plot::{DiffHeatmap, Figure, GridPanel, ScalingGrid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SpaceArg {
    /// Least squares on the scores (the paper's α(n) form and the other laws).
    Score,
    /// Least squares on ln(score); for the power law this is the OLS behind the paper's figures.
    Log,
    /// Both.
    Both,
}

#[derive(clap::Args)]
pub struct Args {
    /// Score table: `tokenscale eval`'s scores.json or scores.csv (a series per model, reducer,
    /// dataset, split, category and metric), a CSV with columns (series, n, score), or the
    /// paper-scores shape (figure, panel, benchmark, n_l, score; series = figure/benchmark).
    pub file: PathBuf,
    #[command(flatten)]
    pub rows: super::SelectArgs,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Fitting space.
    #[arg(long, value_enum, default_value = "score")]
    pub space: SpaceArg,
    /// Leave points out of the fit: SERIES:N (SERIES = full series name or benchmark name). Reported
    /// as excluded in every output.
    #[arg(long, value_name = "SERIES:N", num_args = 1..)]
    pub exclude: Vec<String>,
    /// Metrics where lower is better (full series name, benchmark, or the metric part before '@').
    #[arg(long = "lower-is-better", value_name = "METRIC", num_args = 1..)]
    pub lower_is_better: Vec<String>,
    /// Laws to fit (comma separated): paper, paper_dpsi0, power, loglinear, saturating.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "paper,paper_dpsi0,power,loglinear,saturating"
    )]
    pub laws: Vec<String>,
    /// Laws drawn in the scaling grid (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "power,paper")]
    pub grid_laws: Vec<String>,
    /// Bootstrap resamples for the 95% intervals (at least 1000 unless 0 = no intervals).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 2025)]
    pub seed: u64,
    /// |studentised residual| above which a point is flagged as an outlier.
    #[arg(long, default_value_t = 3.0)]
    pub outlier_threshold: f64,
    /// Skip the figures.
    #[arg(long)]
    pub no_figures: bool,
}

fn parse_laws(names: &[String]) -> Result<Vec<Law>> {
    names
        .iter()
        .map(|s| {
            Law::from_name(s.trim()).with_context(|| {
                format!("unknown law `{s}` (paper, paper_dpsi0, power, loglinear, saturating)")
            })
        })
        .collect()
}

fn matches_metric(s: &SeriesData, key: &str) -> bool {
    s.name == key || s.benchmark == key || s.benchmark.split('@').next() == Some(key)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

fn fmt(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

pub fn run(args: Args) -> Result<()> {
    let laws = parse_laws(&args.laws)?;
    let grid_laws = parse_laws(&args.grid_laws)?;
    if args.bootstrap != 0 && args.bootstrap < 1000 {
        bail!("--bootstrap must be 0 (no intervals) or at least 1000, got {}", args.bootstrap);
    }
    let series = args.rows.read(&args.file)?;
    // Bad input (a non-finite score, a non-positive n) is refused as a whole, with every problem
    // listed. A constant series is valid data that no law fits: reported per series in
    // fit_errors.json, unless no series is left to fit.
    let mut problems = Vec::new();
    let mut constant = Vec::new();
    for s in &series {
        match validate(&s.name, &s.points) {
            Ok(()) => {}
            Err(e @ LawError::ConstantScores { .. }) => constant.push(e.to_string()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if constant.len() == series.len() {
        problems.append(&mut constant);
    }
    if !problems.is_empty() {
        bail!("invalid score table {}:\n  {}", args.file.display(), problems.join("\n  "));
    }
    for c in &constant {
        eprintln!("warning: {c}; no law is fitted to it (see fit_errors.json)");
    }
    let mut exclude: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in &args.exclude {
        let (name, n) =
            e.rsplit_once(':').with_context(|| format!("--exclude `{e}`: expected SERIES:N"))?;
        let n: f64 =
            n.trim().parse().with_context(|| format!("--exclude `{e}`: `{n}` is not a number"))?;
        let hits: Vec<&SeriesData> =
            series.iter().filter(|s| s.name == name || s.benchmark == name).collect();
        if hits.is_empty() {
            bail!("--exclude `{e}`: no series or benchmark named `{name}`");
        }
        for s in hits {
            if !s.points.iter().any(|p| (p.0 - n).abs() <= 1e-9 * n.abs()) {
                bail!("--exclude `{e}`: series `{}` has no point at n = {n}", s.name);
            }
            exclude.entry(s.name.clone()).or_default().push(n);
        }
    }
    for m in &args.lower_is_better {
        if !series.iter().any(|s| matches_metric(s, m)) {
            bail!("--lower-is-better `{m}`: no series or benchmark matches");
        }
    }
    let spaces: Vec<Space> = match args.space {
        SpaceArg::Score => vec![Space::Score],
        SpaceArg::Log => vec![Space::Log],
        SpaceArg::Both => vec![Space::Score, Space::Log],
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let mut fits: Vec<FitResult> = Vec::new();
    let mut errors: Vec<serde_json::Value> = Vec::new();
    let progress = Progress::new("fit", (series.len() * spaces.len() * laws.len()) as u64, "fits");
    for s in &series {
        let direction = if args.lower_is_better.iter().any(|m| matches_metric(s, m)) {
            Direction::LowerIsBetter
        } else {
            Direction::HigherIsBetter
        };
        let ex = exclude.get(&s.name).cloned().unwrap_or_default();
        for &space in &spaces {
            let opts = FitOptions {
                space,
                direction,
                bootstrap: args.bootstrap,
                seed: args.seed,
                outlier_threshold: args.outlier_threshold,
                ..Default::default()
            };
            for &law in &laws {
                match fit_series(&s.name, &s.points, &ex, law, &opts) {
                    Ok(f) => fits.push(f),
                    Err(e) => errors.push(serde_json::json!({"series": s.name, "law": law.name(), "space": space.name(), "error": e.to_string()})),
                }
                progress.inc(1);
            }
        }
    }

    progress.finish();
    let json = serde_json::to_string_pretty(&fits)?;
    write_atomic(&args.out.join("fits.json"), json.as_bytes())?;
    write_atomic(
        &args.out.join("fit_errors.json"),
        serde_json::to_string_pretty(&errors)?.as_bytes(),
    )?;
    write_atomic(&args.out.join("fits.md"), markdown(&args, &series, &fits, &errors).as_bytes())?;

    let mut written = vec!["fits.json".to_string(), "fit_errors.json".into(), "fits.md".into()];
    if !args.no_figures {
        written.extend(figures(&args.out, &series, &fits, &grid_laws, &spaces)?);
    }
    eprintln!(
        "fitted {} law/series/space combinations ({} failed) from {}; wrote {} in {}",
        fits.len(),
        errors.len(),
        args.file.display(),
        written.join(", "),
        args.out.display()
    );
    Ok(())
}

fn markdown(
    args: &Args,
    series: &[SeriesData],
    fits: &[FitResult],
    errors: &[serde_json::Value],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Scaling-law fits\n");
    let _ = writeln!(md, "Input: `{}`. Bootstrap: {} residual resamples, seed {}. Outliers: |externally studentised residual| > {} (flagged, kept in the fit). AIC/BIC: Gaussian likelihood with sigma^2 = RSS/N, k = law parameters + 1. Metrics are in each fit's space (`score` = least squares on scores, `log` = least squares on ln score).\n", args.file.display(), args.bootstrap, args.seed, args.outlier_threshold);
    for s in series {
        let mine: Vec<&FitResult> = fits.iter().filter(|f| f.series == s.name).collect();
        let _ = writeln!(md, "## {}\n", s.name);
        if let Some(f) = mine.first() {
            let _ = writeln!(
                md,
                "Direction: {}.\n",
                match f.direction {
                    Direction::HigherIsBetter => "higher is better",
                    Direction::LowerIsBetter => "lower is better",
                }
            );
        }
        let _ = writeln!(
            md,
            "| law | space | parameters (95% CI) | R² | RMSE | AIC | ΔAIC | outliers | excluded |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let mut best: BTreeMap<&str, f64> = BTreeMap::new();
        for f in &mine {
            let e = best.entry(f.space.name()).or_insert(f64::INFINITY);
            *e = e.min(f.aic);
        }
        for f in &mine {
            let params: Vec<String> = f
                .params
                .iter()
                .map(|(k, v)| {
                    let [lo, hi] = f.ci95[k];
                    format!("{k} = {} [{}, {}]", fmt(*v), fmt(lo), fmt(hi))
                })
                .collect();
            let list = |v: &[f64]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                }
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {} | {:.2} | {:.2} | {} | {} |",
                f.law.name(),
                f.space.name(),
                params.join("; "),
                f.r2,
                fmt(f.rmse),
                f.aic,
                f.aic - best[f.space.name()],
                list(&f.outliers),
                list(&f.excluded)
            );
        }
        for f in mine.iter().filter(|f| f.law == Law::Paper) {
            if let Some(r) = &f.regime {
                let list = |v: &[f64]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                    }
                };
                let nb = r.n_balance.map_or("infinite (Delta-psi = 0 form)".to_string(), fmt);
                let _ = writeln!(md, "\nRegime ({} space, paper law, form `{}`): n_balance = {nb}; sublinear n: {}; linear n: {}.", f.space.name(), r.form, list(&r.sublinear), list(&r.linear));
            }
        }
        for f in &mine {
            let le: Vec<String> = f
                .local_exponent
                .iter()
                .map(|l| format!("{}: {}", l.n, l.value.map_or("-".into(), |v| format!("{v:.4}"))))
                .collect();
            let _ = writeln!(
                md,
                "\nLocal exponent d ln S / d ln n, {} ({}): {}",
                f.law.name(),
                f.space.name(),
                le.join(", ")
            );
            for note in &f.notes {
                let _ = writeln!(md, "- note ({}, {}): {note}", f.law.name(), f.space.name());
            }
        }
        for e in errors.iter().filter(|e| e["series"] == s.name.as_str()) {
            let _ = writeln!(
                md,
                "- could not fit {} ({} space): {}",
                e["law"].as_str().unwrap_or(""),
                e["space"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            );
        }
        let _ = writeln!(md);
    }
    md
}

fn figures(
    out: &Path,
    series: &[SeriesData],
    fits: &[FitResult],
    grid_laws: &[Law],
    spaces: &[Space],
) -> Result<Vec<String>> {
    let mut written = Vec::new();
    // Groups in file order (figure / model); series without a group form one grid.
    let mut groups: Vec<Option<String>> = Vec::new();
    for s in series {
        if !groups.contains(&s.group) {
            groups.push(s.group.clone());
        }
    }
    for g in &groups {
        let panels: Vec<GridPanel> = series
            .iter()
            .filter(|s| &s.group == g)
            .filter_map(|s| {
                let chosen: Vec<&FitResult> = spaces
                    .iter()
                    .flat_map(|sp| {
                        grid_laws.iter().filter_map(move |l| {
                            fits.iter()
                                .find(|f| f.series == s.name && f.law == *l && f.space == *sp)
                        })
                    })
                    .collect();
                (!chosen.is_empty()).then(|| {
                    GridPanel::from_fits(if g.is_some() { &s.benchmark } else { &s.name }, &chosen)
                })
            })
            .collect();
        if panels.is_empty() {
            continue;
        }
        let stem = match g {
            Some(g) => format!("grid_{}", sanitize(g)),
            None => "grid".to_string(),
        };
        ScalingGrid::new(g.as_deref().unwrap_or("scaling fits"), panels).save(out, &stem)?;
        written.push(format!("{stem}.svg/.png"));
    }
    // Difference heatmap between the first two groups, per benchmark and n.
    if let [Some(a), Some(b), ..] = groups.as_slice() {
        let mut rows = Vec::new();
        let mut ns: Vec<f64> = Vec::new();
        for s in series.iter().filter(|s| s.group.as_ref() == Some(a)) {
            if series.iter().any(|t| t.group.as_ref() == Some(b) && t.benchmark == s.benchmark) {
                rows.push(s.benchmark.clone());
                for p in &s.points {
                    if !ns.iter().any(|n| n == &p.0) {
                        ns.push(p.0);
                    }
                }
            }
        }
        ns.sort_by(|x, y| x.partial_cmp(y).unwrap());
        if !rows.is_empty() {
            let get = |g: &String, bench: &str, n: f64| {
                series
                    .iter()
                    .find(|s| s.group.as_ref() == Some(g) && s.benchmark == bench)
                    .and_then(|s| s.points.iter().find(|p| p.0 == n).map(|p| p.1))
            };
            let values: Vec<Vec<Option<f64>>> = rows
                .iter()
                .map(|r| ns.iter().map(|&n| Some(get(a, r, n)? - get(b, r, n)?)).collect())
                .collect();
            let mut csv = String::from("benchmark,n,a,b,difference\n");
            for (r, row) in rows.iter().zip(&values) {
                for (n, v) in ns.iter().zip(row) {
                    if let Some(v) = v {
                        let _ = writeln!(
                            csv,
                            "\"{}\",{n},{},{},{v}",
                            r.replace('"', "\"\""),
                            get(a, r, *n).unwrap_or_default(),
                            get(b, r, *n).unwrap_or_default()
                        );
                    }
                }
            }
            let stem = format!("diff_{}_minus_{}", sanitize(a), sanitize(b));
            write_atomic(&out.join(format!("{stem}.csv")), csv.as_bytes())?;
            let heat = DiffHeatmap {
                title: format!("{a} minus {b} (score difference)"),
                rows,
                cols: ns.iter().map(|n| n.to_string()).collect(),
                values,
            };
            heat.save(out, &stem)?;
            written.push(format!("{stem}.csv/.svg/.png"));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tokenscale-fit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn args(file: PathBuf, out: PathBuf) -> Args {
        Args {
            file,
            out,
            rows: Default::default(),
            space: SpaceArg::Score,
            exclude: vec![],
            lower_is_better: vec![],
            laws: vec![
                "paper".into(),
                "paper_dpsi0".into(),
                "power".into(),
                "loglinear".into(),
                "saturating".into(),
            ],
            grid_laws: vec!["power".into(), "paper".into()],
            bootstrap: 1000,
            seed: 2025,
            outlier_threshold: 3.0,
            no_figures: false,
        }
    }

    // The MMStar rows of the paper's published scores (figure names shortened).
    const PAPER_ROWS: &str = "figure,panel,benchmark,n_l,score
vqq,11,Overall@MMStar,1,30.1333
vqq,11,Overall@MMStar,8,30.4667
vqq,11,Overall@MMStar,16,30.8000
vqq,11,Overall@MMStar,32,31.8000
vqq,11,Overall@MMStar,64,31.7333
vqq,11,Overall@MMStar,128,30.3333
vqq,11,Overall@MMStar,256,34.1333
vqq,11,Overall@MMStar,384,35.4667
vqq,11,Overall@MMStar,512,35.4000
vqq,11,Overall@MMStar,768,35.2000
ft,11,Overall@MMStar,1,24.4000
ft,11,Overall@MMStar,8,24.3333
ft,11,Overall@MMStar,16,24.3333
ft,11,Overall@MMStar,32,25.0667
ft,11,Overall@MMStar,64,24.9333
ft,11,Overall@MMStar,128,27.8667
ft,11,Overall@MMStar,256,27.4667
ft,11,Overall@MMStar,384,25.4000
ft,11,Overall@MMStar,512,25.6000
ft,11,Overall@MMStar,768,30.2000
";

    #[test]
    fn fit_writes_schema_markdown_and_figures() {
        let dir = tmp("ok");
        let csv = dir.join("scores.csv");
        std::fs::write(&csv, PAPER_ROWS).unwrap();
        let out = dir.join("out");
        let mut a = args(csv, out.clone());
        a.space = SpaceArg::Both;
        a.exclude = vec!["ft/Overall@MMStar:768".into()];
        run(a).unwrap();
        let text = std::fs::read_to_string(out.join("fits.json")).unwrap();
        assert!(!text.contains("NaN") && !text.contains("Infinity"));
        let fits: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert!(fits.len() >= 16, "{}", fits.len());
        for f in &fits {
            for key in
                ["series", "law", "space", "params", "ci95", "r2", "rmse", "aic", "bic", "outliers"]
            {
                assert!(f.get(key).is_some(), "missing {key}");
            }
            for (k, v) in f["params"].as_object().unwrap() {
                assert!(v.is_f64());
                let ci = f["ci95"][k].as_array().unwrap();
                assert_eq!(ci.len(), 2);
            }
        }
        let paper = fits
            .iter()
            .find(|f| {
                f["law"] == "paper" && f["space"] == "score" && f["series"] == "vqq/Overall@MMStar"
            })
            .unwrap();
        assert!(
            paper["params"]["c"].is_f64()
                && paper["params"]["beta"].is_f64()
                && paper["params"]["n_balance"].is_f64()
        );
        let ft = fits
            .iter()
            .find(|f| f["law"] == "power" && f["series"] == "ft/Overall@MMStar")
            .unwrap();
        assert_eq!(ft["excluded"], serde_json::json!([768.0]));
        let md = std::fs::read_to_string(out.join("fits.md")).unwrap();
        assert!(
            md.contains("## vqq/Overall@MMStar")
                && md.contains("Regime")
                && md.contains("Local exponent")
        );
        for f in [
            "grid_vqq.png",
            "grid_vqq.svg",
            "grid_ft.png",
            "diff_vqq_minus_ft.png",
            "diff_vqq_minus_ft.svg",
            "diff_vqq_minus_ft.csv",
        ] {
            let bytes = std::fs::read(out.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
            assert!(bytes.len() > 500, "{f}");
        }
        assert_eq!(&std::fs::read(out.join("grid_vqq.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
        // no temporary files left behind
        assert!(std::fs::read_dir(&out).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_input_is_refused_with_a_clear_message() {
        let dir = tmp("bad");
        let cases = [
            ("series,n,score\ns,1,2\ns,8,NaN\ns,16,3\n", "not finite"),
            ("series,n,score\ns,0,2\ns,8,2.5\ns,16,3\n", "not a positive"),
            ("series,n,score\ns,1,2\ns,8,2\ns,16,2\n", "all scores are equal"),
            ("series,n,score\ns,1,2\ns,abc,2\n", "not a number"),
        ];
        for (i, (body, msg)) in cases.iter().enumerate() {
            let csv = dir.join(format!("in{i}.csv"));
            std::fs::write(&csv, body).unwrap();
            let out = dir.join(format!("out{i}"));
            let err = format!("{:#}", run(args(csv, out.clone())).unwrap_err());
            assert!(err.contains(msg), "{err}");
            assert!(!out.join("fits.json").exists());
        }
        let csv = dir.join("ok.csv");
        std::fs::write(&csv, "series,n,score\ns,1,2\ns,8,2.5\ns,16,3\n").unwrap();
        let mut a = args(csv.clone(), dir.join("o"));
        a.exclude = vec!["nope:8".into()];
        assert!(format!("{:#}", run(a).unwrap_err()).contains("no series"));
        let mut a = args(csv.clone(), dir.join("o"));
        a.bootstrap = 10;
        assert!(run(a).is_err());
        // Two points excluded leave one: every law reports too few points, in fit_errors.json.
        let mut a = args(csv, dir.join("o2"));
        a.exclude = vec!["s:8".into(), "s:16".into()];
        a.no_figures = true;
        run(a).unwrap();
        let errs: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("o2/fit_errors.json")).unwrap())
                .unwrap();
        assert_eq!(errs.len(), 5);
        assert!(errs[0]["error"].as_str().unwrap().contains("need at least"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

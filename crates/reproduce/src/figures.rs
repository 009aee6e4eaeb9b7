//! The report's figures (crates/plot): accuracy against n with the fitted laws, and the probe's
//! D(n) with the bound, ψ curves and n_balance(n).

use std::path::Path;

use anyhow::Result;
use tokenscale_law::Law;
use tokenscale_plot::{
    BalanceFigure, DistanceFigure, Figure, GridPanel, GridPoint, PsiFigure, ScalingGrid,
};

use crate::accuracy::AccuracyRow;
use crate::fits::SeriesFits;
use crate::probe::ProbeOutcome;

/// The laws drawn over the points (the defaults of `tokenscale fit`'s grid).
const DRAWN: [Law; 2] = [Law::Power, Law::Paper];

/// At most this many panels: overall, kinds, categories, then subtasks.
const MAX_PANELS: usize = 16;

/// Writes every figure into `dir`; returns the file names written.
pub fn write_all(
    dir: &Path,
    accuracy: &[AccuracyRow],
    fits: &[SeriesFits],
    probe: &ProbeOutcome,
) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let mut save = |figure: &dyn Saved, stem: &str| -> Result<()> {
        figure.save_to(dir, stem)?;
        written.extend([format!("{stem}.svg"), format!("{stem}.png")]);
        Ok(())
    };
    save(&accuracy_grid(accuracy, fits), "accuracy")?;
    let n: Vec<f64> = probe.stats.rows.iter().map(|r| r.n as f64).collect();
    let psi = PsiFigure {
        title: format!(
            "psi terms over {} image pairs (n_l = {})",
            probe.stats.pairs, probe.vision_tokens
        ),
        n: n.clone(),
        psi_eq: probe.stats.rows.iter().map(|r| Some(r.psi_eq)).collect(),
        psi_aa: probe.stats.rows.iter().map(|r| r.psi_aa).collect(),
        psi_bb: probe.stats.rows.iter().map(|r| r.psi_bb).collect(),
        psi_aabb: probe.stats.rows.iter().map(|r| r.psi_aabb).collect(),
        psi_ab: probe.stats.rows.iter().map(|r| r.psi_ab).collect(),
    };
    save(&psi, "probe_psi")?;
    if let Some(bound) = &probe.bound {
        let n: Vec<f64> = bound.rows.iter().map(|r| r.n as f64).collect();
        let distance = DistanceFigure {
            title: "E[D(n)] over image pairs and the bound".into(),
            n: n.clone(),
            d_mean: bound.rows.iter().map(|r| r.d_mean).collect(),
            d_std: bound.rows.iter().map(|r| r.d_std).collect(),
            fit: bound.rows.iter().map(|r| r.bound).collect(),
            fit_label: bound.lambda.map_or("lambda not fitted".into(), |l| {
                format!("lambda sqrt(Upsilon(n)), lambda = {l:.4}")
            }),
        };
        save(&distance, "probe_distance")?;
        if bound.rows.iter().any(|r| r.n_balance.is_some()) {
            let balance = BalanceFigure {
                title: "n_balance(n) from the probe against y = n".into(),
                n,
                n_balance: bound.rows.iter().map(|r| r.n_balance).collect(),
            };
            save(&balance, "probe_balance")?;
        }
    }
    Ok(written)
}

/// `Figure::save` behind a trait object (Figure itself is generic over the backend).
trait Saved {
    fn save_to(&self, dir: &Path, stem: &str) -> tokenscale_plot::Result<Vec<std::path::PathBuf>>;
}

impl<F: Figure> Saved for F {
    fn save_to(&self, dir: &Path, stem: &str) -> tokenscale_plot::Result<Vec<std::path::PathBuf>> {
        self.save(dir, stem)
    }
}

/// One panel per subset: the measured accuracy, and for the fitted series the drawn laws with
/// their 95% bands.
fn accuracy_grid(accuracy: &[AccuracyRow], fits: &[SeriesFits]) -> ScalingGrid {
    let mut panels: Vec<GridPanel> = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for row in accuracy {
        if seen.contains(&(row.axis.as_str(), row.subset.as_str())) || seen.len() == MAX_PANELS {
            continue;
        }
        seen.push((row.axis.as_str(), row.subset.as_str()));
        let fitted_name = if row.axis == "overall" { "overall" } else { row.subset.as_str() };
        let fitted = fits
            .iter()
            .find(|f| f.series == fitted_name && (row.axis == "overall" || row.axis == "category"));
        let title = if row.axis == "overall" {
            "all items (%)".to_string()
        } else {
            format!("{}: {} (%)", row.axis, row.subset)
        };
        let drawn: Vec<_> = fitted
            .map(|f| DRAWN.iter().filter_map(|l| f.fits.iter().find(|x| x.law == *l)).collect())
            .unwrap_or_default();
        let panel = if drawn.is_empty() {
            let points = accuracy
                .iter()
                .filter(|r| r.axis == row.axis && r.subset == row.subset)
                .map(|r| GridPoint {
                    n: r.n as f64,
                    score: r.accuracy,
                    outlier: false,
                    excluded: false,
                })
                .collect();
            GridPanel { title, points, curves: Vec::new() }
        } else {
            GridPanel::from_fits(&title, &drawn)
        };
        panels.push(panel);
    }
    ScalingGrid::new("accuracy against vision tokens n", panels)
}

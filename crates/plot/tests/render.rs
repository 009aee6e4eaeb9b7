//! Render every figure; check the PNG decodes at the right size and is not blank, and the SVG is
//! well-formed-looking, non-empty and carries text. Set TOKENSCALE_PLOT_OUT=DIR to keep the files.

use std::path::PathBuf;
use tokenscale_base::rng::SplitMix64;
use tokenscale_law::data::read_scores;
use tokenscale_law::probe::ProbeAccumulator;
use tokenscale_law::{fit_series, FitOptions, Law, Space};
use tokenscale_plot::*;

fn check<F: Figure>(fig: &F, stem: &str) {
    let (w, h) = fig.size();
    let png = fig.png().unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (w, h), "{stem}");
    let first = *img.get_pixel(0, 0);
    let differing = img.pixels().filter(|p| **p != first).count();
    assert!(
        differing > (w * h) as usize / 200,
        "{stem}: image is (nearly) blank: {differing} non-background pixels"
    );
    // Text really rendered: some dark pixels exist.
    assert!(
        img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count() > 100,
        "{stem}: no dark (text/axis) pixels"
    );
    let svg = fig.svg().unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{stem}");
    assert!(svg.contains("<text") && svg.len() > 1000, "{stem}");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "{stem}");
    assert!(
        svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")),
        "{stem}"
    );
    if let Ok(dir) = std::env::var("TOKENSCALE_PLOT_OUT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let written = fig.save(&dir, stem).unwrap();
        assert_eq!(written.len(), 2);
    }
}

#[test]
fn scaling_grid_from_paper_scores() {
    let all = read_scores(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../law/tests/fixtures/paper-scores.csv"),
    )
    .unwrap();
    let opts = FitOptions { space: Space::Log, bootstrap: 200, ..Default::default() };
    let panels: Vec<GridPanel> = all
        .iter()
        .filter(|s| s.group.as_deref() == Some("scaling_fit_vq_ft"))
        .map(|s| {
            let p = fit_series(&s.name, &s.points, &[], Law::Power, &opts).unwrap();
            let q = fit_series(
                &s.name,
                &s.points,
                &[],
                Law::Paper,
                &FitOptions { space: Space::Score, ..opts.clone() },
            )
            .unwrap();
            GridPanel::from_fits(&s.benchmark, &[&p, &q])
        })
        .collect();
    assert_eq!(panels.len(), 18);
    let grid = ScalingGrid::new("vision queries (ft)", panels);
    assert_eq!(grid.size(), (330 * 6, 260 * 3 + 40));
    check(&grid, "grid");
}

#[test]
fn probe_figures_and_heatmap() {
    let (d, len) = (16, 60);
    let mut acc = ProbeAccumulator::new(d, len);
    let mut rng = SplitMix64::new(1);
    let mut u = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
    for _ in 0..6 {
        // Shared direction + noise, so that the cross similarities are positive.
        let a: Vec<f32> =
            (0..len * d).map(|i| if i % d == 0 { 1.0 } else { 0.0 } + u() - 0.5).collect();
        let b: Vec<f32> =
            (0..len * d).map(|i| if i % d == 1 { 0.8 } else { 0.0 } + u() - 0.5).collect();
        acc.add_pair(&a, &b).unwrap();
    }
    let stats = acc.finish();
    let bound = stats.bound().unwrap();
    let n: Vec<f64> = stats.rows.iter().map(|r| r.n as f64).collect();
    let psi = PsiFigure {
        title: "psi curves".into(),
        n: n.clone(),
        psi_eq: stats.rows.iter().map(|r| Some(r.psi_eq)).collect(),
        psi_aa: stats.rows.iter().map(|r| r.psi_aa).collect(),
        psi_bb: stats.rows.iter().map(|r| r.psi_bb).collect(),
        psi_aabb: stats.rows.iter().map(|r| r.psi_aabb).collect(),
        psi_ab: stats.rows.iter().map(|r| r.psi_ab).collect(),
    };
    check(&psi, "psi");
    let bn: Vec<f64> = bound.rows.iter().map(|r| r.n as f64).collect();
    let dist = DistanceFigure {
        title: "E[D(n)]".into(),
        n: bn.clone(),
        d_mean: bound.rows.iter().map(|r| r.d_mean).collect(),
        d_std: bound.rows.iter().map(|r| r.d_std).collect(),
        fit: bound.rows.iter().map(|r| r.bound).collect(),
        fit_label: format!("lambda sqrt(Upsilon), lambda = {:.3}", bound.lambda.unwrap()),
    };
    check(&dist, "distance");
    let bal = BalanceFigure {
        title: "n_balance".into(),
        n: bn,
        n_balance: bound.rows.iter().map(|r| r.n_balance).collect(),
    };
    check(&bal, "balance");
    let heat = DiffHeatmap {
        title: "vqq - vq_ft".into(),
        rows: vec!["Overall@MME".into(), "Overall@POPE".into(), "Final Score@OCRBench".into()],
        cols: ["1", "8", "16", "32"].iter().map(|s| s.to_string()).collect(),
        values: vec![
            vec![Some(50.0), Some(-20.0), None, Some(3.0)],
            vec![Some(-1.5), Some(0.2), Some(2.0), Some(0.0)],
            vec![Some(8.0), Some(12.0), Some(-4.0), Some(1.0)],
        ],
    };
    check(&heat, "heatmap");
}

#[test]
fn empty_input_is_an_error_not_a_panic() {
    assert!(ScalingGrid::new("x", vec![]).png().is_err());
    let h = DiffHeatmap { title: "x".into(), rows: vec![], cols: vec![], values: vec![] };
    assert!(h.svg().is_err());
}

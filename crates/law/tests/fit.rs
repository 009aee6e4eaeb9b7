//! Behaviour of fit_series on the paper's published scores and on bad input.

use std::path::PathBuf;
use tokenscale_law::data::{read_scores, SeriesData};
use tokenscale_law::fit::fit_all;
use tokenscale_law::{fit_series, Direction, FitOptions, Law, LawError, Space};

fn paper_series() -> Vec<SeriesData> {
    read_scores(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paper-scores.csv"))
        .unwrap()
}

fn get<'a>(all: &'a [SeriesData], name: &str) -> &'a SeriesData {
    all.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn every_paper_series_every_law_both_spaces_is_finite() {
    let all = paper_series();
    assert_eq!(all.len(), 36);
    let opts_s = FitOptions { bootstrap: 200, ..Default::default() };
    let opts_l = FitOptions { space: Space::Log, bootstrap: 200, ..Default::default() };
    for s in &all {
        for opts in [&opts_s, &opts_l] {
            let (ok, err) = fit_all(&s.name, &s.points, &[], &Law::ALL, opts);
            // Only the saturating law may lack a finite optimum (it can run to its log-linear limit).
            for (law, e) in &err {
                assert!(*law == Law::Saturating, "{} {law:?} {:?}: {e}", s.name, opts.space);
            }
            assert!(ok.len() >= 3, "{}", s.name);
            for f in &ok {
                let json = serde_json::to_string(f).unwrap();
                assert!(!json.contains("NaN") && !json.contains("Infinity"), "{json}");
                for (k, v) in &f.params {
                    assert!(v.is_finite(), "{} {k}", s.name);
                    let [lo, hi] = f.ci95[k];
                    assert!(
                        lo.is_finite() && hi.is_finite() && lo <= hi,
                        "{} {:?} {k}: [{lo}, {hi}]",
                        s.name,
                        f.law
                    );
                }
                assert!(
                    f.r2.is_finite()
                        && f.rmse.is_finite()
                        && f.aic.is_finite()
                        && f.bic.is_finite()
                );
                assert_eq!(f.residuals.len(), s.points.len());
                assert_eq!(f.local_exponent.len(), s.points.len());
            }
            // sorted by AIC
            assert!(ok.windows(2).all(|w| w[0].aic <= w[1].aic));
        }
    }
}

#[test]
fn log_space_power_law_is_the_papers_ols() {
    let all = paper_series();
    let s = get(&all, "scaling_fit_vqq/Overall@POPE");
    let f = fit_series(
        &s.name,
        &s.points,
        &[],
        Law::Power,
        &FitOptions { space: Space::Log, bootstrap: 0, ..Default::default() },
    )
    .unwrap();
    let lx: Vec<f64> = s.points.iter().map(|p| p.0.ln()).collect();
    let ly: Vec<f64> = s.points.iter().map(|p| p.1.ln()).collect();
    let (mx, my) = (lx.iter().sum::<f64>() / 10.0, ly.iter().sum::<f64>() / 10.0);
    let b = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>()
        / lx.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    assert!((f.params["alpha"] + b).abs() < 1e-10);
    assert!((f.params["c"] - (my - b * mx).exp()).abs() < 1e-8);
    assert_eq!(f.space, Space::Log);
}

#[test]
fn bootstrap_is_seeded_and_deterministic_with_1000_resamples() {
    let all = paper_series();
    let s = get(&all, "scaling_fit_vqq/Overall@MMStar");
    let opts = FitOptions { bootstrap: 1000, seed: 42, ..Default::default() };
    let a = fit_series(&s.name, &s.points, &[], Law::Paper, &opts).unwrap();
    let b = fit_series(&s.name, &s.points, &[], Law::Paper, &opts).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    assert_eq!(a.bootstrap.resamples, 1000);
    let c =
        fit_series(&s.name, &s.points, &[], Law::Paper, &FitOptions { seed: 43, ..opts.clone() })
            .unwrap();
    assert_ne!(a.ci95["beta"], c.ci95["beta"]);
    // The interval contains the estimate.
    for (k, v) in &a.params {
        let [lo, hi] = a.ci95[k];
        assert!(lo <= *v && *v <= hi, "{k}: {v} not in [{lo}, {hi}]");
    }
    let regime = a.regime.unwrap();
    assert_eq!(regime.form, "general");
    let nb = regime.n_balance.unwrap();
    assert!(regime.sublinear.iter().all(|&n| n < nb) && regime.linear.iter().all(|&n| n >= nb));
    assert_eq!(regime.sublinear.len() + regime.linear.len(), 10);
}

#[test]
fn paper_law_on_a_boundary_says_so() {
    // Concave growth in log-log: no interior optimum; the best paper-law curve is a pure power law.
    let all = paper_series();
    let s = get(&all, "scaling_fit_vqq/Overall@POPE");
    let f = fit_series(
        &s.name,
        &s.points,
        &[],
        Law::Paper,
        &FitOptions { bootstrap: 100, ..Default::default() },
    )
    .unwrap();
    let r = f.regime.as_ref().unwrap();
    assert_eq!(r.form, "dpsi0");
    assert!(r.n_balance.is_none() && !f.params.contains_key("n_balance"));
    assert!(r.sublinear.is_empty() && r.linear.is_empty());
    assert!(f.notes.iter().any(|n| n.contains("not identifiable")));
    // Same curve as the power law: beta/2 = -alpha.
    let p = fit_series(
        &s.name,
        &s.points,
        &[],
        Law::Power,
        &FitOptions { bootstrap: 0, ..Default::default() },
    )
    .unwrap();
    assert!((f.params["beta"] / 2.0 + p.params["alpha"]).abs() < 1e-7);
    assert!((f.eval(300.0) - p.eval(300.0)).abs() < 1e-6);
}

#[test]
fn outliers_flagged_and_exclusions_reported() {
    // A clean power law with one corrupted point.
    let mut pts: Vec<(f64, f64)> =
        [1.0f64, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 384.0, 512.0, 768.0]
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, 40.0 * n.powf(0.1) * (1.0 + 0.002 * ((i * 7 % 5) as f64 - 2.0))))
            .collect();
    pts[7].1 *= 0.7;
    let f = fit_series(
        "t",
        &pts,
        &[],
        Law::Power,
        &FitOptions { bootstrap: 100, ..Default::default() },
    )
    .unwrap();
    assert_eq!(f.outliers, vec![384.0]);
    assert!(f.residuals[7].outlier && f.residuals[7].studentized.unwrap().abs() > 3.0);
    assert_eq!(f.n_points, 10, "flagged points stay in the fit");
    let g = fit_series(
        "t",
        &pts,
        &[384.0],
        Law::Power,
        &FitOptions { bootstrap: 100, ..Default::default() },
    )
    .unwrap();
    assert_eq!(g.excluded, vec![384.0]);
    assert_eq!(g.n_points, 9);
    assert!(g.residuals[7].excluded && g.residuals[7].studentized.is_none());
    assert!((g.params["alpha"] + 0.1).abs() < 0.01);
    assert!(g.notes.iter().any(|n| n.contains("excluded")));
}

#[test]
fn lower_is_better_metric() {
    // An error rate that falls with n.
    let pts: Vec<(f64, f64)> = [1.0f64, 4.0, 16.0, 64.0, 256.0, 1024.0]
        .iter()
        .map(|&n| (n, 5.0 + 30.0 * n.powf(-0.5)))
        .collect();
    let opts =
        FitOptions { direction: Direction::LowerIsBetter, bootstrap: 100, ..Default::default() };
    let f = fit_series("err", &pts, &[], Law::Saturating, &opts).unwrap();
    assert!(
        (f.params["s_inf"] - 5.0).abs() < 1e-6
            && (f.params["c"] + 30.0).abs() < 1e-5
            && (f.params["alpha"] - 0.5).abs() < 1e-6
    );
    assert!(f.improves_with_n);
    assert_eq!(f.direction, Direction::LowerIsBetter);
    let p = fit_series("err", &pts, &[], Law::Power, &opts).unwrap();
    assert!(p.params["alpha"] > 0.0 && p.improves_with_n);
    let h = fit_series(
        "err",
        &pts,
        &[],
        Law::Power,
        &FitOptions { bootstrap: 0, ..Default::default() },
    )
    .unwrap();
    assert!(!h.improves_with_n);
}

#[test]
fn bad_input_gives_clear_errors() {
    let o = FitOptions { bootstrap: 10, ..Default::default() };
    let e = fit_series("s", &[(1.0, 2.0), (2.0, 3.0)], &[], Law::Paper, &o).unwrap_err();
    assert!(matches!(e, LawError::TooFewPoints { .. }), "{e}");
    assert!(e.to_string().contains("need at least 3"));
    let e =
        fit_series("s", &[(0.0, 2.0), (2.0, 3.0), (4.0, 3.5)], &[], Law::Power, &o).unwrap_err();
    assert!(matches!(e, LawError::BadN { .. }), "{e}");
    let e =
        fit_series("s", &[(-1.0, 2.0), (2.0, 3.0), (4.0, 3.5)], &[], Law::Power, &o).unwrap_err();
    assert!(matches!(e, LawError::BadN { .. }), "{e}");
    let e = fit_series("s", &[(1.0, f64::NAN), (2.0, 3.0), (4.0, 3.5)], &[], Law::Power, &o)
        .unwrap_err();
    assert!(matches!(e, LawError::BadScore { .. }), "{e}");
    let e =
        fit_series("s", &[(1.0, 3.0), (2.0, 3.0), (4.0, 3.0)], &[], Law::Power, &o).unwrap_err();
    assert!(matches!(e, LawError::ConstantScores { .. }), "{e}");
    let e = fit_series(
        "s",
        &[(1.0, -3.0), (2.0, 3.0), (4.0, 4.0)],
        &[],
        Law::Power,
        &FitOptions { space: Space::Log, ..o.clone() },
    )
    .unwrap_err();
    assert!(matches!(e, LawError::NonPositiveForLog { .. }), "{e}");
    // Exclusions can leave too few points.
    let e = fit_series("s", &[(1.0, 2.0), (2.0, 3.0), (4.0, 3.5)], &[4.0], Law::Saturating, &o)
        .unwrap_err();
    assert!(matches!(e, LawError::TooFewPoints { .. }), "{e}");
    // Exactly as many points as parameters: an exact fit, no NaN anywhere.
    let f = fit_series("s", &[(1.0, 2.0), (2.0, 3.0)], &[], Law::Power, &o).unwrap();
    let json = serde_json::to_string(&f).unwrap();
    assert!(!json.contains("NaN") && !json.contains("null,\"outlier\":true"));
    assert_eq!(f.dof, 0);
}

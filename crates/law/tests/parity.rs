//! Parity with scipy.optimize.curve_fit (fixtures from tools/fixtures/law/make_law_fixtures.py).

use std::path::PathBuf;
use tokenscale_law::data::read_scores;
use tokenscale_law::{fit_series, FitOptions, Law, Space};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn parameters_match_scipy_curve_fit_to_1e_6() {
    let series = read_scores(&fixtures().join("paper-scores.csv")).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("law_parity.json")).unwrap())
            .unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    let mut worst = (0.0f64, String::new());
    for case in cases {
        let name = case["series"].as_str().unwrap();
        let law = Law::from_name(case["law"].as_str().unwrap()).unwrap();
        let space = match case["space"].as_str().unwrap() {
            "log" => Space::Log,
            _ => Space::Score,
        };
        let s = series.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} missing"));
        let opts = FitOptions { space, bootstrap: 0, ..Default::default() };
        let fit = fit_series(name, &s.points, &[], law, &opts)
            .unwrap_or_else(|e| panic!("{name} {law:?}: {e}"));
        if law == Law::Paper {
            assert_eq!(fit.regime.as_ref().unwrap().form, "general", "{name}");
        }
        for (k, v) in case["params"].as_object().unwrap() {
            let want = v.as_f64().unwrap();
            let got = fit.params[k];
            let rel = (got - want).abs() / want.abs().max(1e-12);
            if rel > worst.0 {
                worst = (
                    rel,
                    format!("{name} {} {} {k}: rust {got} scipy {want}", law.name(), space.name()),
                );
            }
            assert!(
                rel <= 1e-6,
                "{name} {} {} {k}: rust {got} vs scipy {want} (rel {rel:.2e})",
                law.name(),
                space.name()
            );
        }
        let rss_want = case["rss"].as_f64().unwrap();
        assert!(
            fit.rss <= rss_want * (1.0 + 1e-9) + 1e-300,
            "{name} {law:?}: rss {} vs scipy {}",
            fit.rss,
            rss_want
        );
    }
    eprintln!(
        "parity: {} cases, worst relative difference {:.3e} ({})",
        cases.len(),
        worst.0,
        worst.1
    );
}

//! `tokenscale reproduce` on the reduced (CI) setting with the embedded model: every output is
//! there, the report states scores.json's numbers, a re-run resumes from the store, and bad
//! input is refused before anything is written.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const REDUCED: [&str; 6] = ["--items", "6", "--vision-tokens", "1,4,16", "--pairs", "2"];

/// The binary with its model cache in `cache` (the embedded model is written there).
fn tokenscale(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).env("XDG_CACHE_HOME", cache).output().expect("binary runs")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The report's number format for fitted and probed quantities.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && (a >= 1e5 || a < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

/// Cells of the markdown table row whose first cell is `label`.
fn row<'a>(report: &'a str, label: &str) -> Vec<&'a str> {
    let line = report.lines().find(|l| l.starts_with(&format!("| {label} |"))).unwrap_or_else(|| panic!("no report row `{label}`"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn reduced_setting_writes_a_consistent_report_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    let mut args = vec!["reproduce", "--out", out.to_str().unwrap()];
    args.extend(REDUCED);
    ok(&tokenscale(&args, tmp.path()));
    for f in ["report.md", "scores.json", "scores.csv", "fits.json", "probe.json", "cost.csv", "figures/accuracy.svg", "figures/accuracy.png", "figures/probe_psi.svg", "run/scores.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let scores = read_json(&out.join("scores.json"));
    let ns: Vec<u64> = scores["settings"]["vision_tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ns, [1, 4, 16]);

    // Every accuracy and chance number of scores.json, at its n, in the report's tables.
    let accuracy = scores["accuracy"].as_array().unwrap();
    let mut subsets = 0;
    for a in accuracy {
        let (axis, subset) = (a["axis"].as_str().unwrap(), a["subset"].as_str().unwrap());
        let label = if axis == "overall" { "all".to_string() } else { format!("{axis} {subset}") };
        let cells = row(&report, &label);
        let column = 3 + ns.iter().position(|n| a["n"].as_u64() == Some(*n)).unwrap();
        assert_eq!(cells[1], a["items"].to_string(), "{label}: items");
        assert_eq!(cells[2], format!("{:.1}", a["chance"].as_f64().unwrap()), "{label}: chance");
        assert_eq!(cells[column], format!("{:.1}", a["accuracy"].as_f64().unwrap()), "{label}: n = {}", a["n"]);
        subsets += 1;
    }
    assert!(subsets >= 3 * 5, "overall and the three kinds at three n at least, got {subsets} rows");
    let items: u64 = scores["settings"]["datasets"].as_array().unwrap().iter().map(|d| d["rows"].as_u64().unwrap()).sum();
    assert_eq!(row(&report, "all")[1], items.to_string());
    // The overall accuracy in scores.csv is the same number.
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + accuracy.len());

    // n_balance from the fit and from the probe, as scores.json has them.
    let probe = &scores["probe"];
    assert_eq!(probe["pairs"], 2);
    let probe_row = row(&report, "probe, 2 image pairs, last layer");
    assert_eq!(probe_row[1], probe["n_balance"].as_f64().map_or("-".to_string(), fmt_value));
    for verdict in scores["regimes"].as_array().unwrap() {
        let v = &verdict["verdict"];
        let fit_row = row(&report, &format!("fit, {} accuracy", verdict["series"].as_str().unwrap()));
        assert_eq!(fit_row[1], v["n_balance"].as_f64().map_or("-".to_string(), fmt_value));
        assert!(report.contains(v["sentence"].as_str().unwrap()));
    }
    assert!(report.contains(scores["n_balance_comparison"].as_str().unwrap()));
    // Cost and time per step.
    assert_eq!(scores["cost"].as_array().unwrap().len(), ns.len());
    for t in scores["timings"].as_array().unwrap() {
        let cells = row(&report, t["step"].as_str().unwrap());
        assert_eq!(cells[1], format!("{:.1}", t["seconds"].as_f64().unwrap()));
    }
    let answered = scores["sweep"]["answered"].as_u64().unwrap();
    assert_eq!(answered, items * ns.len() as u64);

    // The same command again answers nothing and reports the same accuracy.
    ok(&tokenscale(&args, tmp.path()));
    let again = read_json(&out.join("scores.json"));
    assert_eq!(again["sweep"]["answered"], 0);
    assert_eq!(again["sweep"]["skipped"].as_u64(), Some(answered));
    assert_eq!(again["accuracy"], scores["accuracy"]);
    // No temporary file or folder left behind.
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    let llava = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/llava");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--vision-tokens", "0"], "n = 0"),
        (vec!["--vision-tokens", "1,100000"], "n_l = 100000"),
        (vec!["--items", "0"], "--items"),
        (vec!["--model", llava.to_str().unwrap()], "query-fused"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["reproduce", "--out", out.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let o = tokenscale(&args, tmp.path());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {stderr}");
        let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{extra:?}: no error line in {stderr}"));
        assert!(error.contains(message), "{extra:?}: {error}");
        assert!(!out.exists(), "{extra:?}: output written");
    }
}

#[test]
fn retrain_trains_into_the_output_folder_and_reproduces_with_that_model() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("train.json");
    // A toy shape and two steps: this checks the wiring, not the training.
    let toy = serde_json::json!({
        "model": {"crop": 16, "patch": 4, "num_crops": 1, "vision_hidden": 64, "vision_intermediate": 64, "vision_layers": 1,
                  "vision_heads": 1, "decoder_layers": 1, "max_vision_tokens": 4, "llm_hidden": 64, "llm_intermediate": 64,
                  "llm_layers": 1, "llm_heads": 2, "llm_max_positions": 512},
        "steps": 2, "batch": 2, "checkpoint_every": 2, "validation_items": 2,
    });
    std::fs::write(&config, toy.to_string()).unwrap();
    let out = tmp.path().join("rep");
    let args = [
        "reproduce", "--out", out.to_str().unwrap(), "--retrain", "--train-config", config.to_str().unwrap(),
        "--items", "3", "--vision-tokens", "1,4", "--pairs", "2", "--bootstrap", "0",
    ];
    ok(&tokenscale(&args, tmp.path()));
    let scores = read_json(&out.join("scores.json"));
    assert_eq!(Path::new(scores["model"]["dir"].as_str().unwrap()), out.join("train/model"));
    assert!(out.join("train/model/model.safetensors").is_file());
    let first_step = &scores["timings"][0];
    assert!(first_step["step"].as_str().unwrap().starts_with("train the model"), "{first_step}");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("no intervals (--bootstrap 0)"));
}

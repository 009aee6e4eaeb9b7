//! `tokenscale reproduce` on the reduced (CI) setting with the embedded model: every output is
//! there, the report states scores.json's numbers, a re-run resumes from the store, and bad
//! input is refused before anything is written.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const REDUCED: [&str; 8] =
    ["--items", "6", "--kinds", "mcq,yorn,vqa", "--vision-tokens", "1,4,16", "--pairs", "2"];

/// The binary with its model cache in `cache` (the embedded model is written there).
fn tokenscale(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("binary runs")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The report's number format for fitted and probed quantities.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

/// Cells of the markdown table row whose first cell is `label`.
fn row<'a>(report: &'a str, label: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no report row `{label}`"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
fn reduced_setting_writes_a_consistent_report_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    let mut args = vec!["reproduce", "--out", out.to_str().unwrap()];
    args.extend(REDUCED);
    ok(&tokenscale(&args, tmp.path()));
    for f in [
        "report.md",
        "scores.json",
        "scores.csv",
        "fits.json",
        "probe.json",
        "cost.csv",
        "figures/accuracy.svg",
        "figures/accuracy.png",
        "figures/probe_psi.svg",
        "run/scores.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let scores = read_json(&out.join("scores.json"));
    let ns: Vec<u64> = scores["settings"]["vision_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
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
        assert_eq!(
            cells[column],
            format!("{:.1}", a["accuracy"].as_f64().unwrap()),
            "{label}: n = {}",
            a["n"]
        );
        subsets += 1;
    }
    assert!(
        subsets >= 3 * 4,
        "overall and the three kinds at three n at least, got {subsets} rows"
    );
    assert_eq!(scores["settings"]["kinds"], serde_json::json!(["mcq", "yorn", "vqa"]));
    let items: u64 = scores["settings"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rows"].as_u64().unwrap())
        .sum();
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
        let fit_row =
            row(&report, &format!("fit, {} accuracy", verdict["series"].as_str().unwrap()));
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
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    let llava = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/llava");
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--kinds", "mcq,essay"], "unknown kind `essay`"),
        (vec!["--vision-tokens", "0"], "n = 0"),
        (vec!["--vision-tokens", "1,100000"], "n_l = 100000"),
        (vec!["--items", "0"], "items per kind"),
        (vec!["--model", llava.to_str().unwrap()], "query-fused"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["reproduce", "--out", out.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let o = tokenscale(&args, tmp.path());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{extra:?}: no error line in {stderr}"));
        assert!(error.contains(message), "{extra:?}: {error}");
        assert!(!out.exists(), "{extra:?}: output written");
    }
}

#[test]
fn retrain_runs_the_stages_in_order_and_reproduces_with_the_last_model() {
    let tmp = tempfile::tempdir().unwrap();
    // A toy shape and two steps per stage: this checks the wiring, not the training.
    let toy = |seed: u64| {
        serde_json::json!({
            "model": {"crop": 16, "patch": 4, "num_crops": 1, "vision_hidden": 64, "vision_intermediate": 64, "vision_layers": 1,
                      "vision_heads": 1, "decoder_layers": 1, "max_vision_tokens": 4, "llm_hidden": 64, "llm_intermediate": 64,
                      "llm_layers": 1, "llm_heads": 2, "llm_max_positions": 512},
            "steps": 2, "batch": 2, "checkpoint_every": 2, "validation_items": 2, "seed": seed,
        })
    };
    let (first, second) = (tmp.path().join("stage-a.json"), tmp.path().join("stage-b.json"));
    std::fs::write(&first, toy(1).to_string()).unwrap();
    std::fs::write(&second, toy(2).to_string()).unwrap();
    let out = tmp.path().join("rep");
    let args = [
        "reproduce",
        "--out",
        out.to_str().unwrap(),
        "--retrain",
        "--train-config",
        first.to_str().unwrap(),
        "--train-config",
        second.to_str().unwrap(),
        "--items",
        "3",
        "--vision-tokens",
        "1,4",
        "--pairs",
        "2",
        "--bootstrap",
        "0",
    ];
    ok(&tokenscale(&args, tmp.path()));
    // The second stage starts from the first stage's last checkpoint (model and auxiliary heads);
    // the experiment runs on the second stage's model.
    let stage2 = read_json(&out.join("train/stage2.json"));
    assert_eq!(
        Path::new(stage2["init_from"].as_str().unwrap()),
        out.join("train/stage1/checkpoints/step-0000002")
    );
    let scores = read_json(&out.join("scores.json"));
    assert_eq!(Path::new(scores["model"]["dir"].as_str().unwrap()), out.join("train/stage2/model"));
    let steps: Vec<&str> =
        scores["timings"].as_array().unwrap().iter().map(|t| t["step"].as_str().unwrap()).collect();
    assert!(
        steps[0].starts_with("train stage 1") && steps[1].starts_with("train stage 2"),
        "{steps:?}"
    );
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("no intervals (0 bootstrap resamples)"));
}

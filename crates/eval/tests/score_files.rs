//! What `tokenscale score` does: predictions from CSV / TSV / JSONL files, scored into
//! scores.json / scores.csv / scores.md and predictions/.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tokenscale_eval::predfile::read_predictions;
use tokenscale_eval::store::Record;
use tokenscale_eval::{Dataset, ScoreOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

#[test]
fn csv_tsv_jsonl_predictions_score_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = read_predictions(&fixtures().join("MME.pred.jsonl")).unwrap();
    let mut w = csv::Writer::from_path(tmp.path().join("p.csv")).unwrap();
    w.write_record(["index", "prediction"]).unwrap();
    for (i, p) in &jsonl {
        w.write_record([i, p]).unwrap();
    }
    w.flush().unwrap();
    let mut w =
        csv::WriterBuilder::new().delimiter(b'\t').from_path(tmp.path().join("p.tsv")).unwrap();
    w.write_record(["prediction", "index"]).unwrap();
    for (i, p) in &jsonl {
        w.write_record([p, i]).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(read_predictions(&tmp.path().join("p.csv")).unwrap(), jsonl);
    assert_eq!(read_predictions(&tmp.path().join("p.tsv")).unwrap(), jsonl);
    assert_eq!(read_predictions(&fixtures().join("MME.pred.xlsx")).unwrap(), jsonl);
    assert!(read_predictions(&tmp.path().join("missing.xlsx")).is_err());

    let ds = Dataset::load(&fixtures().join("MME.tsv"), None).unwrap();
    let mut recs = BTreeMap::new();
    for (index, prediction) in jsonl {
        let r = Record {
            model: "m".into(),
            reducer: "none".into(),
            n: 0,
            dataset: "MME".into(),
            index,
            prediction,
            seconds: 0.0,
            error: None,
        };
        recs.insert(r.key(), r);
    }
    let out = tmp.path().join("out");
    let rows = tokenscale_eval::report::write_outputs(&out, &[ds], &recs, ScoreOptions::default())
        .unwrap();
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let want = exp["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dataset"] == "MME" && r["metric"] == "perception" && r["compat"] == "head")
        .unwrap()["value"]
        .as_f64()
        .unwrap();
    let got = rows.iter().find(|r| r.metric == "perception").unwrap().value;
    assert_eq!(got, want);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("scores.json")).unwrap()).unwrap();
    let first = &json.as_array().unwrap()[0];
    for k in ["model", "reducer", "n", "dataset", "split", "category", "metric", "value"] {
        assert!(first.get(k).is_some(), "scores.json record lacks {k}");
    }
    assert!(std::fs::read_to_string(out.join("scores.md")).unwrap().contains("| perception |"));
    let preds = std::fs::read_to_string(out.join("predictions/MME.csv")).unwrap();
    assert!(preds.lines().next().unwrap().ends_with("prediction,extracted"));
    assert!(!preds.lines().next().unwrap().contains("image,"));
}

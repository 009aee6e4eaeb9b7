//! Parity with the reference scorers: `tools/fixtures/eval/make_fixtures.py` scored the committed
//! fixture predictions with VLMEvalKit's rules (re-implemented in Python) and pycocoevalcap 1.2;
//! the Rust scorers must give the same numbers — exactly for accuracies and totals, to 1e-9 for
//! captions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tokenscale_eval::score::{self, ptb, Compat, Row, ScoreOptions};
use tokenscale_eval::{Dataset, Kind};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

type MKey = (Option<String>, Option<String>, String);

#[test]
fn scores_match_the_reference_implementation() {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    // (dataset, compat, ptb) -> metrics
    let mut want: BTreeMap<(String, String, bool), BTreeMap<MKey, f64>> = BTreeMap::new();
    for r in exp["records"].as_array().unwrap() {
        let k = (
            r["dataset"].as_str().unwrap().to_string(),
            r["compat"].as_str().unwrap().to_string(),
            r["ptb"].as_bool().unwrap(),
        );
        let mk = (
            r["split"].as_str().map(String::from),
            r["category"].as_str().map(String::from),
            r["metric"].as_str().unwrap().to_string(),
        );
        want.entry(k).or_default().insert(mk, r["value"].as_f64().unwrap());
    }
    assert!(want.len() >= 20);
    let mut checked = 0;
    for ((name, compat, use_ptb), metrics) in &want {
        let ds = Dataset::load(&fixtures().join(format!("{name}.tsv")), None).unwrap();
        let preds = tokenscale_eval::predfile::read_predictions(
            &fixtures().join(format!("{name}.pred.jsonl")),
        )
        .unwrap();
        let map: BTreeMap<String, String> = preds.into_iter().collect();
        let rows: Vec<Row> = ds
            .items
            .iter()
            .map(|it| Row { item: it, prediction: map[&it.index].as_str() })
            .collect();
        let opts = ScoreOptions { compat: Compat::parse(compat).unwrap(), ptb: *use_ptb };
        let got = score::score(&ds.name, ds.kind, &rows, opts).unwrap();
        let got: BTreeMap<MKey, f64> =
            got.into_iter().map(|m| ((m.split, m.category, m.metric), m.value)).collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            metrics.keys().collect::<Vec<_>>(),
            "{name} {compat}: metric sets differ"
        );
        for (k, v) in metrics {
            let g = got[k];
            if ds.kind == Kind::Caption {
                assert!(
                    (g - v).abs() <= 1e-9,
                    "{name} {compat} ptb={use_ptb} {k:?}: rust {g} vs python {v}"
                );
            } else {
                assert_eq!(
                    g.to_bits(),
                    v.to_bits(),
                    "{name} {compat} {k:?}: rust {g} vs python {v}"
                );
            }
            checked += 1;
        }
    }
    eprintln!("{checked} numbers checked");
}

#[test]
fn ptb_tokenizer_matches_corenlp() {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    for pair in exp["ptb_tokens"].as_array().unwrap() {
        let raw = pair[0].as_str().unwrap();
        let want = pair[1].as_str().unwrap();
        assert_eq!(ptb::tokenize(raw), want, "PTB tokens of {raw:?}");
    }
}

#[test]
fn compat_changes_the_numbers_where_vlmevalkit_changed() {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let get = |ds: &str, compat: &str| -> f64 {
        exp["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["dataset"] == ds
                    && r["compat"] == compat
                    && r["split"].is_null()
                    && r["category"].is_null()
                    && r["metric"] == "Overall"
            })
            .map(|r| r["value"].as_f64().unwrap())
            .unwrap()
    };
    assert_ne!(get("ChartQA_TEST", "head"), get("ChartQA_TEST", "0ff0c3e"));
}

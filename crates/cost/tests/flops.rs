//! The analytic MACs (× 2) equal PyTorch's FlopCounterMode on the fixture models
//! (tests/fixtures/flops.json, made by tools/fixtures/cost/make_cost_fixtures.py).
//!
//! Convention differences, handled here: FlopCounterMode reports 2·MACs (so FLOPs compare
//! directly); HF's LlavaForConditionalGeneration runs every CLIP layer while the runtime stops at
//! `vision_feature_layer`, so the reference's unused-layer flops are subtracted.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenscale_cost::{cost, read_config, Row, Workload};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures").join(name)
}

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flops.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn row<'a>(rows: &'a [Row], c: &str) -> &'a Row {
    rows.iter().find(|r| r.component == c).unwrap_or_else(|| panic!("no row {c}"))
}

#[test]
fn llava_flops_match_flop_counter() {
    let arch = read_config(&fixture("llava").join("config.json")).unwrap();
    let cases = reference()["llava"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in cases {
        let w = Workload {
            text_tokens: u(&case["text_tokens"]),
            new_tokens: u(&case["new_tokens"]),
            ..Workload::default()
        };
        let rows = cost(&arch, u(&case["n"]), &w).unwrap();
        let f = &case["flops"];
        let vision = u(&f["vision_tower"]) - u(&f["vision_tower_unused_layers"]);
        assert_eq!(row(&rows, "vision_tower").flops, vision, "vision tower, {case}");
        assert_eq!(row(&rows, "projector").flops, u(&f["projector"]), "projector, {case}");
        assert_eq!(row(&rows, "llm_prefill").flops, u(&f["llm_prefill"]), "prefill, {case}");
        assert_eq!(row(&rows, "llm_decode").flops, u(&f["llm_decode"]), "decode, {case}");
        let total = row(&rows, "total");
        assert_eq!(
            total.flops,
            u(&f["prefill_total"]) - u(&f["vision_tower_unused_layers"]) + u(&f["llm_decode"]),
            "total, {case}"
        );
        assert_eq!(total.flops, 2 * total.macs);
    }
}

#[test]
fn llm_flops_match_flop_counter() {
    let reference = reference();
    let models = reference["llm"].as_object().unwrap();
    assert_eq!(models.len(), 3);
    for (name, cases) in models {
        let arch = read_config(&fixture(name).join("config.json")).unwrap();
        for case in cases.as_array().unwrap() {
            // the whole prompt is "text" here: n = 1 vision token + prompt − 1 text tokens
            let w = Workload {
                text_tokens: u(&case["prompt"]) - 1,
                new_tokens: u(&case["new_tokens"]),
                ..Workload::default()
            };
            let rows = cost(&arch, 1, &w).unwrap();
            assert_eq!(
                row(&rows, "llm_prefill").flops,
                u(&case["prefill"]),
                "{name} prefill, {case}"
            );
            assert_eq!(row(&rows, "llm_decode").flops, u(&case["decode"]), "{name} decode, {case}");
            // per step: the i-th step attends to prompt + i keys
            let steps = case["decode_steps"].as_array().unwrap();
            for (i, s) in steps.iter().enumerate() {
                let wi = Workload { new_tokens: i as u64 + 1, ..w.clone() };
                let wp = Workload { new_tokens: i as u64, ..w.clone() };
                let step = row(&cost(&arch, 1, &wi).unwrap(), "llm_decode").flops
                    - row(&cost(&arch, 1, &wp).unwrap(), "llm_decode").flops;
                assert_eq!(step, u(s), "{name} decode step {i}, {case}");
            }
        }
    }
}

#[test]
fn imgque_flops_match_restated_reference() {
    let arch = read_config(&fixture("imgque").join("config.json")).unwrap();
    let cases = reference()["imgque"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in cases {
        let w = Workload {
            text_tokens: u(&case["text_tokens"]),
            new_tokens: u(&case["new_tokens"]),
            crops: Some(u(&case["crops"])),
            query_text_tokens: u(&case["query_text_tokens"]),
            ..Workload::default()
        };
        let rows = cost(&arch, u(&case["n"]), &w).unwrap();
        let f = case["flops"].as_object().unwrap();
        let mut sum = 0;
        for (component, v) in f {
            assert_eq!(row(&rows, component).flops, u(v), "{component}, {case}");
            sum += u(v);
        }
        assert_eq!(row(&rows, "total").flops, sum);
    }
}

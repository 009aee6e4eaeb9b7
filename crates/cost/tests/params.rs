//! Parameter counts from config.json alone equal the element counts of the fixture checkpoints
//! (read from the safetensors header), per component and in total.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokenscale_cost::{cost, read_config, Arch, Workload};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures").join(name)
}

/// name → element count, from the safetensors header (8-byte length + JSON).
fn tensor_sizes(path: &Path) -> BTreeMap<String, u64> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            (
                k.clone(),
                v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product(),
            )
        })
        .collect()
}

/// Sums the checkpoint by component with `classify` and compares with the cost rows at n.
fn check(name: &str, n: u64, classify: impl Fn(&str) -> &'static str) {
    let dir = fixture(name);
    let arch = read_config(&dir.join("config.json")).unwrap();
    let sizes = tensor_sizes(&dir.join("model.safetensors"));
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in &sizes {
        *by.entry(classify(k)).or_default() += v;
    }
    let rows =
        cost(&arch, n, &Workload { text_tokens: 5, new_tokens: 2, ..Workload::default() }).unwrap();
    let got = |c: &str| {
        rows.iter()
            .find(|r| r.component == c)
            .map(|r| r.params)
            .unwrap_or_else(|| panic!("{name}: no row {c}"))
    };
    for (component, expected) in &by {
        assert_eq!(got(component), *expected, "{name}: params of {component}");
    }
    let all: u64 = sizes.values().sum();
    assert_eq!(got("total"), all, "{name}: total params");
    if by.contains_key("llm_prefill") {
        assert_eq!(got("llm_decode"), by["llm_prefill"], "{name}: decode uses the same weights");
    }
}

#[test]
fn llava_params_match_checkpoint() {
    check("llava", 576, |k| {
        if k.starts_with("vision_tower.") {
            "vision_tower"
        } else if k.starts_with("multi_modal_projector.") {
            "projector"
        } else {
            assert!(k.starts_with("language_model."), "{k}");
            "llm_prefill"
        }
    });
}

#[test]
fn imgque_params_match_checkpoint() {
    check("imgque", 8, |k| {
        if k.ends_with("vision_embed_merge.weight") || k.ends_with("token_LF") {
            "hd_merge"
        } else if k.starts_with("imgque_backbone.clip_model.vision_model.") {
            "vision_tower"
        } else if k.starts_with("imgque_backbone.imgque_model.") {
            "query_decoder"
        } else if k.starts_with("fusion_backbone.") {
            "projector"
        } else {
            assert!(k.starts_with("llm_backbone."), "{k}");
            "llm_prefill"
        }
    });
}

#[test]
fn llm_params_match_checkpoint() {
    for name in ["llama_gqa", "qwen2", "llama3", "llama_gqa_bf16"] {
        check(name, 3, |_| "llm_prefill");
    }
}

#[test]
fn clip_params_match_checkpoint() {
    for name in ["clip_vision", "clip_vision_gelu"] {
        check(name, 1, |_| "vision_tower");
    }
}

#[test]
fn imgque_crops_default_from_preprocessor() {
    let arch = read_config(&fixture("imgque").join("config.json")).unwrap();
    let Arch::ImgQue(s) = &arch else { panic!("not imgque") };
    assert_eq!(s.num_crops, Some(4));
    assert_eq!(s.default_crops(), 5);
    assert_eq!(s.tokens_per_crop(), 145);
}

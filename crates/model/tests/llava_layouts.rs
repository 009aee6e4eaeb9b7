//! Every key layout transformers reads or writes for LLaVA loads to the same model: the hub's
//! (`vision_tower.vision_model.*`, `language_model.model.*`, the fixture's own layout), the
//! nested one of transformers 4.52–4.5x (`model.vision_tower.vision_model.*`,
//! `model.language_model.*`, `lm_head.*`), and what transformers 5.24 `save_pretrained` writes
//! for a LLaVA built from its config (vision tower flat: `vision_tower.embeddings.*`; checked
//! against transformers 5.24.0 when this test was written). Each layout is the fixture's tensors
//! under renamed keys; the logits must equal the fixture layout's bit for bit and transformers'
//! to the parity tolerance.

mod common;

use std::collections::HashMap;
use tokenscale_model::{Forward, ForwardOptions};

use candle_core::{DType, Device, Tensor};
use common::{assert_close, expected, fixture};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::preprocess::load_image;

const PROMPT: &str = "USER: <image>\nWhat is shown in this image? ASSISTANT:";

/// The hub layout's key under another layout.
fn renamed(key: &str, layout: &str) -> String {
    match layout {
        "nested-4.52" => {
            if let Some(rest) = key.strip_prefix("language_model.model.") {
                format!("model.language_model.{rest}")
            } else if let Some(rest) = key.strip_prefix("language_model.") {
                rest.to_string() // lm_head.weight
            } else {
                format!("model.{key}")
            }
        }
        "flat-tower-5.x" => key.replacen("vision_tower.vision_model.", "vision_tower.", 1),
        "nested-flat-tower" => {
            format!("model.{}", key.replacen("vision_tower.vision_model.", "vision_tower.", 1))
                .replacen("model.language_model.model.", "model.language_model.", 1)
                .replacen("model.language_model.lm_head.", "lm_head.", 1)
        }
        _ => key.to_string(),
    }
}

fn logits_of(dir: &std::path::Path) -> Tensor {
    let pipe = LlavaPipeline::load(dir, DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let inputs = pipe.prepare(&image, PROMPT).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let llm = &pipe.model.llm;
    llm.forward_embeds(&Forward::INFERENCE, &embeds, &mut llm.new_cache(), ForwardOptions::ALL)
        .unwrap()
        .logits
        .squeeze(0)
        .unwrap()
}

#[test]
fn every_llava_layout_gives_the_same_logits() {
    let source = fixture("llava");
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let reference = logits_of(&source);
    assert_close(&reference, &expected("llava")["logits"], 1e-4, "fixture layout vs transformers");
    for layout in ["nested-4.52", "flat-tower-5.x", "nested-flat-tower"] {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name != "model.safetensors" && name != "expected.safetensors" {
                std::fs::copy(&path, dir.path().join(&name)).unwrap();
            }
        }
        let moved: HashMap<String, Tensor> =
            tensors.iter().map(|(k, t)| (renamed(k, layout), t.clone())).collect();
        assert!(
            moved.keys().all(|k| !k.starts_with("language_model.") || layout == "flat-tower-5.x"),
            "{layout}: keys renamed"
        );
        candle_core::safetensors::save(&moved, dir.path().join("model.safetensors")).unwrap();
        let logits = logits_of(dir.path());
        assert_close(&logits, &reference, 0.0, layout);
    }
}

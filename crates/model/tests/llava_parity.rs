//! LLaVA-1.5 (llava-hf layout) end to end against transformers: prompt ids with `<image>`
//! expanded, pad-to-square pixels, projector output, logits, hidden states, greedy tokens.

mod common;

use candle_core::{DType, Device};
use common::{assert_close, expected, fixture, ids};
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::{Forward, ForwardOptions};

const TOL: f32 = 1e-4;
const PROMPT: &str = "USER: <image>\nWhat is shown in this image? ASSISTANT:";

#[test]
fn llava_matches_transformers() {
    let want = expected("llava");
    let pipe = LlavaPipeline::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let inputs = pipe.prepare(&image, PROMPT).unwrap();
    assert_eq!(inputs.input_ids, ids(&want["input_ids"]), "input ids");
    assert_close(&inputs.pixel_values, &want["pixel_values"], 0.0, "pixel_values");

    let features = pipe.model.vision_features(&Forward::INFERENCE, &inputs.pixel_values).unwrap();
    let projected = pipe.model.project(&Forward::INFERENCE, &features).unwrap().squeeze(0).unwrap();
    assert_close(&projected, &want["image_features"], TOL, "image_features");

    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let llm = &pipe.model.llm;
    let out = llm
        .forward_embeds(
            &Forward::INFERENCE,
            &embeds,
            &mut llm.new_cache(),
            ForwardOptions::ALL.with_hidden_states(),
        )
        .unwrap();
    assert_close(&out.logits.squeeze(0).unwrap(), &want["logits"], TOL, "logits");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            &h.squeeze(0).unwrap(),
            &want[&format!("hidden_states.{i}")],
            TOL,
            &format!("hidden_states.{i}"),
        );
    }
    let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
    let tokens = generate(&Forward::INFERENCE, llm, &embeds, &config, |_| Ok(())).unwrap();
    assert_eq!(tokens, ids(&want["greedy_tokens"]), "greedy tokens");
}

#[test]
fn prompt_longer_than_context_is_an_error() {
    let pipe = LlavaPipeline::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let long = format!("USER: <image>\n{} ASSISTANT:", "the river ".repeat(400));
    let inputs = pipe.prepare(&image, &long).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let llm = &pipe.model.llm;
    let err = llm
        .forward_embeds(&Forward::INFERENCE, &embeds, &mut llm.new_cache(), ForwardOptions::LAST)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("exceeds the context of 1024"), "{err}");
}

#[test]
fn newer_transformers_key_layout_loads_the_same_model() {
    // transformers ≥ 4.52 nests LLaVA under `model.` (`model.vision_tower`, `model.language_model`
    // without its own `.model`, top-level `lm_head`); the same weights must give the same logits.
    let src = fixture("llava");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(name), tmp.path().join(name)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(k, v)| {
            let k = if let Some(rest) = k.strip_prefix("language_model.model.") {
                format!("model.language_model.{rest}")
            } else if k == "language_model.lm_head.weight" {
                "lm_head.weight".to_string()
            } else {
                format!("model.{k}")
            };
            (k, v)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.starts_with("model.vision_tower.vision_model.")));
    candle_core::safetensors::save(&renamed, tmp.path().join("model.safetensors")).unwrap();

    let want = expected("llava");
    let pipe = LlavaPipeline::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let inputs = pipe.prepare(&image, PROMPT).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let llm = &pipe.model.llm;
    let out = llm
        .forward_embeds(&Forward::INFERENCE, &embeds, &mut llm.new_cache(), ForwardOptions::ALL)
        .unwrap();
    assert_close(&out.logits.squeeze(0).unwrap(), &want["logits"], TOL, "logits (new layout)");
}

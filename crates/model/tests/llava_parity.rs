//! LLaVA-1.5 (llava-hf layout) end to end against transformers: prompt ids with `<image>`
//! expanded, pad-to-square pixels, projector output, logits, hidden states, greedy tokens.

mod common;

use candle_core::{DType, Device};
use common::{assert_close, expected, fixture, ids};
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::preprocess::load_image;

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

    let features = pipe.model.vision_features(&inputs.pixel_values).unwrap();
    let projected = pipe.model.project(&features).unwrap().squeeze(0).unwrap();
    assert_close(&projected, &want["image_features"], TOL, "image_features");

    let embeds = pipe.embeddings(&inputs).unwrap();
    let llm = &pipe.model.llm;
    let out = llm.forward_embeds(&embeds, &mut llm.new_cache(), true, true).unwrap();
    assert_close(&out.logits.squeeze(0).unwrap(), &want["logits"], TOL, "logits");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&h.squeeze(0).unwrap(), &want[&format!("hidden_states.{i}")], TOL, &format!("hidden_states.{i}"));
    }
    let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
    let tokens = generate(llm, &embeds, &config, |_| Ok(())).unwrap();
    assert_eq!(tokens, ids(&want["greedy_tokens"]), "greedy tokens");
}

#[test]
fn prompt_longer_than_context_is_an_error() {
    let pipe = LlavaPipeline::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let long = format!("USER: <image>\n{} ASSISTANT:", "the river ".repeat(400));
    let inputs = pipe.prepare(&image, &long).unwrap();
    let embeds = pipe.embeddings(&inputs).unwrap();
    let llm = &pipe.model.llm;
    let err = llm.forward_embeds(&embeds, &mut llm.new_cache(), false, false).err().expect("must fail");
    assert!(err.to_string().contains("exceeds the context of 1024"), "{err}");
}

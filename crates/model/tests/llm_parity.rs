//! Logits, hidden states and greedy tokens of Llama (GQA), Llama-3 (rope_scaling llama3), Qwen2
//! (qkv bias, tied embeddings) and bf16 weights, against transformers (tools/fixtures).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, expected, fixture, ids};
use tokenscale_model::checkpoint::load_causal_lm;
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::{Forward, ForwardOptions};

const TOL: f32 = 1e-4;

fn check(name: &str, dtype: DType) {
    let want = expected(name);
    let model = load_causal_lm(&fixture(name), dtype, &Device::Cpu).unwrap();
    let input_ids = ids(&want["input_ids"]);
    let ids_t = Tensor::new(input_ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut cache = model.new_cache();
    let out = model
        .forward_ids(
            &Forward::INFERENCE,
            &ids_t,
            &mut cache,
            ForwardOptions::ALL.with_hidden_states(),
        )
        .unwrap();
    assert_close(&out.logits.squeeze(0).unwrap(), &want["logits"], TOL, &format!("{name} logits"));
    assert_eq!(out.hidden_states.len(), model.num_layers() + 1);
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            &h.squeeze(0).unwrap(),
            &want[&format!("hidden_states.{i}")],
            TOL,
            &format!("{name} hidden_states.{i}"),
        );
    }
    let embeds = model.embed(&ids_t).unwrap();
    let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
    let tokens = generate(&Forward::INFERENCE, &model, &embeds, &config, |_| Ok(())).unwrap();
    assert_eq!(tokens, ids(&want["greedy_tokens"]), "{name} greedy tokens");
}

#[test]
fn llama_gqa_matches_transformers() {
    check("llama_gqa", DType::F32);
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check("llama3", DType::F32);
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2", DType::F32);
}

#[test]
fn bf16_weights_upcast_match_transformers() {
    check("llama_gqa_bf16", DType::F32);
}

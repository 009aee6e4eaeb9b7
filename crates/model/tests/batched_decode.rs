//! Continuous batching's decode step (`Llama::decode_step`) against each sequence decoded alone
//! (`forward_ids` with its own cache): sequences of different lengths, joining and leaving the
//! batch between steps.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, max_abs_diff};
use tokenscale_model::checkpoint::load_causal_lm;
use tokenscale_model::llama::{argmax, KvCache, Llama};
use tokenscale_model::{Forward, ForwardOptions};

/// Prompts of different lengths (ids inside the fixtures' 500-token vocabulary).
fn prompts() -> Vec<Vec<u32>> {
    vec![(1..6).collect(), (10..30).collect(), vec![7], (100..140).step_by(3).collect()]
}

fn prefill(model: &Llama, prompt: &[u32]) -> (KvCache, Tensor) {
    let mut cache = model.new_cache_for(prompt.len() + 16);
    let ids = Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = model
        .forward_ids(&Forward::INFERENCE, &ids, &mut cache, ForwardOptions::LAST)
        .unwrap()
        .logits
        .flatten_all()
        .unwrap();
    (cache, logits)
}

/// Greedy decoding of every prompt, alone and batched (sequence 3 joins at step 2, sequence 0
/// leaves after step 4); returns the largest logit difference seen. Tokens must agree.
fn compare(model: &Llama, steps: usize) -> f32 {
    let prompts = prompts();
    let mut worst = 0f32;
    let (mut alone, mut batched): (Vec<_>, Vec<_>) =
        prompts.iter().map(|p| (prefill(model, p), prefill(model, p))).unzip();
    let mut next: Vec<u32> = alone.iter().map(|(_, l)| argmax(l).unwrap()).collect();
    for step in 0..steps {
        let members: Vec<usize> =
            (0..prompts.len()).filter(|&i| !(i == 3 && step < 2 || i == 0 && step > 4)).collect();
        let tokens: Vec<u32> = members.iter().map(|&i| next[i]).collect();
        let mut caches: Vec<&mut KvCache> = batched
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| members.contains(i))
            .map(|(_, (c, _))| c)
            .collect();
        let logits = model.decode_step(&Forward::INFERENCE, &tokens, &mut caches).unwrap();
        assert_eq!(logits.dims(), &[members.len(), model.config.vocab_size]);
        for (row, &i) in members.iter().enumerate() {
            let ids = Tensor::new(&[[next[i]]], &Device::Cpu).unwrap();
            let want = model
                .forward_ids(&Forward::INFERENCE, &ids, &mut alone[i].0, ForwardOptions::LAST)
                .unwrap()
                .logits
                .flatten_all()
                .unwrap();
            let got = logits.get(row).unwrap();
            worst = worst.max(max_abs_diff(&got, &want, &format!("step {step}, sequence {i}")));
            let (a, b) = (argmax(&got).unwrap(), argmax(&want).unwrap());
            assert_eq!(
                a, b,
                "step {step}, sequence {i}: batched greedy token differs from the sequence alone"
            );
            next[i] = a;
        }
    }
    worst
}

#[test]
fn f32_batched_decode_equals_each_sequence_alone_bitwise() {
    for name in ["llama_gqa", "qwen2", "llama3"] {
        let model = load_causal_lm(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(compare(&model, 8), 0.0, "{name}: f32 rows must not depend on the batch");
    }
}

#[test]
fn bf16_batched_decode_matches_each_sequence_alone() {
    let model = load_causal_lm(&fixture("llama_gqa_bf16"), DType::BF16, &Device::Cpu).unwrap();
    // 16-bit products may take another kernel for B rows than for one; the logits (|l| ≲ 1)
    // then differ by a few bf16 ulps at most.
    let worst = compare(&model, 8);
    eprintln!("bf16 batched vs alone: max abs logit difference {worst}");
    assert!(worst <= 2e-2, "bf16 batched vs alone: max abs logit difference {worst}");
}

#[test]
fn mismatched_tokens_and_caches_are_an_error() {
    let model = load_causal_lm(&fixture("llama_gqa"), DType::F32, &Device::Cpu).unwrap();
    let mut cache = model.new_cache();
    let err = model.decode_step(&Forward::INFERENCE, &[1, 2], &mut [&mut cache]).unwrap_err();
    assert!(err.to_string().contains("2 tokens for 1 caches"), "{err}");
}

//! Every reducer gives exactly N tokens for every 1 ≤ N ≤ 576 on the llava fixture, N = 576 is
//! the identity, results are deterministic, and bad budgets are refused with clear messages.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::reduce::SpanPrune;
use tokenscale_model::reduce::{self, Reducer};
use tokenscale_model::runtime::{Runtime, VisionBudget};
use tokenscale_model::{Forward, ForwardOptions};

const PROMPT: &str = "USER: <image>\nWhat is shown in this image? ASSISTANT:";

fn setup() -> (LlavaPipeline, Tensor) {
    let pipe = LlavaPipeline::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let px = pipe.pixel_values(&image).unwrap();
    (pipe, px)
}

#[test]
fn pool_uniform_visionzip_give_exactly_n_for_every_n() {
    let (pipe, px) = setup();
    let feats = pipe.model.vision_features(&Forward::INFERENCE, &px).unwrap().squeeze(0).unwrap();
    assert_eq!(feats.dim(0).unwrap(), 576);
    let layer = pipe.model.vision.num_layers() - 1;
    let (out, attn) =
        pipe.model.vision.forward_with_attention(&Forward::INFERENCE, &px, Some(layer)).unwrap();
    let attn = attn.unwrap();
    let hidden = out.hidden_states[layer + 1].squeeze(0).unwrap();
    let cls: Vec<f32> = attn
        .probs
        .squeeze(0)
        .unwrap()
        .narrow(1, 0, 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .narrow(1, 1, 576)
        .unwrap()
        .sum(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let keys = attn.keys_mean.squeeze(0).unwrap();
    for n in 1..=576usize {
        assert_eq!(reduce::pool(&feats, Some((24, 24)), n).unwrap().dims(), &[n, 32], "pool n={n}");
        assert_eq!(reduce::uniform(&feats, n).unwrap().dims(), &[n, 32], "uniform n={n}");
        let idx = reduce::uniform_indices(576, n);
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]) && *idx.last().unwrap() < 576,
            "uniform indices n={n}"
        );
        let (d, c) = reduce::visionzip_split(n);
        assert!(d >= 1 && d + c == n, "split n={n}");
        if n < 576 {
            let (tokens, sel) = reduce::visionzip(&hidden, &keys, &cls, d, c).unwrap();
            assert_eq!(tokens.dims(), &[n, 32], "visionzip n={n}");
            assert_eq!(sel.dominant.len(), d);
            assert_eq!(sel.targets.len(), c);
            assert_eq!(sel.assignment.len(), if c == 0 { 0 } else { 577 - n });
        }
    }
    // The pipeline entry point, on a spread of N (each runs the vision tower).
    for n in [1, 2, 3, 4, 5, 9, 63, 64, 65, 143, 144, 288, 500, 575, 576] {
        for r in [Reducer::Pool, Reducer::Uniform, Reducer::VisionZip, Reducer::FastV { layer: 1 }]
        {
            let got = pipe.model.reduced_vision_features(&Forward::INFERENCE, &px, n, r).unwrap();
            let want = if matches!(r, Reducer::FastV { .. }) { 576 } else { n };
            assert_eq!(got.dims(), &[1, want, 32], "{} n={n}", r.name());
        }
    }
}

#[test]
fn n_576_is_the_identity_and_results_are_deterministic() {
    let (pipe, px) = setup();
    let full = pipe.model.vision_features(&Forward::INFERENCE, &px).unwrap();
    for r in [Reducer::Pool, Reducer::Uniform, Reducer::VisionZip] {
        let got = pipe.model.reduced_vision_features(&Forward::INFERENCE, &px, 576, r).unwrap();
        assert_close(&got, &full, 0.0, &r.name());
        let a = pipe.model.reduced_vision_features(&Forward::INFERENCE, &px, 37, r).unwrap();
        let b = pipe.model.reduced_vision_features(&Forward::INFERENCE, &px, 37, r).unwrap();
        assert_close(&a, &b, 0.0, "determinism");
    }
    // pooling to 24×24 and 1D pooling to 576 are both the identity anyway
    let feats = full.squeeze(0).unwrap();
    assert_close(
        &reduce::adaptive_avg_pool_1d(&feats, 576).unwrap(),
        &feats,
        0.0,
        "pool1d identity",
    );
    assert_eq!(reduce::adaptive_bins(576, 7)[0], (0, 83));
    assert_eq!(reduce::adaptive_bins(24, 10)[1], (2, 5));
    // 1×1 pooling is the mean
    let mean = feats.mean_keepdim(0).unwrap();
    assert_close(&reduce::pool(&feats, Some((24, 24)), 1).unwrap(), &mean, 1e-5, "pool n=1");
}

#[test]
fn fastv_keeps_exactly_n_for_every_n() {
    let (pipe, _) = setup();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let inputs = pipe.prepare(&image, PROMPT).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let t = inputs.input_ids.len();
    let start =
        inputs.input_ids.iter().position(|&x| x == pipe.model.config.image_token_index).unwrap();
    let llm = &pipe.model.llm;
    let plain = llm
        .forward_embeds(&Forward::INFERENCE, &embeds, &mut llm.new_cache(), ForwardOptions::LAST)
        .unwrap()
        .logits;
    for n in 1..=576usize {
        let prune = SpanPrune { layer: 1, start, len: 576, keep: n };
        let mut cache = llm.new_cache();
        let out = llm
            .forward_embeds_pruned(
                &Forward::INFERENCE,
                &embeds,
                &mut cache,
                ForwardOptions::LAST,
                &prune,
            )
            .unwrap();
        assert_eq!(out.kept_in_span.len(), n, "n={n}");
        assert_eq!(cache.layer_lens(), vec![t, t - 576 + n], "n={n}");
        assert_eq!(cache.seq_len(), t);
        if n == 576 {
            assert_close(&out.output.logits, &plain, 1e-5, "fastv keeping everything");
        }
    }
}

#[test]
fn bad_budgets_are_refused() {
    let runtime = Runtime::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let err = |n: Option<usize>, r: Option<&str>| {
        let b = VisionBudget { tokens: n, short_tokens: None, reducer: r.map(String::from) };
        match runtime.prepare(&Forward::INFERENCE, Some(&image), "what?", false, &b) {
            Ok(_) => panic!("{n:?} {r:?} must fail"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(Some(16), Some("median"));
    assert!(
        e.contains("unknown reducer `median`") && e.contains("pool, uniform, visionzip, fastv"),
        "{e}"
    );
    for r in ["pool", "uniform", "visionzip", "fastv"] {
        let e = err(Some(0), Some(r));
        assert!(e.contains("1 ≤ N ≤ 576"), "{e}");
        let e = err(Some(577), Some(r));
        assert!(e.contains("577") && e.contains("1 ≤ N ≤ 576"), "{e}");
    }
    let e = err(Some(16), None);
    assert!(
        e.contains("16 of LLaVA's 576 vision tokens needs a reducer") && !e.contains("--"),
        "{e}"
    );
    let e = err(None, Some("pool"));
    assert!(e.contains("a reducer needs a vision-token count") && !e.contains("--"), "{e}");
    // The native count is no reduction: no reducer needed.
    let native = VisionBudget { tokens: Some(576), short_tokens: None, reducer: None };
    assert_eq!(
        runtime
            .prepare(&Forward::INFERENCE, Some(&image), "what?", false, &native)
            .unwrap()
            .vision_tokens,
        576
    );
    let e = err(Some(16), Some("fastv:3"));
    assert!(e.contains("K must be within 1..=2"), "{e}");
    let e = err(Some(16), Some("fastv:0"));
    assert!(e.contains("≥ 1"), "{e}");
    assert!(Reducer::parse("VisionZip").is_ok());
    assert_eq!(Reducer::parse("fastv").unwrap(), Reducer::FastV { layer: 2 });
}

#[test]
fn decoding_after_a_pruned_prefill_takes_chunks_or_single_tokens() {
    let (pipe, _) = setup();
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let inputs = pipe.prepare(&image, PROMPT).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs).unwrap();
    let start =
        inputs.input_ids.iter().position(|&x| x == pipe.model.config.image_token_index).unwrap();
    let llm = &pipe.model.llm;
    let prune = SpanPrune { layer: 1, start, len: 576, keep: 9 };
    let next = Tensor::new(&[[5u32, 17, 42]], &Device::Cpu).unwrap();
    // three tokens at once …
    let mut cache = llm.new_cache();
    llm.forward_embeds_pruned(
        &Forward::INFERENCE,
        &embeds,
        &mut cache,
        ForwardOptions::LAST,
        &prune,
    )
    .unwrap();
    let chunk = llm
        .forward_ids(&Forward::INFERENCE, &next, &mut cache, ForwardOptions::ALL)
        .unwrap()
        .logits;
    // … equal three single steps
    let mut cache = llm.new_cache();
    llm.forward_embeds_pruned(
        &Forward::INFERENCE,
        &embeds,
        &mut cache,
        ForwardOptions::LAST,
        &prune,
    )
    .unwrap();
    for i in 0..3 {
        let one = llm
            .forward_ids(
                &Forward::INFERENCE,
                &next.narrow(1, i, 1).unwrap(),
                &mut cache,
                ForwardOptions::LAST,
            )
            .unwrap()
            .logits;
        assert_close(
            &one.squeeze(1).unwrap(),
            &chunk.narrow(1, i, 1).unwrap().squeeze(1).unwrap(),
            1e-5,
            "chunked decode",
        );
    }
    let t = inputs.input_ids.len();
    assert_eq!(cache.layer_lens(), vec![t + 3, t - 576 + 9 + 3]);
}

//! LLaVA-1.5 token reducers (pool, uniform, visionzip, fastv) on the tiny llava fixture against
//! the PyTorch reference in tools/fixtures/reducers/make_reducer_fixtures.py.

mod common;

use std::collections::HashMap;
use tokenscale_model::{Forward, ForwardOptions};

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture, ids, max_abs_diff};
use tokenscale_model::generation::{generate_pruned, GenerationConfig};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::reduce::SpanPrune;
use tokenscale_model::reduce::{self, Reducer};
use tokenscale_model::runtime::{Runtime, VisionBudget};

const TOL: f32 = 1e-4;
const PROMPT: &str = "USER: <image>\nWhat is shown in this image? ASSISTANT:";
const NS: &[usize] = &[1, 4, 7, 16, 64, 100, 575];
const FASTV_NS: &[usize] = &[1, 7, 16, 64, 100, 575];

fn expected() -> HashMap<String, Tensor> {
    let path = fixture("reducers").join("expected.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pipeline() -> LlavaPipeline {
    LlavaPipeline::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap()
}

fn image() -> tokenscale_model::image::RgbImage {
    load_image(&fixture("preprocess").join("coffee.png")).unwrap()
}

fn as_usize(t: &Tensor) -> Vec<usize> {
    ids(t).into_iter().map(|v| v as usize).collect()
}

fn last_row(logits: &Tensor) -> Tensor {
    let t = logits.dim(1).unwrap();
    logits.narrow(1, t - 1, 1).unwrap().flatten_all().unwrap()
}

#[test]
fn pool_uniform_visionzip_match_pytorch() {
    let want = expected();
    let pipe = pipeline();
    let image = image();
    let mut worst: HashMap<&str, f32> = HashMap::new();
    for &n in NS {
        for (name, reducer) in [
            ("pool", Reducer::Pool),
            ("uniform", Reducer::Uniform),
            ("visionzip", Reducer::VisionZip),
        ] {
            let inputs =
                pipe.prepare_budget(&Forward::INFERENCE, &image, PROMPT, n, reducer).unwrap();
            assert!(inputs.prune.is_none());
            assert_eq!(inputs.vision_tokens, n);
            let image_id = pipe.model.config.image_token_index;
            assert_eq!(
                inputs.input_ids.iter().filter(|&&t| t == image_id).count(),
                n,
                "{name} n={n}: image tokens"
            );
            let feats = pipe
                .model
                .reduced_vision_features(&Forward::INFERENCE, &inputs.pixel_values, n, reducer)
                .unwrap();
            let projected =
                pipe.model.project(&Forward::INFERENCE, &feats).unwrap().squeeze(0).unwrap();
            let d =
                max_abs_diff(&projected, &want[&format!("{name}.n{n}")], &format!("{name} n={n}"));
            assert!(d <= TOL, "{name} n={n}: projected tokens max abs diff {d}");
            let llm = &pipe.model.llm;
            let out = llm
                .forward_embeds(
                    &Forward::INFERENCE,
                    &inputs.embeds,
                    &mut llm.new_cache(),
                    ForwardOptions::LAST,
                )
                .unwrap();
            let dl = max_abs_diff(
                &last_row(&out.logits),
                &want[&format!("{name}.n{n}.last_logits")],
                "last logits",
            );
            assert!(dl <= TOL, "{name} n={n}: last logits max abs diff {dl}");
            let w = worst.entry(name).or_default();
            *w = w.max(d).max(dl);
        }
    }
    eprintln!("max abs diff (tokens and last logits): {worst:?}");
}

#[test]
fn visionzip_selection_matches_pytorch() {
    let want = expected();
    let pipe = pipeline();
    let inputs = pipe.prepare(&image(), PROMPT).unwrap();
    let layer = pipe.model.vision.num_layers() - 1;
    let (out, attn) = pipe
        .model
        .vision
        .forward_with_attention(&Forward::INFERENCE, &inputs.pixel_values, Some(layer))
        .unwrap();
    let attn = attn.unwrap();
    let hidden = out.hidden_states[layer + 1].squeeze(0).unwrap();
    let t = hidden.dim(0).unwrap();
    let cls = attn
        .probs
        .squeeze(0)
        .unwrap()
        .narrow(1, 0, 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .narrow(1, 1, t - 1)
        .unwrap()
        .sum(0)
        .unwrap();
    assert_close(&cls, &want["visionzip.cls_attention"], 1e-5, "cls attention");
    let keys = attn.keys_mean.squeeze(0).unwrap();
    assert_close(&keys, &want["visionzip.keys_mean"], TOL, "keys mean");
    let cls: Vec<f32> = cls.to_vec1().unwrap();
    for &n in NS {
        let (dom, ctx) = reduce::visionzip_split(n);
        let (tokens, sel) = reduce::visionzip(&hidden, &keys, &cls, dom, ctx).unwrap();
        assert_eq!(tokens.dim(0).unwrap(), n);
        assert_eq!(
            sel.dominant,
            as_usize(&want[&format!("visionzip.n{n}.dominant")]),
            "n={n}: dominant tokens"
        );
        assert_eq!(
            sel.targets,
            as_usize(&want[&format!("visionzip.n{n}.targets")]),
            "n={n}: contextual targets"
        );
    }
    assert_eq!(reduce::visionzip_split(64), (54, 10));
    assert_eq!(reduce::visionzip_split(128), (108, 20));
    assert_eq!(reduce::visionzip_split(192), (162, 30));
}

#[test]
fn fastv_matches_pytorch() {
    let want = expected();
    let pipe = pipeline();
    let image = image();
    let full = pipe.prepare(&image, PROMPT).unwrap();
    let embeds = pipe.embeddings(&Forward::INFERENCE, &full).unwrap();
    let image_id = pipe.model.config.image_token_index;
    let start = full.input_ids.iter().position(|&t| t == image_id).unwrap();
    let t = full.input_ids.len();
    let llm = &pipe.model.llm;
    let mut worst = 0f32;
    for k in [1usize, 2] {
        for &n in FASTV_NS {
            let prune = SpanPrune { layer: k, start, len: 576, keep: n };
            let mut cache = llm.new_cache();
            let out = llm
                .forward_embeds_pruned(
                    &Forward::INFERENCE,
                    &embeds,
                    &mut cache,
                    ForwardOptions::ALL,
                    &prune,
                )
                .unwrap();
            assert_eq!(
                out.kept_in_span,
                as_usize(&want[&format!("fastv.k{k}.n{n}.kept")]),
                "K={k} n={n}: kept image tokens"
            );
            assert_eq!(out.kept.len(), t - 576 + n);
            let scores = Tensor::new(out.span_scores.as_slice(), &Device::Cpu).unwrap();
            assert_close(&scores, &want[&format!("fastv.k{k}.scores")], 1e-5, "scores");
            assert_eq!(
                out.output.logits.dim(1).unwrap(),
                t - 576 + n,
                "K={k} n={n}: surviving positions"
            );
            let d = max_abs_diff(
                &last_row(&out.output.logits),
                &want[&format!("fastv.k{k}.n{n}.last_logits")],
                "last logits",
            );
            assert!(d <= TOL, "K={k} n={n}: last logits max abs diff {d}");
            worst = worst.max(d);
            if let Some(all) = want.get(&format!("fastv.k{k}.n{n}.logits")) {
                let d = max_abs_diff(&out.output.logits.squeeze(0).unwrap(), all, "logits");
                assert!(d <= TOL, "K={k} n={n}: logits max abs diff {d}");
                worst = worst.max(d);
            }
            // Layers < K hold every position, layers ≥ K only the survivors.
            let lens = cache.layer_lens();
            for (i, len) in lens.iter().enumerate() {
                assert_eq!(
                    *len,
                    if i < k { t } else { t - 576 + n },
                    "K={k} n={n}: layer {i} cache"
                );
            }
            if let Some(greedy) = want.get(&format!("fastv.k{k}.n{n}.greedy")) {
                let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
                let tokens = generate_pruned(
                    &Forward::INFERENCE,
                    llm,
                    &embeds,
                    Some(&prune),
                    &config,
                    |_| Ok(()),
                )
                .unwrap();
                assert_eq!(tokens, ids(greedy), "K={k} n={n}: greedy tokens");
            }
        }
    }
    eprintln!("fastv max abs diff (logits): {worst}");
}

#[test]
fn runtime_budget_end_to_end() {
    let want = expected();
    let runtime = Runtime::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let image = image();
    let budget = |n: usize, r: &str| VisionBudget {
        tokens: Some(n),
        short_tokens: None,
        reducer: Some(r.to_string()),
    };
    // fastv through the runtime: forward and generate apply the pruning.
    let p = runtime
        .prepare(&Forward::INFERENCE, Some(&image), PROMPT, true, &budget(7, "fastv:1"))
        .unwrap();
    assert_eq!(p.vision_tokens, 7);
    assert!(p.prune.is_some());
    let out =
        runtime.forward(&Forward::INFERENCE, &p, ForwardOptions::ALL.with_hidden_states()).unwrap();
    assert_close(
        &out.logits.squeeze(0).unwrap(),
        &want["fastv.k1.n7.logits"],
        TOL,
        "runtime fastv logits",
    );
    let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
    let tokens = runtime.generate(&Forward::INFERENCE, &p, &config, |_| Ok(())).unwrap();
    assert_eq!(tokens, ids(&want["fastv.k1.n7.greedy"]), "runtime fastv greedy");
    // default K = 2
    let p = runtime
        .prepare(&Forward::INFERENCE, Some(&image), PROMPT, true, &budget(16, "fastv"))
        .unwrap();
    assert_eq!(p.prune.as_ref().unwrap().layer, 2);
    let tokens = runtime.generate(&Forward::INFERENCE, &p, &config, |_| Ok(())).unwrap();
    assert_eq!(tokens, ids(&want["fastv.k2.n16.greedy"]), "runtime fastv (K=2) greedy");
    // the others: the prompt carries N image tokens
    for r in ["pool", "uniform", "visionzip"] {
        let p = runtime
            .prepare(&Forward::INFERENCE, Some(&image), PROMPT, true, &budget(16, r))
            .unwrap();
        assert_eq!(p.vision_tokens, 16);
        assert!(p.prune.is_none());
        let out = runtime.forward(&Forward::INFERENCE, &p, ForwardOptions::LAST).unwrap();
        assert_close(&last_row(&out.logits), &want[&format!("{r}.n16.last_logits")], TOL, r);
    }
}

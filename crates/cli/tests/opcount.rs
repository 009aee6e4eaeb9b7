//! The analytic count of tokenscale-cost equals the multiply-accumulates the runtime really
//! executes (counted by tokenscale_model::opcount in the matmul / linear / conv wrappers), per
//! component, on the LLaVA and query-fused fixtures at several n, reducers, images and decode
//! lengths.
//!
//! One known difference, asserted exactly: the runtime's query decoder is a Llama whose forward
//! also computes the logits of its last position (vocab × hidden MACs) although only its hidden
//! states are used; the analytic model (and the PyTorch reference, an HF LlamaModel) has no head.

use std::path::PathBuf;

use tokenscale_cost::{cost, read_config, Arch, Row, Workload};
use tokenscale_model::chat::Conversation;
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::image::RgbImage;
use tokenscale_model::opcount::{Op, OpCounter};
use tokenscale_model::preprocess::load_image;
use tokenscale_model::reduce::Reducer;
use tokenscale_model::runtime::{Runtime, VisionBudget};
use tokenscale_model::Forward;
use tokenscale_model::{DType, Device};

const PROMPT: &str = "What is in the image?";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

fn image(name: &str) -> RgbImage {
    load_image(&fixtures().join("preprocess").join(name)).unwrap()
}

fn macs(rows: &[Row], component: &str) -> u64 {
    rows.iter()
        .find(|r| r.component == component)
        .unwrap_or_else(|| panic!("no row {component}"))
        .macs
}

/// MACs of a prefill and of the decode steps after it: generates `steps + 1` tokens (the first
/// from the prefill) and reads the counter when the first token arrives.
fn prefill_and_decode(
    runtime: &Runtime,
    prepared: &tokenscale_model::runtime::Prepared,
    steps: u64,
) -> (u64, u64) {
    let counter = OpCounter::start();
    let mut prefill = None;
    let config = GenerationConfig { max_new_tokens: steps as usize + 1, ..Default::default() };
    let tokens = runtime
        .generate(&Forward::INFERENCE.counting(&counter), prepared, &config, |_| {
            prefill.get_or_insert(counter.macs());
            Ok(())
        })
        .unwrap();
    assert_eq!(tokens.len() as u64, steps + 1, "no stop tokens: every step runs");
    let prefill = prefill.unwrap();
    (prefill, counter.macs() - prefill)
}

#[test]
fn llava_counted_macs_equal_the_analytic_count() {
    let dir = fixtures().join("llava");
    let runtime = Runtime::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let Runtime::Llava(p) = &runtime else { panic!("not LLaVA") };
    let arch = read_config(&dir.join("config.json")).unwrap();
    let img = image("coffee.png");
    let pixels = p.pixel_values(&img).unwrap();
    let native = p.model.config.image_tokens();
    // (the fixture's LLM has 2 layers: plain `fastv` (K = 2) prunes nothing, `fastv:1` does)
    let cases: [(Option<&str>, usize, u64); 7] = [
        (None, native, 2),
        (Some("pool"), 16, 3),
        (Some("pool"), 5, 0),
        (Some("uniform"), 7, 1),
        (Some("visionzip"), 10, 2),
        (Some("fastv"), 8, 2),
        (Some("fastv:1"), 20, 1),
    ];
    for (reducer, n, steps) in cases {
        let case = format!("reducer {reducer:?}, n = {n}, {steps} decode steps");
        let r = Reducer::parse(reducer.unwrap_or("pool")).unwrap();
        // component by component through the model's own entry points
        let counter = OpCounter::start();
        let cache =
            p.model.encode_image(&Forward::INFERENCE.counting(&counter), &pixels, r).unwrap();
        let vision = counter.macs();
        // The reducers take no forward context, so their own products are never counted (as in
        // the analytic model): nothing to measure here.
        let features = p.model.reduce_features(&cache, n, r).unwrap();
        let counter = OpCounter::start();
        p.model.project(&Forward::INFERENCE.counting(&counter), &features).unwrap();
        let projector = counter.macs_of(Op::Linear);
        assert_eq!(counter.macs(), projector, "{case}: the projector is two linear layers");

        // the whole answer through the runtime, as `tokenscale run` does it
        let budget = VisionBudget {
            tokens: reducer.map(|_| n),
            short_tokens: None,
            reducer: reducer.map(str::to_string),
        };
        let counter = OpCounter::start();
        let prepared = runtime
            .prepare(&Forward::INFERENCE.counting(&counter), Some(&img), PROMPT, false, &budget)
            .unwrap();
        let prepare = counter.macs();
        let (prefill, decode) = prefill_and_decode(&runtime, &prepared, steps);

        let text = (prepared.input_ids.len() - prepared.vision_positions.len()) as u64;
        let w = Workload {
            text_tokens: text,
            new_tokens: steps,
            reducer: reducer.map(|s| tokenscale_cost::Reducer::parse(s).unwrap()),
            ..Workload::default()
        };
        let rows = cost(&arch, n as u64, &w).unwrap();
        assert_eq!(vision, macs(&rows, "vision_tower"), "{case}: vision tower");
        assert_eq!(projector, macs(&rows, "projector"), "{case}: projector");
        assert_eq!(
            prepare,
            vision + projector,
            "{case}: preparing the prompt runs the tower and the projector, nothing else"
        );
        assert_eq!(prefill, macs(&rows, "llm_prefill"), "{case}: LLM prefill");
        assert_eq!(decode, macs(&rows, "llm_decode"), "{case}: LLM decode");
        assert_eq!(prepare + prefill + decode, macs(&rows, "total"), "{case}: total");
    }
}

#[test]
fn imgque_counted_macs_equal_the_analytic_count() {
    let dir = fixtures().join("imgque");
    let runtime = Runtime::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let Runtime::ImgQue(p) = &runtime else { panic!("not the query-fused model") };
    let arch = read_config(&dir.join("config.json")).unwrap();
    let Arch::ImgQue(shape) = &arch else { panic!("config is not imgque") };
    // the runtime's unused logits row of the query decoder (see the file comment)
    let decoder_head_row = shape.decoder.hidden * shape.decoder.vocab;
    let v = &shape.vision;
    let patch_conv = v.patches() * v.hidden * v.channels * v.patch_size * v.patch_size;
    let conversation = Conversation::new().user(PROMPT).for_generation();
    for (name, n, steps) in [
        ("coffee.png", 1u64, 2u64),
        ("coffee.png", 8, 0),
        ("rocket_portrait.png", 16, 1),
        ("chelsea.png", 4, 1),
    ] {
        let case = format!("{name}, n = {n}, {steps} decode steps");
        let img = image(name);
        let counter = OpCounter::start();
        let crop_tokens = p.encode_image(&Forward::INFERENCE.counting(&counter), &img).unwrap();
        let (encode, conv) = (counter.macs(), counter.macs_of(Op::Conv));
        let crops = crop_tokens.dim(0).unwrap() as u64;
        let counter = OpCounter::start();
        let inputs = p
            .embeddings(
                &Forward::INFERENCE.counting(&counter),
                &crop_tokens,
                &conversation,
                n as usize,
                4.min(n as usize),
            )
            .unwrap();
        let fused = counter.macs();
        assert_eq!(inputs.vision_tokens as u64, n);

        let budget = VisionBudget {
            tokens: Some(n as usize),
            short_tokens: Some(4.min(n as usize)),
            reducer: None,
        };
        let counter = OpCounter::start();
        let prepared = runtime
            .prepare(&Forward::INFERENCE.counting(&counter), Some(&img), PROMPT, false, &budget)
            .unwrap();
        let prepare = counter.macs();
        let (prefill, decode) = prefill_and_decode(&runtime, &prepared, steps);

        let query_text = inputs.record.query.as_ref().unwrap().input_ids.len() as u64 - n;
        let text = inputs.record.llm.input_ids.len() as u64 - n;
        let w = Workload {
            text_tokens: text,
            new_tokens: steps,
            crops: Some(crops),
            query_text_tokens: query_text,
            ..Workload::default()
        };
        let rows = cost(&arch, n, &w).unwrap();
        assert_eq!(
            encode,
            macs(&rows, "vision_tower") + macs(&rows, "hd_merge"),
            "{case}: {crops} crops through the tower and the merge"
        );
        assert_eq!(
            conv,
            crops * patch_conv + macs(&rows, "hd_merge"),
            "{case}: convolutions (patch embedding + merge)"
        );
        assert_eq!(
            fused,
            macs(&rows, "query_decoder") + decoder_head_row + macs(&rows, "projector"),
            "{case}: query decoder + projector"
        );
        assert_eq!(prepare, encode + fused, "{case}: preparing the prompt");
        assert_eq!(prefill, macs(&rows, "llm_prefill"), "{case}: LLM prefill");
        assert_eq!(decode, macs(&rows, "llm_decode"), "{case}: LLM decode");
        assert_eq!(
            prepare + prefill + decode,
            macs(&rows, "total") + decoder_head_row,
            "{case}: total"
        );
    }
}

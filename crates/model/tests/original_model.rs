//! The query-fused model against the ORIGINAL code (tools/fixtures/original): the paper's
//! `ImageMultiQueryCLIPLLMModel` and `UtilChatAndQueryParser` (DropQuery as demos/demo.py sets it)
//! running the tiny published-layout checkpoint of tests/fixtures/imgque, on formula images of
//! several geometries with num_crops 4 and 16. Token rows exact; the last logits rows within `TOL`
//! of the original run in float64 (its own float32 run is up to 1e-4 away from that on 16 crops).

mod common;

use candle_core::{DType, Device};
use common::{fixture, formula_image};
use tokenscale_model::chat::Conversation;
use tokenscale_model::config::read_json_value;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::{Forward, ForwardOptions};

const TOL: f32 = 1e-4;

#[test]
fn logits_match_the_original_model_across_geometries() {
    let doc = read_json_value(&fixture("original").join("model.json")).unwrap();
    let want = common::tensors("original/model.safetensors");
    let tail = doc["logits_tail"].as_u64().unwrap() as usize;
    let mut pipe = ImgQuePipeline::load(&fixture("imgque"), DType::F32, &Device::Cpu).unwrap();
    let mut worst = 0f32;
    let mut failures = Vec::new();
    let cases = doc["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (w, h) =
            (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        pipe.num_crops = case["num_crops"].as_u64().unwrap() as usize;
        pipe.drop_query = case["drop_query"].as_bool().unwrap();
        let turns: Vec<&str> =
            case["turns"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let conv = Conversation::from_turns(&turns).for_generation();

        let crop_tokens = pipe.encode_image(&Forward::INFERENCE, &formula_image(w, h)).unwrap();
        assert_eq!(
            crop_tokens.dim(0).unwrap() as u64,
            case["views"].as_u64().unwrap(),
            "{name}: views"
        );
        let (n_l, n_s) =
            (case["n_l"].as_u64().unwrap() as usize, case["n_s"].as_u64().unwrap() as usize);
        let inputs = pipe.embeddings(&Forward::INFERENCE, &crop_tokens, &conv, n_l, n_s).unwrap();
        common::assert_token_rows(&inputs.record, &want, name);

        let llm = &pipe.model.llm;
        let logits = llm
            .forward_embeds(
                &Forward::INFERENCE,
                &inputs.embeds,
                &mut llm.new_cache(),
                ForwardOptions::ALL,
            )
            .unwrap()
            .logits
            .squeeze(0)
            .unwrap();
        let t = logits.dim(0).unwrap();
        let d = common::max_abs_diff(
            &logits.narrow(0, t - tail, tail).unwrap(),
            &want[&format!("{name}.logits_tail")],
            name,
        );
        let own = case["original_f32_max_abs_dev"].as_f64().unwrap();
        println!("{name}: {} views, {t} tokens, logits max |Δ| {d:e} (the original's own f32 run: {own:e})", crop_tokens.dim(0).unwrap());
        worst = worst.max(d);
        if d > TOL {
            failures.push(format!("{name}: logits max |Δ| {d:e} > {TOL:e}"));
        }
    }
    println!("{} cases; worst logits |Δ| {worst:e}", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The record file the CLI's `--chat` test reads: its image is the formula picture and the record
/// parses to the conversation of the case it stands for.
#[test]
fn the_record_file_is_the_case_it_stands_for() {
    let dir = fixture("original");
    let rec = tokenscale_model::chat::read_record_file(&dir.join("30x20_n4_t3.json")).unwrap();
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let img = tokenscale_model::preprocess::load_image(rec.image.as_deref().unwrap()).unwrap();
    assert_eq!(img, formula_image(30, 20));
    let doc = read_json_value(&dir.join("model.json")).unwrap();
    let case =
        doc["cases"].as_array().unwrap().iter().find(|c| c["name"] == "30x20_n4_t3").unwrap();
    let turns: Vec<&str> =
        case["turns"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(rec.conversation.messages, Conversation::from_turns(&turns).messages);
}

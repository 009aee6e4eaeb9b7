//! The query-fused model (imgque, HD) against the Python restatement of the seed code
//! (tools/fixtures/imgque): HD views, crop tokens, query decoder, fusion, LLM, greedy tokens.

mod common;

use std::collections::HashMap;
use tokenscale_model::{Forward, ForwardOptions};

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture, ids};
use image::RgbImage;
use tokenscale_model::config::read_json_value;
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::hd::{expand_to_square_black, hd_transform, hd_views, CROP};
use tokenscale_model::imgque::{ImgQue, ImgQueConfig};
use tokenscale_model::preprocess::load_image;
use tokenscale_model::weights::Weights;

const TOL: f32 = 1e-4;

fn load() -> (ImgQue, HashMap<String, Tensor>, serde_json::Value) {
    let dir = fixture("imgque");
    let config = ImgQueConfig::from_value(
        &read_json_value(&dir.join("config.json")).unwrap(),
        "imgque fixture",
    )
    .unwrap();
    let weights = Weights::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let model = ImgQue::load(&weights, &config, "imgque fixture").unwrap();
    let want = common::expected("imgque");
    let cases = read_json_value(&dir.join("cases.json")).unwrap();
    (model, want, cases)
}

/// Per-row and per-column channel sums of an 8-bit image, as the fixture stores them.
fn sums(img: &RgbImage) -> (Vec<i64>, Vec<i64>) {
    let (w, h) = img.dimensions();
    let mut rows = vec![0i64; h as usize * 3];
    let mut cols = vec![0i64; w as usize * 3];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            rows[y as usize * 3 + c] += p[c] as i64;
            cols[x as usize * 3 + c] += p[c] as i64;
        }
    }
    (rows, cols)
}

fn i64s(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn case_image(case: &serde_json::Value) -> RgbImage {
    load_image(&fixture("imgque").join(case["image"].as_str().unwrap())).unwrap()
}

#[test]
fn hd_views_match_the_reference() {
    let (_, want, cases) = load();
    for name in ["one", "two", "small"] {
        let case = &cases["cases"][name];
        let img = case_image(case);
        let local = hd_transform(&img, 4, CROP).unwrap();
        let (rows, cols) = sums(&local);
        assert_eq!(rows, i64s(&want[&format!("{name}.hd_image_rowsum")]), "{name} hd rows");
        assert_eq!(cols, i64s(&want[&format!("{name}.hd_image_colsum")]), "{name} hd cols");
        let global = expand_to_square_black(&img, CROP);
        let (rows, cols) = sums(&global);
        assert_eq!(rows, i64s(&want[&format!("{name}.global_image_rowsum")]), "{name} global rows");
        assert_eq!(cols, i64s(&want[&format!("{name}.global_image_colsum")]), "{name} global cols");
        assert_eq!(
            hd_views(&img, 4, CROP, &Device::Cpu).unwrap().crops(),
            case["num_crops"].as_u64().unwrap() as usize
        );
    }
    // The torch-bicubic upscale of a global view smaller than 336.
    let img = case_image(&cases["cases"]["small"]);
    let views = hd_views(&img, 4, CROP, &Device::Cpu).unwrap();
    let idx = Tensor::arange_step(0u32, 336, 7, &Device::Cpu).unwrap();
    let sub = views
        .pixel_values
        .get(0)
        .unwrap()
        .index_select(&idx, 1)
        .unwrap()
        .index_select(&idx, 2)
        .unwrap();
    assert_close(&sub, &want["small.global_pixel_values_s7"], 1e-5, "small global view");
}

#[test]
fn forward_matches_the_reference() {
    let (model, want, cases) = load();
    for name in ["one", "two", "small", "drop", "n1", "n16"] {
        let case = &cases["cases"][name];
        let prefix = case["image_tensors_prefix"].as_str().unwrap();
        let img = case_image(case);
        let views = hd_views(&img, 4, CROP, &Device::Cpu).unwrap();
        let crop_tokens = model.encode_crops(&Forward::INFERENCE, &views.pixel_values).unwrap();
        assert_close(
            &crop_tokens,
            &want[&format!("{prefix}crop_tokens")],
            TOL,
            &format!("{name} crop tokens"),
        );

        let que_ids = ids(&want[&format!("{name}.que_input_ids")]);
        let que_tps = ids(&want[&format!("{name}.que_input_tps")]);
        let hidden = model.query_hidden(&Forward::INFERENCE, &crop_tokens, &que_ids).unwrap();
        assert_close(
            &hidden,
            &want[&format!("{name}.imgque_hidden")],
            TOL,
            &format!("{name} query decoder"),
        );

        let states =
            model.query_states(&Forward::INFERENCE, &crop_tokens, &que_ids, &que_tps).unwrap();
        let input_ids = ids(&want[&format!("{name}.input_ids")]);
        let input_tps = ids(&want[&format!("{name}.input_tps")]);
        let embeds = model.fuse(&Forward::INFERENCE, &input_ids, &input_tps, &states).unwrap();
        assert_close(
            &embeds.squeeze(0).unwrap(),
            &want[&format!("{name}.fused_embeds")],
            TOL,
            &format!("{name} fused"),
        );

        let llm = &model.llm;
        let out = llm
            .forward_embeds(
                &Forward::INFERENCE,
                &embeds,
                &mut llm.new_cache(),
                ForwardOptions::ALL.with_hidden_states(),
            )
            .unwrap();
        for i in 1..out.hidden_states.len() {
            let h = out.hidden_states[i].squeeze(0).unwrap();
            assert_close(
                &h,
                &want[&format!("{name}.hidden_states.{i}")],
                TOL,
                &format!("{name} hidden {i}"),
            );
        }
        let start = case["logits_tail_start"].as_u64().unwrap() as usize;
        let logits = out.logits.squeeze(0).unwrap();
        let tail = logits.narrow(0, start, logits.dim(0).unwrap() - start).unwrap();
        assert_close(&tail, &want[&format!("{name}.logits_tail")], TOL, &format!("{name} logits"));
        let config = GenerationConfig { max_new_tokens: 20, ..Default::default() };
        let tokens = generate(&Forward::INFERENCE, llm, &embeds, &config, |_| Ok(())).unwrap();
        assert_eq!(tokens, ids(&want[&format!("{name}.greedy_tokens")]), "{name} greedy tokens");
    }
}

#[test]
fn pipeline_builds_the_same_rows_and_answer() {
    use tokenscale_model::chat::{Conversation, Role};
    use tokenscale_model::imgque_pipeline::ImgQuePipeline;
    let (_, want, cases) = load();
    let mut pipe = ImgQuePipeline::load(&fixture("imgque"), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(pipe.num_crops, 4);
    for name in ["one", "two", "small", "drop", "n1", "n16"] {
        let case = &cases["cases"][name];
        pipe.drop_query = case["drop_query"].as_bool().unwrap();
        let mut conv = Conversation::new().with_system(case["system_message"].as_str().unwrap());
        for m in case["messages"].as_array().unwrap() {
            let text = m["content"].as_str().unwrap();
            conv = if m["role"] == "user" { conv.user(text) } else { conv.assistant(text) };
        }
        assert!(conv.messages.iter().any(|m| m.role == Role::User));
        let crop_tokens = pipe.encode_image(&Forward::INFERENCE, &case_image(case)).unwrap();
        let (n_l, n_s) =
            (case["n_l"].as_u64().unwrap() as usize, case["n_s"].as_u64().unwrap() as usize);
        let inputs = pipe.embeddings(&Forward::INFERENCE, &crop_tokens, &conv, n_l, n_s).unwrap();
        common::assert_token_rows(&inputs.record, &want, name);
        assert_close(
            &inputs.embeds.squeeze(0).unwrap(),
            &want[&format!("{name}.fused_embeds")],
            TOL,
            &format!("{name} fused"),
        );
    }
}

#[test]
fn n_l_beyond_the_checkpoint_placeholders_is_a_clear_error() {
    use tokenscale_model::chat::Conversation;
    use tokenscale_model::imgque_pipeline::ImgQuePipeline;
    let pipe = ImgQuePipeline::load(&fixture("imgque"), DType::F32, &Device::Cpu).unwrap();
    let crop_tokens = pipe
        .encode_image(
            &Forward::INFERENCE,
            &load_image(&fixture("imgque").join("small.png")).unwrap(),
        )
        .unwrap();
    let conv = Conversation::new().user("What is this?");
    let err = pipe
        .embeddings(&Forward::INFERENCE, &crop_tokens, &conv, 17, 4)
        .err()
        .expect("n_l = 17 exceeds the placeholders");
    assert!(err.to_string().contains("allow n_l ≤ 16"), "{err}");
    let err =
        pipe.embeddings(&Forward::INFERENCE, &crop_tokens, &conv, 2, 4).err().expect("n_s > n_l");
    assert!(err.to_string().contains("n_s"), "{err}");
    for n_l in 1..=16 {
        let inputs = pipe.embeddings(&Forward::INFERENCE, &crop_tokens, &conv, n_l, 1).unwrap();
        assert_eq!(inputs.vision_tokens, n_l);
    }
}

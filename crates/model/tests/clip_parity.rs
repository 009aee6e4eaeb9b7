//! CLIP vision towers (quick_gelu and gelu; CLIPVisionModel and CLIPModel layouts) against transformers.

mod common;

use candle_core::{DType, Device};
use common::{assert_close, expected, fixture};
use tokenscale_model::checkpoint::load_clip_vision;
use tokenscale_model::Forward;

const TOL: f32 = 1e-4;

fn check(name: &str) {
    let want = expected(name);
    let tower = load_clip_vision(&fixture(name), DType::F32, &Device::Cpu).unwrap();
    let out = tower.forward(&Forward::INFERENCE, &want["pixel_values"]).unwrap();
    assert_eq!(out.hidden_states.len(), tower.num_layers() + 1);
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            h,
            &want[&format!("hidden_states.{i}")],
            TOL,
            &format!("{name} hidden_states.{i}"),
        );
    }
    assert_close(
        out.hidden_states.last().unwrap(),
        &want["last_hidden_state"],
        TOL,
        &format!("{name} last_hidden_state"),
    );
    assert_close(
        out.pooler_output.as_ref().unwrap(),
        &want["pooler_output"],
        TOL,
        &format!("{name} pooler_output"),
    );
}

#[test]
fn clip_vision_quick_gelu_matches_transformers() {
    check("clip_vision");
}

#[test]
fn clip_vision_gelu_matches_transformers() {
    check("clip_vision_gelu");
}

#[test]
fn clip_model_vision_half_matches_transformers() {
    check("clip_full");
}

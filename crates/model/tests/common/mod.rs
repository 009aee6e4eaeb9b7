#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn expected(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(name).join("expected.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A safetensors file under tests/fixtures (`folder/file.safetensors`).
pub fn tensors(rel: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::I64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// Largest absolute difference, after checking the shapes agree.
pub fn max_abs_diff(got: &Tensor, want: &Tensor, what: &str) -> f32 {
    let got = got.to_dtype(DType::F32).unwrap();
    let want = want.to_dtype(DType::F32).unwrap();
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let d = max_abs_diff(got, want, what);
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}

/// tools/fixtures/original's `formula_image` (gradients, a product term, a checkerboard): the
/// references are made from these pixels, so no image is committed.
pub fn formula_image(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (x as u64, y as u64);
        let level = |c: u64| {
            let v = x * (3 + c)
                + y * (5 + 2 * c)
                + ((x * y * (c + 1)) >> 4)
                + 96 * ((x / 17 + y / 13) % 2);
            (v % 256) as u8
        };
        image::Rgb([level(0), level(1), level(2)])
    })
}

/// The LLM and query rows of a parsed record against `{name}.input_ids` / `.input_tps` /
/// `.que_input_ids` / `.que_input_tps` of a reference file.
pub fn assert_token_rows(
    record: &tokenscale_model::chat::ParsedRecord,
    want: &HashMap<String, Tensor>,
    name: &str,
) {
    let query = record.query.as_ref().unwrap_or_else(|| panic!("{name}: no query row"));
    assert_eq!(record.llm.input_ids, ids(&want[&format!("{name}.input_ids")]), "{name} LLM ids");
    assert_eq!(record.llm.input_tps, ids(&want[&format!("{name}.input_tps")]), "{name} LLM types");
    assert_eq!(query.input_ids, ids(&want[&format!("{name}.que_input_ids")]), "{name} query ids");
    assert_eq!(query.input_tps, ids(&want[&format!("{name}.que_input_tps")]), "{name} query types");
}

/// One LLM-row case of the chat fixtures (tools/fixtures/chat, and the original parser's
/// real-tokenizer cases in tools/fixtures/original): the conversation, the template's segments and
/// the expected row.
#[derive(serde::Deserialize)]
pub struct LlmRowCase {
    pub name: String,
    pub tokenizer: String,
    pub template: String,
    pub system: Option<String>,
    pub messages: Vec<String>,
    pub image: bool,
    pub add_endoftext: bool,
    pub n_l: usize,
    pub n_s: usize,
    pub pad_id: u32,
    pub segments: Vec<(String, u32)>,
    pub input_ids: Vec<u32>,
    pub input_tps: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

impl LlmRowCase {
    /// The messages (user first, alternating) with the case's system message.
    pub fn conversation(&self) -> tokenscale_model::chat::Conversation {
        let mut conversation = tokenscale_model::chat::Conversation::from_turns(&self.messages);
        conversation.system = self.system.clone();
        conversation
    }
}

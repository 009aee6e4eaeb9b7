//! The tiny query-fused VLM's shape and checkpoint folder: the published `imgque` layout
//! (config.json with nested `imgque_config`/`llm_config`, safetensors, word-level tokenizers,
//! `clip/`, `preprocessor_config.json`) scaled down, so every subcommand loads it as it loads
//! the paper's model.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenscale_fsio::write_atomic;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::weights::Weights;

use crate::init::{initial_value, Gaussian};

/// LLM special tokens, first in the vocabulary in this order.
pub const LLM_SPECIALS: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];
/// CLIP-side special tokens (the query decoder's row ends with `<|endoftext|>`).
pub const CLIP_SPECIALS: [&str; 3] = ["<unk>", "<|startoftext|>", "<|endoftext|>"];

/// Architecture of the tiny model; every field has a default (the shipped model's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinyShape {
    /// Side of each crop (the vision tower's `image_size`).
    pub crop: usize,
    /// Side of a patch in pixels (the crop must be a multiple of it).
    pub patch: usize,
    /// Local crops of the HD view (4 → a 2×2 grid for square images).
    pub num_crops: usize,
    /// Vision and query-decoder width; a multiple of 64 (the decoder has hidden/64 heads).
    pub vision_hidden: usize,
    /// Vision MLP width.
    pub vision_intermediate: usize,
    /// Vision transformer layers.
    pub vision_layers: usize,
    /// Vision attention heads.
    pub vision_heads: usize,
    /// Query-decoder (Llama) layers.
    pub decoder_layers: usize,
    /// n_l: the largest vision-token budget (placeholders are learned for n ≤ this).
    pub max_vision_tokens: usize,
    /// LLM width.
    pub llm_hidden: usize,
    /// LLM MLP width.
    pub llm_intermediate: usize,
    /// LLM layers.
    pub llm_layers: usize,
    /// LLM attention heads.
    pub llm_heads: usize,
    /// LLM context length (prompt, vision tokens and answer must fit).
    pub llm_max_positions: usize,
}

impl Default for TinyShape {
    fn default() -> Self {
        Self {
            crop: 32,
            patch: 4,
            num_crops: 4,
            vision_hidden: 64,
            vision_intermediate: 128,
            vision_layers: 2,
            vision_heads: 2,
            decoder_layers: 2,
            max_vision_tokens: 64,
            llm_hidden: 128,
            llm_intermediate: 256,
            llm_layers: 2,
            llm_heads: 4,
            llm_max_positions: 512,
        }
    }
}

impl TinyShape {
    /// Refuses shapes the model cannot be built with; errors start with `origin` and name the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let checks = [
            (
                self.vision_hidden.is_multiple_of(64) && self.vision_hidden > 0,
                "vision_hidden must be a positive multiple of 64",
            ),
            (
                self.patch > 0 && self.crop.is_multiple_of(self.patch),
                "crop must be a multiple of patch",
            ),
            (
                self.vision_heads > 0 && self.vision_hidden.is_multiple_of(self.vision_heads),
                "vision_heads must divide vision_hidden",
            ),
            (
                self.llm_heads > 0 && self.llm_hidden.is_multiple_of(self.llm_heads),
                "llm_heads must divide llm_hidden",
            ),
            (self.max_vision_tokens >= 1, "max_vision_tokens must be at least 1"),
            (self.num_crops >= 1, "num_crops must be at least 1"),
            (
                (self.llm_hidden / self.llm_heads.max(1)).is_multiple_of(2),
                "llm_hidden / llm_heads must be even (RoPE)",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                bail!("{origin}: model shape: {what}");
            }
        }
        Ok(())
    }
}

/// A word-level tokenizer.json (split on `\w+|[^\w\s]+`, case kept: MCQ answers are the
/// capital letters VLMEvalKit's option extraction looks for); specials first.
fn word_level_tokenizer(specials: &[&str], words: &BTreeSet<String>) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for w in words {
        if !vocab.contains_key(w) {
            let id = vocab.len();
            vocab.insert(w.clone(), id.into());
        }
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

/// Splits text the way the tokenizers' `Whitespace` pre-tokenizer does.
pub fn words_of(text: &str, into: &mut BTreeSet<String>) {
    let mut current = String::new();
    let mut current_is_word = false;
    for ch in text.chars() {
        let is_word = ch.is_alphanumeric() || ch == '_';
        if !current.is_empty() && (ch.is_whitespace() || is_word != current_is_word) {
            into.insert(std::mem::take(&mut current));
        }
        if !ch.is_whitespace() {
            current_is_word = is_word;
            current.push(ch);
        }
    }
    if !current.is_empty() {
        into.insert(current);
    }
}

fn json_bytes(value: &serde_json::Value) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes config.json, tokenizer.json, clip/tokenizer.json, clip/tokenizer_config.json and
/// preprocessor_config.json for a model whose tokenizers know `words`.
pub fn write_model_files(dir: &Path, shape: &TinyShape, words: &BTreeSet<String>) -> Result<()> {
    shape.validate(&dir.display().to_string())?;
    std::fs::create_dir_all(dir.join("clip"))
        .with_context(|| format!("{}: cannot create", dir.display()))?;
    let llm_tok = word_level_tokenizer(&LLM_SPECIALS, words);
    let clip_tok = word_level_tokenizer(&CLIP_SPECIALS, words);
    let llm_vocab = llm_tok["model"]["vocab"].as_object().map_or(0, |v| v.len());
    let clip_vocab = clip_tok["model"]["vocab"].as_object().map_or(0, |v| v.len());
    // Placeholder i is id clip_vocab + i (the ids `add_tokens` would give them).
    let decoder_vocab = clip_vocab + shape.max_vision_tokens - 1;
    let s = shape;
    let config = serde_json::json!({
        "model_type": "modeling_query_adapt_clip_llm",
        "architectures": ["ImageMultiQueryCLIPLLMModel"],
        "fusion_name": "img_multi_que_clip_fusion_linear",
        "chat_template": "plain",
        "append_special_padding": true,
        "length_que_end": s.max_vision_tokens,
        "length_que_end_short": s.max_vision_tokens,
        "imgque_vocab_size": decoder_vocab,
        "torch_dtype": "float32",
        "imgque_config": {
            "model_type": "modeling_image_hd_multi_query_clip",
            "hidden_size": s.vision_hidden,
            "num_hidden_layers": s.decoder_layers,
            "max_position_embeddings": 2048,
            "vocab_size": decoder_vocab,
            "text_config": {"model_type": "clip_text_model", "vocab_size": clip_vocab, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
            "vision_config": {
                "model_type": "clip_vision_hd", "hidden_act": "quick_gelu", "hidden_size": s.vision_hidden,
                "intermediate_size": s.vision_intermediate, "image_size": s.crop, "patch_size": s.patch,
                "num_attention_heads": s.vision_heads, "num_hidden_layers": s.vision_layers, "num_channels": 3,
                "layer_norm_eps": 1e-5, "enable_local_merge": true, "enable_token_crlf": true,
                "vembed_merge_kernel_size": 3, "vembed_merge_stride": 2
            }
        },
        "llm_config": {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
            "hidden_size": s.llm_hidden, "intermediate_size": s.llm_intermediate,
            "num_hidden_layers": s.llm_layers, "num_attention_heads": s.llm_heads, "num_key_value_heads": s.llm_heads,
            "max_position_embeddings": s.llm_max_positions, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": true, "vocab_size": llm_vocab, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3
        }
    });
    write_atomic(&dir.join("config.json"), &json_bytes(&config)?)?;
    write_atomic(&dir.join("tokenizer.json"), &json_bytes(&llm_tok)?)?;
    write_atomic(&dir.join("clip").join("tokenizer.json"), &json_bytes(&clip_tok)?)?;
    let clip_config = serde_json::json!({"pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "bos_token": "<|startoftext|>"});
    write_atomic(&dir.join("clip").join("tokenizer_config.json"), &json_bytes(&clip_config)?)?;
    write_atomic(
        &dir.join("preprocessor_config.json"),
        &json_bytes(&serde_json::json!({"num_crops": s.num_crops}))?,
    )?;
    Ok(())
}

/// Fresh parameters for the model described by `dir`'s files, named as the loader names them:
/// the loader itself is run against a recording store to list them.
pub fn initial_parameters(dir: &Path, seed: u64) -> Result<HashMap<String, Tensor>> {
    let config = tokenscale_model::config::read_json_value(&dir.join("config.json"))?;
    let decoder_vocab =
        config.get("imgque_vocab_size").and_then(|v| v.as_u64()).with_context(|| {
            format!("{}: missing field `imgque_vocab_size`", dir.join("config.json").display())
        })? as usize;
    let hidden = config["imgque_config"]["hidden_size"].as_u64().unwrap_or(64) as usize;
    let decoder_embed = "imgque_backbone.imgque_model.embed_tokens.weight".to_string();
    let known = HashMap::from([(
        decoder_embed.clone(),
        Tensor::zeros((decoder_vocab, hidden), DType::F32, &Device::Cpu)?,
    )]);
    let listing = Weights::recording(known, DType::F32, &Device::Cpu);
    ImgQuePipeline::load_with_weights(dir, &listing)?;
    let mut asked = listing.asked();
    asked.push((decoder_embed, vec![decoder_vocab, hidden]));
    let mut gaussian = Gaussian::new(seed);
    let mut params = HashMap::new();
    for (key, shape) in asked {
        let value = initial_value(&key, &shape, &mut gaussian)?;
        params.insert(key, value);
    }
    Ok(params)
}

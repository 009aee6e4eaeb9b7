//! Architecture shapes read from an HF `config.json` with serde_json alone (no model crate):
//! LLaVA (llava-hf), the query-fused model (`modeling_query_adapt_clip_llm`), Llama / Qwen2 /
//! Mistral, CLIP vision (`clip_vision_model`, or the vision half of `clip`).
//!
//! Nested sub-configs (llava-hf's `text_config` / `vision_config`) store only the values that
//! differ from the HF class defaults, so those defaults are filled in, as the runtime does.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// A LLaMA-family decoder (also the query decoder of the query-fused model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmShape {
    /// Model width (`hidden_size`).
    pub hidden: u64,
    /// MLP width (`intermediate_size`).
    pub intermediate: u64,
    /// Decoder layers.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (fewer than `heads` under GQA).
    pub kv_heads: u64,
    /// Width of one head (`head_dim`, or hidden / heads).
    pub head_dim: u64,
    /// Vocabulary size: rows of the embedding (and LM head).
    pub vocab: u64,
    /// Context length (`max_position_embeddings`); prompts beyond it are refused.
    pub max_positions: u64,
    /// The LM head shares the embedding matrix (no `lm_head.weight`).
    pub tied: bool,
    /// The model has an LM head at all (false for the query decoder, an HF `LlamaModel`).
    pub has_head: bool,
    /// q, k and v projections have biases (Qwen2).
    pub qkv_bias: bool,
    /// The attention output projection has a bias.
    pub o_bias: bool,
    /// The MLP projections have biases.
    pub mlp_bias: bool,
}

/// A CLIP vision tower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipShape {
    /// Encoder width.
    pub hidden: u64,
    /// MLP width.
    pub intermediate: u64,
    /// Layers stored in the checkpoint.
    pub layers: u64,
    /// Attention heads.
    pub heads: u64,
    /// Side of the (square) input image in pixels.
    pub image_size: u64,
    /// Side of a patch in pixels.
    pub patch_size: u64,
    /// Input channels (3).
    pub channels: u64,
    /// A final LayerNorm is stored: `post_layernorm` (HF CLIPVisionModel, LLaVA; unused by
    /// LLaVA) or the query-fused model's `pos_layrnorm` (same size, applied to all tokens).
    pub post_layernorm: bool,
}

impl ClipShape {
    /// Patches per side: image_size / patch_size (24 for CLIP-L/14-336).
    pub fn grid(&self) -> u64 {
        self.image_size / self.patch_size
    }

    /// Patches per image: grid².
    pub fn patches(&self) -> u64 {
        self.grid() * self.grid()
    }
    /// Tokens inside the encoder: CLS + patches.
    pub fn tokens(&self) -> u64 {
        self.patches() + 1
    }
}

/// LLaVA-1.5: a CLIP tower, a two-layer MLP projector, a LLaMA-family LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlavaShape {
    /// The vision tower.
    pub vision: ClipShape,
    /// Encoder layers the runtime runs: the selected `vision_feature_layer` (23 of 24 for -2).
    pub vision_layers_used: u64,
    /// The CLS token is passed on with the patches (`vision_feature_select_strategy: full`).
    pub keep_cls: bool,
    /// The projector's linear layers have biases (`multimodal_projector_bias`, default true).
    pub projector_bias: bool,
    /// The language model.
    pub llm: LlmShape,
}

impl LlavaShape {
    /// Vision tokens per image before any reduction (576 for LLaVA-1.5).
    pub fn image_tokens(&self) -> u64 {
        self.vision.patches() + u64::from(self.keep_cls)
    }
}

/// The query-fused model: a CLIP tower over K crops with a 3×3/s2 merge, a Llama query decoder
/// that turns crop tokens and the question into n vision tokens, a linear fusion and an LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgQueShape {
    /// The vision tower (run on every crop).
    pub vision: ClipShape,
    /// The query decoder (no LM head).
    pub decoder: LlmShape,
    /// The language model.
    pub llm: LlmShape,
    /// CLIP text vocabulary; `decoder.vocab − clip_vocab + 1` bounds n_l (placeholders + eos).
    pub clip_vocab: u64,
    /// The decoder's placeholders are extra vocabulary rows beyond CLIP's, which bounds n.
    pub append_special_padding: bool,
    /// `num_crops` of `preprocessor_config.json` next to the config, when found.
    pub num_crops: Option<u64>,
}

impl ImgQueShape {
    /// Side of the merged grid: `Conv2d(k=3, s=2, pad=1)` over the patch grid.
    pub fn merged_grid(&self) -> u64 {
        (self.vision.grid() + 2 - 3) / 2 + 1
    }
    /// Tokens per crop: merged grid + the line-feed token (145 for CLIP-L/14-336).
    pub fn tokens_per_crop(&self) -> u64 {
        self.merged_grid() * self.merged_grid() + 1
    }
    /// Crops K = 1 (global) + rows·cols, assuming the full grid of `num_crops` (16 → 17).
    pub fn default_crops(&self) -> u64 {
        1 + self.num_crops.unwrap_or(16)
    }
}

/// What a `config.json` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arch {
    /// LLaVA-1.5 (llava-hf).
    Llava(LlavaShape),
    /// The query-fused model.
    ImgQue(ImgQueShape),
    /// A LLaMA-family LLM alone (Llama, Qwen2, Mistral).
    Llm(LlmShape),
    /// A CLIP vision tower alone.
    Clip(ClipShape),
}

impl Arch {
    /// Short name in tables and errors (`llava`, `imgque`, `llm`, `clip_vision`).
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Llava(_) => "llava",
            Arch::ImgQue(_) => "imgque",
            Arch::Llm(_) => "llm",
            Arch::Clip(_) => "clip_vision",
        }
    }
}

/// Reads `path` (and, for the query-fused model, `preprocessor_config.json` beside it).
pub fn read_config(path: &Path) -> Result<Arch> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: invalid JSON: {e}"))?;
    let mut arch = parse_config(&value, &origin)?;
    if let Arch::ImgQue(s) = &mut arch {
        let pp = path.with_file_name("preprocessor_config.json");
        if pp.is_file() {
            let pp_origin = pp.display().to_string();
            let text = std::fs::read_to_string(&pp)
                .with_context(|| format!("{pp_origin}: cannot read"))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{pp_origin}: invalid JSON: {e}"))?;
            if let Some(obj) = v.as_object() {
                s.num_crops = opt_u64(obj, "num_crops", &pp_origin, "")?;
            }
        }
    }
    Ok(arch)
}

/// Parses a config value; `origin` (a file name) starts every error message.
pub fn parse_config(value: &Value, origin: &str) -> Result<Arch> {
    let root =
        value.as_object().with_context(|| format!("{origin}: the config must be a JSON object"))?;
    let model_type = opt_str(root, "model_type", origin, "")?;
    match model_type.as_deref() {
        Some("llava") => parse_llava(root, origin).map(Arch::Llava),
        Some("modeling_query_adapt_clip_llm") => parse_imgque(root, origin).map(Arch::ImgQue),
        Some("llama" | "qwen2" | "mistral") => parse_llm(root, origin, "").map(Arch::Llm),
        Some("clip_vision_model") => parse_clip(root, origin, "", true).map(Arch::Clip),
        Some("clip") => {
            let v = sub(root, "vision_config", origin, "")?;
            parse_clip(&v, origin, "vision_config", true).map(Arch::Clip)
        }
        Some(other) => bail!(
            "{origin}: field `model_type`: unsupported `{other}` (supported: llava, modeling_query_adapt_clip_llm, llama, qwen2, mistral, clip_vision_model, clip)"
        ),
        None if root.contains_key("imgque_config") => parse_imgque(root, origin).map(Arch::ImgQue),
        None if root.contains_key("text_config") && root.contains_key("vision_config") => parse_llava(root, origin).map(Arch::Llava),
        None => bail!("{origin}: field `model_type`: missing (and the config is neither LLaVA- nor imgque-shaped)"),
    }
}

fn path_of(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn opt_u64(map: &Map<String, Value>, key: &str, origin: &str, prefix: &str) -> Result<Option<u64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) => Ok(Some(x)),
            None => bail!(
                "{origin}: field `{}`: expected a non-negative integer, got {v}",
                path_of(prefix, key)
            ),
        },
    }
}

fn pos_u64(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    origin: &str,
    prefix: &str,
) -> Result<u64> {
    let v = opt_u64(map, key, origin, prefix)?.unwrap_or(default);
    if v == 0 {
        bail!("{origin}: field `{}`: must be at least 1", path_of(prefix, key));
    }
    Ok(v)
}

fn opt_bool(
    map: &Map<String, Value>,
    key: &str,
    origin: &str,
    prefix: &str,
) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => {
            bail!("{origin}: field `{}`: expected true or false, got {v}", path_of(prefix, key))
        }
    }
}

fn opt_str(
    map: &Map<String, Value>,
    key: &str,
    origin: &str,
    prefix: &str,
) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => bail!("{origin}: field `{}`: expected a string, got {v}", path_of(prefix, key)),
    }
}

fn sub(
    map: &Map<String, Value>,
    key: &str,
    origin: &str,
    prefix: &str,
) -> Result<Map<String, Value>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(v) => bail!("{origin}: field `{}`: expected an object, got {v}", path_of(prefix, key)),
    }
}

/// A LLaMA-family config (`prefix` names where it sits, e.g. `text_config`), with the HF class
/// defaults of its `model_type` for missing fields.
pub fn parse_llm(map: &Map<String, Value>, origin: &str, prefix: &str) -> Result<LlmShape> {
    let model_type = opt_str(map, "model_type", origin, prefix)?.unwrap_or_else(|| "llama".into());
    // (hidden, intermediate, layers, heads, kv heads, vocab, max positions)
    let d: (u64, u64, u64, u64, Option<u64>, u64, u64) = match model_type.as_str() {
        "llama" => (4096, 11008, 32, 32, None, 32000, 2048),
        "mistral" => (4096, 14336, 32, 32, Some(8), 32000, 131072),
        "qwen2" => (4096, 22016, 32, 32, Some(32), 151936, 32768),
        other => bail!(
            "{origin}: field `{}`: unsupported `{other}` (supported: llama, qwen2, mistral)",
            path_of(prefix, "model_type")
        ),
    };
    let hidden = pos_u64(map, "hidden_size", d.0, origin, prefix)?;
    let heads = pos_u64(map, "num_attention_heads", d.3, origin, prefix)?;
    let kv_heads = match opt_u64(map, "num_key_value_heads", origin, prefix)?.or(d.4) {
        Some(0) => bail!(
            "{origin}: field `{}`: must be at least 1",
            path_of(prefix, "num_key_value_heads")
        ),
        Some(k) => k,
        None => heads,
    };
    if heads % kv_heads != 0 {
        bail!(
            "{origin}: field `{}`: {kv_heads} does not divide num_attention_heads {heads}",
            path_of(prefix, "num_key_value_heads")
        );
    }
    let head_dim = match opt_u64(map, "head_dim", origin, prefix)? {
        Some(h) if h > 0 => h,
        _ => {
            if hidden % heads != 0 {
                bail!("{origin}: field `{}`: {hidden} is not divisible by num_attention_heads {heads}", path_of(prefix, "hidden_size"));
            }
            hidden / heads
        }
    };
    let attention_bias = opt_bool(map, "attention_bias", origin, prefix)?.unwrap_or(false);
    Ok(LlmShape {
        hidden,
        intermediate: pos_u64(map, "intermediate_size", d.1, origin, prefix)?,
        layers: pos_u64(map, "num_hidden_layers", d.2, origin, prefix)?,
        heads,
        kv_heads,
        head_dim,
        vocab: pos_u64(map, "vocab_size", d.5, origin, prefix)?,
        max_positions: pos_u64(map, "max_position_embeddings", d.6, origin, prefix)?,
        tied: opt_bool(map, "tie_word_embeddings", origin, prefix)?.unwrap_or(false),
        has_head: true,
        qkv_bias: model_type == "qwen2" || attention_bias,
        o_bias: attention_bias,
        mlp_bias: opt_bool(map, "mlp_bias", origin, prefix)?.unwrap_or(false),
    })
}

/// HF `CLIPVisionConfig` with its defaults.
pub fn parse_clip(
    map: &Map<String, Value>,
    origin: &str,
    prefix: &str,
    post_layernorm: bool,
) -> Result<ClipShape> {
    let s = ClipShape {
        hidden: pos_u64(map, "hidden_size", 768, origin, prefix)?,
        intermediate: pos_u64(map, "intermediate_size", 3072, origin, prefix)?,
        layers: pos_u64(map, "num_hidden_layers", 12, origin, prefix)?,
        heads: pos_u64(map, "num_attention_heads", 12, origin, prefix)?,
        image_size: pos_u64(map, "image_size", 224, origin, prefix)?,
        patch_size: pos_u64(map, "patch_size", 32, origin, prefix)?,
        channels: pos_u64(map, "num_channels", 3, origin, prefix)?,
        post_layernorm,
    };
    if !s.image_size.is_multiple_of(s.patch_size) {
        bail!(
            "{origin}: field `{}`: {} is not a multiple of patch_size {}",
            path_of(prefix, "image_size"),
            s.image_size,
            s.patch_size
        );
    }
    if !s.hidden.is_multiple_of(s.heads) {
        bail!(
            "{origin}: field `{}`: {} is not divisible by num_attention_heads {}",
            path_of(prefix, "hidden_size"),
            s.hidden,
            s.heads
        );
    }
    Ok(s)
}

fn parse_llava(root: &Map<String, Value>, origin: &str) -> Result<LlavaShape> {
    let vision =
        parse_clip(&sub(root, "vision_config", origin, "")?, origin, "vision_config", true)?;
    let llm = parse_llm(&sub(root, "text_config", origin, "")?, origin, "text_config")?;
    let layer = match root.get("vision_feature_layer") {
        None | Some(Value::Null) => -2,
        Some(v) => v.as_i64().with_context(|| {
            format!("{origin}: field `vision_feature_layer`: only a single layer index is supported, got {v}")
        })?,
    };
    let l = vision.layers as i64;
    let used = if layer < 0 { l + 1 + layer } else { layer };
    if used < 0 || used > l {
        bail!("{origin}: field `vision_feature_layer`: {layer} is out of range for {l} layers");
    }
    let keep_cls = match opt_str(root, "vision_feature_select_strategy", origin, "")?.as_deref().unwrap_or("default") {
        "default" => false,
        "full" => true,
        other => bail!("{origin}: field `vision_feature_select_strategy`: unknown value `{other}` (expected default or full)"),
    };
    Ok(LlavaShape {
        vision,
        vision_layers_used: used as u64,
        keep_cls,
        projector_bias: opt_bool(root, "multimodal_projector_bias", origin, "")?.unwrap_or(true),
        llm,
    })
}

fn parse_imgque(root: &Map<String, Value>, origin: &str) -> Result<ImgQueShape> {
    if !root.contains_key("imgque_config") {
        bail!("{origin}: field `imgque_config`: missing");
    }
    if !root.contains_key("llm_config") {
        bail!("{origin}: field `llm_config`: missing");
    }
    let iq = sub(root, "imgque_config", origin, "")?;
    let vision = parse_clip(
        &sub(&iq, "vision_config", origin, "imgque_config")?,
        origin,
        "imgque_config.vision_config",
        true,
    )?;
    if vision.hidden % 64 != 0 {
        bail!(
            "{origin}: field `imgque_config.vision_config.hidden_size`: {} must be a multiple of 64 (query-decoder heads are hidden/64)",
            vision.hidden
        );
    }
    let text = sub(&iq, "text_config", origin, "imgque_config")?;
    let text_layers =
        opt_u64(&text, "num_hidden_layers", origin, "imgque_config.text_config")?.unwrap_or(12);
    let clip_vocab =
        opt_u64(&text, "vocab_size", origin, "imgque_config.text_config")?.unwrap_or(49408);
    let layers = opt_u64(&iq, "num_hidden_layers", origin, "imgque_config")?.unwrap_or(text_layers);
    let vocab = match opt_u64(root, "imgque_vocab_size", origin, "")? {
        Some(v) => v,
        None => opt_u64(&iq, "vocab_size", origin, "imgque_config")?.with_context(|| {
            format!("{origin}: field `imgque_vocab_size`: missing (the query decoder's vocabulary)")
        })?,
    };
    let decoder = LlmShape {
        hidden: vision.hidden,
        intermediate: vision.intermediate,
        layers,
        heads: vision.hidden / 64,
        kv_heads: vision.hidden / 64,
        head_dim: 64,
        vocab,
        max_positions: opt_u64(&iq, "max_position_embeddings", origin, "imgque_config")?
            .unwrap_or(2048),
        tied: true,
        has_head: false,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
    };
    let llm = parse_llm(&sub(root, "llm_config", origin, "")?, origin, "llm_config")?;
    Ok(ImgQueShape {
        vision,
        decoder,
        llm,
        clip_vocab,
        append_special_padding: opt_bool(root, "append_special_padding", origin, "")?
            .unwrap_or(false),
        num_crops: None,
    })
}

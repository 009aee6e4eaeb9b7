//! The paper's query-fused VLM (`ImageMultiQueryCLIPLLMModel`, HD variant): CLIP ViT crops →
//! pos-LN, 3×3/s2 merge + strided residual, line-feed token (145 tokens per crop) → a Llama-style
//! query decoder over [crop tokens][question tokens][placeholders][eos] → its QED|EOS outputs,
//! linearly projected, overwrite the QED slots of the LLM's input embeddings.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use candle_nn::Conv2d;
use serde::Deserialize;

use crate::chat::token_type::{QED, QED_EOS};
use crate::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::config::parse;
use crate::forward::Forward;
use crate::llama::{ForwardOptions, KvCache, Llama, LlamaConfig};
use crate::nn::{self, LayerNorm, Linear};
use crate::weights::Weights;

/// The `model_type` a query-fused checkpoint's `config.json` carries.
pub const MODEL_TYPE: &str = "modeling_query_adapt_clip_llm";
/// The only supported `fusion_name`: QED|EOS outputs linearly projected into the LLM's slots.
pub const FUSION_LINEAR: &str = "img_multi_que_clip_fusion_linear";

fn default_n_l() -> usize {
    8
}
fn default_max_pos() -> usize {
    2048
}

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_type: Option<String>,
    imgque_config: serde_json::Value,
    llm_config: serde_json::Value,
    #[serde(default = "default_n_l")]
    length_que_end: usize,
    #[serde(default)]
    length_que_end_short: Option<usize>,
    #[serde(default)]
    append_special_padding: bool,
    #[serde(default)]
    fusion_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawImgQueConfig {
    vision_config: serde_json::Value,
    #[serde(default)]
    text_config: serde_json::Value,
    #[serde(default)]
    num_hidden_layers: Option<usize>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
}

/// A query-fused checkpoint's `config.json`: vision tower, query decoder, LLM and n_l / n_s.
#[derive(Debug, Clone)]
pub struct ImgQueConfig {
    /// The CLIP vision tower's config (`imgque_config.vision_config`).
    pub vision: ClipVisionConfig,
    /// Layers of the query decoder (default: the CLIP text config's, or 12).
    pub decoder_layers: usize,
    /// The query decoder's configured context length (not enforced; RoPE is computed on the fly).
    pub decoder_max_positions: usize,
    /// The language model's config (`llm_config`).
    pub llm: LlamaConfig,
    /// n_l: vision tokens for the first question.
    pub length_que_end: usize,
    /// n_s: vision tokens for each later question.
    pub length_que_end_short: usize,
    /// Whether query placeholders get their own ids `base + i` instead of the pad id.
    pub append_special_padding: bool,
    /// Token ids of the CLIP text config (pad := eos when missing).
    pub clip_eos: Option<u32>,
    /// The CLIP tokenizer's pad id (its eos id when missing).
    pub clip_pad: Option<u32>,
}

impl ImgQueConfig {
    /// Parses and checks a query-fused `config.json` value (model type, fusion, 1 ≤ n_s ≤ n_l,
    /// vision width a multiple of 64); errors name `origin` and the field.
    pub fn from_value(value: &serde_json::Value, origin: &str) -> Result<Self> {
        let raw: RawConfig = parse(value, origin, "")?;
        if let Some(t) = raw.model_type.as_deref() {
            if t != MODEL_TYPE {
                bail!("{origin}: field `model_type` is `{t}`, expected `{MODEL_TYPE}`");
            }
        }
        if let Some(name) = raw.fusion_name.as_deref() {
            if name != FUSION_LINEAR {
                bail!("{origin}: field `fusion_name`: unsupported fusion `{name}` (supported: {FUSION_LINEAR})");
            }
        }
        let iq: RawImgQueConfig = parse(&raw.imgque_config, origin, "imgque_config")?;
        let vision: ClipVisionConfig =
            parse(&iq.vision_config, origin, "imgque_config.vision_config")?;
        if !vision.hidden_size.is_multiple_of(64) {
            bail!("{origin}: field `imgque_config.vision_config.hidden_size` = {} must be a multiple of 64 (query-decoder heads are hidden/64)", vision.hidden_size);
        }
        let text_layers =
            iq.text_config.get("num_hidden_layers").and_then(|v| v.as_u64()).unwrap_or(12) as usize;
        let llm = LlamaConfig::from_value(&raw.llm_config, origin, "llm_config")?;
        // The original stores the unreduced n_l when n_s is missing and then fails its own
        // n_l ≥ n_s check; a missing n_s here means "same as n_l".
        let n_l = raw.length_que_end;
        let n_s = raw.length_que_end_short.unwrap_or(n_l);
        if n_l == 0 || n_s == 0 || n_s > n_l {
            bail!("{origin}: fields `length_que_end` = {n_l} and `length_que_end_short` = {n_s} must satisfy 1 ≤ n_s ≤ n_l");
        }
        let id = |k: &str| iq.text_config.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let clip_eos = id("eos_token_id");
        Ok(Self {
            vision,
            decoder_layers: iq.num_hidden_layers.unwrap_or(text_layers),
            decoder_max_positions: iq.max_position_embeddings,
            llm,
            length_que_end: n_l,
            length_que_end_short: n_s,
            append_special_padding: raw.append_special_padding,
            clip_eos,
            clip_pad: id("pad_token_id").or(clip_eos),
        })
    }

    /// Tokens each crop contributes: the merged grid plus the line-feed token.
    pub fn tokens_per_crop(&self) -> usize {
        let merged = self.vision.grid().div_ceil(2);
        merged * merged + 1
    }

    /// The query decoder's Llama config, rebuilt the way the original does on every load.
    fn decoder_config(&self, vocab_size: usize) -> Result<LlamaConfig> {
        let v = &self.vision;
        let value = serde_json::json!({
            "model_type": "llama",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": self.decoder_layers,
            "num_attention_heads": v.hidden_size / 64,
            "num_key_value_heads": v.hidden_size / 64,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            // The published setup (16 crops + global: 17·145 = 2465 positions, plus the query)
            // exceeds the config's 2048; the original computes RoPE on the fly and never
            // enforces it, so neither do we.
            "max_position_embeddings": self.decoder_max_positions.max(1 << 24),
            "vocab_size": vocab_size,
            "tie_word_embeddings": true,
            "hidden_act": "silu",
        });
        LlamaConfig::from_value(&value, "query decoder", "")
    }
}

/// A loaded query-fused model: CLIP crops encoder, query decoder, projection and LLM.
pub struct ImgQue {
    /// The config the model was loaded from.
    pub config: ImgQueConfig,
    vision: ClipVisionTransformer,
    pos_layrnorm: LayerNorm,
    merge: Conv2d,
    token_lf: Tensor,
    /// The Llama-style query decoder over crop tokens, question tokens and placeholders.
    pub decoder: Llama,
    proj: Linear,
    /// The language model whose QED slots receive the projected query outputs.
    pub llm: Llama,
}

impl ImgQue {
    /// Loads every part from a query-fused checkpoint's weights; fails on a missing or
    /// mis-shaped tensor.
    pub fn load(w: &Weights, config: &ImgQueConfig, origin: &str) -> Result<Self> {
        let c = config;
        let vh = c.vision.hidden_size;
        let vw = w.pp("imgque_backbone.clip_model.vision_model");
        let vision = ClipVisionTransformer::load(&vw, &c.vision, None)?;
        let pos_layrnorm = nn::layer_norm(&vw, "pos_layrnorm", vh, c.vision.layer_norm_eps)?;
        let merge = nn::conv2d(&vw, "vision_embed_merge", [vh, vh, 3, 3], 2, 1, false)?;
        let token_lf = vw.get("token_LF", &[1, 1, vh])?.reshape((1, vh))?;
        let dw = w.pp("imgque_backbone.imgque_model");
        let vocab = dw.get_unchecked("embed_tokens.weight")?.dim(0)?;
        let decoder = Llama::load_parts(&dw, &dw, &c.decoder_config(vocab)?, origin)?;
        let proj = nn::linear(w, "fusion_backbone.imgque_proj", vh, c.llm.hidden_size, false)?;
        let llm =
            Llama::load_parts(&w.pp("llm_backbone.model"), &w.pp("llm_backbone"), &c.llm, origin)?;
        Ok(Self { config: c.clone(), vision, pos_layrnorm, merge, token_lf, decoder, proj, llm })
    }

    /// Rows of the query decoder's embedding table (placeholder ids must fit below it).
    pub fn decoder_vocab_size(&self) -> usize {
        self.decoder.config.vocab_size
    }

    /// `[K, 3, 336, 336]` crops → `[K, tokens_per_crop, vision_hidden]`.
    pub fn encode_crops(&self, ctx: &Forward, pixel_values: &Tensor) -> Result<Tensor> {
        let out = self.vision.forward(ctx, pixel_values)?;
        let last = out.hidden_states.last().context("vision tower has no layers")?;
        let normed = self.pos_layrnorm.forward(ctx, last)?;
        let (k, t, h) = normed.dims3()?;
        let g = self.config.vision.grid();
        let grid = normed.narrow(1, 1, t - 1)?.transpose(1, 2)?.reshape((k, h, g, g))?;
        let merged = nn::conv(ctx, &self.merge, &grid)?;
        let m = merged.dim(2)?;
        let idx = Tensor::arange_step(0u32, g as u32, 2, grid.device())?;
        let strided = grid.index_select(&idx, 2)?.index_select(&idx, 3)?;
        let tokens = (merged + strided)?.flatten_from(2)?.transpose(1, 2)?; // [K, m*m, h]
        let lf = self.token_lf.unsqueeze(0)?.repeat((k, 1, 1))?;
        debug_assert_eq!(m * m + 1, self.config.tokens_per_crop());
        Ok(Tensor::cat(&[&tokens, &lf], 1)?)
    }

    /// Runs the query decoder over [all crop tokens][query ids] (causal, positions 0..L−1) and
    /// returns the final-norm states of the query part: `[Lq, vision_hidden]`.
    pub fn query_hidden(
        &self,
        ctx: &Forward,
        crop_tokens: &Tensor,
        que_ids: &[u32],
    ) -> Result<Tensor> {
        let (k, per, h) = crop_tokens.dims3()?;
        let vision = crop_tokens.reshape((1, k * per, h))?;
        let ids = Tensor::new(que_ids, crop_tokens.device())?.unsqueeze(0)?;
        let query = self.decoder.embed(&ids)?;
        let row = Tensor::cat(&[&vision, &query], 1)?;
        let mut cache = KvCache::new(self.decoder.num_layers());
        let out = self.decoder.forward_embeds(
            ctx,
            &row,
            &mut cache,
            ForwardOptions::LAST.with_hidden_states(),
        )?;
        let hidden = out.hidden_states.last().context("query decoder has no layers")?.squeeze(0)?;
        Ok(hidden.narrow(0, k * per, que_ids.len())?)
    }

    /// The query decoder's states at the query positions typed QED or EOS, in order:
    /// `[n, vision_hidden]` — the vision tokens the LLM receives.
    pub fn query_states(
        &self,
        ctx: &Forward,
        crop_tokens: &Tensor,
        que_ids: &[u32],
        que_tps: &[u32],
    ) -> Result<Tensor> {
        if que_ids.len() != que_tps.len() {
            bail!("query ids ({}) and types ({}) differ in length", que_ids.len(), que_tps.len());
        }
        let hidden = self.query_hidden(ctx, crop_tokens, que_ids)?;
        let picks: Vec<u32> = que_tps
            .iter()
            .enumerate()
            .filter(|(_, &t)| t & QED_EOS != 0)
            .map(|(i, _)| i as u32)
            .collect();
        if picks.is_empty() {
            bail!("the query row has no QED/EOS positions");
        }
        Ok(hidden.index_select(&Tensor::new(picks, hidden.device())?, 0)?)
    }

    /// LLM input embeddings `[1, T, H]` with the QED-typed slots overwritten, in order, by the
    /// projected query states.
    pub fn fuse(
        &self,
        ctx: &Forward,
        input_ids: &[u32],
        input_tps: &[u32],
        query_states: &Tensor,
    ) -> Result<Tensor> {
        if input_ids.len() != input_tps.len() {
            bail!(
                "input ids ({}) and types ({}) differ in length",
                input_ids.len(),
                input_tps.len()
            );
        }
        let device = self.llm.device();
        let text = self.llm.embed(&Tensor::new(input_ids, device)?.unsqueeze(0)?)?.squeeze(0)?;
        let slots: Vec<usize> =
            input_tps.iter().enumerate().filter(|(_, &t)| t & QED != 0).map(|(i, _)| i).collect();
        let n = query_states.dim(0)?;
        if slots.len() != n {
            bail!(
                "the prompt has {} QED slots but the query decoder gives {n} states",
                slots.len()
            );
        }
        let projected = self.proj.forward(ctx, query_states)?;
        let mut rows = Vec::with_capacity(input_ids.len());
        let mut next = 0;
        for i in 0..input_ids.len() {
            if next < n && slots[next] == i {
                rows.push(projected.narrow(0, next, 1)?);
                next += 1;
            } else {
                rows.push(text.narrow(0, i, 1)?);
            }
        }
        Ok(Tensor::cat(&rows, 0)?.unsqueeze(0)?)
    }
}

//! A query-fused checkpoint folder as published (config.json with nested `imgque_config` /
//! `llm_config`, safetensors, LLM tokenizer at the root, CLIP tokenizer in `clip/`,
//! `preprocessor_config.json` with `num_crops`), turned into LLM input embeddings at any n_l / n_s.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::chat::{ChatAndQueryParser, ChatTemplate, Conversation, ParsedRecord, QueryParser};
use crate::config::read_json_value;
use crate::forward::Forward;
use crate::hd::hd_views;
use crate::imgque::{ImgQue, ImgQueConfig};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The template the paper's demo and evaluation use with its Llama-2 checkpoints.
pub const DEFAULT_TEMPLATE: &str = "llama-2-vision";

/// A loaded query-fused checkpoint folder: model, both tokenizers, crop count and chat template.
pub struct ImgQuePipeline {
    /// The model.
    pub model: ImgQue,
    /// The LLM's tokenizer (`tokenizer.json` at the root).
    pub tokenizer: Tokenizer,
    /// The query decoder's CLIP tokenizer (`clip/tokenizer.json`).
    pub clip_tokenizer: Tokenizer,
    /// The HD crop budget per image (`num_crops` of `preprocessor_config.json`).
    pub num_crops: usize,
    /// The LLM row's chat template (config.json's `chat_template`, else [`DEFAULT_TEMPLATE`]).
    pub template: ChatTemplate,
    /// Question text left out of the query row (the "DropQuery" models).
    pub drop_query: bool,
    llm_pad_id: u32,
    clip_pad_token: Option<String>,
    /// The checkpoint folder.
    pub dir: PathBuf,
}

/// What one prompt becomes: the two token rows and the fused LLM input embeddings.
pub struct ImgQueInputs {
    /// The LLM row and the query row.
    pub record: ParsedRecord,
    /// `[1, T, H]`
    pub embeds: Tensor,
    /// Vision tokens the LLM received (QED slots).
    pub vision_tokens: usize,
    /// The query decoder's states that fill the QED slots, before the projection: `[n, vision_hidden]`.
    pub query_states: Tensor,
}

fn json_string(value: &serde_json::Value, key: &str) -> Option<String> {
    match value.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => {
            o.get("content").and_then(|c| c.as_str()).map(str::to_string)
        }
        _ => None,
    }
}

/// The checkpoint's chat template: tokenscale's optional `chat_template` field of config.json
/// (the published checkpoints have none and use [`DEFAULT_TEMPLATE`]).
fn template_name<'a>(config: &'a serde_json::Value, origin: &str) -> Result<&'a str> {
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_TEMPLATE),
        Some(serde_json::Value::String(name)) => Ok(name),
        Some(_) => bail!("{origin}: field `chat_template` must be a template name string"),
    }
}

impl ImgQuePipeline {
    /// Loads a query-fused checkpoint folder at `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_with_weights(dir, &Weights::from_dir(dir, dtype, device)?)
    }

    /// The folder's config, tokenizers and processor settings with parameters from `weights`
    /// (a model in training, or a listing of the parameters it needs).
    pub fn load_with_weights(dir: &Path, weights: &Weights) -> Result<Self> {
        let config_path = dir.join("config.json");
        let origin = config_path.display().to_string();
        let value = read_json_value(&config_path)?;
        let config = ImgQueConfig::from_value(&value, &origin)?;
        let model = ImgQue::load(weights, &config, &origin)?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let clip_tokenizer = Tokenizer::from_file(&dir.join("clip").join("tokenizer.json"))?;
        let processor_path = dir.join("preprocessor_config.json");
        let processor = read_json_value(&processor_path)?;
        let num_crops =
            processor.get("num_crops").and_then(|v| v.as_u64()).with_context(|| {
                format!("{}: missing field `num_crops`", processor_path.display())
            })? as usize;
        let llm_pad_id = config
            .llm
            .pad_token_id()
            .or_else(|| tokenizer.token_id("<pad>"))
            .or_else(|| tokenizer.token_id("<unk>"))
            .or_else(|| config.llm.eos_token_ids().first().copied())
            .with_context(|| {
                format!("{origin}: no pad, unk or eos token id for the LLM's QED slots")
            })?;
        let clip_config = read_json_value(&dir.join("clip").join("tokenizer_config.json")).ok();
        let clip_pad_token = clip_config.as_ref().and_then(|c| json_string(c, "pad_token"));
        Ok(Self {
            model,
            tokenizer,
            clip_tokenizer,
            num_crops,
            template: ChatTemplate::by_name(template_name(&value, &origin)?)?,
            drop_query: false,
            llm_pad_id,
            clip_pad_token,
            dir: dir.to_path_buf(),
        })
    }

    /// The (n_l, n_s) the checkpoint was trained with.
    pub fn trained_tokens(&self) -> (usize, usize) {
        (self.model.config.length_que_end, self.model.config.length_que_end_short)
    }

    /// The crop tokens of one image (independent of n: computed once per image in sweeps),
    /// `[K, 145, vision_hidden]`.
    pub fn encode_image(&self, ctx: &Forward, image: &RgbImage) -> Result<Tensor> {
        Ok(self.encode_views(ctx, image)?.1)
    }

    /// The views the vision tower consumes, `[K, 3, 336, 336]` (global view first, then the local
    /// crops row-major), and their crop tokens `[K, 145, vision_hidden]`.
    pub fn encode_views(&self, ctx: &Forward, image: &RgbImage) -> Result<(Tensor, Tensor)> {
        let crop = self.model.config.vision.image_size as u32;
        let views = hd_views(image, self.num_crops, crop, self.model.llm.device())?;
        let tokens = self.model.encode_crops(ctx, &views.pixel_values)?;
        Ok((views.pixel_values, tokens))
    }

    /// The chat-and-query parser at `n_l` / `n_s` vision tokens (errors unless n_l ≥ n_s ≥ 1).
    pub fn parser(&self, n_l: usize, n_s: usize) -> Result<ChatAndQueryParser> {
        self.parser_with(n_l, n_s, self.drop_query)
    }

    /// [`Self::parser`] with DropQuery chosen per call (a server's requests choose their own).
    pub fn parser_with(
        &self,
        n_l: usize,
        n_s: usize,
        drop_query: bool,
    ) -> Result<ChatAndQueryParser> {
        let query = QueryParser::from_clip_tokenizer(
            &self.clip_tokenizer,
            n_l,
            n_s,
            self.model.config.append_special_padding,
            self.clip_pad_token.as_deref(),
        )?
        .with_drop_query(drop_query);
        if let Some(needed) = query.required_vocab_size() {
            let have = self.model.decoder_vocab_size();
            if needed > have {
                let max = have + 1 - (needed + 1 - n_l);
                bail!("n_l = {n_l} needs {needed} query-decoder embeddings but the checkpoint has {have} (its placeholders allow n_l ≤ {max})");
            }
        }
        ChatAndQueryParser::new(self.template.clone(), self.llm_pad_id, query)
    }

    /// Token rows and fused embeddings for a conversation about the image whose crop tokens are
    /// given, with n_l tokens for the first question and n_s for each later one.
    pub fn embeddings(
        &self,
        ctx: &Forward,
        crop_tokens: &Tensor,
        conversation: &Conversation,
        n_l: usize,
        n_s: usize,
    ) -> Result<ImgQueInputs> {
        self.embeddings_with(ctx, crop_tokens, conversation, n_l, n_s, self.drop_query)
    }

    /// [`Self::embeddings`] with DropQuery chosen per call.
    pub fn embeddings_with(
        &self,
        ctx: &Forward,
        crop_tokens: &Tensor,
        conversation: &Conversation,
        n_l: usize,
        n_s: usize,
        drop_query: bool,
    ) -> Result<ImgQueInputs> {
        let record = self.parser_with(n_l, n_s, drop_query)?.parse(
            &self.tokenizer,
            &self.clip_tokenizer,
            conversation,
            true,
        )?;
        let query =
            record.query.as_ref().context("an image needs at least one non-empty question")?;
        let states =
            self.model.query_states(ctx, crop_tokens, &query.input_ids, &query.input_tps)?;
        let embeds = self.model.fuse(ctx, &record.llm.input_ids, &record.llm.input_tps, &states)?;
        let vision_tokens = states.dim(0)?;
        Ok(ImgQueInputs { record, embeds, vision_tokens, query_states: states })
    }

    /// The ids generation stops at: the LLM's eos ids plus the end-of-turn tokens the tokenizer
    /// has.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops = self.model.config.llm.eos_token_ids();
        for t in ["</s>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>"] {
            if let Some(id) = self.tokenizer.token_id(t) {
                stops.push(id);
            }
        }
        stops.sort();
        stops.dedup();
        stops
    }
}

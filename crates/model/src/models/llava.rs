//! LLaVA-1.5 in the llava-hf layout (`LlavaForConditionalGeneration`): CLIP vision tower,
//! linear–GELU–linear projector, LLaMA-family language model; `<image>` expanded to the
//! vision-token count; vicuna_v1 prompt.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::config::{parse, read_json_value};
use crate::forward::Forward;
use crate::llama::{Llama, LlamaConfig};
use crate::nn::{self, Activation, Linear};
use crate::preprocess::{expand_to_square, mean_color, ClipImageProcessorConfig};
use crate::reducers::{self, ImageSpan, ImageTokens, LayerAttention, Reducer, SpanPrune, Stage};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The vicuna_v1 system prompt LLaVA-1.5 was trained with.
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

/// The vicuna_v1 conversation LLaVA-1.5 was trained with, one user turn with the image first.
pub fn vicuna_v1_prompt(question: &str) -> String {
    format!("{VICUNA_V1_SYSTEM} USER: <image>\n{question} ASSISTANT:")
}

/// Token ids of `prompt` (with special tokens, so BOS first), its one image token `image_id`
/// repeated `vision_tokens` times, as transformers' `LlavaProcessor` expands `<image>`.
pub fn llava_input_ids(
    tokenizer: &Tokenizer,
    prompt: &str,
    image_id: u32,
    vision_tokens: usize,
) -> Result<Vec<u32>> {
    let ids = tokenizer.encode(prompt, true)?;
    let count = ids.iter().filter(|&&t| t == image_id).count();
    if count != 1 {
        bail!("the prompt must contain exactly one <image> token (id {image_id}); found {count}");
    }
    let mut out = Vec::with_capacity(ids.len() + vision_tokens);
    for t in ids {
        if t == image_id {
            out.extend(std::iter::repeat_n(image_id, vision_tokens));
        } else {
            out.push(t);
        }
    }
    Ok(out)
}

fn default_projector_act() -> String {
    "gelu".into()
}
fn default_feature_layer() -> serde_json::Value {
    serde_json::Value::from(-2)
}
fn default_strategy() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct RawLlavaConfig {
    #[serde(default)]
    vision_config: serde_json::Value,
    #[serde(default)]
    text_config: serde_json::Value,
    #[serde(alias = "image_token_id")]
    image_token_index: Option<u32>,
    #[serde(default = "default_projector_act")]
    projector_hidden_act: String,
    #[serde(default = "default_feature_layer")]
    vision_feature_layer: serde_json::Value,
    #[serde(default = "default_strategy")]
    vision_feature_select_strategy: String,
    #[serde(default = "yes")]
    multimodal_projector_bias: bool,
}

/// A llava-hf `config.json`: CLIP vision tower, LLaMA-family decoder and projector settings.
#[derive(Debug, Clone)]
pub struct LlavaConfig {
    /// The CLIP vision tower's config (`vision_config`).
    pub vision: ClipVisionConfig,
    /// The language model's config (`text_config`, class defaults filled in).
    pub text: LlamaConfig,
    /// Id of the `<image>` token that vision features replace (`image_token_id`; default 32000).
    pub image_token_index: u32,
    /// Activation between the two projector layers (`projector_hidden_act`, default GELU).
    pub projector_act: Activation,
    /// CLIP hidden-state index the features come from; negative counts from the end (default −2).
    pub vision_feature_layer: i64,
    /// "default" drops the CLS token, "full" keeps it.
    pub keep_cls: bool,
    /// Whether the projector's linear layers carry biases (`multimodal_projector_bias`).
    pub projector_bias: bool,
}

impl LlavaConfig {
    /// Parses a llava-hf `config.json` value; errors name `origin` and the offending field.
    pub fn from_value(value: &serde_json::Value, origin: &str) -> Result<Self> {
        let raw: RawLlavaConfig = parse(value, origin, "")?;
        let vision: ClipVisionConfig = parse(&raw.vision_config, origin, "vision_config")?;
        let text = LlamaConfig::from_value(&raw.text_config, origin, "text_config")?;
        let image_token_index = raw.image_token_index.unwrap_or(32000);
        let vision_feature_layer = raw.vision_feature_layer.as_i64().with_context(|| {
            format!(
                "{origin}: field `vision_feature_layer`: only a single layer index is supported"
            )
        })?;
        let keep_cls = match raw.vision_feature_select_strategy.as_str() {
            "default" => false,
            "full" => true,
            other => bail!("{origin}: field `vision_feature_select_strategy`: unknown value `{other}` (expected default or full)"),
        };
        Ok(Self {
            vision,
            text,
            image_token_index,
            projector_act: Activation::parse(&raw.projector_hidden_act, "projector_hidden_act")?,
            vision_feature_layer,
            keep_cls,
            projector_bias: raw.multimodal_projector_bias,
        })
    }

    /// Vision tokens per image before any reduction.
    pub fn image_tokens(&self) -> usize {
        self.vision.num_patches() + usize::from(self.keep_cls)
    }
}

/// A loaded LLaVA model: CLIP vision tower, two-layer MLP projector and language model.
pub struct Llava {
    /// The config the model was loaded from.
    pub config: LlavaConfig,
    /// The CLIP vision tower, truncated after the selected feature layer.
    pub vision: ClipVisionTransformer,
    proj1: Linear,
    proj2: Linear,
    /// The language model the projected vision tokens are fed to.
    pub llm: Llama,
    /// Index into the (truncated) vision tower's hidden states.
    feature_index: usize,
}

impl Llava {
    /// Loads from a llava-hf checkpoint, with or without transformers ≥ 4.52's `model.` nesting.
    /// Fails on a missing or mis-shaped tensor or an out-of-range `vision_feature_layer`.
    pub fn load(w: &Weights, config: &LlavaConfig, origin: &str) -> Result<Self> {
        // transformers ≥ 4.52 nests everything under `model.`; older llava-hf checkpoints do not.
        let (root, lm_model, lm_head) = if w.contains_prefix("model.vision_tower.") {
            (w.pp("model"), w.pp("model.language_model"), w.clone())
        } else {
            (w.clone(), w.pp("language_model.model"), w.pp("language_model"))
        };
        let layers = config.vision.num_hidden_layers as i64;
        let feature_index = if config.vision_feature_layer < 0 {
            layers + 1 + config.vision_feature_layer
        } else {
            config.vision_feature_layer
        };
        if feature_index < 0 || feature_index > layers {
            bail!(
                "{origin}: field `vision_feature_layer` = {} is out of range for {layers} layers",
                config.vision_feature_layer
            );
        }
        // The hub's checkpoints nest the tower under `vision_model.`; a LLaVA that transformers 5
        // builds from its config and saves writes it flat (`vision_tower.embeddings.*`).
        let tower = if root.contains_prefix("vision_tower.vision_model.") {
            root.pp("vision_tower.vision_model")
        } else {
            root.pp("vision_tower")
        };
        let vision =
            ClipVisionTransformer::load(&tower, &config.vision, Some(feature_index as usize))?;
        let pw = root.pp("multi_modal_projector");
        let (vh, th) = (config.vision.hidden_size, config.text.hidden_size);
        let proj1 = nn::linear(&pw, "linear_1", vh, th, config.projector_bias)?;
        let proj2 = nn::linear(&pw, "linear_2", th, th, config.projector_bias)?;
        let llm = Llama::load_parts(&lm_model, &lm_head, &config.text, origin)?;
        Ok(Self {
            config: config.clone(),
            vision,
            proj1,
            proj2,
            llm,
            feature_index: feature_index as usize,
        })
    }

    /// The selected CLIP layer (CLS dropped per the strategy), `[B, tokens, vision_hidden]`.
    pub fn vision_features(&self, ctx: &Forward, pixel_values: &Tensor) -> Result<Tensor> {
        let out = self.vision.forward(ctx, pixel_values)?;
        let feats = out.hidden_states[self.feature_index].clone();
        if self.config.keep_cls {
            Ok(feats)
        } else {
            let n = feats.dim(1)?;
            Ok(feats.narrow(1, 1, n - 1)?)
        }
    }

    /// The vision tokens of one image (`pixel_values` `[1, C, H, W]`) brought to `n` by
    /// `reducer`, as CLIP features `[1, n, vision_hidden]` ready for [`Self::project`]. `pool`
    /// pools before the projector; `visionzip` works at the selected layer (and, as VisionZip
    /// does, always keeps CLS among the dominant tokens); `fastv` reduces inside the LLM, so here
    /// it returns every token. `n` = [`LlavaConfig::image_tokens`] is the identity.
    pub fn reduced_vision_features(
        &self,
        ctx: &Forward,
        pixel_values: &Tensor,
        n: usize,
        reducer: Reducer,
    ) -> Result<Tensor> {
        self.reduce_features(&self.encode_image(ctx, pixel_values, reducer)?, n, reducer)
    }

    /// The CLIP work for one image that every budget shares (sweeps compute it once per image).
    pub fn encode_image(
        &self,
        ctx: &Forward,
        pixel_values: &Tensor,
        reducer: Reducer,
    ) -> Result<VisionCache> {
        let b = pixel_values.dim(0)?;
        if b != 1 {
            bail!("token reduction works on one image at a time (got a batch of {b})");
        }
        if !reducers::plugin(reducer).needs_attention() {
            return Ok(VisionCache {
                features: self.vision_features(ctx, pixel_values)?,
                attention: None,
            });
        }
        if self.feature_index == 0 {
            bail!("{} needs an encoder layer's attention, but vision_feature_layer selects the embeddings", reducer.name());
        }
        let (out, attn) =
            self.vision.forward_with_attention(ctx, pixel_values, Some(self.feature_index - 1))?;
        let attn = attn
            .with_context(|| format!("{}: no attention from the selected layer", reducer.name()))?;
        let hidden = out.hidden_states[self.feature_index].squeeze(0)?;
        let t = hidden.dim(0)?;
        let cls: Vec<f32> = attn
            .probs
            .squeeze(0)?
            .narrow(1, 0, 1)?
            .squeeze(1)?
            .narrow(1, 1, t - 1)?
            .to_dtype(DType::F32)?
            .sum(0)?
            .to_vec1()?;
        let features = if self.config.keep_cls {
            hidden.unsqueeze(0)?
        } else {
            hidden.narrow(0, 1, t - 1)?.unsqueeze(0)?
        };
        Ok(VisionCache {
            features,
            attention: Some(LayerAttention {
                hidden,
                keys_mean: attn.keys_mean.squeeze(0)?,
                cls_attention: cls,
            }),
        })
    }

    /// Brings cached features to `n` tokens with `reducer`: `[1, n, vision_hidden]` (all tokens for fastv).
    pub fn reduce_features(
        &self,
        cache: &VisionCache,
        n: usize,
        reducer: Reducer,
    ) -> Result<Tensor> {
        let available = self.config.image_tokens();
        reducers::check_budget(n, available)?;
        let plugin = reducers::plugin(reducer);
        if n == available || plugin.stage() == Stage::InLlm {
            return Ok(cache.features.clone());
        }
        let features = cache.features.squeeze(0)?;
        let g = self.config.vision.grid();
        let grid = if self.config.keep_cls { None } else { Some((g, g)) };
        let tokens = ImageTokens { features: &features, grid, attention: cache.attention.as_ref() };
        Ok(plugin.reduce(&tokens, n)?.unsqueeze(0)?)
    }

    /// Projects vision features into the LLM's embedding space.
    pub fn project(&self, ctx: &Forward, features: &Tensor) -> Result<Tensor> {
        let h = self.config.projector_act.apply(ctx, &self.proj1.forward(ctx, features)?)?;
        self.proj2.forward(ctx, &h)
    }

    /// LLM input embeddings for `ids` with the image-token positions replaced, in order, by the
    /// rows of `image_embeds` (`[n, H]`).
    pub fn merge_embeddings(&self, ids: &[u32], image_embeds: &Tensor) -> Result<Tensor> {
        let device = self.llm.device();
        let text = self.llm.embed(&Tensor::new(ids, device)?.unsqueeze(0)?)?.squeeze(0)?;
        let slots: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == self.config.image_token_index)
            .map(|(i, _)| i)
            .collect();
        let n = image_embeds.dim(0)?;
        if slots.len() != n {
            bail!("the prompt has {} image tokens but the image gives {n} embeddings", slots.len());
        }
        if n == 0 {
            return Ok(text.unsqueeze(0)?);
        }
        let mut pieces = Vec::new();
        let mut pos = 0;
        let mut row = 0;
        // Image tokens come in contiguous runs; copy text spans and image spans alternately.
        while pos < ids.len() {
            let start = pos;
            let is_image = ids[pos] == self.config.image_token_index;
            while pos < ids.len() && (ids[pos] == self.config.image_token_index) == is_image {
                pos += 1;
            }
            let len = pos - start;
            if is_image {
                pieces.push(image_embeds.narrow(0, row, len)?);
                row += len;
            } else {
                pieces.push(text.narrow(0, start, len)?);
            }
        }
        Ok(Tensor::cat(&pieces, 0)?.unsqueeze(0)?)
    }
}

/// A llava-hf checkpoint folder: model, tokenizer and image processor together.
pub struct LlavaPipeline {
    /// The model.
    pub model: Llava,
    /// The LLM's tokenizer (`tokenizer.json`).
    pub tokenizer: Tokenizer,
    /// The image processor (`preprocessor_config.json`, or CLIP-336's defaults when absent).
    pub processor: ClipImageProcessorConfig,
    /// The checkpoint folder.
    pub dir: PathBuf,
}

/// CLIP features of one image at the selected layer, plus what VisionZip selects with.
pub struct VisionCache {
    /// `[1, tokens, vision_hidden]` (CLS dropped per the strategy).
    pub features: Tensor,
    /// The selected layer's attention, for the reducers that read it (VisionZip).
    pub attention: Option<LayerAttention>,
}

/// What the model is fed for one image and prompt.
pub struct LlavaInputs {
    /// Prompt token ids with `<image>` expanded to every vision token.
    pub input_ids: Vec<u32>,
    /// `[1, 3, H, W]`
    pub pixel_values: Tensor,
}

/// What the LLM is fed at a vision-token budget ([`LlavaPipeline::prepare_budget`]).
pub struct BudgetInputs {
    /// Prompt token ids with `<image>` expanded to the tokens the prompt holds.
    pub input_ids: Vec<u32>,
    /// `[1, 3, H, W]`
    pub pixel_values: Tensor,
    /// `[1, T, H]`
    pub embeds: Tensor,
    /// The in-LLM reducer's (FastV's) pruning for the prefill (use
    /// [`crate::generation::generate_pruned`] or [`Llama::forward_embeds_pruned`]); `None` for
    /// the other reducers.
    pub prune: Option<SpanPrune>,
    /// The vision-token budget these inputs were made for.
    pub vision_tokens: usize,
}

impl LlavaPipeline {
    /// Loads a llava-hf checkpoint folder at `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let weights = Weights::from_dir(dir, dtype, device)?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let processor_path = dir.join("preprocessor_config.json");
        let processor = if processor_path.is_file() {
            ClipImageProcessorConfig::from_file(&processor_path)?
        } else {
            ClipImageProcessorConfig::clip_336()
        };
        let config = read_json_value(&config_path)?;
        Self::from_parts(
            &config,
            &config_path.display().to_string(),
            &weights,
            tokenizer,
            processor,
            dir,
        )
    }

    /// Builds the pipeline from already-read parts (used for checkpoints embedded in the binary).
    pub fn from_parts(
        config: &serde_json::Value,
        origin: &str,
        weights: &Weights,
        tokenizer: Tokenizer,
        processor: ClipImageProcessorConfig,
        dir: &Path,
    ) -> Result<Self> {
        let config = LlavaConfig::from_value(config, origin)?;
        let model = Llava::load(weights, &config, origin)?;
        Ok(Self { model, tokenizer, processor, dir: dir.to_path_buf() })
    }

    /// Pad-to-square with the mean colour (LLaVA-1.5), then the CLIP processor.
    pub fn pixel_values(&self, image: &image::RgbImage) -> Result<Tensor> {
        let square = expand_to_square(image, mean_color(&self.processor.image_mean));
        Ok(self.processor.preprocess(&square, self.model.llm.device())?.unsqueeze(0)?)
    }

    /// Token ids of `prompt` (which must contain one `<image>`) with that token repeated
    /// `vision_tokens` times.
    pub fn input_ids(&self, prompt: &str, vision_tokens: usize) -> Result<Vec<u32>> {
        llava_input_ids(&self.tokenizer, prompt, self.model.config.image_token_index, vision_tokens)
    }

    /// Pixel values and token ids for `image` and `prompt` (one `<image>`), no reduction.
    pub fn prepare(&self, image: &image::RgbImage, prompt: &str) -> Result<LlavaInputs> {
        let pixel_values = self.pixel_values(image)?;
        let input_ids = self.input_ids(prompt, self.model.config.image_tokens())?;
        Ok(LlavaInputs { input_ids, pixel_values })
    }

    /// Prompt embeddings for the full (unreduced) image.
    pub fn embeddings(&self, ctx: &Forward, inputs: &LlavaInputs) -> Result<Tensor> {
        let features = self.model.vision_features(ctx, &inputs.pixel_values)?;
        let projected = self.model.project(ctx, &features)?.squeeze(0)?;
        self.model.merge_embeddings(&inputs.input_ids, &projected)
    }

    /// Inputs at a vision-token budget: `n` tokens made by `reducer` (see [`crate::reducers`]).
    /// For pool/uniform/visionzip the prompt holds `n` image tokens; for fastv it holds all of
    /// them and `prune` says what the LLM's prefill drops (`None` when `n` keeps everything).
    pub fn prepare_budget(
        &self,
        ctx: &Forward,
        image: &image::RgbImage,
        prompt: &str,
        n: usize,
        reducer: Reducer,
    ) -> Result<BudgetInputs> {
        reducers::check_budget(n, self.model.config.image_tokens())?;
        let pixel_values = self.pixel_values(image)?;
        let cache = self.model.encode_image(ctx, &pixel_values, reducer)?;
        self.budget_inputs(ctx, &cache, pixel_values, prompt, n, reducer)
    }

    /// [`Self::prepare_budget`] from CLIP work already done for this image.
    pub fn budget_inputs(
        &self,
        ctx: &Forward,
        cache: &VisionCache,
        pixel_values: Tensor,
        prompt: &str,
        n: usize,
        reducer: Reducer,
    ) -> Result<BudgetInputs> {
        let available = self.model.config.image_tokens();
        let features = self.model.reduce_features(cache, n, reducer)?;
        let projected = self.model.project(ctx, &features)?.squeeze(0)?;
        let image_id = self.model.config.image_token_index;
        let plugin = reducers::plugin(reducer);
        let (input_ids, prune) = match plugin.stage() {
            Stage::InLlm => {
                let ids = self.input_ids(prompt, available)?;
                let start = ids.iter().position(|&t| t == image_id).unwrap_or(0);
                let span = ImageSpan { start, len: available, prompt_len: ids.len() };
                let prune = plugin.prune(span, n, self.model.llm.num_layers())?;
                (ids, (n < available).then_some(prune))
            }
            Stage::BeforeProjector => (self.input_ids(prompt, n)?, None),
        };
        let embeds = self.model.merge_embeddings(&input_ids, &projected)?;
        Ok(BudgetInputs { input_ids, pixel_values, embeds, prune, vision_tokens: n })
    }

    /// The ids generation stops at: the config's eos ids plus `</s>` if the tokenizer has it.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops = self.model.config.text.eos_token_ids();
        if let Some(id) = self.tokenizer.token_id("</s>") {
            stops.push(id);
        }
        stops.sort();
        stops.dedup();
        stops
    }
}

//! Recognising a checkpoint folder's architecture from its `config.json`, and loaders by kind;
//! the submodules read what a checkpoint holds (config, weights, dtype policy, the Hub cache) and
//! rewrite training checkpoints (ckpt).

pub mod ckpt;
pub mod config;
pub mod dtype;
pub mod hub;
pub mod weights;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device};

use crate::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::config::{parse, read_json_value};
use crate::llama::{Llama, LlamaConfig};
use crate::weights::Weights;

/// A checkpoint kind, from `config.json`'s `model_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Architecture {
    /// `CLIPVisionModel`
    ClipVision,
    /// `CLIPModel` (the vision half is used)
    Clip,
    /// `LlamaForCausalLM`, `Qwen2ForCausalLM`, `MistralForCausalLM`
    CausalLm(String),
    /// `LlavaForConditionalGeneration`
    Llava,
    /// The paper's query-fused model (`ImageMultiQueryCLIPLLMModel`, HD)
    ImgQue,
}

/// The `model_type` values [`Architecture::detect`] accepts, for error messages.
pub const SUPPORTED: &str =
    "clip_vision_model, clip, llama, mistral, qwen2, llava, modeling_query_adapt_clip_llm";

impl Architecture {
    /// Reads `dir/config.json` and classifies it by `model_type`; returns the kind and the parsed
    /// config. Fails when the folder or the config is missing or the type is unsupported.
    pub fn detect(dir: &Path) -> Result<(Self, serde_json::Value)> {
        let path = dir.join("config.json");
        if !dir.is_dir() {
            bail!("{}: model folder not found", dir.display());
        }
        let value = read_json_value(&path)?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let arch = match model_type {
            "clip_vision_model" => Self::ClipVision,
            "clip" => Self::Clip,
            "llava" => Self::Llava,
            crate::imgque::MODEL_TYPE => Self::ImgQue,
            t if crate::llama::SUPPORTED_MODEL_TYPES.contains(&t) => Self::CausalLm(t.to_string()),
            "" => bail!("{}: missing field `model_type` (supported: {SUPPORTED})", path.display()),
            other => bail!(
                "{}: unsupported model_type `{other}` (supported: {SUPPORTED})",
                path.display()
            ),
        };
        Ok((arch, value))
    }

    /// The HF class name of the kind, for messages.
    pub fn name(&self) -> String {
        match self {
            Self::ClipVision => "CLIPVisionModel".into(),
            Self::Clip => "CLIPModel".into(),
            Self::CausalLm(t) => format!("{t} causal LM"),
            Self::Llava => "LlavaForConditionalGeneration".into(),
            Self::ImgQue => "ImageMultiQueryCLIPLLMModel (HD)".into(),
        }
    }
}

/// A loading error that does not name the checkpoint folder yet gets its `config.json` in front
/// (what a user must fix is in that folder).
pub fn naming_folder<T>(dir: &Path, result: Result<T>) -> Result<T> {
    result.map_err(|e| {
        if format!("{e:#}").contains(&dir.display().to_string()) {
            e
        } else {
            e.context(dir.join("config.json").display().to_string())
        }
    })
}

/// The vision tower of a `CLIPVisionModel` or `CLIPModel` folder.
pub fn load_clip_vision(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<ClipVisionTransformer> {
    naming_folder(dir, load_clip_vision_unnamed(dir, dtype, device))
}

fn load_clip_vision_unnamed(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<ClipVisionTransformer> {
    let (arch, value) = Architecture::detect(dir)?;
    let origin = dir.join("config.json").display().to_string();
    let config: ClipVisionConfig = match arch {
        Architecture::ClipVision => parse(&value, &origin, "")?,
        Architecture::Clip => parse(
            value.get("vision_config").unwrap_or(&serde_json::json!({})),
            &origin,
            "vision_config",
        )?,
        other => bail!("{origin}: expected a CLIP checkpoint, found {}", other.name()),
    };
    let weights = Weights::from_dir(dir, dtype, device)?;
    // transformers v4 writes CLIPVisionModel keys under `vision_model.`; v5 writes them bare.
    let root =
        if weights.contains_prefix("vision_model.") { weights.pp("vision_model") } else { weights };
    ClipVisionTransformer::load(&root, &config, None)
}

/// A causal LM folder (`*ForCausalLM`).
pub fn load_causal_lm(dir: &Path, dtype: DType, device: &Device) -> Result<Llama> {
    naming_folder(dir, load_causal_lm_unnamed(dir, dtype, device))
}

fn load_causal_lm_unnamed(dir: &Path, dtype: DType, device: &Device) -> Result<Llama> {
    let (arch, value) = Architecture::detect(dir)?;
    let origin = dir.join("config.json").display().to_string();
    if !matches!(arch, Architecture::CausalLm(_)) {
        bail!("{origin}: expected a causal LM checkpoint, found {}", arch.name());
    }
    let config = LlamaConfig::from_value(&value, &origin, "")?;
    let weights = Weights::from_dir(dir, dtype, device)?;
    Llama::load(&weights, &config, &origin)
}

/// Per-component parameter counts and the storage dtypes, grouped by key prefix.
pub struct Inventory {
    /// Number of tensors.
    pub tensors: usize,
    /// Number of parameters (elements) across all tensors.
    pub parameters: usize,
    /// Parameters per component: the key's first segment, or first two under `model.` and
    /// `imgque_backbone.`.
    pub components: BTreeMap<String, usize>,
    /// Parameters per storage dtype name (`F32`, `BF16`, …).
    pub dtypes: BTreeMap<String, usize>,
}

/// Counts the tensors and parameters of `weights` per component and per stored dtype.
pub fn inventory(weights: &Weights) -> Result<Inventory> {
    let mut inv = Inventory {
        tensors: 0,
        parameters: 0,
        components: BTreeMap::new(),
        dtypes: BTreeMap::new(),
    };
    for (key, dtype, count) in weights.summary()? {
        let parts: Vec<&str> = key.split('.').collect();
        // `model.` (transformers ≥ 4.52) and the query-fused model's `imgque_backbone.` hold
        // several components each: name them by two segments.
        let nested = matches!(parts[0], "model" | "imgque_backbone") && parts.len() > 2;
        let component =
            if nested { format!("{}.{}", parts[0], parts[1]) } else { parts[0].to_string() };
        inv.tensors += 1;
        inv.parameters += count;
        *inv.components.entry(component).or_default() += count;
        *inv.dtypes.entry(dtype).or_default() += count;
    }
    Ok(inv)
}

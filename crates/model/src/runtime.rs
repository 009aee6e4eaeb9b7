//! One entry point over every supported checkpoint kind that generates text: load a folder,
//! turn (image, prompt) into the exact model inputs, and hand out the LLM for decoding.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::checkpoint::{load_causal_lm, Architecture};
use crate::llama::Llama;
use crate::llava::{vicuna_v1_prompt, LlavaPipeline};
use crate::tokenizer::Tokenizer;

pub enum Runtime {
    Llava(LlavaPipeline),
    Lm { llm: Llama, tokenizer: Tokenizer },
}

/// The inputs fed to the LLM for one prompt.
pub struct Prepared {
    pub input_ids: Vec<u32>,
    pub pixel_values: Option<Tensor>,
    /// `[1, T, H]`
    pub embeds: Tensor,
    /// The prompt text after templating.
    pub prompt: String,
    pub vision_tokens: usize,
}

impl Runtime {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let (arch, _) = Architecture::detect(dir)?;
        match arch {
            Architecture::Llava => Ok(Self::Llava(LlavaPipeline::load(dir, dtype, device)?)),
            Architecture::CausalLm(_) => {
                let llm = load_causal_lm(dir, dtype, device)?;
                let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
                Ok(Self::Lm { llm, tokenizer })
            }
            other => bail!("{}: {} checkpoints do not generate text (use a LLaVA or causal LM folder)", dir.display(), other.name()),
        }
    }

    pub fn llm(&self) -> &Llama {
        match self {
            Self::Llava(p) => &p.model.llm,
            Self::Lm { llm, .. } => llm,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        match self {
            Self::Llava(p) => &p.tokenizer,
            Self::Lm { tokenizer, .. } => tokenizer,
        }
    }

    pub fn is_vlm(&self) -> bool {
        matches!(self, Self::Llava(_))
    }

    pub fn stop_tokens(&self) -> Vec<u32> {
        match self {
            Self::Llava(p) => p.stop_tokens(),
            Self::Lm { llm, .. } => llm.config.eos_token_ids(),
        }
    }

    /// Templating: LLaVA wraps `prompt` in the vicuna_v1 conversation unless `raw`, in which case
    /// the prompt must carry its own `<image>`. Causal LMs take the prompt as it is.
    pub fn prepare(&self, image: Option<&RgbImage>, prompt: &str, raw: bool) -> Result<Prepared> {
        match self {
            Self::Llava(p) => {
                let image = image.ok_or_else(|| anyhow::anyhow!("this model needs an image (--image PATH)"))?;
                let text = if raw { prompt.to_string() } else { vicuna_v1_prompt(prompt) };
                let inputs = p.prepare(image, &text)?;
                let embeds = p.embeddings(&inputs)?;
                Ok(Prepared {
                    input_ids: inputs.input_ids,
                    pixel_values: Some(inputs.pixel_values),
                    embeds,
                    prompt: text,
                    vision_tokens: p.model.config.image_tokens(),
                })
            }
            Self::Lm { llm, tokenizer } => {
                if image.is_some() {
                    bail!("this is a text-only model: drop --image");
                }
                let input_ids = tokenizer.encode(prompt, true)?;
                if input_ids.is_empty() {
                    bail!("the prompt encodes to no tokens");
                }
                let ids = Tensor::new(input_ids.as_slice(), llm.device())?.unsqueeze(0)?;
                let embeds = llm.embed(&ids)?;
                Ok(Prepared { input_ids, pixel_values: None, embeds, prompt: prompt.to_string(), vision_tokens: 0 })
            }
        }
    }
}

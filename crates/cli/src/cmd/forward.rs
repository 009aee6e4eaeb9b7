//! `tokenscale forward`: one forward pass, written as safetensors for parity checks: the exact
//! `input_ids` (i64) and `pixel_values` fed to the model, `logits` of every position and
//! `hidden_states.0` (embeddings) … `hidden_states.L` (after the final norm), all floats in f32.
//! The query-fused model adds `crop_tokens`, `query_states` and `fused_embeds` (docs/running-models.md).

use std::collections::HashMap;
use std::path::PathBuf;
use tokenscale_model::{Forward, ForwardOptions};

use anyhow::{Context, Result};
use tokenscale_fsio::write_atomic_with;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::{DType, Device, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// Model: checkpoint folder, or a Hugging Face id (ORG/NAME[@REVISION]) in the local cache.
    #[arg(long, value_parser = super::model_folder)]
    pub model: PathBuf,
    /// Image file (PNG or JPEG); required by vision-language models.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The prompt, as `run` takes it.
    #[arg(long, required_unless_present = "record")]
    pub prompt: Option<String>,
    /// A conversation record file (JSON) instead of --prompt; --help lists its shapes.
    #[arg(long = "chat", value_name = "FILE", conflicts_with_all = ["prompt", "raw_prompt"], long_help = super::RECORD_HELP)]
    pub record: Option<PathBuf>,
    /// Use --prompt as the exact model input (it must contain <image> for LLaVA).
    #[arg(long)]
    pub raw_prompt: bool,
    #[command(flatten)]
    pub budget: super::BudgetArgs,
    #[command(flatten)]
    pub chat: super::ChatArgs,
    /// Output .safetensors file (written whole or not at all); its floats are f32 whatever the
    /// compute dtype.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let mut runtime = args.dtype.load(&args.model, false)?;
    args.chat.apply(&mut runtime)?;
    let (prepared, trace) = match &args.record {
        Some(path) => {
            let (prepared, _, trace) = super::prepare_record_traced(
                &runtime,
                path,
                args.image.as_deref(),
                &args.budget.to_budget(),
            )?;
            (prepared, trace)
        }
        None => {
            let image = args.image.as_deref().map(load_image).transpose()?;
            runtime.prepare_traced(
                &Forward::INFERENCE,
                image.as_ref(),
                args.prompt.as_deref().unwrap_or_default(),
                args.raw_prompt,
                &args.budget.to_budget(),
            )?
        }
    };
    let out = runtime.forward(
        &Forward::INFERENCE,
        &prepared,
        ForwardOptions::ALL.with_hidden_states(),
    )?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let ids: Vec<i64> = prepared.input_ids.iter().map(|&t| t as i64).collect();
    tensors.insert("input_ids".into(), Tensor::new(ids, &Device::Cpu)?);
    if let Some(px) = &prepared.pixel_values {
        tensors.insert("pixel_values".into(), px.to_dtype(DType::F32)?);
    }
    tensors.insert("logits".into(), out.logits.squeeze(0)?.to_dtype(DType::F32)?);
    if let Some(trace) = &trace {
        tensors.insert("crop_tokens".into(), trace.crop_tokens.to_dtype(DType::F32)?);
        tensors.insert("query_states".into(), trace.query_states.to_dtype(DType::F32)?);
        tensors.insert("fused_embeds".into(), prepared.embeds.squeeze(0)?.to_dtype(DType::F32)?);
    }
    for (i, h) in out.hidden_states.iter().enumerate() {
        tensors.insert(format!("hidden_states.{i}"), h.squeeze(0)?.to_dtype(DType::F32)?);
    }
    write_atomic_with(&args.out, |tmp| {
        tokenscale_model::candle_core::safetensors::save(&tensors, tmp)
            .with_context(|| format!("{}: cannot write", args.out.display()))
    })?;
    eprintln!(
        "wrote {} ({} tokens, {} vision tokens, {} hidden states)",
        args.out.display(),
        prepared.input_ids.len(),
        prepared.vision_tokens,
        out.hidden_states.len()
    );
    Ok(())
}

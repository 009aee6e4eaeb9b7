//! `tokenscale serve`: flags to [`tokenscale_serve::ServeOptions`], then the server.

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_serve::{Limits, ServeOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Model: checkpoint folder or a Hugging Face id in the local cache (default: the embedded
    /// tiny query-fused model).
    #[arg(long, value_parser = super::model_folder)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
    #[command(flatten)]
    pub chat: super::ChatArgs,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000, help = "Port to listen on")]
    pub port: u16,
    /// Most sequences decoding together (continuous batching).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Most requests waiting for a decode slot; past --max-batch + --queue requests get 429.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
    /// Prompt positions prefilled between two decode steps (chunked prefill).
    #[arg(long, default_value_t = 64)]
    pub prefill_chunk: usize,
    /// Require `Authorization: Bearer KEY` on /v1/ endpoints.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Allow images given as local paths inside this folder (otherwise only data: URLs).
    #[arg(long, value_name = "DIR")]
    pub allow_files: Option<PathBuf>,
    /// Name of the model in /v1/models and answers (default: the folder's name).
    #[arg(long)]
    pub served_name: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Largest image, in bytes (encoded).
    #[arg(long, default_value_t = Limits::default().max_image_bytes)]
    pub max_image_bytes: usize,
    /// Largest image, in pixels (width × height).
    #[arg(long, default_value_t = Limits::default().max_image_pixels)]
    pub max_image_pixels: u64,
    /// Longest prompt, in tokens (vision tokens included).
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens)]
    pub max_prompt_tokens: usize,
    /// Largest max_tokens a request may ask for.
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    pub max_tokens_limit: usize,
}

pub fn run(args: Args) -> Result<()> {
    let dir = match &args.model {
        Some(dir) => dir.clone(),
        None => crate::embedded::default_model_dir()?,
    };
    let name = match (&args.served_name, &args.model) {
        (Some(name), _) => name.clone(),
        (None, Some(dir)) => dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        (None, None) => "tiny-imgque".into(),
    };
    let defaults = Limits::default();
    let options = ServeOptions {
        host: args.host,
        port: args.port,
        model_name: name,
        max_batch: args.max_batch,
        queue: args.queue,
        prefill_chunk: args.prefill_chunk,
        api_key: args.api_key,
        allow_files: args.allow_files,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_image_bytes: args.max_image_bytes,
            max_image_pixels: args.max_image_pixels,
            max_prompt_tokens: args.max_prompt_tokens,
            max_tokens: args.max_tokens_limit,
            default_max_tokens: defaults.default_max_tokens.min(args.max_tokens_limit),
        },
    };
    // Options are checked before the (possibly long) model load.
    options.validate()?;
    let mut runtime = args.dtype.load(&dir, true)?;
    args.chat.apply(&mut runtime)?;
    tokenscale_serve::serve(runtime, options)
}

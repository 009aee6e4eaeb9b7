//! What a server is started with: where it listens, how many requests it takes, and the limits
//! every request must stay within.

use std::path::PathBuf;

/// Everything a server is started with (see the module docs).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address or name to listen on (e.g. `127.0.0.1`).
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// The model's name in `/v1/models` and in answers.
    pub model_name: String,
    /// Most sequences decoding together in one batched step.
    pub max_batch: usize,
    /// Most requests waiting for a decode slot; beyond `max_batch + queue` requests answer 429.
    pub queue: usize,
    /// Prompt positions prefilled between two decode steps (chunked prefill).
    pub prefill_chunk: usize,
    /// Requests must send `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Images may be named by local path only inside this folder.
    pub allow_files: Option<PathBuf>,
    /// Per-request limits.
    pub limits: Limits,
}

/// Per-request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes (larger bodies answer 413).
    pub max_body_bytes: usize,
    /// Decoded bytes of one image (before decompression).
    pub max_image_bytes: usize,
    /// Width × height of one image.
    pub max_image_pixels: u64,
    /// Prompt tokens after templating, vision tokens included.
    pub max_prompt_tokens: usize,
    /// The largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_image_bytes: 16 << 20,
            max_image_pixels: 4096 * 4096,
            max_prompt_tokens: 8192,
            max_tokens: 4096,
            default_max_tokens: 256,
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            model_name: "tokenscale".into(),
            max_batch: 8,
            queue: 32,
            prefill_chunk: 64,
            api_key: None,
            allow_files: None,
            limits: Limits::default(),
        }
    }
}

impl ServeOptions {
    /// Checks the options before the server starts (batch and chunk ≥ 1, consistent token
    /// limits, an existing image folder); the error names the bad option.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_batch == 0 {
            anyhow::bail!("serve options: the batch size must be at least 1");
        }
        if self.prefill_chunk == 0 {
            anyhow::bail!("serve options: the prefill chunk must be at least 1 position");
        }
        if self.limits.max_tokens == 0
            || self.limits.default_max_tokens == 0
            || self.limits.default_max_tokens > self.limits.max_tokens
        {
            anyhow::bail!(
                "serve options: 1 ≤ default max_tokens ({}) ≤ the max_tokens limit ({})",
                self.limits.default_max_tokens,
                self.limits.max_tokens
            );
        }
        if let Some(dir) = &self.allow_files {
            if !dir.is_dir() {
                anyhow::bail!(
                    "{}: the folder allowed for local images is not a folder",
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

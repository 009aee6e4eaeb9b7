//! tokenscale-model: tensors, weights, models, preprocessing and generation for LLaVA-style VLMs.

pub mod attention;
pub mod chat;
pub mod checkpoint;
pub mod ckpt;
pub mod clip;
pub mod config;
pub mod dtype;
pub mod forward;
pub mod fused;
pub mod generation;
pub mod hd;
pub mod hub;
pub mod imgque;
pub mod imgque_pipeline;
pub mod llama;
pub mod llava;
pub mod matvec;
pub mod nn;
pub mod opcount;
pub mod preprocess;
pub mod progress;
pub mod reducers;
pub mod resample;
pub mod runtime;
pub mod tokenizer;
pub mod weights;

/// The reducers under their former module name (`tokenscale_model::reduce::pool`, …).
pub use reducers as reduce;

pub use candle_core::{self, DType, Device, Tensor};
pub use forward::{AttentionCapture, Forward, Mode};
pub use llama::{ForwardOptions, Logits};
pub use image;

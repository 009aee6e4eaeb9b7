//! tokenscale-model: tensors, weights, models, preprocessing and generation for LLaVA-style VLMs.
//!
//! By concern: [`ops`] (the forward context, layers, kernels routing), [`models`], [`reducers`]
//! (vision-token reduction plug-ins), [`preprocess`], [`chat`], [`checkpoint`] (reading and
//! rewriting checkpoints), [`generation`] and [`runtime`] (one entry point over every checkpoint
//! kind).

#![warn(missing_docs)]

pub mod chat;
pub mod checkpoint;
pub mod generation;
pub mod models;
pub mod ops;
pub mod preprocess;
pub mod prompt_plan;
pub mod reducers;
pub mod runtime;

// Every module also keeps its path from before the split by concern (`tokenscale_model::nn`,
// `tokenscale_model::llama`, `tokenscale_model::reduce`, …).
pub use chat::tokenizer;
pub use checkpoint::{ckpt, config, dtype, hub, weights};
pub use models::{clip, imgque, imgque_pipeline, llama, llava};
pub use ops::{attention, forward, fused, matvec, nn, opcount};
pub use preprocess::{hd, resample};
pub use reducers as reduce;

pub use candle_core::{self, DType, Device, Tensor};
pub use forward::{AttentionCapture, Forward, Mode};
pub use image;
pub use llama::{ForwardOptions, Logits};

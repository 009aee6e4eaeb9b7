//! tokenscale-model: tensors, weights, models, preprocessing and generation for LLaVA-style VLMs.

pub mod attention;
pub mod chat;
pub mod checkpoint;
pub mod ckpt;
pub mod clip;
pub mod config;
pub mod dtype;
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
pub mod prompt_plan;
pub mod reduce;
pub mod resample;
pub mod runtime;
pub mod tokenizer;
pub mod weights;

pub use candle_core::{self, DType, Device, Tensor};
pub use image;

//! The models: the CLIP vision tower ([`clip`]), the LLaMA-family decoder ([`llama`]), LLaVA-1.5
//! ([`llava`]) and the query-fused model ([`imgque`], with its folder pipeline
//! [`imgque_pipeline`]).

pub mod clip;
pub mod imgque;
pub mod imgque_pipeline;
pub mod llama;
pub mod llava;

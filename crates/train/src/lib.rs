//! Trains the tiny query-fused VLM (the paper's architecture, scaled down) on the synthetic
//! benchmark with candle's autograd: `tokenscale train`.

pub mod checkpoint;
pub mod data;
pub mod init;
pub mod optim;
pub mod tiny;
pub mod trainer;

pub use trainer::{LossRow, TrainConfig, Trainer, ValidationRow};

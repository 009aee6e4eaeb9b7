//! Trains the tiny query-fused VLM (the paper's architecture, scaled down) on the synthetic
//! benchmark with candle's autograd: `tokenscale train`.
//!
//! Modules by concern: `config` (what a run is; `load` reads and checks it), `schedule` (learning
//! rate and budgets per step), `losses` (the answer loss and the registry of auxiliary losses),
//! `batch` (one batch's gradient on several threads), `trainer` (the loop), `logging` (loss and
//! validation rows), `checkpoint` (what a killed run resumes from), `start` (where a new run's
//! parameters come from).

#![warn(missing_docs)]

mod batch;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod init;
mod load;
pub mod logging;
mod losses;
pub mod optim;
mod schedule;
mod start;
pub mod tiny;
pub mod trainer;

pub use config::TrainConfig;
pub use logging::{LossRow, ValidationRow};
pub use losses::registry::{AuxTerms, AUX_TERMS, AUX_TERM_NAMES};
pub use trainer::Trainer;

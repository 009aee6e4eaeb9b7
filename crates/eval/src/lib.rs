//! tokenscale-eval: VLMEvalKit-compatible benchmarks, rule-based scorers, and resumable,
//! shardable sweeps over vision-token budgets. It knows nothing of models: a model takes part
//! through the [`sweep::Answerer`] trait (the runtime's models implement it in
//! `tokenscale-answer`).
//!
//! * [`dataset`]: VLMEvalKit TSV files; [`lmudata`]: benchmarks by name in VLMEvalKit's LMUData
//!   folder.
//! * [`kind`], [`prompt`], [`py`]: VLMEvalKit's conventions, from `tokenscale-vlmeval`
//!   (re-exported because [`Kind`] and [`prompt::PromptStyle`] are part of this crate's interface).
//! * [`score`]: MCQ / Y/N / VQA / OCRBench / caption scorers.
//! * [`store`]: durable JSONL prediction store; [`sweep`]: the n-sweep engine and the
//!   [`sweep::Answerer`] trait a model implements; [`report`]: scores and prediction files.

#![warn(missing_docs)]

pub mod dataset;
pub mod lmudata;
pub mod merge;
pub mod predfile;
pub mod report;
pub mod score;
pub mod store;
pub mod sweep;

pub use tokenscale_vlmeval::{kind, prompt, py};

pub use dataset::{Dataset, Item};
pub use kind::Kind;
pub use score::{Compat, Metric, ScoreOptions};
pub use sweep::{Answerer, EchoAnswerer, SweepConfig};

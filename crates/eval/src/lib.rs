//! tokenscale-eval: VLMEvalKit-compatible benchmarks, rule-based scorers, and resumable,
//! shardable sweeps over vision-token budgets.
//!
//! * [`dataset`]: VLMEvalKit TSV files; [`kind`]: dataset kinds from names; [`lmudata`]:
//!   benchmarks by name in VLMEvalKit's LMUData folder.
//! * [`prompt`]: VLMEvalKit prompts and per-dataset `max_new_tokens`.
//! * [`score`]: MCQ / Y/N / VQA / OCRBench / caption scorers.
//! * [`store`]: durable JSONL prediction store; [`sweep`]: the n-sweep engine and the
//!   [`sweep::Answerer`] trait a model implements; [`report`]: scores and prediction files.
//! * [`synth`]: a seeded synthetic benchmark generator.

pub mod dataset;
pub mod kind;
pub mod lmudata;
pub mod merge;
pub mod models;
pub mod predfile;
pub mod prompt;
pub mod py;
pub mod report;
pub mod score;
pub mod store;
pub mod sweep;
pub mod synth;

pub use dataset::{Dataset, Item};
pub use kind::Kind;
pub use score::{Compat, Metric, ScoreOptions};
pub use sweep::{Answerer, EchoAnswerer, SweepConfig};

//! tokenscale-vlmeval: the conventions of VLMEvalKit that both the evaluator (`tokenscale-eval`)
//! and the synthetic benchmark (`tokenscale-synth`) must follow exactly, so that a model trained
//! on generated items sees the same text the evaluator will give it.
//!
//! - [`kind`]: the dataset kind (MCQ, Y/N, VQA, OCRBench, caption) decided from its name.
//! - [`prompt`]: the prompt text per kind and prompt style, and per-dataset generation limits.
//! - [`py`]: the Python and NumPy behaviour VLMEvalKit's scorers and TSV cells rely on.

#![warn(missing_docs)]

pub mod kind;
pub mod prompt;
pub mod py;

pub use kind::Kind;
pub use prompt::{build_prompt, PromptStyle, Question, QuestionText};

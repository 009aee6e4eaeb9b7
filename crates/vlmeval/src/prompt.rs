//! Prompts built exactly as VLMEvalKit builds them, and the per-dataset generation limits.

use crate::kind::Kind;
use serde::{Deserialize, Serialize};

/// The parts of a benchmark item a prompt is built from: the evaluator's TSV rows and the
/// synthetic benchmark's in-memory items both provide them.
pub trait Question {
    /// The question text as it appears in the item (without hint or options).
    fn question(&self) -> &str;
    /// The hint (context) shown before the question, if the item has a non-empty one.
    fn hint(&self) -> Option<&str>;
    /// Options present, in letter order.
    fn options(&self) -> &[(char, String)];
}

/// A question held as plain text (items built in memory rather than read from a TSV).
#[derive(Clone, Debug, Default)]
pub struct QuestionText {
    /// The question text.
    pub question: String,
    /// The optional hint shown before the question.
    pub hint: Option<String>,
    /// The options as (letter, text), in letter order; empty for non-MCQ items.
    pub options: Vec<(char, String)>,
}

impl Question for QuestionText {
    fn question(&self) -> &str {
        &self.question
    }
    fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    fn options(&self) -> &[(char, String)] {
        &self.options
    }
}

/// The prompt VLMEvalKit asks of caption items (trailing space included, as upstream).
pub const CAPTION_DEFAULT_QUESTION: &str =
    "Please describe this image in general. Directly provide the description, do not include prefix like \"This image depicts\". ";
/// Appended to VQA questions by the default prompt (VLMEvalKit's `ImageVQADataset`).
pub const VQA_SUFFIX: &str = "\nAnswer the question using a single word or phrase.";

/// Which prompt builder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    /// The dataset's own `build_prompt` (what models without a custom prompt get).
    #[default]
    Default,
    /// LLaVA's custom MCQ prompt (`vlmeval/vlm/llava/llava.py`); other kinds use the default.
    Llava,
}

impl PromptStyle {
    /// Reads a style name: `default` or `llava` (exact, lowercase); errors on anything else.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "default" => Ok(PromptStyle::Default),
            "llava" => Ok(PromptStyle::Llava),
            _ => anyhow::bail!("unknown prompt style {s:?} (default, llava)"),
        }
    }
}

/// VLMEvalKit's `cn_string`: any CJK unified ideograph U+4E00..U+9FFF.
pub fn cn_string(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// The text part of the message (images come first in VLMEvalKit's message list; the chat
/// wrapping, e.g. LLaVA's `USER: <image>\n… ASSISTANT:`, is the model's business).
pub fn build_prompt<Q: Question + ?Sized>(item: &Q, kind: Kind, style: PromptStyle) -> String {
    match kind {
        Kind::Mcq => match style {
            PromptStyle::Default => mcq_default(item),
            PromptStyle::Llava => mcq_llava(item),
        },
        Kind::Vqa => format!("{}{}", item.question(), VQA_SUFFIX),
        // MME/POPE/HallusionBench, OCRBench and captions use the question as is (a caption set
        // without a question column was given the default question at load time).
        Kind::Yorn | Kind::Ocrbench | Kind::Caption => item.question().to_string(),
    }
}

fn mcq_default<Q: Question + ?Sized>(item: &Q) -> String {
    let mut prompt = String::new();
    if let Some(h) = item.hint() {
        prompt += &format!("Hint: {h}\n");
    }
    prompt += &format!("Question: {}\n", item.question());
    if !item.options().is_empty() {
        prompt += "Options:\n";
        for (l, t) in item.options() {
            prompt += &format!("{l}. {t}\n");
        }
        prompt += "Please select the correct answer from the options above. \n";
    }
    prompt
}

fn mcq_llava<Q: Question + ?Sized>(item: &Q) -> String {
    let mut q = item.question().to_string();
    if let Some(h) = item.hint() {
        q = format!("{h}\n{q}");
    }
    for (l, t) in item.options() {
        q += &format!("\n{l}. {t}");
    }
    if !item.options().is_empty() {
        if cn_string(&q) {
            q += "\n请直接回答选项字母。";
        } else {
            q += "\nAnswer with the option's letter from the given choices directly.";
        }
    } else {
        q += "\nAnswer the question directly.";
    }
    q
}

/// LLaVA's system prompt in VLMEvalKit (`vlmeval/vlm/llava/llava.py`).
pub const LLAVA_SYSTEM: &str =
    "A chat between a curious human and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the human's questions. ";

/// The full text VLMEvalKit's LLaVA wrapper feeds the model: the message (images first, each
/// replaced by `" <image> "`, then the text) inside `SYSTEM + "USER: " + … + " ASSISTANT: "`.
pub fn llava_chat(text: &str, n_images: usize) -> String {
    format!("{LLAVA_SYSTEM}USER: {}{text} ASSISTANT: ", " <image> ".repeat(n_images))
}

/// `max_new_tokens` used by the paper's evaluation (the original VLMEvalKit wrapper
/// `eval_models/imgque.py`; docs/original-system.md, "Evaluation limits"):
/// SEEDBench 3; MCQ and Y/N 32; COCO caption 32; OCRVQA/ChartQA/DocVQA 100; TextVQA 10;
/// everything else (OCRBench, other VQA sets) the default 512.
pub fn max_new_tokens(dataset: &str, kind: Kind) -> usize {
    let l = dataset.to_ascii_lowercase();
    if l.contains("seedbench") {
        return 3;
    }
    match kind {
        Kind::Mcq | Kind::Yorn => return 32,
        Kind::Caption => return 32,
        _ => {}
    }
    if l.contains("coco") {
        32
    } else if l.contains("ocrvqa") || l.contains("chartqa") || l.contains("docvqa") {
        100
    } else if l.contains("textvqa") {
        10
    } else {
        512
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(hint: Option<&str>, q: &str, opts: &[(char, &str)]) -> QuestionText {
        QuestionText {
            question: q.into(),
            hint: hint.map(Into::into),
            options: opts.iter().map(|(l, t)| (*l, t.to_string())).collect(),
        }
    }

    #[test]
    fn mcq_prompts() {
        let it = item(Some("H"), "Q?", &[('A', "x"), ('B', "y")]);
        assert_eq!(
            build_prompt(&it, Kind::Mcq, PromptStyle::Default),
            "Hint: H\nQuestion: Q?\nOptions:\nA. x\nB. y\nPlease select the correct answer from the options above. \n"
        );
        assert_eq!(
            build_prompt(&it, Kind::Mcq, PromptStyle::Llava),
            "H\nQ?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
        );
        let cn = item(None, "这是什么", &[('A', "x")]);
        assert!(
            build_prompt(&cn, Kind::Mcq, PromptStyle::Llava).ends_with("\n请直接回答选项字母。")
        );
        let none = item(None, "Q", &[]);
        assert_eq!(
            build_prompt(&none, Kind::Mcq, PromptStyle::Llava),
            "Q\nAnswer the question directly."
        );
        assert_eq!(build_prompt(&none, Kind::Mcq, PromptStyle::Default), "Question: Q\n");
        assert_eq!(
            build_prompt(&none, Kind::Vqa, PromptStyle::Llava),
            "Q\nAnswer the question using a single word or phrase."
        );
    }

    #[test]
    fn llava_wrapping() {
        assert_eq!(
            llava_chat("Q", 1),
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions. USER:  <image> Q ASSISTANT: "
        );
    }

    #[test]
    fn limits() {
        assert_eq!(max_new_tokens("SEEDBench_IMG", Kind::Mcq), 3);
        assert_eq!(max_new_tokens("MME", Kind::Yorn), 32);
        assert_eq!(max_new_tokens("COCO_VAL", Kind::Caption), 32);
        assert_eq!(max_new_tokens("ChartQA_TEST", Kind::Vqa), 100);
        assert_eq!(max_new_tokens("TextVQA_VAL", Kind::Vqa), 10);
        assert_eq!(max_new_tokens("OCRBench", Kind::Ocrbench), 512);
    }
}

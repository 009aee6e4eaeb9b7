//! Conversation templates → typed (string, type) segments, as the original's
//! `ChatConversation.do_chat_parse` emits them, including its llama-2 typing quirks
//! (docs/original-system.md, "Chat templates").

use anyhow::{bail, Result};

use super::token_type::{ANS, BOS, EOS, INST, QUE, SYS};
use super::{Conversation, Role, TokenType};

/// One piece of the prompt, tokenised on its own with `add_special_tokens = false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The segment's text.
    pub text: String,
    /// The token type every token of the segment gets.
    pub tp: TokenType,
}

impl Segment {
    fn new(text: impl Into<String>, tp: TokenType) -> Self {
        Self { text: text.into(), tp }
    }
}

/// How a template separates turns (fastchat's `SeparatorStyle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SepStyle {
    /// llama-2, llama-2-vision.
    Llama2,
    /// vicuna_v1.1.
    AddColonTwo,
    /// qwen-7b-chat.
    ChatMl,
    /// phi-3, microsoft-phi-3.
    Phi3,
    /// llama-3, llama-3-vision.
    Llama3,
}

/// A named chat template: separator style, system prompt formatting and role tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    /// The template's name (one of [`TEMPLATE_NAMES`] or [`EXTRA_TEMPLATE_NAMES`]).
    pub name: &'static str,
    /// How turns are separated.
    pub style: SepStyle,
    /// Formats the system message; `{}` is replaced by it.
    pub system_template: &'static str,
    /// The system message used when the conversation sets none.
    pub default_system: &'static str,
    /// (user role, assistant role).
    pub roles: [&'static str; 2],
}

/// The seed's templates.
pub const TEMPLATE_NAMES: [&str; 8] = [
    "llama-2",
    "llama-2-vision",
    "vicuna_v1.1",
    "qwen-7b-chat",
    "phi-3",
    "microsoft-phi-3",
    "llama-3",
    "llama-3-vision",
];

/// tokenscale's own: "plain" is vicuna_v1.1 without a system prompt ("<s> USER: q ASSISTANT: a</s>"),
/// for the small models trained here, whose word-level vocabulary has no system-prompt words.
pub const EXTRA_TEMPLATE_NAMES: [&str; 1] = ["plain"];

const VICUNA_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";
const LLAMA2_SYS: &str = "[INST] <<SYS>>\n{}\n<</SYS>>\n\n";
const LLAMA3_SYS: &str = "<|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|>";
const LLAMA3_ROLES: [&str; 2] =
    ["<|start_header_id|>user<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>"];

impl ChatTemplate {
    /// The template by its fastchat / `chat_template_extend` name; an unknown name is an error
    /// listing the known ones.
    pub fn by_name(name: &str) -> Result<Self> {
        let (name, style, system_template, default_system, roles) = match name {
            "llama-2" => ("llama-2", SepStyle::Llama2, LLAMA2_SYS, "", ["[INST]", "[/INST]"]),
            "llama-2-vision" => (
                "llama-2-vision",
                SepStyle::Llama2,
                LLAMA2_SYS,
                VICUNA_SYSTEM,
                ["[INST]", "[/INST]"],
            ),
            "vicuna_v1.1" => {
                ("vicuna_v1.1", SepStyle::AddColonTwo, "{}", VICUNA_SYSTEM, ["USER", "ASSISTANT"])
            }
            "plain" => ("plain", SepStyle::AddColonTwo, "{}", "", ["USER", "ASSISTANT"]),
            "qwen-7b-chat" => (
                "qwen-7b-chat",
                SepStyle::ChatMl,
                "<|im_start|>system\n{}",
                "You are a helpful assistant.",
                ["<|im_start|>user", "<|im_start|>assistant"],
            ),
            "phi-3" => (
                "phi-3",
                SepStyle::Phi3,
                "{}",
                "You are a helpful assistant.",
                ["<|user|>", "<|assistant|>"],
            ),
            "microsoft-phi-3" => (
                "microsoft-phi-3",
                SepStyle::Phi3,
                "<|system|>\n{}<|end|>\n",
                "",
                ["<|user|>", "<|assistant|>"],
            ),
            "llama-3" => ("llama-3", SepStyle::Llama3, LLAMA3_SYS, "", LLAMA3_ROLES),
            "llama-3-vision" => (
                "llama-3-vision",
                SepStyle::Llama3,
                LLAMA3_SYS,
                "You are a helpful assistant.",
                LLAMA3_ROLES,
            ),
            other => bail!(
                "unknown chat template \"{other}\" (expected one of: {}, {})",
                TEMPLATE_NAMES.join(", "),
                EXTRA_TEMPLATE_NAMES.join(", ")
            ),
        };
        Ok(Self { name, style, system_template, default_system, roles })
    }

    /// The formatted system prompt, `None` when the system message is empty. `system = None`
    /// takes the template's default.
    pub fn system_prompt(&self, system: Option<&str>) -> Option<String> {
        let s = system.unwrap_or(self.default_system);
        (!s.is_empty()).then(|| self.system_template.replacen("{}", s, 1))
    }

    /// `do_chat_parse`: the conversation as typed segments. Messages must alternate user /
    /// assistant (user first); an empty message emits only its role tag (llama-2: nothing).
    /// `add_endoftext` appends `<|endoftext|>` (EOS) for phi-3 and the assistant header (INST) for
    /// llama-3; it does nothing for the other styles.
    pub fn segments(&self, conv: &Conversation, add_endoftext: bool) -> Result<Vec<Segment>> {
        conv.validate()?;
        let sys = self.system_prompt(conv.system.as_deref());
        let [user_role, asst_role] = self.roles;
        let mut s = Vec::new();
        let msgs = conv
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.role == Role::User, m.content.as_str()));
        match self.style {
            SepStyle::Llama2 => {
                s.push(Segment::new("<s>", BOS));
                // As the original: an empty message emits nothing at all (not even its role tags;
                // an empty first question drops the system prompt with it).
                for (i, user, m) in msgs.filter(|(_, _, m)| !m.is_empty()) {
                    if user {
                        if i == 0 {
                            match &sys {
                                Some(p) => {
                                    s.push(Segment::new(p.clone(), SYS));
                                    s.push(Segment::new(m, QUE));
                                }
                                // No system prompt: "[INST] " belongs to the question segment.
                                None => s.push(Segment::new(format!("{user_role} {m}"), QUE)),
                            }
                        } else {
                            // §9: the `<s>` of a later `<s>[INST]` is typed INST.
                            s.push(Segment::new(format!("<s>{user_role}"), INST));
                            s.push(Segment::new(m, QUE));
                        }
                        s.push(Segment::new(asst_role, INST));
                    } else {
                        // §9: the `</s>` inside "{answer} </s>" is typed ANS.
                        s.push(Segment::new(format!("{m} </s>"), ANS));
                    }
                }
            }
            SepStyle::AddColonTwo => {
                s.push(Segment::new("<s>", BOS));
                s.push(Segment::new(format!("{} ", sys.as_deref().unwrap_or("")), SYS));
                for (_, user, m) in msgs {
                    let role = if user { user_role } else { asst_role };
                    if m.is_empty() {
                        s.push(Segment::new(format!("{role}:"), INST));
                    } else if user {
                        s.push(Segment::new(format!("{role}: "), INST));
                        s.push(Segment::new(m, QUE));
                        s.push(Segment::new(" ", INST));
                    } else {
                        s.push(Segment::new(format!("{role}: "), INST));
                        s.push(Segment::new(m, ANS));
                        s.push(Segment::new("</s>", EOS));
                    }
                }
            }
            SepStyle::ChatMl => {
                if let Some(p) = &sys {
                    s.push(Segment::new(format!("{p}<|im_end|>\n"), SYS));
                }
                for (_, user, m) in msgs {
                    s.push(Segment::new(
                        format!("{}\n", if user { user_role } else { asst_role }),
                        INST,
                    ));
                    if !m.is_empty() {
                        s.push(Segment::new(m, if user { QUE } else { ANS }));
                        s.push(Segment::new("<|im_end|>\n", if user { INST } else { EOS }));
                    }
                }
            }
            SepStyle::Phi3 => {
                if let Some(p) = &sys {
                    s.push(Segment::new(p.clone(), SYS));
                }
                for (_, user, m) in msgs {
                    s.push(Segment::new(
                        format!("{}\n", if user { user_role } else { asst_role }),
                        INST,
                    ));
                    if !m.is_empty() {
                        s.push(Segment::new(m, if user { QUE } else { ANS }));
                        s.push(Segment::new("<|end|>\n", EOS));
                    }
                }
                if add_endoftext {
                    s.push(Segment::new("<|endoftext|>", EOS));
                }
            }
            SepStyle::Llama3 => {
                s.push(Segment::new("<|begin_of_text|>", BOS));
                if let Some(p) = &sys {
                    s.push(Segment::new(p.clone(), SYS));
                }
                for (_, user, m) in msgs {
                    s.push(Segment::new(
                        format!("{}\n\n", if user { user_role } else { asst_role }),
                        INST,
                    ));
                    if !m.is_empty() {
                        s.push(Segment::new(m, if user { QUE } else { ANS }));
                        s.push(Segment::new("<|eot_id|>", if user { INST } else { EOS }));
                    }
                }
                if add_endoftext {
                    s.push(Segment::new(format!("{asst_role}\n\n"), INST));
                }
            }
        }
        Ok(s)
    }

    /// The segments concatenated: the prompt string (for display / debugging).
    pub fn prompt(&self, conv: &Conversation, add_endoftext: bool) -> Result<String> {
        Ok(self.segments(conv, add_endoftext)?.into_iter().map(|s| s.text).collect())
    }
}

//! Chat parsing for the imgque model and LLaVA, token for token as the original parser (the token
//! types, the query token layout and the chat templates of docs/original-system.md).
//!
//! - [`token_type`]: the bit-flag token types (PAD 1 … TXT 512) and the `is_ctl` / `is_the_type` helpers.
//! - [`ChatTemplate`]: llama-2, llama-2-vision, vicuna_v1.1, qwen-7b-chat, phi-3, microsoft-phi-3,
//!   llama-3, llama-3-vision, turning a [`Conversation`] into typed (string, type) [`Segment`]s.
//! - [`ChatParser`]: per-segment tokenisation (`add_special_tokens = false`) into [`ChatTokens`]
//!   (`input_ids`, `input_tps`, `attention_mask = tps != PAD`), with QED slots (`ChatQEDParser`:
//!   n_l before the first question, n_s before each later one) or IMG tokens (`ChatIMGParser`,
//!   LLaVA) when an image is present.
//! - [`QueryParser`]: the query-decoder row (`ChatQEDQueryParser` / `ChatQEDDropQueryParser`):
//!   per question, CLIP tokens (QUE) ++ placeholders (QED) ++ eos (EOS).
//! - [`ChatAndQueryParser`]: both at once (`UtilChatAndQueryParser.parse_record`), with the
//!   QED-slot / QED|EOS-output counts checked against each other.
//! - Records ([`record`]): chat JSONL, the simple role list and the VLMEvalKit message list, all
//!   turned into a [`Conversation`].
//!
//! As the original code (tenghuilee/ScalingCapFusedVisionLM at 42a2596; checked with real tokenizers
//! in tests/real_tokenizers.rs):
//! - An empty message emits only its role tag (llama-2: nothing at all); empty user messages are
//!   not questions: no QUE segment, no QED slots, no query row.
//! - The query row holds the text of the LLM row's QUE segments: for llama-2 without a system
//!   prompt the first is "[INST] {question}".
//!
//! Where the original is silent, this module chooses:
//! - An image with no non-empty question is an error.
//! - The prompt to generate from ends with an empty assistant message
//!   ([`Conversation::for_generation`]); `add_endoftext` only acts on phi-3 (`<|endoftext|>`, EOS)
//!   and llama-3 (assistant header, INST).
//! - The query row's `fill_ends` eos tokens (PAD-typed) go once at the end of the row.
//! - Special placeholders are `base + i`, base = id of `<|placeholder_qed_0|>` if the CLIP
//!   tokenizer already has it, else `len(tokenizer)`.

pub mod parser;
pub mod record;
pub mod template;
pub mod tokenizer;

pub use parser::{
    image_token_id, placeholder_token, resolve_token_id, tokenize_segments, validate_query_lengths,
    ChatAndQueryParser, ChatParser, ChatTokens, ParsedRecord, QueryParser, VisionSlots,
};
pub use record::{
    conversation_from_simple, conversation_from_vlmeval, parse_any_record, parse_chat_jsonl,
    parse_chat_record, parse_simple_record, parse_vlmeval_message, read_record_file, record_shape,
    ChatMessage, ChatRecord, RecordFile, RecordShape, SimpleEntry, VlmEvalItem,
};
pub use template::{ChatTemplate, Segment, SepStyle, EXTRA_TEMPLATE_NAMES, TEMPLATE_NAMES};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A token type: an OR of the bit flags in [`token_type`].
pub type TokenType = u32;

/// Token-type bit flags (`constants.py`). A token's type is tested with a bitwise AND.
pub mod token_type {
    use super::TokenType;

    /// Padding; also the type of the query row's trailing `fill_ends` eos tokens.
    pub const PAD: TokenType = 1;
    /// Role tags and template separators (`[INST]`, `USER:`, headers, …).
    pub const INST: TokenType = 2;
    /// The system prompt.
    pub const SYS: TokenType = 4;
    /// An image token (LLaVA's `<image>` expanded into the vision features).
    pub const IMG: TokenType = 8;
    /// A user question.
    pub const QUE: TokenType = 16;
    /// An assistant answer.
    pub const ANS: TokenType = 32;
    /// The beginning-of-sequence token.
    pub const BOS: TokenType = 64;
    /// The end-of-sequence token.
    pub const EOS: TokenType = 128;
    /// A placeholder slot for one query-decoder output (image tokens fused with a question).
    pub const QED: TokenType = 256;
    /// Plain text outside any other category.
    pub const TXT: TokenType = 512;

    /// PAD | INST | SYS | BOS | EOS = 199.
    pub const CTL: TokenType = PAD | INST | SYS | BOS | EOS;
    /// A token that is both question and answer text (48).
    pub const QUE_ANS: TokenType = QUE | ANS; // 48
    /// An answer's closing end-of-sequence token (160).
    pub const ANS_EOS: TokenType = ANS | EOS; // 160
    /// An image token or a query placeholder (264).
    pub const IMG_QED: TokenType = IMG | QED; // 264
    /// A question token or a query placeholder (272).
    pub const QUE_QED: TokenType = QUE | QED; // 272
    /// Question, answer or end-of-sequence (176).
    pub const QUE_ANS_EOS: TokenType = QUE | ANS | EOS; // 176
    /// A query placeholder that also ends the query-decoder row (384).
    pub const QED_EOS: TokenType = QED | EOS; // 384
    /// Query placeholder, answer or end-of-sequence (416).
    pub const QED_ANS_EOS: TokenType = QED | ANS | EOS; // 416

    /// `tps & CTL != 0`.
    pub fn is_ctl(tp: TokenType) -> bool {
        tp & CTL != 0
    }

    /// `tps & CTL == 0`: the token is not a control token.
    pub fn not_ctl(tp: TokenType) -> bool {
        !is_ctl(tp)
    }

    /// `tps & the_type != 0` (true when the token has any of the bits of `the_type`).
    pub fn is_the_type(tp: TokenType, the_type: TokenType) -> bool {
        tp & the_type != 0
    }

    /// `tps & the_type == 0` (true when the token has none of the bits of `the_type`).
    pub fn not_the_type(tp: TokenType, the_type: TokenType) -> bool {
        !is_the_type(tp, the_type)
    }

    /// How many tokens have any of the bits of `the_type`.
    pub fn count(tps: &[TokenType], the_type: TokenType) -> usize {
        tps.iter().filter(|&&t| is_the_type(t, the_type)).count()
    }
}

/// Who speaks a [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (questions; images attach to the user side).
    User,
    /// The assistant (answers, and the empty turn still to generate).
    Assistant,
}

impl Role {
    /// The lowercase name, as in chat JSON (`"user"` / `"assistant"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a [`Conversation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// An empty content is an "empty message" (fastchat's `None`): only the role tag is emitted,
    /// e.g. the assistant turn still to be generated.
    pub content: String,
}

/// One conversation: optional image, optional system message, messages alternating
/// user / assistant starting with the user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Image path (or other reference); `None` for a text-only conversation.
    pub image: Option<String>,
    /// `None`: the template's default system message; `Some("")`: no system prompt.
    pub system: Option<String>,
    /// The turns in order, alternating user / assistant, user first.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// An empty conversation: no image, the template's default system message, no messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the image reference (a path or other id).
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the system message (`""` for no system prompt).
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Appends a user message.
    pub fn user(mut self, content: impl Into<String>) -> Self {
        self.messages.push(Message { role: Role::User, content: content.into() });
        self
    }

    /// Appends an assistant message.
    pub fn assistant(mut self, content: impl Into<String>) -> Self {
        self.messages.push(Message { role: Role::Assistant, content: content.into() });
        self
    }

    /// From plain strings alternating user / assistant (user first).
    pub fn from_turns<S: AsRef<str>>(turns: &[S]) -> Self {
        let mut c = Self::new();
        for (i, t) in turns.iter().enumerate() {
            let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
            c.messages.push(Message { role, content: t.as_ref().to_string() });
        }
        c
    }

    /// The prompt to generate from: appends an empty assistant message when the last message is
    /// the user's (so the templates emit the assistant role tag).
    pub fn for_generation(mut self) -> Self {
        if self.messages.last().map(|m| m.role) == Some(Role::User) {
            self.messages.push(Message { role: Role::Assistant, content: String::new() });
        }
        self
    }

    /// The non-empty user messages, in order: the questions that get QED slots / query rows.
    pub fn questions(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m.role == Role::User && !m.content.is_empty())
            .map(|m| m.content.as_str())
            .collect()
    }

    /// Roles must alternate user, assistant, user, … starting with the user.
    pub fn validate(&self) -> Result<()> {
        for (i, m) in self.messages.iter().enumerate() {
            let want = if i % 2 == 0 { Role::User } else { Role::Assistant };
            if m.role != want {
                bail!(
                    "messages[{i}]: role \"{}\" where \"{}\" was expected (roles must alternate user, assistant, … starting with user)",
                    m.role.as_str(),
                    want.as_str()
                );
            }
        }
        Ok(())
    }
}

//! Tokenised chat sequences: the LLM row (`ChatQEDParser` / `ChatIMGParser`) and the query row
//! of the query decoder (`ChatQEDQueryParser` / `ChatQEDDropQueryParser`).

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use super::template::{ChatTemplate, Segment};
use super::token_type::{self, EOS, IMG, PAD, QED, QED_EOS, QUE};
use super::{Conversation, TokenType};
use crate::tokenizer::Tokenizer;

/// A tokenised row: ids, token types, and `attention_mask = tps != PAD` (0/1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatTokens {
    /// Token ids, one per position.
    pub input_ids: Vec<u32>,
    /// Token type of each position (bit flags of [`super::token_type`]).
    pub input_tps: Vec<TokenType>,
    /// 1 where the type is not PAD, 0 where it is.
    pub attention_mask: Vec<u32>,
}

impl ChatTokens {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the row holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Appends `n` copies of `id` typed `tp`.
    pub fn push_repeated(&mut self, id: u32, tp: TokenType, n: usize) {
        for _ in 0..n {
            self.push(id, tp);
        }
    }

    /// Appends one token `id` typed `tp` (its mask is 0 if `tp` is PAD, else 1).
    pub fn push(&mut self, id: u32, tp: TokenType) {
        self.input_ids.push(id);
        self.input_tps.push(tp);
        self.attention_mask.push(u32::from(tp != PAD));
    }

    /// Tokenises one segment on its own, `add_special_tokens = false`.
    pub fn push_segment(&mut self, tok: &Tokenizer, seg: &Segment) -> Result<()> {
        for id in tok.encode(&seg.text, false)? {
            self.push(id, seg.tp);
        }
        Ok(())
    }

    /// Tokens with any bit of `the_type`.
    pub fn count_type(&self, the_type: TokenType) -> usize {
        token_type::count(&self.input_tps, the_type)
    }

    /// `(input_ids, input_tps, attention_mask)` as `[1, L]` u32 tensors (batch of one).
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
        let l = self.len();
        Ok((
            Tensor::from_slice(&self.input_ids, (1, l), device)?,
            Tensor::from_slice(&self.input_tps, (1, l), device)?,
            Tensor::from_slice(&self.attention_mask, (1, l), device)?,
        ))
    }
}

/// Tokenises segments one by one (`add_special_tokens = false`), types copied per token.
pub fn tokenize_segments(tok: &Tokenizer, segments: &[Segment]) -> Result<ChatTokens> {
    let mut out = ChatTokens::default();
    for seg in segments {
        out.push_segment(tok, seg)?;
    }
    Ok(out)
}

/// n_l ≥ n_s ≥ 1 (the original asserts n_l ≥ n_s; zero would give a question no output).
pub fn validate_query_lengths(n_l: usize, n_s: usize) -> Result<()> {
    if n_l < 1 {
        bail!("n_l (length_que_end) must be at least 1, got {n_l}");
    }
    if n_s < 1 {
        bail!("n_s (length_que_end_short) must be at least 1, got {n_s}");
    }
    if n_s > n_l {
        bail!("n_s (length_que_end_short) = {n_s} must not exceed n_l (length_que_end) = {n_l} (allowed: 1..={n_l})");
    }
    Ok(())
}

/// The id of `token` when given and present, else `fallback` (the original's "pad := eos if
/// missing"). An explicitly named token that the tokenizer lacks is an error.
pub fn resolve_token_id(tok: &Tokenizer, token: Option<&str>, fallback: u32) -> Result<u32> {
    match token {
        Some(t) => tok
            .token_id(t)
            .with_context(|| format!("{}: token {t:?} is not in the tokenizer", tok.origin())),
        None => Ok(fallback),
    }
}

/// The image token for [`ChatParser::img`]: `<image>` (llava-hf) or `<|image|>` when the tokenizer
/// has one, else `eos_id` (as `ChatIMGParser`).
pub fn image_token_id(tok: &Tokenizer, eos_id: u32) -> u32 {
    tok.token_id("<image>").or_else(|| tok.token_id("<|image|>")).unwrap_or(eos_id)
}

/// What goes into the LLM row for the image (only when the conversation has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionSlots {
    /// Text only, even with an image.
    None,
    /// `ChatQEDParser`: `n_l` (first question) / `n_s` (later ones) `pad_id` tokens typed QED
    /// before every question segment; the fusion overwrites their embeddings.
    Qed {
        /// Slots before the first question.
        n_l: usize,
        /// Slots before every later question.
        n_s: usize,
        /// The LLM tokenizer's id written into each slot.
        pad_id: u32,
    },
    /// `ChatIMGParser`: `count` × `token_id` typed IMG before the first question only.
    Img {
        /// Number of image tokens (the vision features the projector yields).
        count: usize,
        /// The image token's id (see [`image_token_id`]).
        token_id: u32,
    },
}

/// The LLM sequence: template segments, tokenised per segment, with vision slots.
#[derive(Clone, Debug)]
pub struct ChatParser {
    /// The chat template that turns a conversation into typed segments.
    pub template: ChatTemplate,
    /// What goes into the row for the image, when there is one.
    pub slots: VisionSlots,
    /// See [`ChatTemplate::segments`].
    pub add_endoftext: bool,
}

impl ChatParser {
    /// Text only.
    pub fn text(template: ChatTemplate) -> Self {
        Self { template, slots: VisionSlots::None, add_endoftext: false }
    }

    /// `ChatQEDParser` (imgque). Errors unless n_l ≥ n_s ≥ 1.
    pub fn qed(template: ChatTemplate, n_l: usize, n_s: usize, pad_id: u32) -> Result<Self> {
        validate_query_lengths(n_l, n_s)?;
        Ok(Self { template, slots: VisionSlots::Qed { n_l, n_s, pad_id }, add_endoftext: false })
    }

    /// `ChatIMGParser` (LLaVA): `count` image tokens before the first question.
    pub fn img(template: ChatTemplate, count: usize, token_id: u32) -> Self {
        Self { template, slots: VisionSlots::Img { count, token_id }, add_endoftext: false }
    }

    /// Sets `add_endoftext` (see [`ChatTemplate::segments`]).
    pub fn with_add_endoftext(mut self, yes: bool) -> Self {
        self.add_endoftext = yes;
        self
    }

    /// The conversation's typed segments under this parser's template, before tokenisation.
    pub fn segments(&self, conv: &Conversation) -> Result<Vec<Segment>> {
        self.template.segments(conv, self.add_endoftext)
    }

    /// Tokenises `conv`. Vision slots are inserted only when `has_image` (the original's
    /// `enable_que_end = has_image`); an image with no non-empty question is an error.
    pub fn parse(
        &self,
        tok: &Tokenizer,
        conv: &Conversation,
        has_image: bool,
    ) -> Result<ChatTokens> {
        let segs = self.segments(conv)?;
        let mut out = ChatTokens::default();
        let mut question = 0usize;
        for seg in &segs {
            if seg.tp == QUE && has_image {
                match self.slots {
                    VisionSlots::None => {}
                    VisionSlots::Qed { n_l, n_s, pad_id } => {
                        out.push_repeated(pad_id, QED, if question == 0 { n_l } else { n_s });
                    }
                    VisionSlots::Img { count, token_id } => {
                        if question == 0 {
                            out.push_repeated(token_id, IMG, count);
                        }
                    }
                }
                question += 1;
            }
            out.push_segment(tok, seg)?;
        }
        if has_image && question == 0 && self.slots != VisionSlots::None {
            bail!("the conversation has an image but no non-empty user message to attach it to");
        }
        Ok(out)
    }
}

/// The query-decoder row: for each question j, `tokens(q_j)` (QUE, CLIP tokenizer, no special
/// tokens) ++ placeholders (QED; n_l − 1 for the first question, n_s − 1 for later ones) ++
/// `[eos]` (EOS), then `fill_ends` × eos typed PAD. Question j thus yields exactly n_l (first) or
/// n_s (later) QED|EOS outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryParser {
    /// QED|EOS outputs of the first question (its slot count in the LLM row); n_l ≥ n_s ≥ 1.
    pub n_l: usize,
    /// QED|EOS outputs of every later question.
    pub n_s: usize,
    /// The CLIP tokenizer's eos id, closing each question's run of placeholders (typed EOS).
    pub eos_id: u32,
    /// Placeholder id when there is no special padding (`placeholder_base` is `None`).
    pub pad_id: u32,
    /// `Some(base)`: placeholder i is `base + i` (`append_special_padding`); `None`: `pad_id`.
    pub placeholder_base: Option<u32>,
    /// `ChatQEDDropQueryParser`: the question text is omitted (`_qed_replaced_query = ""`).
    pub drop_query: bool,
    /// How many extra eos tokens (typed PAD) go at the end of the row.
    pub fill_ends: usize,
}

/// The added placeholder tokens are named `<|placeholder_qed_{i}|>`, i = 0.. .
pub fn placeholder_token(i: usize) -> String {
    format!("<|placeholder_qed_{i}|>")
}

impl QueryParser {
    /// Errors unless n_l ≥ n_s ≥ 1.
    pub fn new(
        n_l: usize,
        n_s: usize,
        eos_id: u32,
        pad_id: u32,
        placeholder_base: Option<u32>,
    ) -> Result<Self> {
        validate_query_lengths(n_l, n_s)?;
        Ok(Self { n_l, n_s, eos_id, pad_id, placeholder_base, drop_query: false, fill_ends: 0 })
    }

    /// From the checkpoint's CLIP tokenizer (`clip/`): eos = `<|endoftext|>`, pad = `pad_token`
    /// (tokenizer_config.json) or eos when missing; with `append_special_padding` the placeholder
    /// base is the id of `<|placeholder_qed_0|>` when the tokenizer already holds it, otherwise
    /// `len(tokenizer)` (the ids the original's `add_tokens` gives them).
    pub fn from_clip_tokenizer(
        clip: &Tokenizer,
        n_l: usize,
        n_s: usize,
        append_special_padding: bool,
        pad_token: Option<&str>,
    ) -> Result<Self> {
        let eos_id = clip.token_id("<|endoftext|>").with_context(|| {
            format!("{}: CLIP tokenizer has no <|endoftext|> (eos) token", clip.origin())
        })?;
        let pad_id = resolve_token_id(clip, pad_token, eos_id).context("CLIP pad token")?;
        let base = append_special_padding
            .then(|| clip.token_id(&placeholder_token(0)).unwrap_or(clip.vocab_size() as u32));
        Self::new(n_l, n_s, eos_id, pad_id, base)
    }

    /// Sets `drop_query` (the `ChatQEDDropQueryParser` variant).
    pub fn with_drop_query(mut self, yes: bool) -> Self {
        self.drop_query = yes;
        self
    }

    /// Sets `fill_ends`, the eos tokens (typed PAD) appended at the end of the row.
    pub fn with_fill_ends(mut self, n: usize) -> Self {
        self.fill_ends = n;
        self
    }

    /// The id of placeholder `i`: `base + i` with special padding, else `pad_id`.
    pub fn placeholder_id(&self, i: usize) -> u32 {
        match self.placeholder_base {
            Some(b) => b + i as u32,
            None => self.pad_id,
        }
    }

    /// The query-decoder vocabulary the placeholders need (`imgque_vocab_size` must be at least
    /// this): `base + n_l − 1`, or `None` without special padding.
    pub fn required_vocab_size(&self) -> Option<usize> {
        self.placeholder_base.map(|b| b as usize + self.n_l - 1)
    }

    /// How many QED|EOS outputs `n_questions` questions give (= QED slots in the LLM row).
    pub fn outputs_for(&self, n_questions: usize) -> usize {
        if n_questions == 0 {
            0
        } else {
            self.n_l + (n_questions - 1) * self.n_s
        }
    }

    /// Tokenises the query row for `questions` with the CLIP tokenizer `clip` (layout above).
    pub fn parse(&self, clip: &Tokenizer, questions: &[&str]) -> Result<ChatTokens> {
        let mut out = ChatTokens::default();
        for (j, q) in questions.iter().enumerate() {
            if !self.drop_query {
                for id in clip.encode(q, false)? {
                    out.push(id, QUE);
                }
            }
            let n = if j == 0 { self.n_l } else { self.n_s };
            for i in 0..n - 1 {
                out.push(self.placeholder_id(i), QED);
            }
            out.push(self.eos_id, EOS);
        }
        out.push_repeated(self.eos_id, PAD, self.fill_ends);
        Ok(out)
    }
}

/// Both rows of one record (`UtilChatAndQueryParser.parse_record`, without the image part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    /// The LLM row (template segments with QED slots).
    pub llm: ChatTokens,
    /// `None` for a text-only record (no image, so no QED slots and no query row).
    pub query: Option<ChatTokens>,
}

/// The LLM-row parser and the query-row parser of one record, with matching n_l / n_s.
#[derive(Clone, Debug)]
pub struct ChatAndQueryParser {
    /// Builds the LLM row (QED slots).
    pub chat: ChatParser,
    /// Builds the query-decoder row.
    pub query: QueryParser,
}

impl ChatAndQueryParser {
    /// A QED chat parser and a query parser sharing n_l / n_s.
    pub fn new(template: ChatTemplate, llm_pad_id: u32, query: QueryParser) -> Result<Self> {
        let chat = ChatParser::qed(template, query.n_l, query.n_s, llm_pad_id)?;
        Ok(Self { chat, query })
    }

    /// LLM row (QED slots when `has_image`) and query row (when `has_image`); the number of QED
    /// slots must equal the number of QED|EOS query outputs.
    pub fn parse(
        &self,
        llm_tok: &Tokenizer,
        clip_tok: &Tokenizer,
        conv: &Conversation,
        has_image: bool,
    ) -> Result<ParsedRecord> {
        let llm = self.chat.parse(llm_tok, conv, has_image)?;
        if !has_image {
            return Ok(ParsedRecord { llm, query: None });
        }
        // As the original's query parser: the text of the LLM row's QUE segments, which for
        // llama-2 without a system prompt is "[INST] {question}" for the first question.
        let segments = self.chat.segments(conv)?;
        let questions: Vec<&str> =
            segments.iter().filter(|s| s.tp == QUE).map(|s| s.text.as_str()).collect();
        let query = self.query.parse(clip_tok, &questions)?;
        let (slots, outs) = (llm.count_type(QED), query.count_type(QED_EOS));
        if slots != outs {
            bail!("{slots} QED slots in the LLM row but {outs} QED|EOS outputs in the query row");
        }
        Ok(ParsedRecord { llm, query: Some(query) })
    }
}

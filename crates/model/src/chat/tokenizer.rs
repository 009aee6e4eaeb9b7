//! HF `tokenizer.json` loading and streaming detokenisation.

use std::path::Path;

use anyhow::{anyhow, Result};

/// An HF `tokenizers` tokenizer that remembers where it came from, for error messages.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    origin: String,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`; fails when the file is missing or does not parse.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            anyhow::bail!("{}: tokenizer file not found", path.display());
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(Self { inner, origin: path.display().to_string() })
    }

    /// Parses `tokenizer.json` contents; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(Self { inner, origin: origin.to_string() })
    }

    /// Encodes with the tokenizer's own special-token handling (e.g. a BOS from its post-processor).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| anyhow!("{}: cannot encode: {e}", self.origin))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes `ids` to text, dropping special tokens when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| anyhow!("{}: cannot decode: {e}", self.origin))
    }

    /// The id of the exact token string `token` (special tokens included), if the vocabulary
    /// has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The file (or label) the tokenizer was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// The decode stream of the tokenizers crate over the tokenizer.json model types.
type InnerStream<'a> = tokenizers::DecodeStream<
    'a,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Turns a stream of generated tokens into text pieces, emitting only complete characters.
/// Incremental (`tokenizers`' `DecodeStream` decodes a short window per token), so a long answer
/// costs O(n), not the O(n²) of re-decoding everything each step.
pub struct TokenStream<'a> {
    inner: InnerStream<'a>,
    origin: &'a str,
}

impl<'a> TokenStream<'a> {
    /// A stream over `tokenizer` that skips special tokens.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self { inner: tokenizer.inner.decode_stream(true), origin: &tokenizer.origin }
    }

    /// Adds a token and returns the newly completed text, if any.
    pub fn push(&mut self, token: u32) -> Result<String> {
        let piece =
            self.inner.step(token).map_err(|e| anyhow!("{}: cannot decode: {e}", self.origin))?;
        Ok(piece.unwrap_or_default())
    }
}

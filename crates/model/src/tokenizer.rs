//! HF `tokenizer.json` loading and streaming detokenisation.

use std::path::Path;

use anyhow::{anyhow, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    origin: String,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            anyhow::bail!("{}: tokenizer file not found", path.display());
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(Self { inner, origin: path.display().to_string() })
    }

    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(Self { inner, origin: origin.to_string() })
    }

    /// Encodes with the tokenizer's own special-token handling (e.g. a BOS from its post-processor).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| anyhow!("{}: cannot encode: {e}", self.origin))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| anyhow!("{}: cannot decode: {e}", self.origin))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Turns a growing token list into text pieces, emitting only complete characters.
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    printed: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self { tokenizer, tokens: Vec::new(), printed: 0 }
    }

    /// Adds a token and returns the newly completed text, if any.
    pub fn push(&mut self, token: u32) -> Result<String> {
        self.tokens.push(token);
        let text = self.tokenizer.decode(&self.tokens, true)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.printed || !text.is_char_boundary(self.printed) {
            return Ok(String::new());
        }
        let piece = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(piece)
    }
}

//! Answer text as tokens arrive: detokenised incrementally (the tokenizer's decode stream, as
//! `tokenscale run` streams) and cut at the first stop sequence. Text that could still turn out
//! to begin a stop sequence is held back until the next token decides, so no part of a stop
//! sequence is ever sent.

use anyhow::Result;
use tokenscale_model::tokenizer::{TokenStream, Tokenizer};

/// An answer's text as tokens arrive: detokenised and cut at the first stop sequence.
pub struct AnswerText<'a> {
    pieces: TokenStream<'a>,
    stops: StopMatcher,
}

impl<'a> AnswerText<'a> {
    /// An empty answer for `tokenizer`, ending at the first of `stops`.
    pub fn new(tokenizer: &'a Tokenizer, stops: Vec<String>) -> Self {
        Self { pieces: TokenStream::new(tokenizer), stops: StopMatcher::new(stops) }
    }

    /// The text now safe to send after `token`, and whether a stop sequence ended the answer.
    pub fn push(&mut self, token: u32) -> Result<(String, bool)> {
        let piece = self.pieces.push(token)?;
        Ok(self.stops.push(&piece))
    }

    /// What was held back, at the end of the answer.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.stops.held)
    }
}

/// Stop sequences over text arriving in pieces.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty: no stop sequence), holding nothing yet.
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops, held: String::new() }
    }

    /// Adds `piece`; returns the text that can be sent and whether a stop sequence was found
    /// (the text before it is returned, the rest dropped).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        let first_stop = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first_stop {
            let before = self.held[..at].to_string();
            self.held.clear();
            return (before, true);
        }
        // Hold back the longest tail that is a prefix of some stop sequence.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let ready = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        (ready, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (ready, stopped) = m.push(p);
            out.push_str(&ready);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&m.held);
        (out, false)
    }

    #[test]
    fn stops_inside_and_across_pieces() {
        assert_eq!(run(&["END"], &["a b", "c EN", "D tail"]), ("a bc ".to_string(), true));
        assert_eq!(run(&["\n\n"], &["x\n", "\ny"]), ("x".to_string(), true));
        assert_eq!(run(&["END"], &["abc E", "Nd"]), ("abc ENd".to_string(), false));
        assert_eq!(run(&[], &["é", "ü"]), ("éü".to_string(), false));
        // The earliest of several stop sequences wins.
        assert_eq!(run(&["yz", "b"], &["abcxyz"]), ("a".to_string(), true));
    }

    #[test]
    fn only_a_possible_stop_prefix_is_held_back() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("hello ST"), ("hello ".to_string(), false));
        assert_eq!(m.push("ay"), ("STay".to_string(), false));
    }
}

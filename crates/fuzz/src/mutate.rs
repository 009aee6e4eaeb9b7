//! Deterministic mutations of seed inputs: the same seed gives the same inputs on every machine.

use tokenscale_base::rng::SplitMix64;

/// Numbers that break parsers: zero, signs, type limits and one past them, floats that do not
/// fit, lengths that would need terabytes.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1e-400",
    "NaN",
    "1.5",
    "999999999999999999999999999",
    "100000000",
];

/// Bytes that change structure: JSON and TSV punctuation, line ends, NUL, high bytes.
const BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b']', b',', b':', b'\t', b'\n', b'\r', b'0', b'9',
    b'-', b'\\',
];

/// Little-endian integers for binary headers (lengths, sizes, offsets).
const WORDS: &[u64] =
    &[0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x1_0000_0000, u64::MAX / 2, u64::MAX];

/// The largest input made (bigger seeds are cut).
pub const MAX_INPUT: usize = 1 << 20;

/// A seeded source of mutated inputs over a corpus, with a dictionary of tokens to insert.
pub struct Mutator {
    rng: SplitMix64,
    seeds: Vec<Vec<u8>>,
    dictionary: Vec<Vec<u8>>,
}

impl Mutator {
    /// `seeds` must not be empty.
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>, dictionary: &[&[u8]]) -> Mutator {
        Mutator {
            rng: SplitMix64::new(seed),
            seeds,
            dictionary: dictionary.iter().map(|d| d.to_vec()).collect(),
        }
    }

    /// A seed with 1 to 4 mutations stacked on it.
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut data = self.seeds[self.rng.below(self.seeds.len())].clone();
        for _ in 0..=self.rng.below(4) {
            self.mutate(&mut data);
        }
        data.truncate(MAX_INPUT);
        data
    }

    fn pos(&mut self, data: &[u8]) -> usize {
        self.rng.below(data.len() + 1)
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        match self.rng.below(10) {
            0 if !data.is_empty() => {
                let i = self.rng.below(data.len());
                data[i] ^= 1 << self.rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = self.rng.below(data.len());
                data[i] = BYTES[self.rng.below(BYTES.len())];
            }
            2 => {
                let at = self.pos(data);
                let bytes: Vec<u8> =
                    (0..1 + self.rng.below(8)).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if !data.is_empty() => {
                let start = self.rng.below(data.len());
                let end = (start + 1 + self.rng.below(16)).min(data.len());
                data.drain(start..end);
            }
            4 => {
                let at = self.pos(data);
                data.truncate(at);
            }
            5 if !data.is_empty() => {
                let start = self.rng.below(data.len());
                let end = (start + 1 + self.rng.below(64)).min(data.len());
                let copy = data[start..end].to_vec();
                let at = self.pos(data);
                data.splice(at..at, copy);
            }
            6 => {
                let other = self.seeds[self.rng.below(self.seeds.len())].clone();
                let cut = self.pos(data);
                let from = self.rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if !self.dictionary.is_empty() => {
                let token = self.dictionary[self.rng.below(self.dictionary.len())].clone();
                let at = self.pos(data);
                data.splice(at..at, token);
            }
            8 => self.replace_number(data),
            9 if data.len() >= 8 => {
                let at = self.rng.below(data.len() - 7);
                let word = WORDS[self.rng.below(WORDS.len())].to_le_bytes();
                let width = [1, 2, 4, 8][self.rng.below(4)];
                data[at..at + width].copy_from_slice(&word[..width]);
            }
            _ => {
                let at = self.pos(data);
                data.insert(at, BYTES[self.rng.below(BYTES.len())]);
            }
        }
    }

    /// Replaces one run of ASCII digits (a size, a count, an offset) with a troublesome number.
    fn replace_number(&mut self, data: &mut Vec<u8>) {
        let digits: Vec<usize> = (0..data.len())
            .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
            .collect();
        if digits.is_empty() {
            return;
        }
        let start = digits[self.rng.below(digits.len())];
        let end = (start..data.len()).find(|&i| !data[i].is_ascii_digit()).unwrap_or(data.len());
        let number = NUMBERS[self.rng.below(NUMBERS.len())].as_bytes().to_vec();
        data.splice(start..end, number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_they_differ_from_the_seed() {
        let corpus = vec![br#"{"model_type": "llama", "hidden_size": 64}"#.to_vec()];
        let run = |seed| {
            let mut m = Mutator::new(seed, corpus.clone(), &[b"\"vocab_size\": 7,"]);
            (0..200).map(|_| m.next_input()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let inputs = run(1);
        assert!(inputs.iter().filter(|i| **i != corpus[0]).count() > 150);
        assert!(inputs.iter().any(|i| i.windows(10).any(|w| w == b"vocab_size")));
        assert!(inputs.iter().any(|i| i.len() < corpus[0].len() / 2));
    }
}

//! The benchmark's draws (ranges, chances, weighted picks, shuffles) over the project's
//! SplitMix64 stream, so the benchmark's bytes cannot change with a dependency update. Its
//! `below` takes a plain modulo (not the rejection of `SplitMix64::below`): the published items
//! were drawn that way, and the bias is below 2⁻⁵⁸ for the small ranges used here.

use tokenscale_base::rng::mix64;
use tokenscale_base::rng::{SplitMix64, GOLDEN_GAMMA};

/// The benchmark's random stream: SplitMix64 over a salted seed (see the module docs).
pub struct Rng(SplitMix64);

/// XORed into every seed, so the benchmark's streams differ from other users' of the same seed.
const SEED_SALT: u64 = 0x853c49e6748fea9b;

impl Rng {
    /// A stream for `seed` (XORed with a fixed salt first).
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ SEED_SALT))
    }

    /// The next 64 raw bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n` ≥ 1; the modulo bias is below 2⁻⁵⁸ for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.below((hi - lo + 1) as usize) as i32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// An index drawn with probability proportional to `weights` (`None` when none is positive).
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        let mut x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut last = None;
        for (i, w) in weights.iter().enumerate() {
            if *w > 0.0 {
                last = Some(i);
                if x < *w {
                    return Some(i);
                }
                x -= w;
            }
        }
        last
    }

    /// A uniformly chosen element of `v`; `None` when `v` is empty.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }

    /// Shuffles `v` in place (Fisher–Yates, from the last element down).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// The seed of one random stream of one item: distinct (split tag, index, stream) triples give
/// unrelated seeds, so splits never share a stream and the scene does not depend on the mix.
pub fn stream_seed(split_tag: u64, index: u64, stream: u64) -> u64 {
    mix64(mix64(mix64(split_tag) ^ index) ^ stream.wrapping_mul(GOLDEN_GAMMA))
}

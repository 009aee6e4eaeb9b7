//! tokenscale-base: the few helpers that crates of every layer share, so that each exists once.
//!
//! - [`rng`]: SplitMix64, the project's only random generator (seeded runs are identical on
//!   every platform and with every dependency version).
//! - [`hash`]: FNV-1a 64, for content fingerprints and seeds derived from names.
//! - [`progress`]: a bar on a terminal, plain lines in a log.
//! - [`image`]: image decoding within size limits (image bombs are refused before allocation).

#![warn(missing_docs)]

pub mod hash;
pub mod image;
pub mod progress;
pub mod reducer;
pub mod rng;

pub use hash::fnv1a;
pub use reducer::Reducer;
pub use rng::SplitMix64;

//! tokenscale-fuzz: fuzzing on stable Rust without a coverage-guided engine.
//!
//! Inputs are made by a deterministic, seeded mutation loop ([`mutate::Mutator`]) over committed
//! seed corpora; [`runner::run`] writes each one where a reader expects its file, calls the
//! reader, and checks the three properties every reader owes its user:
//! 1. no panic (caught with `catch_unwind`, the input saved),
//! 2. bounded memory (a [`alloc::CountingAllocator`] measures each input's peak allocation
//!    against a cap, so sizes a file declares but does not contain are refused before allocating),
//! 3. an error names the file (the message contains the input's folder path).
//!
//! The targets live in `tests/fuzz.rs`; `tools/fuzz/run.sh` runs them for long.

#![warn(missing_docs)]

pub mod alloc;
pub mod mutate;
pub mod runner;

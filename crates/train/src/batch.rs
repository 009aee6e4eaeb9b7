//! One batch's gradient: the batch is cut into `SHARDS` fixed slices whose gradients are summed
//! in slice order, so the result is the same on any number of cores; the slices run on up to
//! that many threads (candle's CPU element-wise work is single-threaded, so this is where cores
//! help).

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::Var;

use crate::losses::registry::AuxTerms;

/// What a slice of a batch adds up: answer and auxiliary loss values, answer tokens, budgets.
#[derive(Default)]
pub(crate) struct BatchSums {
    /// Summed answer cross-entropy.
    pub answer: f64,
    /// Summed weighted auxiliary losses, term by term.
    pub aux: AuxTerms,
    /// Answer tokens trained on.
    pub tokens: usize,
    /// Summed vision-token budgets.
    pub budget: usize,
}

impl BatchSums {
    /// Adds `other` in.
    pub fn add(&mut self, other: &BatchSums) {
        self.answer += other.answer;
        for (a, b) in self.aux.iter_mut().zip(other.aux) {
            *a += b;
        }
        self.tokens += other.tokens;
        self.budget += other.budget;
    }
}

/// Fixed slices of every batch: the number of threads a step can use.
const SHARDS: usize = 4;

/// The summed gradients of a `batch`-example batch and what its examples add up to. `shard`
/// computes one slice's gradients (of the slice's summed loss) on the calling thread; gradients
/// are merged for `params` only.
pub(crate) fn batch_gradients(
    batch: usize,
    params: &HashMap<String, Var>,
    shard: impl Fn(Range<usize>) -> Result<(GradStore, BatchSums)> + Sync,
) -> Result<(GradStore, BatchSums)> {
    let shard = &shard; // each thread borrows the one closure
    let shards = SHARDS.min(batch);
    let ranges: Vec<_> =
        (0..shards).map(|s| s * batch / shards..(s + 1) * batch / shards).collect();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).clamp(1, shards);
    let mut results: Vec<Option<Result<(GradStore, BatchSums)>>> =
        (0..shards).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<(usize, Range<usize>)> =
                    ranges.iter().cloned().enumerate().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    // The shards' forward passes run in training mode: `example_loss` passes
                    // `Forward::TRAINING` down explicitly.
                    mine.into_iter().map(|(i, r)| (i, shard(r))).collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(out) => {
                    for (i, r) in out {
                        results[i] = Some(r);
                    }
                }
                Err(_) => std::panic::resume_unwind(Box::new("a training thread panicked")),
            }
        }
    });
    let mut merged: Option<GradStore> = None;
    let mut sums = BatchSums::default();
    for result in results {
        let (mut grads, part) = result.context("a training shard did not run")??;
        sums.add(&part);
        merged = Some(match merged {
            None => grads,
            Some(mut acc) => {
                for var in params.values() {
                    if let Some(g) = grads.remove(var.as_tensor()) {
                        let sum = match acc.remove(var.as_tensor()) {
                            Some(a) => (a + g)?,
                            None => g,
                        };
                        acc.insert(var.as_tensor(), sum);
                    }
                }
                acc
            }
        });
    }
    Ok((merged.context("empty batch")?, sums))
}

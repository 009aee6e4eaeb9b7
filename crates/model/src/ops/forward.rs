//! The forward context: what a forward pass is asked to do besides computing its outputs,
//! passed down by reference to every layer instead of being read from thread-locals.
//!
//! - [`Mode`]: inference runs candle's fused kernels and the runtime's fast paths; training runs
//!   the same formulas written with differentiable tensor ops (candle's fused CPU kernels for
//!   softmax, the norms and RoPE have no backward pass, and the fast paths read raw storage,
//!   which autograd cannot see through).
//! - an [`AttentionCapture`]: keeps the attention probabilities `[B, heads, T, S]` of every
//!   decoder attention layer run (training losses on where a layer looks).
//! - an [`OpCounter`]: counts the multiply-accumulates the matrix products execute.
//!
//! [`Forward::INFERENCE`] asks for none of the extras; checking for them costs a branch on a
//! `None`.

use std::sync::Mutex;

use candle_core::Tensor;

use crate::opcount::{Op, OpCounter};

/// Which formulas the layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fused kernels and fast paths (no autograd graph through them).
    #[default]
    Inference,
    /// Differentiable formulas written with candle's tensor ops (same results within rounding).
    Training,
}

/// The attention probabilities kept during the forward passes that were given it, in the order
/// the layers ran.
#[derive(Debug, Default)]
pub struct AttentionCapture {
    probs: Mutex<Vec<Tensor>>,
}

impl AttentionCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// The probabilities kept so far; the capture is empty afterwards.
    pub fn take(&self) -> Vec<Tensor> {
        match self.probs.lock() {
            Ok(mut probs) => std::mem::take(&mut *probs),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn push(&self, probs: &Tensor) {
        match self.probs.lock() {
            Ok(mut list) => list.push(probs.clone()),
            Err(poisoned) => poisoned.into_inner().push(probs.clone()),
        }
    }
}

/// What a forward pass does besides computing its outputs (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward<'a> {
    mode: Mode,
    capture: Option<&'a AttentionCapture>,
    ops: Option<&'a OpCounter>,
}

impl Forward<'static> {
    /// Plain inference: fused kernels, nothing captured or counted.
    pub const INFERENCE: Forward<'static> =
        Forward { mode: Mode::Inference, capture: None, ops: None };
    /// The differentiable formulas (training), nothing captured or counted.
    pub const TRAINING: Forward<'static> =
        Forward { mode: Mode::Training, capture: None, ops: None };
}

impl<'a> Forward<'a> {
    /// A context in `mode` with nothing captured or counted.
    pub fn new(mode: Mode) -> Self {
        Self { mode, capture: None, ops: None }
    }

    /// This context, also counting the MACs of its matrix products into `counter`.
    pub fn counting<'b>(self, counter: &'b OpCounter) -> Forward<'b>
    where
        'a: 'b,
    {
        Forward { mode: self.mode, capture: self.capture, ops: Some(counter) }
    }

    /// This context, also keeping the decoder's attention probabilities in `capture` (which
    /// sends attention down candle's path, the one that materialises them).
    pub fn capturing<'b>(self, capture: &'b AttentionCapture) -> Forward<'b>
    where
        'a: 'b,
    {
        Forward { mode: self.mode, capture: Some(capture), ops: self.ops }
    }

    /// Whether layers run the fused inference kernels or the differentiable formulas.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True in training mode: the layers use the differentiable formulas.
    #[inline]
    pub fn differentiable(&self) -> bool {
        self.mode == Mode::Training
    }

    /// True when attention probabilities are being kept.
    #[inline]
    pub fn capturing_attention(&self) -> bool {
        self.capture.is_some()
    }

    /// Keeps `probs` when capturing.
    pub(crate) fn record_attention(&self, probs: &Tensor) {
        if let Some(capture) = self.capture {
            capture.push(probs);
        }
    }

    /// Adds `macs()` to the counter, when counting (`macs` is evaluated only then).
    #[inline]
    pub(crate) fn count(&self, op: Op, macs: impl FnOnce() -> u64) {
        if let Some(counter) = self.ops {
            counter.add(op, macs());
        }
    }
}

//! What one example's auxiliary losses read: the targets known before the forward pass
//! (`Targets`) and everything the pass produced (`AuxInputs`). Every loss module depends on this
//! one and nothing here depends on them.

use anyhow::{Context, Result};
use candle_core::Tensor;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;

use super::heads::HeadParams;
use crate::config::TrainConfig;
use crate::data::Example;

/// A QED slot a lookup loss points at.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// The slot of this grid cell (row-major).
    Cell(usize),
    /// The last slot: the decoder's end-of-query state, which holds the whole-image summary.
    Last,
}

/// What an example gives the auxiliary losses to aim at, known before the forward pass.
pub(crate) struct Targets<'e> {
    /// The example.
    pub example: &'e Example,
    /// Its vision-token budget (QED slots the LLM sees).
    pub n: usize,
    /// The slot the answer is read from by a lookup the query and attend losses supervise: the
    /// asked cell, with the anchor loss on also a relation's neighbour, and with
    /// `summary_lookup` the last slot for whole-image questions.
    pub lookup: Option<Slot>,
}

impl<'e> Targets<'e> {
    pub(super) fn of(config: &TrainConfig, example: &'e Example, n: usize) -> Self {
        let lookup = match (example.asked_cell, example.anchor_cell) {
            (Some(cell), _) => Some(Slot::Cell(cell)),
            (None, Some(_)) if config.aux_anchor_weight > 0.0 => {
                example.answer_cell.map(Slot::Cell)
            }
            _ if example.asks_summary && config.summary_lookup => Some(Slot::Last),
            _ => None,
        };
        Self { example, n, lookup }
    }
}

/// Everything an auxiliary loss may read of one example's forward pass.
pub(crate) struct AuxInputs<'a> {
    /// The run's settings (layers, `routed_from_slot`).
    pub config: &'a TrainConfig,
    /// The example and what it asks for.
    pub targets: &'a Targets<'a>,
    /// The heads being trained.
    pub heads: HeadParams<'a>,
    /// The model (the early-answer loss reads through its LM head).
    pub pipeline: &'a ImgQuePipeline,
    /// The vision tokens of every crop, `[crops, tokens + 1, vision_hidden]`; crop 0 is the global view.
    pub crops: &'a Tensor,
    /// The query decoder's states that fill the QED slots, `[n, vision_hidden]`.
    pub query_states: &'a Tensor,
    /// The LLM's hidden states (index 0: its input); empty unless a `LlmStates` loss applies.
    pub hidden_states: &'a [Tensor],
    /// The LLM's attention probabilities per layer, `[1, heads, T, T]`; empty unless an
    /// `LlmAttention` loss applies.
    pub attention: &'a [Tensor],
    /// The LLM input's token ids (QED slots included).
    pub ids: &'a [u32],
    /// The LLM input's token-type bits.
    pub tps: &'a [u32],
    /// The position that predicts the answer's first token.
    pub answer_position: usize,
    /// The parameter prefix of the head of the loss being computed (see `registry::Head`).
    pub head: Option<&'static str>,
}

impl AuxInputs<'_> {
    /// The prefix of the current loss's own head.
    pub(super) fn head(&self) -> Result<&'static str> {
        self.head.context("an auxiliary loss without a head of its own asked for one")
    }
}

/// The sequence positions of the LLM input's QED slots, in order.
pub(super) fn slot_positions(tps: &[u32]) -> Vec<usize> {
    tps.iter()
        .enumerate()
        .filter(|(_, &t)| t & tokenscale_model::chat::token_type::QED != 0)
        .map(|(i, _)| i)
        .collect()
}

//! Auxiliary losses on the LLM's attention probabilities: the first head of a chosen layer, at
//! the position that predicts the answer, is told where to look (no head of their own). Each
//! returns the unweighted loss.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use super::inputs::{slot_positions, AuxInputs, Slot};

/// The captured attention probabilities of LLM layer `layer` (1-based).
fn layer_attention(attention: &[Tensor], layer: usize) -> Result<&Tensor> {
    attention.get(layer - 1).with_context(|| {
        format!("attention layer {layer}: only {} attention layers ran", attention.len())
    })
}

/// −log of the attention that head 0 of `layer` (1-based), at the answer position, pays to the
/// QED slot `target` (`None` when the budget has no slot for it).
fn look_at(x: &AuxInputs, target: Slot, layer: usize) -> Result<Option<Tensor>> {
    let probs = layer_attention(x.attention, layer)?;
    let slots = slot_positions(x.tps);
    let found = match target {
        Slot::Cell(cell) => slots.get(cell),
        Slot::Last => slots.last(),
    };
    let Some(&slot) = found else { return Ok(None) };
    let p = probs.get(0)?.get(0)?.get(x.answer_position)?.get(slot)?;
    Ok(Some((p + 1e-9)?.log()?.neg()?))
}

/// `aux_attend`: layer `aux_attend_layer` looks at the slot the answer is read from.
pub(super) fn attend_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some(target) = x.targets.lookup else { return Ok(None) };
    look_at(x, target, x.config.aux_attend_layer)
}

/// `aux_anchor`: layer `aux_anchor_layer` looks at a relation question's anchor (the first hop).
pub(super) fn anchor_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some(anchor) = x.targets.example.anchor_cell else { return Ok(None) };
    look_at(x, Slot::Cell(anchor), x.config.aux_anchor_layer)
}

/// `aux_count`: cross-entropy of head 0 of `aux_count_layer` at the answer position against the
/// even spread over the first token (a sink) and the QED slots of the counted cells the budget
/// has, so the share left on the sink, 1 / (count + 1), carries the count.
pub(super) fn count_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some(counted) = x.targets.example.counted_cells.as_deref() else { return Ok(None) };
    let probs = layer_attention(x.attention, x.config.aux_count_layer)?;
    let slots = slot_positions(x.tps);
    let targets: Vec<u32> = std::iter::once(0)
        .chain(counted.iter().filter_map(|&c| slots.get(c).map(|&i| i as u32)))
        .collect();
    let picked = probs
        .get(0)?
        .get(0)?
        .get(x.answer_position)?
        .index_select(&Tensor::new(targets.as_slice(), &Device::Cpu)?, 0)?;
    Ok(Some((picked + 1e-9)?.log()?.mean_all()?.neg()?))
}

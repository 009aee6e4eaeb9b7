//! Auxiliary losses on the LLM's hidden states: heads that read the state at the position that
//! predicts the answer (or at the QED slots, or at every text position) after a given number of
//! layers and name what the lookup there needs or fetched. Each returns the unweighted loss.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use tokenscale_model::Forward;

use super::heads::CELL_CLASSES;
use super::inputs::{slot_positions, AuxInputs, Slot};
use crate::data::COUNT_CLASSES;

/// The LLM's states after `layer` layers (0: its input) at every position: `[T, llm_hidden]`.
/// `field` is the config field that chose the layer.
fn llm_states(hidden_states: &[Tensor], layer: usize, field: &str) -> Result<Tensor> {
    let states = hidden_states
        .get(layer)
        .with_context(|| format!("field `{field}`: the LLM has no state after {layer} layers"))?;
    Ok(states.squeeze(0)?)
}

/// The LLM's state after `layer` layers at `position`: `[1, llm_hidden]`.
fn llm_state(
    hidden_states: &[Tensor],
    layer: usize,
    position: usize,
    field: &str,
) -> Result<Tensor> {
    Ok(llm_states(hidden_states, layer, field)?.narrow(0, position, 1)?)
}

/// `aux_query`: a head on the state after `aux_query_layer` layers at the answer position names
/// the row and column of the cell the question asks about.
pub(super) fn query_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some(Slot::Cell(cell)) = x.targets.lookup else { return Ok(None) };
    let state =
        llm_state(x.hidden_states, x.config.aux_query_layer, x.answer_position, "aux_query_layer")?;
    Ok(Some(x.heads.row_column_loss(x.head()?, &state, cell)?))
}

/// `aux_prev`: a head on the state after one layer; each text position after a text position
/// names the previous token.
pub(super) fn previous_token_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let (ids, tps) = (x.ids, x.tps);
    let text = |i: usize| tps[i] & tokenscale_model::chat::token_type::QED == 0;
    let (positions, previous): (Vec<u32>, Vec<u32>) =
        (1..ids.len()).filter(|&i| text(i) && text(i - 1)).map(|i| (i as u32, ids[i - 1])).unzip();
    if positions.is_empty() {
        return Ok(None);
    }
    let state =
        x.hidden_states.get(1).context("aux_prev_weight: the LLM has no layers")?.squeeze(0)?;
    let state = state.index_select(&Tensor::new(positions.as_slice(), &Device::Cpu)?, 0)?;
    let (w, b) = x.heads.tensors(x.head()?)?;
    let logits = state.matmul(&w.t()?)?.broadcast_add(b)?;
    Ok(Some(candle_nn::loss::cross_entropy(
        &logits,
        &Tensor::new(previous.as_slice(), &Device::Cpu)?,
    )?))
}

/// `aux_fetch`: a head on the state after `aux_attend_layer` layers at the answer position names
/// what the lookup fetched: the answer cell's content, or the count of the counted cells (when
/// the budget holds their slots).
pub(super) fn fetch_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let (example, n) = (x.targets.example, x.targets.n);
    let cell = example.answer_cell.filter(|&c| c < n).and_then(|c| example.cells.get(c));
    let count = example
        .counted_cells
        .as_ref()
        .filter(|counted| counted.iter().all(|&c| c < n))
        .map(|c| c.len());
    let (w, b) = x.heads.tensors(x.head()?)?;
    let state = || {
        llm_state(x.hidden_states, x.config.aux_attend_layer, x.answer_position, "aux_attend_layer")
    };
    let loss = if let Some(cell) = cell {
        x.heads.cell_prediction_loss(x.head()?, &state()?, std::slice::from_ref(cell))?
    } else if let Some(count) = count.filter(|&c| c < COUNT_CLASSES) {
        let (w, b) =
            (w.narrow(0, CELL_CLASSES, COUNT_CLASSES)?, b.narrow(0, CELL_CLASSES, COUNT_CLASSES)?);
        let logits = state()?.matmul(&w.t()?)?.broadcast_add(&b)?;
        candle_nn::loss::cross_entropy(&logits, &Tensor::new(&[count as u32], &Device::Cpu)?)?
    } else {
        return Ok(None);
    };
    Ok(Some(loss))
}

/// `aux_llm_slot`: a head on the states entering `aux_attend_layer` at the first QED slots; each
/// names its cell's content.
pub(super) fn llm_slot_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let example = x.targets.example;
    if example.cells.is_empty() {
        return Ok(None);
    }
    let slots = slot_positions(x.tps);
    let k = slots.len().min(example.cells.len());
    if k == 0 {
        return Ok(None);
    }
    let states = llm_states(x.hidden_states, x.config.aux_attend_layer - 1, "aux_attend_layer")?;
    let picks =
        Tensor::new(slots[..k].iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
    let tokens = states.index_select(&picks, 0)?;
    Ok(Some(x.heads.cell_prediction_loss(x.head()?, &tokens, &example.cells[..k])?))
}

/// `aux_anchor_query`: a head on the state entering `aux_anchor_layer` at the answer position
/// names the colour and shape of a relation question's anchor.
pub(super) fn anchor_query_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let example = x.targets.example;
    let Some(anchor) = example.anchor_cell.and_then(|a| example.cells.get(a)) else {
        return Ok(None);
    };
    let state = llm_state(
        x.hidden_states,
        x.config.aux_anchor_layer - 1,
        x.answer_position,
        "aux_anchor_layer",
    )?;
    Ok(Some(x.heads.cell_prediction_loss(x.head()?, &state, std::slice::from_ref(anchor))?))
}

/// `aux_early_answer`: the state after `aux_attend_layer` layers at the answer position, read
/// through the final norm and the LM head, names the answer's first token.
pub(super) fn early_answer_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let target = x.ids[x.answer_position + 1];
    let state = llm_state(
        x.hidden_states,
        x.config.aux_attend_layer,
        x.answer_position,
        "aux_attend_layer",
    )?;
    let logits = x.pipeline.model.llm.logits_of(&Forward::TRAINING, &state)?;
    Ok(Some(candle_nn::loss::cross_entropy(&logits, &Tensor::new(&[target], &Device::Cpu)?)?))
}

/// `aux_anchor_fetch`: a head on the state after `aux_anchor_layer` layers at the answer position
/// names the row and column of a relation question's anchor (when the budget has its slot).
pub(super) fn anchor_fetch_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some(cell) = x.targets.example.anchor_cell.filter(|&a| a < x.targets.n) else {
        return Ok(None);
    };
    let state = llm_state(
        x.hidden_states,
        x.config.aux_anchor_layer,
        x.answer_position,
        "aux_anchor_layer",
    )?;
    Ok(Some(x.heads.row_column_loss(x.head()?, &state, cell)?))
}

//! Auxiliary losses on the vision side: heads that read the global view's merged tokens or the
//! query decoder's slot states and name what the scene holds, so the slots carry a spatial
//! summary the LLM can look cells up in. Each returns the unweighted loss.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

use super::heads::{slot_grid, CELL_CLASSES};
use super::inputs::AuxInputs;
use crate::data::{BORDER_CLASSES, TINT_CLASSES};

/// `aux_cell`: a head over the global view's merged tokens (one per cell) names each cell's content.
pub(super) fn cell_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let example = x.targets.example;
    if example.cells.is_empty() {
        return Ok(None);
    }
    let cells = example.cells.len();
    let per_crop = x.crops.dim(1)? - 1;
    if per_crop != cells {
        bail!("aux_cell_weight needs one merged token per grid cell: the global view has {per_crop} tokens, the scene {cells} cells");
    }
    let tokens = x.crops.get(0)?.narrow(0, 0, cells)?;
    Ok(Some(x.heads.cell_prediction_loss(x.head()?, &tokens, &example.cells)?))
}

/// `aux_slot`: a head over the first QED slots' states (slot j ↔ cell j) names each cell's
/// content and the slot's own row and column; with the routed loss on it stops at `routed_from_slot`.
pub(super) fn slot_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let example = x.targets.example;
    if example.cells.is_empty() {
        return Ok(None);
    }
    let mut k = x.query_states.dim(0)?.min(example.cells.len());
    if x.config.aux_routed_weight > 0.0 {
        k = k.min(x.config.routed_from_slot);
    }
    if k == 0 {
        return Ok(None);
    }
    let tokens = x.query_states.narrow(0, 0, k)?;
    let content = x.heads.cell_prediction_loss(x.head()?, &tokens, &example.cells[..k])?;
    // Each slot also names its own row and column, so the LLM can find a cell's slot by
    // matching the question's row and column words against it.
    let side = slot_grid(&x.config.model);
    if side * side != example.cells.len() {
        bail!(
            "aux_slot_weight: the scene has {} cells, the slot head names a {side}×{side} grid",
            example.cells.len()
        );
    }
    let (w, b) = x.heads.tensors(x.head()?)?;
    let logits = tokens
        .matmul(&w.narrow(0, CELL_CLASSES, 2 * side)?.t()?)?
        .broadcast_add(&b.narrow(0, CELL_CLASSES, 2 * side)?)?;
    let rows =
        Tensor::new((0..k as u32).map(|j| j / side as u32).collect::<Vec<_>>(), &Device::Cpu)?;
    let cols =
        Tensor::new((0..k as u32).map(|j| j % side as u32).collect::<Vec<_>>(), &Device::Cpu)?;
    let identity = (candle_nn::loss::cross_entropy(&logits.narrow(1, 0, side)?, &rows)?
        + candle_nn::loss::cross_entropy(&logits.narrow(1, side, side)?, &cols)?)?;
    Ok(Some((content + identity)?))
}

/// `aux_routed`: a head over the QED slots from `routed_from_slot` on; each names the content of
/// the cell the question is about.
pub(super) fn routed_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let example = x.targets.example;
    let from = x.config.routed_from_slot;
    let n = x.query_states.dim(0)?;
    let Some(cell) = example.answer_cell.and_then(|a| example.cells.get(a)) else {
        return Ok(None);
    };
    if n <= from {
        return Ok(None);
    }
    let tokens = x.query_states.narrow(0, from, n - from)?;
    let targets = vec![*cell; n - from];
    Ok(Some(x.heads.cell_prediction_loss(x.head()?, &tokens, &targets)?))
}

/// `aux_summary`: a head over the last QED slot names the background tint and the border colour.
pub(super) fn summary_loss(x: &AuxInputs) -> Result<Option<Tensor>> {
    let Some((tint, border)) = x.targets.example.summary else { return Ok(None) };
    let last = x.query_states.narrow(0, x.query_states.dim(0)? - 1, 1)?;
    let (w, b) = x.heads.tensors(x.head()?)?;
    let logits = last.matmul(&w.t()?)?.broadcast_add(b)?;
    let loss = (candle_nn::loss::cross_entropy(
        &logits.narrow(1, 0, TINT_CLASSES)?,
        &Tensor::new(&[tint], &Device::Cpu)?,
    )? + candle_nn::loss::cross_entropy(
        &logits.narrow(1, TINT_CLASSES, BORDER_CLASSES)?,
        &Tensor::new(&[border], &Device::Cpu)?,
    )?)?;
    Ok(Some(loss))
}

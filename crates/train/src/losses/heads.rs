//! The auxiliary losses' linear heads: their class layouts, a fresh head's seeded initialisation,
//! and the two readings several losses share (a cell's colour and shape; a cell's row and column).

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};

use crate::data::{BORDER_CLASSES, COLOUR_CLASSES, SHAPE_CLASSES, TINT_CLASSES};
use crate::init::Gaussian;
use crate::tiny::TinyShape;

/// Rows of a head that names a cell's content: colour classes, then shape classes.
pub(crate) const CELL_CLASSES: usize = COLOUR_CLASSES + SHAPE_CLASSES;
/// Rows of the summary head: background tints, then border colours.
pub(crate) const SUMMARY_CLASSES: usize = TINT_CLASSES + BORDER_CLASSES;

/// Side of the grid the slot head names slots by (the global view's merged-token grid, which
/// the scene grid matches in the shapes the cell head accepts).
pub(crate) fn slot_grid(shape: &TinyShape) -> usize {
    (shape.crop / shape.patch).div_ceil(2)
}

/// A fresh auxiliary head `{prefix}.weight` / `{prefix}.bias` (width `h` → `rows` classes).
pub(crate) fn fresh_head(
    prefix: &str,
    rows: usize,
    h: usize,
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = Gaussian::new(seed);
    let weight: Vec<f32> = (0..rows * h).map(|_| (0.02 * rng.sample()) as f32).collect();
    Ok(HashMap::from([
        (format!("{prefix}.weight"), Tensor::from_vec(weight, (rows, h), &Device::Cpu)?),
        (format!("{prefix}.bias"), Tensor::zeros(rows, DType::F32, &Device::Cpu)?),
    ]))
}

/// The trained heads of a run, by prefix.
#[derive(Clone, Copy)]
pub(crate) struct HeadParams<'a>(pub &'a HashMap<String, Var>);

impl HeadParams<'_> {
    /// The weight and bias of head `prefix`.
    pub fn tensors(&self, prefix: &str) -> Result<(&Tensor, &Tensor)> {
        let get = |k: String| {
            self.0.get(&k).map(Var::as_tensor).with_context(|| {
                format!("the run has no `{k}` (its auxiliary weight was 0 when it started)")
            })
        };
        Ok((get(format!("{prefix}.weight"))?, get(format!("{prefix}.bias"))?))
    }

    /// Cross-entropy of head `prefix` predicting, from each row of `tokens` `[k, h]`, the
    /// content of the matching cell of `cells` (k of them).
    pub fn cell_prediction_loss(
        &self,
        prefix: &str,
        tokens: &Tensor,
        cells: &[(u32, u32)],
    ) -> Result<Tensor> {
        let (w, b) = self.tensors(prefix)?;
        let (w, b) = (w.narrow(0, 0, CELL_CLASSES)?, b.narrow(0, 0, CELL_CLASSES)?);
        let logits = tokens.matmul(&w.t()?)?.broadcast_add(&b)?;
        let colours = Tensor::new(cells.iter().map(|c| c.0).collect::<Vec<_>>(), &Device::Cpu)?;
        let shapes = Tensor::new(cells.iter().map(|c| c.1).collect::<Vec<_>>(), &Device::Cpu)?;
        let colour_loss =
            candle_nn::loss::cross_entropy(&logits.narrow(1, 0, COLOUR_CLASSES)?, &colours)?;
        let shape_loss = candle_nn::loss::cross_entropy(
            &logits.narrow(1, COLOUR_CLASSES, SHAPE_CLASSES)?,
            &shapes,
        )?;
        Ok((colour_loss + shape_loss)?)
    }

    /// Cross-entropy of head `prefix` naming, from `state` `[1, h]`, the row and the column of `cell`.
    pub fn row_column_loss(&self, prefix: &str, state: &Tensor, cell: usize) -> Result<Tensor> {
        let (w, b) = self.tensors(prefix)?;
        let side = w.dim(0)? / 2;
        let logits = state.matmul(&w.t()?)?.broadcast_add(b)?;
        let row = Tensor::new(&[(cell / side) as u32], &Device::Cpu)?;
        let col = Tensor::new(&[(cell % side) as u32], &Device::Cpu)?;
        Ok((candle_nn::loss::cross_entropy(&logits.narrow(1, 0, side)?, &row)?
            + candle_nn::loss::cross_entropy(&logits.narrow(1, side, side)?, &col)?)?)
    }
}

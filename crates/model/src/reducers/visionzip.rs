//! `visionzip`: VisionZip's dominant and contextual tokens at the selected CLIP layer (see the
//! module docs of [`crate::reducers`]).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};

use super::{top_k_sorted, weighted_rows, ImageTokens, TokenReducer};

/// The `visionzip` plug-in.
pub struct VisionZip;

impl TokenReducer for VisionZip {
    fn needs_attention(&self) -> bool {
        true
    }

    fn reduce(&self, tokens: &ImageTokens, n: usize) -> Result<Tensor> {
        let attention = tokens.attention.context("visionzip needs a cache made for visionzip")?;
        let (dominant, contextual) = visionzip_split(n);
        Ok(visionzip(
            &attention.hidden,
            &attention.keys_mean,
            &attention.cls_attention,
            dominant,
            contextual,
        )?
        .0)
    }
}

/// VisionZip's (dominant incl. CLS, contextual) split for N tokens: C = round(10·N/64), D = N − C ≥ 1.
pub fn visionzip_split(n: usize) -> (usize, usize) {
    let contextual = ((10 * n + 32) / 64).min(n.saturating_sub(1));
    (n - contextual, contextual)
}

/// What VisionZip selected, as indices into the layer's token sequence (0 = CLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionZipSelection {
    /// CLS and the top patches, ascending.
    pub dominant: Vec<usize>,
    /// The target token of each contextual output, ascending.
    pub targets: Vec<usize>,
    /// For each merged (non-dominant, non-target) token, ascending: (token, contextual slot).
    pub assignment: Vec<(usize, usize)>,
}

/// VisionZip on one image: `hidden` `[T, D]` and `keys_mean` `[T, d]` of the selected layer with
/// CLS at row 0, `cls_attention` the CLS row's attention to tokens 1..T summed over heads
/// (`T − 1` values). Returns `[dominant + contextual, D]`.
pub fn visionzip(
    hidden: &Tensor,
    keys_mean: &Tensor,
    cls_attention: &[f32],
    dominant: usize,
    contextual: usize,
) -> Result<(Tensor, VisionZipSelection)> {
    let (t, _) = hidden.dims2()?;
    if cls_attention.len() + 1 != t || keys_mean.dim(0)? != t {
        bail!(
            "visionzip: {t} tokens but {} attention values and {} keys",
            cls_attention.len(),
            keys_mean.dim(0)?
        );
    }
    if dominant == 0 || dominant + contextual > t || (contextual > 0 && dominant + contextual == t)
    {
        bail!(
            "visionzip: {dominant} dominant + {contextual} contextual tokens do not fit {t} tokens"
        );
    }
    let device = hidden.device();
    let ids = |v: &[usize]| Tensor::new(v.iter().map(|&i| i as u32).collect::<Vec<_>>(), device);
    // Dominant: CLS + the top (dominant − 1) patches by CLS attention, in sequence order.
    let mut dom: Vec<usize> = std::iter::once(0)
        .chain(top_k_sorted(cls_attention, dominant - 1).into_iter().map(|i| i + 1))
        .collect();
    dom.sort_unstable();
    let dominant_tokens = hidden.index_select(&ids(&dom)?, 0)?;
    if contextual == 0 {
        return Ok((
            dominant_tokens,
            VisionZipSelection { dominant: dom, targets: vec![], assignment: vec![] },
        ));
    }
    let mut is_dom = vec![false; t];
    dom.iter().for_each(|&i| is_dom[i] = true);
    let rest: Vec<usize> = (0..t).filter(|&i| !is_dom[i]).collect();
    let m = rest.len();
    let step = (m / contextual).max(1);
    let target_pos: Vec<usize> = (0..m).step_by(step).take(contextual).collect();
    let mut is_target = vec![false; m];
    target_pos.iter().for_each(|&p| is_target[p] = true);
    let merge_pos: Vec<usize> = (0..m).filter(|&p| !is_target[p]).collect();
    let targets: Vec<usize> = target_pos.iter().map(|&p| rest[p]).collect();
    let merged: Vec<usize> = merge_pos.iter().map(|&p| rest[p]).collect();

    let keys = keys_mean.to_dtype(DType::F32)?;
    let normed = |v: &[usize]| -> Result<Tensor> {
        let k = keys.index_select(&ids(v)?, 0)?;
        Ok(k.broadcast_div(&k.sqr()?.sum_keepdim(1)?.sqrt()?)?)
    };
    let sim: Vec<Vec<f32>> = normed(&merged)?.matmul(&normed(&targets)?.t()?)?.to_vec2()?;
    let mut assignment = Vec::with_capacity(merged.len());
    let mut counts = vec![0usize; contextual];
    for (row, &tok) in sim.iter().zip(&merged) {
        let mut best = 0;
        for (j, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = j;
            }
        }
        counts[best] += 1;
        assignment.push((tok, best));
    }
    // aggregated[c] = Σ hidden[assigned to c] / max(1, count c); contextual = target + aggregated.
    let rows: usize = merged.len();
    let mut w = vec![0f32; contextual * rows];
    for (r, &(_, c)) in assignment.iter().enumerate() {
        w[c * rows + r] = 1.0 / counts[c].max(1) as f32;
    }
    let aggregated = weighted_rows(w, contextual, &hidden.index_select(&ids(&merged)?, 0)?)?;
    let contextual_tokens = (hidden.index_select(&ids(&targets)?, 0)? + aggregated)?;
    let out = Tensor::cat(&[&dominant_tokens, &contextual_tokens], 0)?;
    Ok((out, VisionZipSelection { dominant: dom, targets, assignment }))
}

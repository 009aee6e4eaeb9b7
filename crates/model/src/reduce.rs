//! LLaVA-1.5 vision-token reducers: turn the 576 CLIP tokens of an image (`image_tokens` of the
//! config in general) into exactly N tokens, 1 ≤ N ≤ 576.
//!
//! * `pool` — average pooling of the **CLIP features before the projector** (the usual baseline:
//!   the projector then maps the pooled features). When N = s² is a perfect square and the
//!   tokens form the patch grid (CLS dropped, the default strategy) it is 2D adaptive average
//!   pooling of the 24×24 grid to s×s (row-major output); otherwise 1D adaptive average pooling
//!   over the token sequence. Bins follow PyTorch's `adaptive_avg_pool`: output i averages inputs
//!   `floor(i·L/N) .. ceil((i+1)·L/N)`.
//! * `uniform` — N evenly spaced tokens, index `floor((2i+1)·L / (2N))` for i = 0..N (the centre
//!   of each of N equal bins; N = L gives every token).
//! * `visionzip` — VisionZip (Yang et al., 2024) at the selected CLIP layer (`vision_feature_layer`,
//!   −2 for LLaVA-1.5): D dominant tokens = CLS plus the D−1 patches with the highest CLS
//!   attention (summed over heads) at that layer, in sequence order; then C contextual tokens:
//!   the other tokens' keys (`k_proj` output averaged over heads) are L2-normalised, every
//!   `max(1, M / C)`-th of them (first C) becomes a target, each remaining token is assigned to
//!   its most similar target (cosine, first on ties), and a contextual token is the target's
//!   hidden state plus the mean of the hidden states assigned to it. Output: dominant tokens then
//!   contextual ones, which go through the projector. Split: C = round(10·N / 64) (VisionZip's
//!   54 + 10 for 64, 108 + 20 for 128 and 162 + 30 for 192), D = N − C, and D ≥ 1 always (for
//!   N ≤ 3, C = 0 and the dominant tokens are CLS plus the top N − 1 patches).
//! * `fastv` — FastV (Chen et al., 2024), the in-place variant with a KV cache: the LLM runs its
//!   first K layers (K = 2 by default, `fastv:K` to choose) over the full prompt; the N image
//!   tokens that the last prompt token attends to most at layer K (probabilities averaged over
//!   heads) are kept, the other image tokens are dropped from the hidden states before layer K
//!   and from the KV caches of layers ≥ K, and every survivor keeps its original position id, so
//!   decoding continues at position T (the unpruned prompt length). The selection is made once,
//!   at prefill. See [`crate::llama::SpanPrune`].
//!
//! N equal to the full token count is the identity for every reducer (no pooling, no merging,
//! no pruning).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use crate::llama::top_k_sorted;

/// Reducer names, for messages.
pub const REDUCERS: &[&str] = &["pool", "uniform", "visionzip", "fastv"];
/// FastV's K when `fastv` is given without one.
pub const FASTV_DEFAULT_LAYER: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    Pool,
    Uniform,
    VisionZip,
    /// Prune after LLM layer `layer` (K ≥ 1).
    FastV { layer: usize },
}

impl Reducer {
    /// `pool`, `uniform`, `visionzip`, `fastv` or `fastv:K`.
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "pool" => Self::Pool,
            "uniform" => Self::Uniform,
            "visionzip" => Self::VisionZip,
            "fastv" => Self::FastV { layer: FASTV_DEFAULT_LAYER },
            other => match other.strip_prefix("fastv:") {
                Some(k) => match k.parse::<usize>() {
                    Ok(layer) if layer >= 1 => Self::FastV { layer },
                    _ => bail!("reducer `{name}`: FastV's layer K must be an integer ≥ 1 (e.g. fastv:2)"),
                },
                None => bail!("unknown reducer `{name}` (known: pool, uniform, visionzip, fastv, fastv:K)"),
            },
        })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Pool => "pool".into(),
            Self::Uniform => "uniform".into(),
            Self::VisionZip => "visionzip".into(),
            Self::FastV { layer } => format!("fastv:{layer}"),
        }
    }
}

/// N must satisfy 1 ≤ N ≤ `available`.
pub fn check_budget(n: usize, available: usize) -> Result<()> {
    if n == 0 || n > available {
        bail!("vision-token count {n} is out of range: 1 ≤ N ≤ {available} (the image's vision tokens)");
    }
    Ok(())
}

/// PyTorch adaptive-pool bins: `[floor(i·L/N), ceil((i+1)·L/N))` for i = 0..N.
pub fn adaptive_bins(len: usize, n: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i * len / n, ((i + 1) * len).div_ceil(n))).collect()
}

/// `w · x` for an f32 weight matrix `w` (`[n, len]`) and tokens `x` (`[len, D]`), accumulated in
/// f32 and rounded once to `x`'s dtype (as PyTorch's 16-bit pooling accumulates in f32; candle's
/// CPU matmul has no 16-bit path).
fn weighted_rows(w: Vec<f32>, n: usize, x: &Tensor) -> Result<Tensor> {
    let len = x.dim(0)?;
    let w = Tensor::from_vec(w, (n, len), x.device())?;
    Ok(w.matmul(&x.to_dtype(DType::F32)?.contiguous()?)?.to_dtype(x.dtype())?)
}

/// The mean of each row's `members` among the `len` tokens of `x`.
fn pool_rows(rows: Vec<Vec<usize>>, len: usize, x: &Tensor) -> Result<Tensor> {
    let n = rows.len();
    let mut w = vec![0f32; n * len];
    for (i, members) in rows.iter().enumerate() {
        let share = 1.0 / members.len() as f32;
        for &j in members {
            w[i * len + j] = share;
        }
    }
    weighted_rows(w, n, x)
}

/// 1D adaptive average pooling of `x` (`[L, D]`) to `[n, D]`.
pub fn adaptive_avg_pool_1d(x: &Tensor, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    if n == len {
        return Ok(x.clone());
    }
    let rows = adaptive_bins(len, n).into_iter().map(|(a, b)| (a..b).collect()).collect();
    pool_rows(rows, len, x)
}

/// 2D adaptive average pooling of a row-major `h`×`w` grid `x` (`[h·w, D]`) to `[oh·ow, D]`.
pub fn adaptive_avg_pool_2d(x: &Tensor, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    if len != h * w {
        bail!("2D pooling: {len} tokens do not form a {h}×{w} grid");
    }
    if oh == 0 || ow == 0 || oh > h || ow > w {
        bail!("2D pooling: output grid {oh}×{ow} must be within 1×1 ..= {h}×{w}");
    }
    if (oh, ow) == (h, w) {
        return Ok(x.clone());
    }
    let (rb, cb) = (adaptive_bins(h, oh), adaptive_bins(w, ow));
    let mut rows = Vec::with_capacity(oh * ow);
    for &(r0, r1) in &rb {
        for &(c0, c1) in &cb {
            rows.push((r0..r1).flat_map(|r| (c0..c1).map(move |c| r * w + c)).collect());
        }
    }
    pool_rows(rows, len, x)
}

fn perfect_square(n: usize) -> Option<usize> {
    let s = (n as f64).sqrt().round() as usize;
    (s * s == n).then_some(s)
}

/// The `pool` reducer on `[L, D]` tokens; `grid` is the token grid when the tokens are exactly
/// the patch grid (2D pooling is used for square N then).
pub fn pool(x: &Tensor, grid: Option<(usize, usize)>, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    match (grid, perfect_square(n)) {
        (Some((h, w)), Some(s)) if h * w == len && s <= h && s <= w => adaptive_avg_pool_2d(x, (h, w), (s, s)),
        _ => adaptive_avg_pool_1d(x, n),
    }
}

/// `floor((2i+1)·len / (2n))` for i = 0..n: strictly increasing, in `0..len`.
pub fn uniform_indices(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| (2 * i + 1) * len / (2 * n)).collect()
}

/// The `uniform` reducer on `[L, D]` tokens.
pub fn uniform(x: &Tensor, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    if n == len {
        return Ok(x.clone());
    }
    let idx = Tensor::new(uniform_indices(len, n).into_iter().map(|i| i as u32).collect::<Vec<_>>(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
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
        bail!("visionzip: {t} tokens but {} attention values and {} keys", cls_attention.len(), keys_mean.dim(0)?);
    }
    if dominant == 0 || dominant + contextual > t || (contextual > 0 && dominant + contextual == t) {
        bail!("visionzip: {dominant} dominant + {contextual} contextual tokens do not fit {t} tokens");
    }
    let device = hidden.device();
    let ids = |v: &[usize]| Tensor::new(v.iter().map(|&i| i as u32).collect::<Vec<_>>(), device);
    // Dominant: CLS + the top (dominant − 1) patches by CLS attention, in sequence order.
    let mut dom: Vec<usize> = std::iter::once(0).chain(top_k_sorted(cls_attention, dominant - 1).into_iter().map(|i| i + 1)).collect();
    dom.sort_unstable();
    let dominant_tokens = hidden.index_select(&ids(&dom)?, 0)?;
    if contextual == 0 {
        return Ok((dominant_tokens, VisionZipSelection { dominant: dom, targets: vec![], assignment: vec![] }));
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

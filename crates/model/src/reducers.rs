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
//!   at prefill. See [`fastv::SpanPrune`].
//!
//! N equal to the full token count is the identity for every reducer (no pooling, no merging,
//! no pruning).
//!
//! Each reducer is a plug-in ([`TokenReducer`]) in its own file; [`plugin`] is the registry
//! from the reducer's name ([`Reducer`], defined in `tokenscale-law` so that the cost model
//! reads the same names). Adding a reducer: one file here, one line in [`plugin`] (and its name
//! in `tokenscale_base::reducer`).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

pub mod fastv;
pub mod pool;
pub mod uniform;
pub mod visionzip;

pub use fastv::{PrunedOutput, SpanPrune};
pub use pool::{adaptive_avg_pool_1d, adaptive_avg_pool_2d, adaptive_bins, pool};
pub use tokenscale_base::reducer::{Reducer, FASTV_DEFAULT_LAYER, REDUCERS};
pub use uniform::{uniform, uniform_indices};
pub use visionzip::{visionzip, visionzip_split, VisionZipSelection};

/// The plug-in of each reducer (the registry: one line per reducer).
pub fn plugin(reducer: Reducer) -> Box<dyn TokenReducer> {
    match reducer {
        Reducer::Pool => Box::new(pool::Pool),
        Reducer::Uniform => Box::new(uniform::Uniform),
        Reducer::VisionZip => Box::new(visionzip::VisionZip),
        Reducer::FastV { layer } => Box::new(fastv::FastV { layer }),
    }
}

/// One image's vision tokens at the selected layer, as a reducer before the projector reads them.
pub struct ImageTokens<'a> {
    /// `[L, D]` (CLS dropped per the model's strategy).
    pub features: &'a Tensor,
    /// The patch grid (rows, columns) when `features` are exactly it (CLS dropped).
    pub grid: Option<(usize, usize)>,
    /// The selected layer's attention, when the reducer asked for it
    /// ([`TokenReducer::needs_attention`]).
    pub attention: Option<&'a LayerAttention>,
}

/// What VisionZip selects with, from the selected CLIP layer.
#[derive(Debug, Clone)]
pub struct LayerAttention {
    /// The layer's hidden states with CLS at row 0, `[T, D]`.
    pub hidden: Tensor,
    /// Its `k_proj` output averaged over heads, `[T, head_dim]`.
    pub keys_mean: Tensor,
    /// The CLS row's attention to tokens 1..T, summed over heads (`T − 1` values).
    pub cls_attention: Vec<f32>,
}

/// Where a reducer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// On the vision tokens, before the projector: the prompt holds N image tokens.
    BeforeProjector,
    /// Inside the LLM's prefill: the prompt holds every image token and the decoder drops
    /// some ([`TokenReducer::prune`]).
    InLlm,
}

/// A vision-token reducer.
pub trait TokenReducer {
    /// Where the reducer acts (default: [`Stage::BeforeProjector`]).
    fn stage(&self) -> Stage {
        Stage::BeforeProjector
    }

    /// Whether it reads the selected CLIP layer's attention ([`ImageTokens::attention`]).
    fn needs_attention(&self) -> bool {
        false
    }

    /// [`Stage::BeforeProjector`]: the tokens brought to `n` rows, `[n, D]`, 1 ≤ n < L.
    fn reduce(&self, tokens: &ImageTokens, n: usize) -> Result<Tensor>;

    /// [`Stage::InLlm`]: how the prefill of an LLM with `llm_layers` layers prunes the prompt's
    /// image span to `keep` tokens.
    fn prune(&self, span: ImageSpan, keep: usize, llm_layers: usize) -> Result<SpanPrune> {
        let _ = (span, keep, llm_layers);
        bail!("this reducer works before the projector, not inside the LLM")
    }
}

/// Where the image tokens lie in a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpan {
    /// Offset of the first image token.
    pub start: usize,
    /// Image tokens.
    pub len: usize,
    /// Tokens of the whole prompt.
    pub prompt_len: usize,
}

/// N must satisfy 1 ≤ N ≤ `available`.
pub fn check_budget(n: usize, available: usize) -> Result<()> {
    if n == 0 || n > available {
        bail!("vision-token count {n} is out of range: 1 ≤ N ≤ {available} (the image's vision tokens)");
    }
    Ok(())
}

/// `w · x` for an f32 weight matrix `w` (`[n, len]`) and tokens `x` (`[len, D]`), accumulated in
/// f32 and rounded once to `x`'s dtype (as PyTorch's 16-bit pooling accumulates in f32; candle's
/// CPU matmul has no 16-bit path).
pub(crate) fn weighted_rows(w: Vec<f32>, n: usize, x: &Tensor) -> Result<Tensor> {
    let len = x.dim(0)?;
    let w = Tensor::from_vec(w, (n, len), x.device())?;
    Ok(w.matmul(&x.to_dtype(DType::F32)?.contiguous()?)?.to_dtype(x.dtype())?)
}

/// Indices of the `k` largest values (ties go to the lower index), in ascending index order.
pub fn top_k_sorted(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut top: Vec<usize> = order.into_iter().take(k).collect();
    top.sort_unstable();
    top
}

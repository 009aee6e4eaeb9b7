//! Multi-threaded, fused element-wise work around the matrix products, for contiguous CPU
//! tensors in f32, bf16 and f16.
//!
//! candle 0.9 runs its binary and unary CPU ops (adds, products, SiLU, GELU, affine scaling)
//! and its copies on one thread; around AMX products that run at ~1 TFLOP/s on two cores those
//! ops were most of a bf16 prefill. Each function here makes one pass over its inputs, split
//! across rayon's threads, and returns `None` when it does not apply (another device, a
//! non-contiguous input, a dtype outside f32/bf16/f16, training's differentiable mode) so that
//! the caller falls back to candle's ops.
//!
//! 16-bit rounding follows PyTorch's CPU kernels step by step (each op computes in f32 and
//! rounds its result to the tensor's dtype), so a fused op gives the same bits as the chain of
//! PyTorch ops it replaces: e.g. SiLU·up rounds SiLU's output before the product, as
//! `act_fn(gate_proj(x)) * up_proj(x)` does.

use candle_core::{DType, Storage, Tensor, WithDType};
use rayon::prelude::*;
use tokenscale_kernels::{bf16, f16};

use crate::forward::Forward;

/// Elements per rayon task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 14;

/// An element type the fused ops compute in f32 and store back.
pub trait Float: WithDType + Copy + Send + Sync {
    /// The value widened to f32 (exact for f32, bf16 and f16).
    fn to_f32(self) -> f32;
    /// `v` rounded to this type (round-to-nearest-even for bf16 and f16).
    fn of(v: f32) -> Self;
    /// `v` rounded to this type and back (identity for f32).
    fn narrowed(v: f32) -> f32 {
        Float::to_f32(Self::of(v))
    }
}

impl Float for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn of(v: f32) -> Self {
        v
    }
    fn narrowed(v: f32) -> f32 {
        v
    }
}

impl Float for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn of(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl Float for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn of(v: f32) -> Self {
        f16::from_f32(v)
    }
}

/// Calls `$body` with `$T` bound to the element type of `$dtype` (f32, bf16, f16), else `None`.
macro_rules! with_float {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::BF16 => {
                type $T = bf16;
                $body
            }
            DType::F16 => {
                type $T = f16;
                $body
            }
            _ => Ok(None),
        }
    };
}

/// True when the fused ops may run on `t` (CPU, and not recording a graph for training).
fn usable(ctx: &Forward, t: &Tensor) -> bool {
    t.device().is_cpu() && !ctx.differentiable()
}

/// Runs `f` over the contiguous elements of a CPU tensor; `None` when it is not one.
fn with_slice<T: Float, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> R,
) -> candle_core::Result<Option<R>> {
    if t.dtype() != T::DTYPE {
        return Ok(None);
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
    Ok(Some(f(&cpu.as_slice::<T>()?[start..end])))
}

/// `out[i] = op(a[i], b[i])` over two same-shaped tensors, in parallel.
fn zip_map<T: Float>(
    ctx: &Forward,
    a: &Tensor,
    b: &Tensor,
    op: impl Fn(f32, f32) -> f32 + Sync,
) -> candle_core::Result<Option<Tensor>> {
    if a.dims() != b.dims() || !usable(ctx, a) || !usable(ctx, b) {
        return Ok(None);
    }
    let out = with_slice::<T, _>(a, |xa| {
        with_slice::<T, _>(b, |xb| {
            let mut out = vec![T::of(0.0); xa.len()];
            out.par_chunks_mut(CHUNK).zip(xa.par_chunks(CHUNK)).zip(xb.par_chunks(CHUNK)).for_each(
                |((o, x), y)| {
                    for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                        *o = T::of(op(x.to_f32(), y.to_f32()));
                    }
                },
            );
            out
        })
    })?;
    match out.transpose()?.flatten() {
        Some(out) => Ok(Some(Tensor::from_vec(out, a.dims(), a.device())?)),
        None => Ok(None),
    }
}

/// `out[i] = op(a[i])`, in parallel.
fn map<T: Float>(
    ctx: &Forward,
    a: &Tensor,
    op: impl Fn(f32) -> f32 + Sync,
) -> candle_core::Result<Option<Tensor>> {
    if !usable(ctx, a) {
        return Ok(None);
    }
    let out = with_slice::<T, _>(a, |xa| {
        let mut out = vec![T::of(0.0); xa.len()];
        out.par_chunks_mut(CHUNK).zip(xa.par_chunks(CHUNK)).for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = T::of(op(x.to_f32()));
            }
        });
        out
    })?;
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, a.dims(), a.device())?)),
        None => Ok(None),
    }
}

/// `a + b` for same-shaped tensors (residual connections).
pub fn add(ctx: &Forward, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let fused = if a.dtype() == b.dtype() {
        with_float!(a.dtype(), T => zip_map::<T>(ctx, a, b, |x, y| x + y))?
    } else {
        None
    };
    match fused {
        Some(out) => Ok(out),
        None => a + b,
    }
}

/// `[B, T, heads·d]` → `[B, heads, T, d]` (the projections' output split into attention heads),
/// a parallel copy; candle's strided copy runs on one thread.
pub fn split_heads(ctx: &Forward, x: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, t, width) = x.dims3()?;
    let d = width / heads.max(1);
    let fused = if heads > 0 && width % heads == 0 && usable(ctx, x) {
        with_float!(x.dtype(), T => split_heads_typed::<T>(x, b, t, heads, d))?
    } else {
        None
    };
    match fused {
        Some(out) => Ok(out),
        None => x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous(),
    }
}

/// [`split_heads`] then rotary embedding (HF's rotate-half layout, `cos`/`sin` of `[T, d/2]`),
/// in one parallel pass: each head's row is rotated as it is copied, so RoPE needs no tensor of
/// its own. Each value is computed exactly as candle's `rope` does in the tensor's type (a
/// product rounded to it, then the sum rounded), so the result is bitwise the same as
/// `nn::rope(split_heads(x))`; that is also what it falls back to (training, other devices).
pub fn split_heads_rope(
    ctx: &Forward,
    x: &Tensor,
    heads: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<Tensor> {
    let (b, t, width) = x.dims3()?;
    let d = width / heads.max(1);
    let tables_fit = cos.dims() == [t, d / 2]
        && sin.dims() == [t, d / 2]
        && cos.dtype() == x.dtype()
        && sin.dtype() == x.dtype();
    let fused =
        if heads > 0 && width % heads == 0 && d.is_multiple_of(2) && tables_fit && usable(ctx, x) {
            with_float!(x.dtype(), T => split_heads_rope_typed::<T>(x, (b, t, heads, d), cos, sin))?
        } else {
            None
        };
    match fused {
        Some(out) => Ok(out),
        None => crate::nn::rope(ctx, &split_heads(ctx, x, heads)?, cos, sin),
    }
}

fn split_heads_rope_typed<T: Float>(
    x: &Tensor,
    (b, t, heads, d): (usize, usize, usize, usize),
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let (Some(cos), Some(sin)) =
        (with_slice::<T, _>(cos, |c| c.to_vec())?, with_slice::<T, _>(sin, |s| s.to_vec())?)
    else {
        return Ok(None);
    };
    let half = d / 2;
    let out = with_slice::<T, _>(x, |xs| {
        let mut out = vec![T::of(0.0); xs.len()];
        out.par_chunks_mut((t * d).max(1)).enumerate().for_each(|(bh, dst)| {
            let (bi, h) = (bh / heads, bh % heads);
            for (i, row) in dst.chunks_mut(d.max(1)).enumerate() {
                let src = &xs[((bi * t + i) * heads + h) * d..][..d];
                let (c, s) = (&cos[i * half..][..half], &sin[i * half..][..half]);
                for j in 0..half {
                    let (x1, x2) = (src[j].to_f32(), src[j + half].to_f32());
                    let (cj, sj) = (c[j].to_f32(), s[j].to_f32());
                    row[j] = T::of(T::narrowed(x1 * cj) - T::narrowed(x2 * sj));
                    row[j + half] = T::of(T::narrowed(x1 * sj) + T::narrowed(x2 * cj));
                }
            }
        });
        out
    })?;
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (b, heads, t, d), x.device())?)),
        None => Ok(None),
    }
}

fn split_heads_typed<T: Float>(
    x: &Tensor,
    b: usize,
    t: usize,
    heads: usize,
    d: usize,
) -> candle_core::Result<Option<Tensor>> {
    let out = with_slice::<T, _>(x, |xs| {
        let mut out = vec![T::of(0.0); xs.len()];
        // One task per (batch, head): t rows of d values gathered from stride heads·d.
        out.par_chunks_mut((t * d).max(1)).enumerate().for_each(|(bh, dst)| {
            let (bi, h) = (bh / heads, bh % heads);
            for (i, row) in dst.chunks_mut(d.max(1)).enumerate() {
                row.copy_from_slice(&xs[((bi * t + i) * heads + h) * d..][..d]);
            }
        });
        out
    })?;
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (b, heads, t, d), x.device())?)),
        None => Ok(None),
    }
}

/// `e^x` in f32 without a libm call, so that the loops of softmax, SiLU and sigmoid vectorise
/// (libm's `expf` is a call per element: ~10% of a bf16 CLIP forward). Range reduction
/// `x = n·ln2 + r`, |r| ≤ ln2/2, with n rounded by the 1.5·2²³ trick (no `floor`, which SSE2
/// lacks), ln2 split in two for an exact `n·ln2`, Cephes' degree-6 polynomial for `e^r`, and
/// `2^n` built in the exponent bits as two normal factors (n spans −126…128). Relative error
/// ≤ 2.5e-7 (about 2 ulp; PyTorch's vectorised exp is within 1 ulp), checked against libm over
/// the whole normal range by a unit test; results below f32's smallest normal (x < −87.3) are 0
/// (masked scores are −∞), +∞ above x = 88.72, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits
    const LOW: f32 = -87.3;
    const HIGH: f32 = 88.72;
    let clamped = x.clamp(LOW, HIGH);
    let shifted = clamped * LOG2E + ROUND;
    let n_float = shifted - ROUND;
    let r = (clamped - n_float * LN2_HI) - n_float * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let er = p * r * r + r + 1.0;
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let (half, rest) = (n >> 1, n - (n >> 1));
    let scaled = er
        * f32::from_bits(((half + 127) << 23) as u32)
        * f32::from_bits(((rest + 127) << 23) as u32);
    if x < LOW {
        0.0
    } else if x > HIGH {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        scaled
    }
}

/// Lanes of the row loops below: independent accumulators, so that the max and the sum (whose
/// order matters in floating point) still vectorise.
const LANES: usize = 16;

/// The heart of every softmax here: replaces each value of `row` by `e^(value − max)`, `max`
/// being the row's largest value, and returns the sum of the new values; `None` (row untouched)
/// when every value is −∞ (a fully masked row). The max, the exponentials and the sum run in
/// 16 independent lanes (with AVX-512 where the CPU has it), so they vectorise: per attention
/// score this was most of a bf16 CLIP layer's time as a sequential loop.
pub fn exp_shifted_sum(row: &mut [f32]) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { exp_shifted_sum_avx512(row) };
    }
    exp_shifted_sum_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_shifted_sum_avx512(row: &mut [f32]) -> Option<f32> {
    exp_shifted_sum_lanes(row)
}

#[inline(always)]
fn exp_shifted_sum_lanes(row: &mut [f32]) -> Option<f32> {
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail_max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (m, &v) in lane_max.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lane_max.iter().fold(tail_max, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        return None;
    }
    for v in row.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let mut lane_sum = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail_sum: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (acc, &v) in lane_sum.iter_mut().zip(chunk) {
            *acc += v;
        }
    }
    Some(lane_sum.iter().sum::<f32>() + tail_sum)
}

fn silu(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// `silu(gate) · up` (the gated MLP of Llama-family models); the SiLU output is rounded to the
/// dtype before the product, as PyTorch's two ops do.
pub fn silu_mul(ctx: &Forward, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let fused = if gate.dtype() == up.dtype() {
        with_float!(gate.dtype(), T => zip_map::<T>(ctx, gate, up, |g, u| T::narrowed(silu(g)) * u))?
    } else {
        None
    };
    match fused {
        Some(out) => Ok(out),
        None => gate.silu()? * up,
    }
}

/// Exact (erf) GELU, PyTorch's `gelu` with approximate="none".
pub fn gelu_erf(ctx: &Forward, x: &Tensor) -> candle_core::Result<Tensor> {
    let fused = with_float!(x.dtype(), T => map::<T>(ctx, x, |v| (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v))?;
    match fused {
        Some(out) => Ok(out),
        None => x.gelu_erf(),
    }
}

/// CLIP's quick GELU, `x · sigmoid(1.702 · x)`, with HF's three roundings in 16 bits.
pub fn quick_gelu(ctx: &Forward, x: &Tensor) -> candle_core::Result<Tensor> {
    let fused = with_float!(x.dtype(), T => map::<T>(ctx, x, |v| {
        let scaled = T::narrowed(1.702 * v);
        v * T::narrowed(1.0 / (1.0 + exp_f32(-scaled)))
    }))?;
    match fused {
        Some(out) => Ok(out),
        None => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
    }
}

/// Softmax over the last dimension of `scores · scale + mask`, in f32, rounded to the scores'
/// dtype: the attention weights, with the scaling, the additive mask and the softmax in one pass
/// (and no copy of the mask per query group). `mask` is `[rows_per_group, cols]` and applies to
/// row `r` of every `[rows, cols]` block as `mask[r % rows_per_group]` (grouped-query attention
/// stacks the query heads of a group along the rows).
pub fn scaled_masked_softmax(
    ctx: &Forward,
    scores: &Tensor,
    scale: f32,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let fused = with_float!(scores.dtype(), T => softmax_rows::<T>(ctx, scores, scale, mask))?;
    match fused {
        Some(out) => Ok(out),
        None => {
            let mut s = (scores * scale as f64)?;
            if let Some(mask) = mask {
                let rows = s.dim(candle_core::D::Minus2)?;
                let per = mask.dim(0)?;
                let mask =
                    if rows != per { mask.repeat((rows / per.max(1), 1))? } else { mask.clone() };
                s = s.broadcast_add(&mask)?;
            }
            softmax_last_dim(ctx, &s)
        }
    }
}

/// Softmax over the last dimension: in training the formula written with differentiable ops
/// (max-shifted exponentials over their sum), otherwise candle's kernel or, in 16 bits, the fused one.
pub fn softmax_last_dim(ctx: &Forward, xs: &Tensor) -> candle_core::Result<Tensor> {
    if !ctx.differentiable() {
        // candle's CPU softmax sums 16-bit exponentials in 16 bits (over 577 CLIP tokens that
        // costs bf16 its last digits); the fused one sums in f32 and rounds once, as PyTorch.
        if matches!(xs.dtype(), candle_core::DType::BF16 | candle_core::DType::F16) {
            return scaled_masked_softmax(ctx, xs, 1.0, None);
        }
        return candle_nn::ops::softmax_last_dim(xs);
    }
    let shifted = xs.broadcast_sub(&xs.max_keepdim(candle_core::D::Minus1)?.detach())?;
    let exp = shifted.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(candle_core::D::Minus1)?)
}

fn softmax_rows<T: Float>(
    ctx: &Forward,
    scores: &Tensor,
    scale: f32,
    mask: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    if !usable(ctx, scores) || scores.rank() < 2 {
        return Ok(None);
    }
    let cols = scores.dim(candle_core::D::Minus1)?;
    let rows = scores.dim(candle_core::D::Minus2)?;
    let mask_values: Option<Vec<f32>> = match mask {
        Some(m) => {
            let (per, mcols) = m.dims2()?;
            if mcols != cols || per == 0 || rows % per != 0 {
                return Ok(None);
            }
            Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    let per = mask.map_or(1, |m| m.dim(0).unwrap_or(1));
    let out = with_slice::<T, _>(scores, |xs| {
        let mut out = vec![T::of(0.0); xs.len()];
        let rows_per_task = (CHUNK / cols.max(1)).max(1);
        out.par_chunks_mut(rows_per_task * cols)
            .zip(xs.par_chunks(rows_per_task * cols))
            .enumerate()
            .for_each(|(task, (o, x))| {
                let mut row_buf = vec![0f32; cols];
                for (i, (orow, xrow)) in o.chunks_mut(cols).zip(x.chunks(cols)).enumerate() {
                    let row = task * rows_per_task + i;
                    let m = mask_values.as_ref().map(|m| &m[(row % rows % per) * cols..][..cols]);
                    // PyTorch rounds the scaled scores and the masked sum to the dtype.
                    for (b, &v) in row_buf.iter_mut().zip(xrow) {
                        *b = T::narrowed(v.to_f32() * scale);
                    }
                    if let Some(m) = m {
                        for (b, &mv) in row_buf.iter_mut().zip(m) {
                            *b = T::narrowed(*b + mv);
                        }
                    }
                    let Some(sum) = exp_shifted_sum(&mut row_buf) else {
                        orow.iter_mut().for_each(|o| *o = T::of(f32::NAN));
                        continue;
                    };
                    let inv = 1.0 / sum;
                    for (o, &b) in orow.iter_mut().zip(&row_buf) {
                        *o = T::of(b * inv);
                    }
                }
            });
        out
    })?;
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, scores.dims(), scores.device())?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.to_dtype(DType::F32).unwrap();
        let b = b.to_dtype(DType::F32).unwrap();
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// RoPE applied while splitting into heads is bitwise candle's rope of the split heads, in
    /// every float type (f16 too), for a whole prefill and a single decode position.
    #[test]
    fn split_heads_rope_is_bitwise_candles_rope_of_the_split() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for (t, heads, d) in [(7, 4, 16), (1, 3, 8)] {
                let x = Tensor::randn(0f32, 3.0, (2, t, heads * d), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let angles = Tensor::randn(0f32, 2.0, (t, d / 2), &dev).unwrap();
                let cos = angles.cos().unwrap().to_dtype(dtype).unwrap();
                let sin = angles.sin().unwrap().to_dtype(dtype).unwrap();
                let ctx = &Forward::INFERENCE;
                let fused = split_heads_rope(ctx, &x, heads, &cos, &sin).unwrap();
                let reference =
                    crate::nn::rope(ctx, &split_heads(ctx, &x, heads).unwrap(), &cos, &sin)
                        .unwrap();
                assert_eq!(fused.dims(), reference.dims());
                let bits = |v: &Tensor| {
                    v.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
                };
                let (a, b) = (bits(&fused), bits(&reference));
                assert!(
                    a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{dtype:?} t={t}"
                );
            }
        }
    }

    #[test]
    fn fused_ops_equal_candles_in_f32() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 2.0, (3, 70_000), &dev).unwrap();
        let b = Tensor::randn(0f32, 2.0, (3, 70_000), &dev).unwrap();
        assert_eq!(max_diff(&add(&Forward::INFERENCE, &a, &b).unwrap(), &(&a + &b).unwrap()), 0.0);
        // f32 rounding of a different (but exact-math equal) formula: relative 1e-6.
        let want = (a.silu().unwrap() * &b).unwrap();
        let scale =
            want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let diff = max_diff(&silu_mul(&Forward::INFERENCE, &a, &b).unwrap(), &want);
        assert!(diff <= 1e-6 * scale, "silu·up differs by {diff} (scale {scale})");
        assert!(
            max_diff(&gelu_erf(&Forward::INFERENCE, &a).unwrap(), &a.gelu_erf().unwrap()) <= 1e-6
        );
        let quick = (&a * candle_nn::ops::sigmoid(&(&a * 1.702).unwrap()).unwrap()).unwrap();
        assert!(max_diff(&quick_gelu(&Forward::INFERENCE, &a).unwrap(), &quick) <= 1e-6);
    }

    #[test]
    fn fused_softmax_equals_scale_mask_softmax_with_groups() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::BF16] {
            let scores =
                Tensor::randn(0f32, 3.0, (2, 3, 8, 11), &dev).unwrap().to_dtype(dtype).unwrap();
            // 4 query rows per group, 2 groups stacked: mask row r % 4.
            let mut m = vec![0f32; 4 * 11];
            for r in 0..4 {
                for c in (7 + r + 1)..11 {
                    m[r * 11 + c] = f32::NEG_INFINITY;
                }
            }
            let mask = Tensor::from_vec(m, (4, 11), &dev).unwrap().to_dtype(dtype).unwrap();
            let got =
                scaled_masked_softmax(&Forward::INFERENCE, &scores, 0.125, Some(&mask)).unwrap();
            let scaled = (scores.to_dtype(DType::F32).unwrap() * 0.125)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let masked = scaled
                .broadcast_add(&mask.to_dtype(DType::F32).unwrap().repeat((2, 1)).unwrap())
                .unwrap();
            let want = candle_nn::ops::softmax_last_dim(&masked).unwrap();
            let tol = if dtype == DType::F32 { 1e-6 } else { 4e-3 };
            assert!(max_diff(&got, &want) <= tol, "{dtype:?}");
        }
    }

    #[test]
    fn exp_f32_is_within_two_and_a_half_ulp_of_libm() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x <= 88.72 {
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 1.7e-4;
        }
        assert!(worst <= 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1e30), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_shifted_sum_equals_the_sequential_loop() {
        for len in [1usize, 15, 16, 17, 577, 1000] {
            let values: Vec<f32> =
                (0..len).map(|i| ((i * 7919 % 1013) as f32 / 50.0) - 10.0).collect();
            let mut row = values.clone();
            let sum = exp_shifted_sum(&mut row).unwrap();
            let max = values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let want: Vec<f64> = values.iter().map(|&v| ((v - max) as f64).exp()).collect();
            let want_sum: f64 = want.iter().sum();
            assert!(
                ((sum as f64 - want_sum) / want_sum).abs() < 1e-6,
                "{len}: sum {sum} vs {want_sum}"
            );
            for (got, want) in row.iter().zip(&want) {
                assert!(
                    (*got as f64 - want).abs() <= 3e-7 * want.max(1e-30),
                    "{len}: {got} vs {want}"
                );
            }
        }
        let mut masked = vec![f32::NEG_INFINITY; 20];
        assert_eq!(exp_shifted_sum(&mut masked), None);
        let mut partly = vec![f32::NEG_INFINITY; 20];
        partly[3] = 2.0;
        assert_eq!(exp_shifted_sum(&mut partly), Some(1.0));
        assert_eq!(partly[0], 0.0);
    }

    #[test]
    fn split_heads_equals_reshape_transpose() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, (2, 5, 12), &dev).unwrap().to_dtype(dtype).unwrap();
            let want =
                x.reshape((2, 5, 3, 4)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let got = split_heads(&Forward::INFERENCE, &x, 3).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(max_diff(&got, &want), 0.0);
        }
    }

    #[test]
    fn sixteen_bit_ops_round_like_pytorchs_chain() {
        let dev = Device::Cpu;
        let g = Tensor::randn(0f32, 2.0, (5, 300), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let u = Tensor::randn(0f32, 2.0, (5, 300), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        // PyTorch: silu in bf16 (computed in f32, rounded), then the bf16 product (rounded).
        let silu_rounded =
            g.to_dtype(DType::F32).unwrap().silu().unwrap().to_dtype(DType::BF16).unwrap();
        let want = (silu_rounded.to_dtype(DType::F32).unwrap() * u.to_dtype(DType::F32).unwrap())
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        assert_eq!(max_diff(&silu_mul(&Forward::INFERENCE, &g, &u).unwrap(), &want), 0.0);
    }
}

//! Causal self-attention of the decoder over a KV cache that is allocated once per sequence
//! and appended to in place.
//!
//! The cache keeps, per layer, the keys as `[B, kv_heads, capacity, head_dim]` and the values
//! transposed, `[B, kv_heads, head_dim, capacity]`: both products of attention then read the
//! cache where it lies (`q · Kᵀ` takes K's rows, `p · V` takes Vᵀ's rows with a row stride of
//! `capacity`), so a decode step copies nothing but the new position. Capacity doubles when it
//! runs out (amortised O(1) per token); `Llama::new_cache_for` sizes it once up front.
//!
//! The fast path (CPU, f32/bf16/f16, inference) runs one task per (batch, query head): its
//! scores `[T, past + T]` in f32, the causal mask and softmax in place, then the product with
//! the values. Only one head's scores per thread exist at a time, in blocks of at most
//! `ROW_BLOCK` query rows, so a long prefill never materialises `heads × T × T`. With 16-bit
//! inputs the scores stay in f32 through the scaling and the softmax (as PyTorch's fused
//! scaled-dot-product attention keeps them; eager attention would round them to the dtype
//! twice), and the probabilities are rounded to the dtype for the product with V.
//!
//! Everything else — training (autograd needs candle's ops), attention capture, other devices —
//! takes the candle path, which computes exactly what the decoder computed before this module
//! existed.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;
use tokenscale_kernels::{bf16, f16, Backend, Half16, MatMut, MatRef};

use crate::forward::Forward;
use crate::fused::Float;
use crate::opcount::Op;

/// Query rows per block of scores (bounds a task's scratch to `ROW_BLOCK × keys` f32).
const ROW_BLOCK: usize = 256;

/// Keys and values of one layer for the positions seen so far.
pub struct LayerKv {
    len: usize,
    capacity: usize,
    /// Capacity to allocate on first use (0: the first append's length, then doubling).
    reserve: usize,
    data: Option<KvData>,
}

enum KvData {
    F32(Buffers<f32>),
    Bf16(Buffers<bf16>),
    F16(Buffers<f16>),
}

/// `k`: `[B, kv, capacity, hd]`; `vt`: `[B, kv, hd, capacity]`.
struct Buffers<T> {
    batch: usize,
    kv_heads: usize,
    head_dim: usize,
    k: Vec<T>,
    vt: Vec<T>,
}

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Number of query heads.
    pub heads: usize,
    /// Number of key/value heads; divides `heads` (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl LayerKv {
    /// An empty cache that allocates room for `reserve` positions on first use.
    pub fn with_reserve(reserve: usize) -> Self {
        Self { len: 0, capacity: 0, reserve, data: None }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `k`, `v` (`[B, kv, T, hd]`, any layout) after the cached positions.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let (b, kv, t, hd) = k.dims4()?;
        match k.dtype() {
            DType::F32 => append_typed::<f32>(self, k, v, (b, kv, t, hd)),
            DType::BF16 => append_typed::<bf16>(self, k, v, (b, kv, t, hd)),
            DType::F16 => append_typed::<f16>(self, k, v, (b, kv, t, hd)),
            other => bail!("KV cache: unsupported dtype {other:?}"),
        }
    }

    /// The cached keys and values as `[B, kv, len, hd]` tensors (copies; the candle path).
    fn tensors(&self, device: &Device) -> Result<Option<(Tensor, Tensor)>> {
        if self.len == 0 {
            return Ok(None);
        }
        Ok(Some(match &self.data {
            Some(KvData::F32(b)) => b.tensors(self.len, self.capacity, device)?,
            Some(KvData::Bf16(b)) => b.tensors(self.len, self.capacity, device)?,
            Some(KvData::F16(b)) => b.tensors(self.len, self.capacity, device)?,
            None => return Ok(None),
        }))
    }
}

/// Which buffers of a [`KvData`] hold `T` (and creating them).
trait CacheElement: Float + Half16Or32 {
    fn buffers(data: &mut Option<KvData>) -> Option<&mut Buffers<Self>>;
    fn wrap(buffers: Buffers<Self>) -> KvData;
    fn get(data: &KvData) -> Option<&Buffers<Self>>;
}

macro_rules! cache_element {
    ($t:ty, $variant:ident) => {
        impl CacheElement for $t {
            fn buffers(data: &mut Option<KvData>) -> Option<&mut Buffers<Self>> {
                match data {
                    Some(KvData::$variant(b)) => Some(b),
                    _ => None,
                }
            }
            fn wrap(buffers: Buffers<Self>) -> KvData {
                KvData::$variant(buffers)
            }
            fn get(data: &KvData) -> Option<&Buffers<Self>> {
                match data {
                    KvData::$variant(b) => Some(b),
                    _ => None,
                }
            }
        }
    };
}
cache_element!(f32, F32);
cache_element!(bf16, Bf16);
cache_element!(f16, F16);

/// Contiguous elements of a tensor (copied when it is not contiguous or not on the CPU).
fn elements<T: Float>(t: &Tensor) -> Result<Vec<T>> {
    Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<T>()?)
}

fn append_typed<T: CacheElement>(
    cache: &mut LayerKv,
    k: &Tensor,
    v: &Tensor,
    (b, kv, t, hd): (usize, usize, usize, usize),
) -> Result<()> {
    let needed = cache.len + t;
    let compatible = T::buffers(&mut cache.data)
        .is_some_and(|buf| buf.batch == b && buf.kv_heads == kv && buf.head_dim == hd);
    if !compatible {
        if cache.len > 0 {
            bail!("KV cache: appending [{b}, {kv}, {t}, {hd}] {:?} to a cache of another shape or dtype", k.dtype());
        }
        cache.data = None;
        cache.capacity = 0;
    }
    if needed > cache.capacity {
        let capacity = needed.max(2 * cache.capacity).max(cache.reserve);
        let mut grown = Buffers {
            batch: b,
            kv_heads: kv,
            head_dim: hd,
            k: vec![T::of(0.0); b * kv * capacity * hd],
            vt: vec![T::of(0.0); b * kv * hd * capacity],
        };
        if let Some(old) = T::buffers(&mut cache.data) {
            for bh in 0..b * kv {
                let (src, dst) = (
                    &old.k[bh * cache.capacity * hd..][..cache.len * hd],
                    &mut grown.k[bh * capacity * hd..][..cache.len * hd],
                );
                dst.copy_from_slice(src);
                for d in 0..hd {
                    let src = &old.vt[(bh * hd + d) * cache.capacity..][..cache.len];
                    grown.vt[(bh * hd + d) * capacity..][..cache.len].copy_from_slice(src);
                }
            }
        }
        cache.data = Some(T::wrap(grown));
        cache.capacity = capacity;
    }
    let capacity = cache.capacity;
    let start = cache.len;
    let (new_k, new_v) = (elements::<T>(k)?, elements::<T>(v)?);
    let buf = T::buffers(&mut cache.data)
        .ok_or_else(|| anyhow::anyhow!("KV cache: buffers missing after allocation"))?;
    for bh in 0..b * kv {
        buf.k[(bh * capacity + start) * hd..][..t * hd]
            .copy_from_slice(&new_k[bh * t * hd..][..t * hd]);
        for j in 0..t {
            for d in 0..hd {
                buf.vt[(bh * hd + d) * capacity + start + j] = new_v[(bh * t + j) * hd + d];
            }
        }
    }
    cache.len = needed;
    Ok(())
}

impl<T: Float> Buffers<T> {
    fn tensors(&self, len: usize, capacity: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let (b, kv, hd) = (self.batch, self.kv_heads, self.head_dim);
        let k = Tensor::from_slice(&self.k, (b, kv, capacity, hd), device)?
            .narrow(2, 0, len)?
            .contiguous()?;
        let v = Tensor::from_slice(&self.vt, (b, kv, hd, capacity), device)?
            .narrow(3, 0, len)?
            .transpose(2, 3)?
            .contiguous()?;
        Ok((k, v))
    }
}

/// `y (f32) = x · wᵀ` over strided rows: f32 through `gemm`, 16-bit through `tokenscale_kernels`.
pub trait Half16Or32: Float {
    /// `y[r][c] = Σ_k x[r·xs + k] · w[c·ws + k]` for r < rows, c < cols, k < depth.
    #[allow(clippy::too_many_arguments)]
    fn product(
        x: &[Self],
        xs: usize,
        w: &[Self],
        ws: usize,
        rows: usize,
        cols: usize,
        depth: usize,
        y: &mut [f32],
    ) -> Result<()>;
}

#[allow(clippy::too_many_arguments)] // the strided product's shape, as in `Half16Or32::product`
fn half_product<T: Half16>(
    x: &[T],
    xs: usize,
    w: &[T],
    ws: usize,
    rows: usize,
    cols: usize,
    depth: usize,
    y: &mut [f32],
) -> Result<()> {
    let x = MatRef::new("attention lhs", x, rows, depth, xs)?;
    let w = MatRef::new("attention rhs", w, cols, depth, ws)?;
    tokenscale_kernels::matmul_transposed(
        x,
        w,
        MatMut::new("attention out", y, rows, cols, cols)?,
        Backend::Auto,
    )?;
    Ok(())
}

impl Half16Or32 for bf16 {
    fn product(
        x: &[Self],
        xs: usize,
        w: &[Self],
        ws: usize,
        rows: usize,
        cols: usize,
        depth: usize,
        y: &mut [f32],
    ) -> Result<()> {
        half_product(x, xs, w, ws, rows, cols, depth, y)
    }
}

impl Half16Or32 for f16 {
    fn product(
        x: &[Self],
        xs: usize,
        w: &[Self],
        ws: usize,
        rows: usize,
        cols: usize,
        depth: usize,
        y: &mut [f32],
    ) -> Result<()> {
        half_product(x, xs, w, ws, rows, cols, depth, y)
    }
}

impl Half16Or32 for f32 {
    fn product(
        x: &[f32],
        xs: usize,
        w: &[f32],
        ws: usize,
        rows: usize,
        cols: usize,
        depth: usize,
        y: &mut [f32],
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let fits = |len: usize, n: usize, stride: usize| {
            stride >= depth && len >= (n - 1) * stride + depth
        };
        if !fits(x.len(), rows, xs) || !fits(w.len(), cols, ws) || y.len() < rows * cols {
            bail!("attention product: {rows}×{depth} · ({cols}×{depth})ᵀ does not fit the buffers");
        }
        // SAFETY: the checks above keep every element gemm reads (x: r·xs + k, w: c·ws + k for
        // r < rows, c < cols, k < depth) and writes (y: r·cols + c) inside the slices, and `y`
        // is borrowed mutably so nothing else reads it meanwhile.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                depth,
                y.as_mut_ptr(),
                1,
                cols as isize,
                false,
                x.as_ptr(),
                1,
                xs as isize,
                w.as_ptr(),
                ws as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        Ok(())
    }
}

/// The fast path applies (CPU, a supported dtype, and nothing that needs candle's graph).
fn fast_path_applies(ctx: &Forward, q: &Tensor) -> bool {
    q.device().is_cpu()
        && !ctx.differentiable()
        && !ctx.capturing_attention()
        && matches!(q.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// Causal attention of `q` (`[B, heads, T, hd]`, contiguous, RoPE applied) over the cached
/// positions and the new `k`, `v` (`[B, kv, T, hd]`), which are appended to `cache`. Query `i`
/// sees the cached positions and new positions ≤ i. Returns the context `[B, T, heads·hd]`
/// and, when `last_probs`, the last query's attention over every key averaged over heads
/// (`[B, past + T]`, f32).
pub fn causal(
    ctx: &Forward,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cache: &mut LayerKv,
    shape: Heads,
    last_probs: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    if fast_path_applies(ctx, q) && q.is_contiguous() {
        cache.append(k, v)?;
        return match q.dtype() {
            DType::BF16 => fast::<bf16>(ctx, q, cache, shape, last_probs),
            DType::F16 => fast::<f16>(ctx, q, cache, shape, last_probs),
            _ => fast::<f32>(ctx, q, cache, shape, last_probs),
        };
    }
    candle_path(ctx, q, k, v, cache, shape, last_probs)
}

/// The decoder's attention written with candle's ops (differentiable; records attention).
fn candle_path(
    ctx: &Forward,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cache: &mut LayerKv,
    shape: Heads,
    last_probs: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, _, t, _) = q.dims4()?;
    let past = cache.len();
    let (k_all, v_all) = match cache.tensors(q.device())? {
        Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
        None => (k.clone(), v.clone()),
    };
    cache.append(k, v)?;
    let Heads { heads, kv_heads, head_dim } = shape;
    // Grouped-query attention without copying K/V per query head: the `groups` query heads
    // sharing a KV head are stacked along the rows, which also makes each product taller.
    let groups = heads / kv_heads;
    let total = k_all.dim(2)?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let q = (q * scale)?.reshape((b, kv_heads, groups * t, head_dim))?;
    let mut scores = crate::nn::matmul(ctx, &q, &k_all.t()?)?; // [b, kv, groups·t, total]
    if t > 1 {
        let mask = causal_mask(t, past, scores.dtype(), scores.device())?;
        let mask = if groups > 1 { mask.repeat((groups, 1))? } else { mask };
        scores = scores.broadcast_add(&mask)?;
    }
    let probs = crate::nn::softmax_last_dim(ctx, &scores)?;
    let context =
        crate::nn::matmul(ctx, &probs, &v_all.contiguous()?)?.reshape((b, heads, t, head_dim))?;
    let probs = probs.reshape((b, heads, t, total))?;
    ctx.record_attention(&probs);
    let last = if last_probs {
        Some(probs.narrow(2, t - 1, 1)?.squeeze(2)?.to_dtype(DType::F32)?.mean(1)?)
    } else {
        None
    };
    let context = context.transpose(1, 2)?.reshape((b, t, heads * head_dim))?;
    Ok((context, last))
}

/// Context rows `[B, T, heads·hd]`, gathered from the per-head outputs in parallel.
fn gather_context<T: CacheElement>(
    outs: &[HeadOut],
    b: usize,
    heads: usize,
    t: usize,
    hd: usize,
    device: &Device,
) -> Result<Tensor> {
    let width = heads * hd;
    let mut ctx = vec![T::of(0.0); b * t * width];
    ctx.par_chunks_mut(width).enumerate().for_each(|(row, out)| {
        let (bi, i) = (row / t, row % t);
        for h in 0..heads {
            let src = &outs[bi * heads + h].0[i * hd..][..hd];
            for (o, &s) in out[h * hd..][..hd].iter_mut().zip(src) {
                *o = T::of(s);
            }
        }
    });
    Ok(Tensor::from_vec(ctx, (b, t, width), device)?)
}

/// Attention without a mask (the vision towers' encoder layers) of `q`, `k`, `v`
/// (`[B, heads, T, hd]`, `q` already scaled) on the fast path: per (batch, head) in row blocks,
/// the scores and exponentials in f32, never materialising `[B, heads, T, T]` in 16 bits.
/// Returns the context `[B, T, heads·hd]`, or `None` where the fast path does not apply (then
/// use candle's ops).
pub fn bidirectional(ctx: &Forward, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    if !fast_path_applies(ctx, q) || k.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return Ok(None);
    }
    match q.dtype() {
        DType::BF16 => bidirectional_typed::<bf16>(ctx, q, k, v),
        DType::F16 => bidirectional_typed::<f16>(ctx, q, k, v),
        _ => bidirectional_typed::<f32>(ctx, q, k, v),
    }
}

fn bidirectional_typed<T: CacheElement>(
    ctx: &Forward,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> Result<Option<Tensor>> {
    let (b, heads, t, hd) = q.dims4()?;
    if k.dims() != q.dims() || v.dims() != q.dims() {
        bail!("attention: q {:?}, k {:?}, v {:?} differ in shape", q.dims(), k.dims(), v.dims());
    }
    let ((q_storage, q_layout), (k_storage, k_layout), (v_storage, v_layout)) =
        (q.storage_and_layout(), k.storage_and_layout(), v.storage_and_layout());
    let (Some(qs), Some(ks), Some(vs)) = (
        cpu_slice::<T>(&q_storage, q_layout)?,
        cpu_slice::<T>(&k_storage, k_layout)?,
        cpu_slice::<T>(&v_storage, v_layout)?,
    ) else {
        return Ok(None);
    };
    ctx.count(Op::Matmul, || (2 * b * heads * t * t * hd) as u64);
    let per_head = t * hd;
    let outs: Vec<HeadOut> = (0..b * heads)
        .into_par_iter()
        .map(|bh| {
            let values = &vs[bh * per_head..][..per_head];
            // Vᵀ (hd × T): the second product wants one row per value dimension.
            let mut values_t = vec![T::of(0.0); per_head];
            for (j, row) in values.chunks(hd).enumerate() {
                for (d, &x) in row.iter().enumerate() {
                    values_t[d * t + j] = x;
                }
            }
            let (query, keys) =
                (&qs[bh * per_head..][..per_head], &ks[bh * per_head..][..per_head]);
            head::<T>(query, keys, &values_t, t, t, 0, hd, 1.0, false, false)
        })
        .collect::<Result<_>>()?;
    Ok(Some(gather_context::<T>(&outs, b, heads, t, hd, q.device())?))
}

/// The elements of a contiguous CPU tensor of type `T` (its storage and layout), borrowed;
/// `None` when it is not one.
fn cpu_slice<'a, T: CacheElement>(
    storage: &'a Storage,
    layout: &candle_core::Layout,
) -> Result<Option<&'a [T]>> {
    let Storage::Cpu(cpu) = storage else { return Ok(None) };
    let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
    Ok(Some(&cpu.as_slice::<T>()?[start..end]))
}

/// Additive mask `[T, past + T]`: 0 where key j ≤ past + i, −∞ after.
pub fn causal_mask(t: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (t, total), device)?.to_dtype(dtype)?)
}

/// One query head's output rows `[T, hd]` and, if asked, its last row of probabilities.
type HeadOut = (Vec<f32>, Option<Vec<f32>>);

fn fast<T: CacheElement>(
    ctx: &Forward,
    q: &Tensor,
    cache: &LayerKv,
    shape: Heads,
    last_probs: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, heads, t, hd) = q.dims4()?;
    let Heads { kv_heads, .. } = shape;
    if heads != shape.heads || hd != shape.head_dim || heads % kv_heads != 0 {
        bail!("attention: query [{b}, {heads}, {t}, {hd}] does not fit {shape:?}");
    }
    let groups = heads / kv_heads;
    let total = cache.len;
    let past = total - t;
    let capacity = cache.capacity;
    let buf = cache
        .data
        .as_ref()
        .and_then(T::get)
        .ok_or_else(|| anyhow::anyhow!("attention: empty KV cache"))?;
    let (storage, layout) = q.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("attention: query not on the CPU") };
    let Some((q_start, q_end)) = layout.contiguous_offsets() else {
        bail!("attention: query not contiguous")
    };
    let qs = &cpu.as_slice::<T>()?[q_start..q_end];
    let scale = 1.0 / (hd as f32).sqrt();
    // The MACs of q·Kᵀ and p·V as `nn::matmul` counts them (every key, masked ones included).
    ctx.count(Op::Matmul, || (2 * b * heads * t * total * hd) as u64);
    let outs: Vec<HeadOut> = (0..b * heads)
        .into_par_iter()
        .map(|bh| {
            let (bi, h) = (bh / heads, bh % heads);
            let kvh = bi * kv_heads + h / groups;
            let keys = &buf.k[kvh * capacity * hd..];
            let values_t = &buf.vt[kvh * hd * capacity..];
            let query = &qs[bh * t * hd..][..t * hd];
            head::<T>(query, keys, values_t, capacity, t, past, hd, scale, last_probs, true)
        })
        .collect::<Result<_>>()?;
    let context = gather_context::<T>(&outs, b, heads, t, hd, q.device())?;
    let last = if last_probs {
        let mut mean = vec![0f32; b * total];
        for (bh, (_, row)) in outs.iter().enumerate() {
            let row = row.as_ref().ok_or_else(|| anyhow::anyhow!("attention: last row missing"))?;
            for (m, &p) in mean[(bh / heads) * total..][..total].iter_mut().zip(row) {
                *m += p;
            }
        }
        mean.iter_mut().for_each(|m| *m /= heads as f32);
        Some(Tensor::from_vec(mean, (b, total), q.device())?)
    } else {
        None
    };
    Ok((context, last))
}

/// One query head: scores, softmax (causal: query i sees keys ≤ past + i; otherwise every key)
/// and the product with the values, in row blocks.
#[allow(clippy::too_many_arguments)]
fn head<T: CacheElement>(
    query: &[T],
    keys: &[T],
    values_t: &[T],
    capacity: usize,
    t: usize,
    past: usize,
    hd: usize,
    scale: f32,
    last_probs: bool,
    causal: bool,
) -> Result<HeadOut> {
    let total = past + t;
    let mut out = vec![0f32; t * hd];
    let mut last = None;
    let mut scores = vec![0f32; ROW_BLOCK.min(t) * total];
    let mut probs = vec![T::of(0.0); ROW_BLOCK.min(t) * total];
    for first in (0..t).step_by(ROW_BLOCK) {
        let rows = ROW_BLOCK.min(t - first);
        // Keys beyond the block's last query are masked for every row of the block.
        let visible = if causal { past + first + rows } else { total };
        let scores = &mut scores[..rows * visible];
        T::product(&query[first * hd..], hd, keys, hd, rows, visible, hd, scores)?;
        let probs = &mut probs[..rows * visible];
        for (r, (srow, prow)) in
            scores.chunks_mut(visible).zip(probs.chunks_mut(visible)).enumerate()
        {
            let limit = if causal { past + first + r + 1 } else { total }; // keys < limit are visible
            for s in srow[..limit].iter_mut() {
                *s *= scale;
            }
            // At least key 0 is visible to every query, so the sum is never of nothing.
            let sum = crate::fused::exp_shifted_sum(&mut srow[..limit]).unwrap_or(f32::NAN);
            let inv = 1.0 / sum;
            for (p, &s) in prow[..limit].iter_mut().zip(&srow[..limit]) {
                *p = T::of(s * inv);
            }
            prow[limit..].iter_mut().for_each(|p| *p = T::of(0.0));
            if last_probs && first + r == t - 1 {
                let mut row: Vec<f32> = prow.iter().map(|p| p.to_f32()).collect();
                row.resize(total, 0.0);
                last = Some(row);
            }
        }
        // out rows = probs (rows × visible) · V (visible × hd): Vᵀ's rows hold one dimension each.
        T::product(
            probs,
            visible,
            values_t,
            capacity,
            rows,
            hd,
            visible,
            &mut out[first * hd..][..rows * hd],
        )?;
    }
    // 16-bit: the product is rounded once to the dtype, as PyTorch's bf16 matmul does.
    out.iter_mut().for_each(|o| *o = T::narrowed(*o));
    Ok((out, last))
}

//! Every linear layer of the runtime: y = x·Wᵀ + b.
//! - f32, a few rows (the decode step): `tokenscale_kernels::f32_rows_transposed`, W's rows split across threads and read four at a time. Decoding reads every weight
//!   once per token, so its speed is memory bandwidth; gemm's m = 1 path reaches about half of
//!   it here, a plain row-parallel dot product reaches more.
//! - bf16/f16 weights and input on the CPU: `tokenscale_kernels::linear` (AMX tiles for bf16
//!   where the CPU has them, 16-bit row-parallel dot products for decode, an f32 fallback
//!   elsewhere); candle 0.9's CPU matmul has no fast 16-bit path.
//! - anything else: the layer's own forward.
//!
//! Layers call these through [`crate::nn::Linear::forward`]; this module only reads the forward
//! context (whether autograd must see the product, where to count it).

use anyhow::{Context, Result};
use candle_core::{DType, Module, Storage, Tensor, WithDType};
use candle_nn::Linear;
use tokenscale_kernels::{bf16, f16, Backend, Half16, MatRef};

use crate::forward::Forward;
use crate::opcount::Op;

/// `x·Wᵀ (+ b)` for f32 CPU input rows, every output element one `tokenscale_kernels::dot_f32` of a weight row and an
/// input row, so a row's result does not depend on the rows that come with it (a batched decode
/// step gives each sequence exactly what it would get alone) and the weights are read once for
/// all rows. `None` when the fast path does not apply or `x` holds more than `max_rows` rows
/// (then use the layer's own forward).
fn linear_f32_rows(linear: &Linear, x: &Tensor, max_rows: usize) -> Result<Option<Tensor>> {
    let w = linear.weight();
    let (out_dim, in_dim) = w.dims2()?;
    if x.dtype() != DType::F32
        || w.dtype() != DType::F32
        || x.dims().last() != Some(&in_dim)
        || !w.is_contiguous()
    {
        return Ok(None);
    }
    let rows = x.elem_count() / in_dim.max(1);
    if rows == 0 || rows > max_rows {
        return Ok(None);
    }
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let weights =
        &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + out_dim * in_dim];
    let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
    // Output transposed, `[out_dim, rows]`: a task owns whole weight rows.
    let mut yt = vec![0f32; out_dim * rows];
    if !tokenscale_kernels::f32_rows_transposed(weights, &input, in_dim, &mut yt) {
        return Ok(None);
    }
    let y = if rows == 1 {
        yt
    } else {
        (0..rows)
            .flat_map(|j| (0..out_dim).map(move |r| (r, j)))
            .map(|(r, j)| yt[r * rows + j])
            .collect()
    };
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out_dim;
    }
    let y = Tensor::from_vec(y, shape, x.device())?;
    Ok(Some(match linear.bias() {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    }))
}

/// The elements of a contiguous CPU tensor of element type `T` (`None` when not on the CPU).
fn cpu_elements<T: WithDType>(t: &Tensor) -> Result<Option<Vec<T>>> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
    Ok(Some(cpu.as_slice::<T>()?[start..end].to_vec()))
}

/// `x·Wᵀ (+ b)` for 16-bit CPU weights and input of the same type `T`; `None` when the weight is
/// not a contiguous CPU tensor (then use the layer's own forward).
fn linear_half<T: WithDType + Half16>(linear: &Linear, x: &Tensor) -> Result<Option<Tensor>> {
    let w = linear.weight();
    let (out_dim, in_dim) = w.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Ok(None); // the layer's forward names the shape error
    }
    let rows = x.elem_count() / in_dim.max(1);
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let Some((w_start, w_end)) = layout.contiguous_offsets() else { return Ok(None) };
    let weights = &cpu.as_slice::<T>()?[w_start..w_end];
    // The input is read where it lies (no copy) when it is a contiguous CPU tensor.
    let x = x.contiguous()?;
    let (x_storage, x_layout) = x.storage_and_layout();
    let Storage::Cpu(x_cpu) = &*x_storage else { return Ok(None) };
    let Some((x_start, x_end)) = x_layout.contiguous_offsets() else { return Ok(None) };
    let input = &x_cpu.as_slice::<T>()?[x_start..x_end];
    let bias = match linear.bias() {
        Some(b) => match cpu_elements::<T>(&b.to_dtype(x.dtype())?.contiguous()?)? {
            Some(values) => Some(values),
            None => return Ok(None),
        },
        None => None,
    };
    let mut out = vec![T::from_f64(0.0); rows * out_dim];
    tokenscale_kernels::linear(
        MatRef::new("linear input", input, rows, in_dim, in_dim)?,
        MatRef::new("linear weight", weights, out_dim, in_dim, in_dim)?,
        bias.as_deref(),
        &mut out,
        Backend::Auto,
    )
    .with_context(|| format!("linear layer {out_dim}×{in_dim} on input {dims:?}"))?;
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("x has at least one dim") = out_dim;
    Ok(Some(Tensor::from_vec(out, shape, x.device())?))
}

/// The layer applied to `x`: 16-bit weights through our kernels, a single f32 row through the
/// row-parallel path, anything else through the layer's forward.
pub(crate) fn apply(ctx: &Forward, linear: &Linear, x: &Tensor) -> Result<Tensor> {
    apply_up_to(ctx, linear, x, 1)
}

/// [`apply`] for a batch of decode rows (`[B, 1, in]`, one per sequence): f32 rows go through
/// the row-parallel path whatever their number, so each row's result is bitwise what [`apply`]
/// gives it alone; 16-bit rows take the kernels as in [`apply`].
pub(crate) fn apply_rows(ctx: &Forward, linear: &Linear, x: &Tensor) -> Result<Tensor> {
    apply_up_to(ctx, linear, x, usize::MAX)
}

/// The layer on `x`: 16-bit weights through the kernels, f32 inputs of at most `max_f32_rows`
/// rows on the row-parallel path (not in training: it reads raw storage, which autograd cannot
/// see through), anything else through the layer's own forward; counted either way.
fn apply_up_to(ctx: &Forward, linear: &Linear, x: &Tensor, max_f32_rows: usize) -> Result<Tensor> {
    let w = linear.weight();
    let fast = match (w.dtype(), x.dtype()) {
        (DType::BF16, DType::BF16) => linear_half::<bf16>(linear, x)?,
        (DType::F16, DType::F16) => linear_half::<f16>(linear, x)?,
        _ if ctx.differentiable() => None,
        _ => linear_f32_rows(linear, x, max_f32_rows)?,
    };
    let y = match fast {
        Some(y) => y,
        None => linear.forward(x)?,
    };
    ctx.count(Op::Linear, || (y.elem_count() * w.dim(1).unwrap_or(0)) as u64);
    Ok(y)
}

/// Batched `a · b` (attention products: `a` is `[.., m, k]`, `b` is `[.., k, n]`, same leading
/// dims) for 16-bit CPU tensors through the kernels, since candle 0.9's CPU matmul rejects bf16
/// and f16; anything else goes to candle's matmul.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let on_cpu = a.device().is_cpu() && b.device().is_cpu();
    match (a.dtype(), b.dtype()) {
        (DType::BF16, DType::BF16) if on_cpu => matmul_half::<bf16>(a, b),
        (DType::F16, DType::F16) if on_cpu => matmul_half::<f16>(a, b),
        _ => Ok(a.matmul(b)?),
    }
}

fn matmul_half<T: WithDType + Half16>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (da, db) = (a.dims(), b.dims());
    let rank = da.len();
    if rank < 2
        || db.len() != rank
        || da[..rank - 2] != db[..rank - 2]
        || da[rank - 1] != db[rank - 2]
    {
        anyhow::bail!("matmul: shapes {da:?} and {db:?} do not fit [.., m, k] · [.., k, n]");
    }
    let (m, k, n) = (da[rank - 2], da[rank - 1], db[rank - 1]);
    let batch: usize = da[..rank - 2].iter().product();
    // The kernels want bᵀ with k contiguous; for `x · kᵀ` that is k itself (no copy).
    let bt = b.transpose(rank - 2, rank - 1)?.contiguous()?;
    let (Some(x), Some(w)) = (cpu_elements::<T>(&a.contiguous()?)?, cpu_elements::<T>(&bt)?) else {
        return Ok(a.matmul(b)?);
    };
    let mut out = vec![T::from_f64(0.0); batch * m * n];
    let shape = tokenscale_kernels::BatchShape { batch, m, n, k };
    tokenscale_kernels::batched_transposed(&x, &w, shape, &mut out, Backend::Auto)
        .with_context(|| format!("matmul {da:?} · {db:?}"))?;
    let mut dims = da.to_vec();
    dims[rank - 1] = n;
    Ok(Tensor::from_vec(out, dims, a.device())?)
}

/// The convolution applied to `xs`; 16-bit CPU inputs run in f32 (candle 0.9's CPU convolution
/// goes through its matmul, which rejects bf16/f16) and are rounded back.
pub fn conv2d(layer: &candle_nn::Conv2d, xs: &Tensor) -> Result<Tensor> {
    let dtype = xs.dtype();
    if !(matches!(dtype, DType::BF16 | DType::F16) && xs.device().is_cpu()) {
        return Ok(layer.forward(xs)?);
    }
    let weight = layer.weight().to_dtype(DType::F32)?;
    let bias = layer.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
    let upcast = candle_nn::Conv2d::new(weight, bias, *layer.config());
    Ok(upcast.forward(&xs.to_dtype(DType::F32)?)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn one_row_path_equals_the_layer_forward() {
        let dev = Device::Cpu;
        for (out_dim, in_dim, bias) in [(1, 1, false), (130, 77, true), (257, 64, false)] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1.0, out_dim, &dev).unwrap());
            let layer = Linear::new(w, b);
            let x = Tensor::randn(0f32, 1.0, (1, 1, in_dim), &dev).unwrap();
            let fast = linear_f32_rows(&layer, &x, 1).unwrap().expect("fast path applies");
            let reference = layer.forward(&x).unwrap();
            assert_eq!(fast.dims(), reference.dims());
            let diff = (fast - reference)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff <= 1e-4, "{out_dim}x{in_dim}: {diff}");
        }
        let two_rows = Tensor::zeros((1, 2, 4), DType::F32, &dev).unwrap();
        let layer = Linear::new(Tensor::zeros((3, 4), DType::F32, &dev).unwrap(), None);
        assert!(linear_f32_rows(&layer, &two_rows, 1).unwrap().is_none());
    }

    /// The 16-bit path against candle's forward on the f32 upcast of the same weights: one
    /// bf16/f16 rounding of the result apart (plus f32 summation differences).
    #[test]
    fn half_path_equals_the_f32_forward_of_the_same_values() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            for (rows, out_dim, in_dim, bias) in
                [(1, 70, 64, true), (2, 33, 31, false), (45, 130, 96, true), (3, 1, 1, false)]
            {
                let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let b = bias.then(|| {
                    Tensor::randn(0f32, 1.0, out_dim, &dev).unwrap().to_dtype(dtype).unwrap()
                });
                let x = Tensor::randn(0f32, 1.0, (1, rows, in_dim), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let layer = Linear::new(w.clone(), b.clone());
                let fast = match dtype {
                    DType::BF16 => linear_half::<bf16>(&layer, &x).unwrap(),
                    _ => linear_half::<f16>(&layer, &x).unwrap(),
                };
                let fast = fast.expect("16-bit path applies to contiguous CPU tensors");
                assert_eq!(fast.dtype(), dtype);
                assert_eq!(fast.dims(), &[1, rows, out_dim]);
                let upcast = Linear::new(
                    w.to_dtype(DType::F32).unwrap(),
                    b.map(|b| b.to_dtype(DType::F32).unwrap()),
                );
                let reference = upcast.forward(&x.to_dtype(DType::F32).unwrap()).unwrap();
                let fast = fast.to_dtype(DType::F32).unwrap();
                // Half an ulp of the 16-bit result (2⁻⁸ relative for bf16, 2⁻¹¹ for f16) + slack.
                let rel = if dtype == DType::BF16 { 2f32.powi(-8) } else { 2f32.powi(-11) };
                let allowed = ((reference.abs().unwrap() * rel as f64).unwrap() + 1e-3).unwrap();
                let excess = ((fast - &reference).unwrap().abs().unwrap() - allowed).unwrap();
                let worst =
                    excess.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(worst <= 0.0, "{dtype:?} {rows}x{out_dim}x{in_dim}: exceeds by {worst}");
            }
        }
    }

    #[test]
    fn half_matmul_equals_the_f32_product_of_the_same_values() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            let a =
                Tensor::randn(0f32, 1.0, (2, 3, 37, 64), &dev).unwrap().to_dtype(dtype).unwrap();
            let keys =
                Tensor::randn(0f32, 1.0, (2, 3, 41, 64), &dev).unwrap().to_dtype(dtype).unwrap();
            let values =
                Tensor::randn(0f32, 1.0, (2, 3, 41, 24), &dev).unwrap().to_dtype(dtype).unwrap();
            let scores = keys.t().unwrap(); // [.., 64, 41], a transposed view (the attention case)
            let probs =
                Tensor::randn(0f32, 1.0, (2, 3, 37, 41), &dev).unwrap().to_dtype(dtype).unwrap();
            for (lhs, rhs) in [(&a, &scores), (&probs, &values)] {
                let got = matmul(lhs, rhs).unwrap();
                assert_eq!(got.dtype(), dtype);
                let want = lhs
                    .to_dtype(DType::F32)
                    .unwrap()
                    .matmul(&rhs.to_dtype(DType::F32).unwrap())
                    .unwrap();
                assert_eq!(got.dims(), want.dims());
                let rel = if dtype == DType::BF16 { 2f32.powi(-8) } else { 2f32.powi(-11) };
                let allowed = ((want.abs().unwrap() * rel as f64).unwrap() + 1e-3).unwrap();
                let excess = ((got.to_dtype(DType::F32).unwrap() - &want).unwrap().abs().unwrap()
                    - allowed)
                    .unwrap();
                let worst =
                    excess.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(
                    worst <= 0.0,
                    "{dtype:?} {:?}·{:?}: exceeds by {worst}",
                    lhs.dims(),
                    rhs.dims()
                );
            }
            let bad = matmul(&a, &values).unwrap_err().to_string();
            assert!(bad.contains("do not fit"), "{bad}");
        }
    }
}

//! Single-row linear layers (the decode step): y = x·Wᵀ + b with W's rows split across threads.
//! Decoding reads every weight once per token, so its speed is memory bandwidth; gemm's m = 1
//! path reaches about half of it here, a plain row-parallel dot product reaches more.

use anyhow::Result;
use candle_core::{DType, Module, Storage, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

const ROWS_PER_TASK: usize = 64;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `x·Wᵀ (+ b)` for an f32 CPU input holding exactly one row; `None` when the fast path does not
/// apply (then use the layer's own forward).
fn linear_one_row(linear: &Linear, x: &Tensor) -> Result<Option<Tensor>> {
    let w = linear.weight();
    let (out_dim, in_dim) = w.dims2()?;
    // The fast path reads raw storage, which autograd cannot see through.
    if crate::nn::differentiable() {
        return Ok(None);
    }
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 || x.elem_count() != in_dim || !w.is_contiguous() {
        return Ok(None);
    }
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let weights = &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + out_dim * in_dim];
    let row: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let mut y = vec![0f32; out_dim];
    y.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(chunk, out)| {
        let first = chunk * ROWS_PER_TASK;
        for (i, v) in out.iter_mut().enumerate() {
            let r = first + i;
            *v = dot(&weights[r * in_dim..(r + 1) * in_dim], &row);
        }
    });
    let mut shape = x.dims().to_vec();
    *shape.last_mut().expect("x has at least one dim") = out_dim;
    let y = Tensor::from_vec(y, shape, x.device())?;
    Ok(Some(match linear.bias() {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    }))
}

/// The layer applied to `x`, through the row-parallel path when `x` is a single f32 row.
pub fn apply(linear: &Linear, x: &Tensor) -> Result<Tensor> {
    match linear_one_row(linear, x)? {
        Some(y) => Ok(y),
        None => Ok(linear.forward(x)?),
    }
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
            let fast = linear_one_row(&layer, &x).unwrap().expect("fast path applies");
            let reference = layer.forward(&x).unwrap();
            assert_eq!(fast.dims(), reference.dims());
            let diff = (fast - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-4, "{out_dim}x{in_dim}: {diff}");
        }
        let two_rows = Tensor::zeros((1, 2, 4), DType::F32, &dev).unwrap();
        let layer = Linear::new(Tensor::zeros((3, 4), DType::F32, &dev).unwrap(), None);
        assert!(linear_one_row(&layer, &two_rows).unwrap().is_none());
    }
}

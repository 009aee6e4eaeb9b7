//! Shared by the test binaries: seeded inputs and the exact reference.
#![allow(dead_code)]

use tokenscale_base::rng::SplitMix64;
use tokenscale_kernels::Half16;

/// A seeded stream of uniform values in [-1, 1) from the project's SplitMix64.
pub struct Values(SplitMix64);

impl Values {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }
    pub fn next(&mut self) -> f32 {
        (self.0.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `count` seeded values rounded to the 16-bit type.
pub fn random<T: Half16>(count: usize, seed: u64, from_f32: fn(f32) -> T) -> Vec<T> {
    let mut v = Values::new(seed);
    (0..count).map(|_| from_f32(v.next())).collect()
}

/// Exact y = x · wᵀ of the (already 16-bit) inputs, in f64, and Σ|x·w| per element (the scale
/// of the rounding error of any f32 summation order).
pub fn reference<T: Half16>(
    x: &[T],
    ldx: usize,
    w: &[T],
    ldw: usize,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; m * n];
    let mut scale = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let prod = x[i * ldx + p].to_f32() as f64 * w[j * ldw + p].to_f32() as f64;
                y[i * n + j] += prod;
                scale[i * n + j] += prod.abs();
            }
        }
    }
    (y, scale)
}

/// f32 accumulation of k exact products: error ≲ √k · 2⁻²⁴ · Σ|x·w| for random rounding, and
/// the bound below allows 16× that (so a dropped or doubled product, error ~ |x·w|, still fails).
pub fn tolerance(k: usize, scale: f64) -> f64 {
    16.0 * (k.max(1) as f64).sqrt() * f32::EPSILON as f64 / 2.0 * scale + 1e-30
}

/// The worst error relative to the tolerance (≤ 1 passes) over the m × n block of y.
pub fn worst_ratio(
    y: &[f32],
    ldy: usize,
    expected: &[f64],
    scale: &[f64],
    m: usize,
    n: usize,
    k: usize,
) -> f64 {
    let mut worst = 0f64;
    for i in 0..m {
        for j in 0..n {
            let err = (y[i * ldy + j] as f64 - expected[i * n + j]).abs();
            let ratio = err / tolerance(k, scale[i * n + j]);
            if ratio.is_nan() {
                return f64::INFINITY;
            }
            worst = worst.max(ratio);
        }
    }
    worst
}

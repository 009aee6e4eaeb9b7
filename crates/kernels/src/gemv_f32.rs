//! f32 weights times a few f32 rows (the f32 decode step): every weight is read once per call,
//! so the speed is memory bandwidth. Weight rows are split across threads; on AVX-512 four rows
//! are read side by side with a software prefetch (more loads in flight than one stream), and
//! each output element is summed in exactly the order of [`dot_f32`], so the result of a row
//! never depends on the path, the thread count or the other rows it comes with (a batched decode
//! step gives each sequence bitwise what it gets alone).

use rayon::prelude::*;

/// Weight rows per rayon task: enough work to hide the scheduling cost.
const ROWS_PER_TASK: usize = 64;
/// Weight rows read side by side by the AVX-512 path.
const GROUP: usize = 4;

/// The reference dot product: sixteen running sums (lane i takes elements i, i + 16, …; each
/// step a rounded product then a rounded add), those sixteen summed in lane order, then the
/// products of the tail (the last `len % 16` elements) summed in order and added.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

/// `yt[r * rows + j] = dot_f32(weights row r, input row j)` for `rows = input.len() / in_dim`
/// input rows and `weights.len() / in_dim` weight rows (the output transposed, so a task owns
/// whole weight rows). Returns `false` (and writes nothing) when the lengths do not fit.
pub fn f32_rows_transposed(weights: &[f32], input: &[f32], in_dim: usize, yt: &mut [f32]) -> bool {
    if in_dim == 0 || !weights.len().is_multiple_of(in_dim) || !input.len().is_multiple_of(in_dim) {
        return false;
    }
    let (out_dim, rows) = (weights.len() / in_dim, input.len() / in_dim);
    if yt.len() != out_dim * rows || rows == 0 {
        return false;
    }
    let four_rows = four_rows_fn();
    yt.par_chunks_mut(ROWS_PER_TASK * rows).enumerate().for_each(|(task, out)| {
        let first = task * ROWS_PER_TASK;
        let weight_row = |i: usize| &weights[(first + i) * in_dim..][..in_dim];
        let count = out.len() / rows;
        let mut i = 0;
        if let (Some(four_rows), 1) = (four_rows, rows) {
            while i + GROUP <= count {
                let group = std::array::from_fn(|g| weight_row(i + g));
                out[i..i + GROUP].copy_from_slice(&four_rows(group, input));
                i += GROUP;
            }
        }
        for (i, outputs) in out.chunks_mut(rows).enumerate().skip(i) {
            for (j, v) in outputs.iter_mut().enumerate() {
                *v = dot_f32(weight_row(i), &input[j * in_dim..][..in_dim]);
            }
        }
    });
    true
}

type FourRows = fn([&[f32]; GROUP], &[f32]) -> [f32; GROUP];

/// The four-row dot product for this CPU, if it has one.
fn four_rows_fn() -> Option<FourRows> {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx512f && !crate::cpu::portable_forced() {
        return Some(|w, x| {
            // SAFETY: AVX-512F was detected at run time.
            unsafe { x86::dot4(w, x) }
        });
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// How far ahead (in elements) the next lines of each row are asked for.
    const PREFETCH: usize = 256;

    /// Four [`super::dot_f32`]s of weight rows against the same x, bit-identical to them: the
    /// sixteen running sums are one vector (a product then an add, never fused), and the lanes
    /// and the tail are summed as the reference does.
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot4(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        let len = w.iter().map(|r| r.len()).min().unwrap_or(0).min(x.len());
        let full = len / 16 * 16;
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= len <= every row's length and x's, so 16 values of each are readable;
            // the prefetch address may lie past the end (prefetches never fault).
            unsafe {
                let xv = _mm512_loadu_ps(x.as_ptr().add(i));
                for r in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(
                        w[r].as_ptr().wrapping_add(i + PREFETCH) as *const i8
                    );
                    acc[r] = _mm512_add_ps(
                        acc[r],
                        _mm512_mul_ps(_mm512_loadu_ps(w[r].as_ptr().add(i)), xv),
                    );
                }
            }
            i += 16;
        }
        std::array::from_fn(|r| {
            let mut lanes = [0f32; 16];
            // SAFETY: lanes holds 16 f32 (unaligned store).
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r]) };
            let tail: f32 = w[r][full..len].iter().zip(&x[full..len]).map(|(a, b)| a * b).sum();
            lanes.iter().sum::<f32>() + tail
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect()
    }

    /// Every path (four rows at once, the remainder rows, several input rows) gives bitwise the
    /// reference dot product, for lengths with and without a tail.
    #[test]
    fn every_output_is_bitwise_the_reference_dot() {
        for &(out_dim, in_dim, rows) in
            &[(7, 16, 1), (130, 37, 1), (129, 4096, 1), (67, 100, 3), (5, 1, 2)]
        {
            let w = values(out_dim * in_dim, 1 + in_dim as u64);
            let x = values(rows * in_dim, 99 + out_dim as u64);
            let mut yt = vec![f32::NAN; out_dim * rows];
            assert!(f32_rows_transposed(&w, &x, in_dim, &mut yt));
            for r in 0..out_dim {
                for j in 0..rows {
                    let expected = dot_f32(&w[r * in_dim..][..in_dim], &x[j * in_dim..][..in_dim]);
                    assert_eq!(
                        yt[r * rows + j].to_bits(),
                        expected.to_bits(),
                        "row {r}, input {j}, {out_dim}×{in_dim}"
                    );
                }
            }
        }
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        let mut yt = vec![0f32; 2];
        assert!(!f32_rows_transposed(&[0.0; 6], &[0.0; 4], 3, &mut yt));
        assert!(!f32_rows_transposed(&[0.0; 6], &[0.0; 3], 0, &mut yt));
        assert!(!f32_rows_transposed(&[0.0; 6], &[0.0; 3], 3, &mut [0f32; 3]));
    }
}

//! One or two rows times the weights (the decode step). Every weight is read once per call, so
//! the speed is memory bandwidth: the 16-bit weights are widened in registers, never copied.

use rayon::prelude::*;

use crate::matrix::{Half16, HalfFormat, MatMut, MatRef};

/// Weight rows per rayon task: enough work to hide the scheduling cost.
const ROWS_PER_TASK: usize = 32;

fn widened_rows<T: Half16>(x: &MatRef<T>) -> Vec<Vec<f32>> {
    (0..x.rows)
        .map(|r| {
            let mut v = vec![0f32; x.cols];
            T::widen(x.row(r), &mut v);
            v
        })
        .collect()
}

/// Weight rows read side by side by [`x86::dot4`]: four streams from memory at once keep more
/// loads in flight than one, and each x value loaded serves four rows.
const GROUP: usize = 4;

/// A kernel for `GROUP` weight rows against one x row at once (see `for_each_output`).
type GroupDot<'a, T> = dyn Fn([&[T]; GROUP], &[f32]) -> [f32; GROUP] + Sync + 'a;

/// Runs `dot(weight_row, x_row)` for every pair and writes y; rows of w split across threads.
/// `dot4`, when given, does four weight rows against one x row at once.
fn for_each_output<T: Half16>(
    x: &MatRef<T>,
    w: &MatRef<T>,
    y: &mut MatMut,
    dot: impl Fn(&[T], &[f32]) -> f32 + Sync,
    dot4: Option<&GroupDot<'_, T>>,
) {
    let xs = widened_rows(x);
    let n = w.rows;
    let mut out = vec![0f32; xs.len() * n];
    out.par_chunks_mut(ROWS_PER_TASK * xs.len()).enumerate().for_each(|(task, chunk)| {
        let first = task * ROWS_PER_TASK;
        let rows = chunk.len() / xs.len().max(1);
        let mut i = 0;
        if let (Some(dot4), [xr]) = (dot4, &xs[..]) {
            while i + GROUP <= rows {
                let group = std::array::from_fn(|g| w.row(first + i + g));
                chunk[i..i + GROUP].copy_from_slice(&dot4(group, xr));
                i += GROUP;
            }
        }
        for (i, per_row) in chunk.chunks_mut(xs.len()).enumerate().skip(i) {
            let weights = w.row(first + i);
            for (v, xr) in per_row.iter_mut().zip(&xs) {
                *v = dot(weights, xr);
            }
        }
    });
    // out is laid out [weight row][x row]; y is [x row][weight row].
    for (r, _) in xs.iter().enumerate() {
        let dst = &mut y.data[r * y.row_stride..r * y.row_stride + n];
        for (j, d) in dst.iter_mut().enumerate() {
            *d = out[j * xs.len() + r];
        }
    }
}

fn dot_scalar<T: Half16>(w: &[T], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (cw, cx) = (w.chunks_exact(16), x.chunks_exact(16));
    let (rw, rx) = (cw.remainder(), cx.remainder());
    for (a, b) in cw.zip(cx) {
        for i in 0..16 {
            acc[i] += a[i].to_f32() * b[i];
        }
    }
    let tail: f32 = rw.iter().zip(rx).map(|(a, b)| a.to_f32() * b).sum();
    acc.iter().sum::<f32>() + tail
}

pub(crate) fn scalar<T: Half16>(x: &MatRef<T>, w: &MatRef<T>, y: &mut MatMut) {
    for_each_output(x, w, y, dot_scalar::<T>, None);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Sixteen 16-bit values at `p` (raw bits) as f32: bf16 shifted into the high half, f16
    /// through VCVTPH2PS.
    ///
    /// # Safety
    /// `p` must point to 16 readable u16 values.
    #[target_feature(enable = "avx512f")]
    unsafe fn widen16<const FORMAT_IS_BF16: bool>(p: *const u16) -> __m512 {
        // SAFETY: the caller guarantees 16 readable values at p.
        let raw = unsafe { _mm256_loadu_si256(p as *const __m256i) };
        if FORMAT_IS_BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)))
        } else {
            _mm512_cvtph_ps(raw)
        }
    }

    /// Dot product of 16-bit weights (as raw bits) with f32 values; `FORMAT_IS_BF16` selects the
    /// widening (bf16: shift into the high half; f16: VCVTPH2PS).
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot<const FORMAT_IS_BF16: bool>(w: &[u16], x: &[f32]) -> f32 {
        let len = w.len().min(x.len());
        let full = len / 32 * 32;
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let widen = |p: *const u16| -> __m512 {
            // SAFETY: callers pass pointers with 16 readable u16 values (checked by the loop bound).
            unsafe { widen16::<FORMAT_IS_BF16>(p) }
        };
        let mut i = 0;
        while i < full {
            // SAFETY: i + 32 <= len <= both lengths, so 32 weights and 32 values are readable.
            unsafe {
                acc0 = _mm512_fmadd_ps(
                    widen(w.as_ptr().add(i)),
                    _mm512_loadu_ps(x.as_ptr().add(i)),
                    acc0,
                );
                acc1 = _mm512_fmadd_ps(
                    widen(w.as_ptr().add(i + 16)),
                    _mm512_loadu_ps(x.as_ptr().add(i + 16)),
                    acc1,
                );
            }
            i += 32;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for j in full..len {
            let bits = w[j];
            let wv = if FORMAT_IS_BF16 {
                f32::from_bits((bits as u32) << 16)
            } else {
                half::f16::from_bits(bits).to_f32()
            };
            sum += wv * x[j];
        }
        sum
    }

    /// How far ahead (in elements) [`dot4`] asks for each row's next lines.
    const PREFETCH: usize = 512;

    /// Four dot products of 16-bit weight rows (raw bits, equal lengths) with the same f32
    /// values; per row the same summation order as [`dot`] (two accumulators over alternate
    /// 16-lane blocks, then the tail), so the results are bit-identical to four [`dot`] calls.
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot4<const FORMAT_IS_BF16: bool>(w: [&[u16]; 4], x: &[f32]) -> [f32; 4] {
        let len = w.iter().map(|r| r.len()).min().unwrap_or(0).min(x.len());
        let full = len / 32 * 32;
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        let widen = |p: *const u16| -> __m512 {
            // SAFETY: callers pass pointers with 16 readable u16 values (checked by the loop bound).
            unsafe { widen16::<FORMAT_IS_BF16>(p) }
        };
        let mut i = 0;
        while i < full {
            // SAFETY: i + 32 <= len <= every row's length and x's, so 32 values of each are readable.
            unsafe {
                let (x0, x1) =
                    (_mm512_loadu_ps(x.as_ptr().add(i)), _mm512_loadu_ps(x.as_ptr().add(i + 16)));
                for r in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(
                        w[r].as_ptr().wrapping_add(i + PREFETCH) as *const i8
                    );
                    acc[r][0] = _mm512_fmadd_ps(widen(w[r].as_ptr().add(i)), x0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(widen(w[r].as_ptr().add(i + 16)), x1, acc[r][1]);
                }
            }
            i += 32;
        }
        std::array::from_fn(|r| {
            let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
            for j in full..len {
                let bits = w[r][j];
                let wv = if FORMAT_IS_BF16 {
                    f32::from_bits((bits as u32) << 16)
                } else {
                    half::f16::from_bits(bits).to_f32()
                };
                sum += wv * x[j];
            }
            sum
        })
    }
}

pub(crate) fn avx512<T: Half16>(x: &MatRef<T>, w: &MatRef<T>, y: &mut MatMut) {
    #[cfg(target_arch = "x86_64")]
    {
        let bf16 = T::FORMAT == HalfFormat::Bf16;
        let dot4 = |rows: [&[T]; GROUP], xr: &[f32]| -> [f32; GROUP] {
            let bits = rows.map(T::slice_to_bits);
            // SAFETY: this path is chosen only after `features().avx512f` was detected.
            unsafe {
                if bf16 {
                    x86::dot4::<true>(bits, xr)
                } else {
                    x86::dot4::<false>(bits, xr)
                }
            }
        };
        let dot = |weights: &[T], xr: &[f32]| {
            let bits = T::slice_to_bits(weights);
            // SAFETY: as above.
            unsafe {
                if bf16 {
                    x86::dot::<true>(bits, xr)
                } else {
                    x86::dot::<false>(bits, xr)
                }
            }
        };
        for_each_output(x, w, y, dot, Some(&dot4));
    }
    #[cfg(not(target_arch = "x86_64"))]
    scalar(x, w, y);
}

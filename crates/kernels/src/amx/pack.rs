//! Packing the operands into bf16 tiles, zero-padded to whole tiles.
//!
//! f16 has no AMX instruction on this generation, but every f16 value v splits exactly into two
//! bf16 values, v = hi + lo (hi = v rounded to bf16, 8 significant bits; lo = the remaining ≤ 3
//! bits, exact in bf16, whose exponent range covers f16's). So x·w = x_hi·w_hi + x_hi·w_lo +
//! x_lo·w_hi + x_lo·w_lo, four bf16 tile products per 32 k with exact products in f32: the
//! packers lay the pieces out as four consecutive tile steps and the bf16 kernel runs unchanged.
//! The cross terms use "hi_finite" (hi with infinities zeroed; lo of an infinity is 0), so an
//! infinite input meets only x_hi·w_hi and gives ±inf as in f32, never 0·inf = NaN:
//! x steps hi, hi_finite, lo, lo; w steps hi, lo, hi_finite, lo.

use rayon::prelude::*;

use super::{Line, TILE, TILE_ROW};
use crate::matrix::MatRef;
use crate::transpose::transpose_cells;

/// How the 16-bit inputs become bf16 tile steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operands {
    /// bf16 as is: one tile step per 32 k.
    Bf16,
    /// f16 split into bf16 hi + lo: four tile steps per 32 k.
    F16Split,
}

impl Operands {
    pub(crate) fn passes(self) -> usize {
        match self {
            Operands::Bf16 => 1,
            Operands::F16Split => 4,
        }
    }
}

/// The bf16 parts of 32 f16 values (raw bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    hi: [u16; TILE_ROW],
    /// hi, with infinities and NaN replaced by 0.
    hi_finite: [u16; TILE_ROW],
    /// v − hi for finite v, else 0.
    lo: [u16; TILE_ROW],
}

fn split_line(raw: &[u16; TILE_ROW]) -> Parts {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx512bf16 {
        // SAFETY: AVX-512F and AVX-512 BF16 were detected.
        return unsafe { split_line_avx512(raw) };
    }
    split_line_scalar(raw)
}

fn split_line_scalar(raw: &[u16; TILE_ROW]) -> Parts {
    let mut parts = Parts { hi: [0; TILE_ROW], hi_finite: [0; TILE_ROW], lo: [0; TILE_ROW] };
    for (i, &bits) in raw.iter().enumerate() {
        let v = half::f16::from_bits(bits).to_f32();
        let high = half::bf16::from_f32(v);
        parts.hi[i] = high.to_bits();
        if v.is_finite() {
            parts.hi_finite[i] = high.to_bits();
            parts.lo[i] = half::bf16::from_f32(v - high.to_f32()).to_bits();
        }
    }
    parts
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn split_line_avx512(raw: &[u16; TILE_ROW]) -> Parts {
    use std::arch::x86_64::*;
    let mut parts = Parts { hi: [0; TILE_ROW], hi_finite: [0; TILE_ROW], lo: [0; TILE_ROW] };
    // SAFETY: raw, hi and lo are 64 bytes each (unaligned loads and stores); __m512bh and __m512i
    // are both 64-byte vectors, so transmuting between them reinterprets the bits.
    unsafe {
        let first = _mm512_cvtph_ps(_mm256_loadu_si256(raw.as_ptr() as *const __m256i));
        let second = _mm512_cvtph_ps(_mm256_loadu_si256(raw.as_ptr().add(16) as *const __m256i));
        // cvtne2ps_pbh(a, b) puts b's 16 values first; rounding is to nearest even.
        let high: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(second, first));
        let high_first = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm512_castsi512_si256(high),
        )));
        let high_second = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm512_extracti64x4_epi64::<1>(high),
        )));
        let infinity = _mm512_set1_ps(f32::INFINITY);
        let finite_first = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(first), infinity);
        let finite_second = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(second), infinity);
        let rest_first = _mm512_maskz_sub_ps(finite_first, first, high_first);
        let rest_second = _mm512_maskz_sub_ps(finite_second, second, high_second);
        let low: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(rest_second, rest_first));
        let finite_only = _mm512_cvtne2ps_pbh(
            _mm512_maskz_mov_ps(finite_second, second),
            _mm512_maskz_mov_ps(finite_first, first),
        );
        let high_finite: __m512i = std::mem::transmute(finite_only);
        _mm512_storeu_si512(parts.hi.as_mut_ptr() as *mut __m512i, high);
        _mm512_storeu_si512(parts.hi_finite.as_mut_ptr() as *mut __m512i, high_finite);
        _mm512_storeu_si512(parts.lo.as_mut_ptr() as *mut __m512i, low);
    }
    parts
}

/// x in tile order, zero-padded to whole 32-row blocks and tile steps: for row block `rb` and
/// (expanded) step `e`, the tile of its rows 0..16 starts at line `(rb·steps + e)·32` and the tile
/// of rows 16..32 right after it. Contiguous 1 KiB tiles avoid the cache-set conflicts that loading
/// rows 2k bytes apart (a power of two for most models) would cause. Returns the expanded steps.
pub(crate) fn pack_x(x: &MatRef<u16>, operands: Operands, packed: &mut Vec<Line>) -> usize {
    let steps = super::total_steps(x.cols);
    let passes = operands.passes();
    let block_lines = steps * passes * 32;
    let needed = x.rows.div_ceil(32) * block_lines;
    // Every line is written below (pads included), so old contents need no clearing.
    if packed.len() < needed {
        packed.resize(needed, Line([0; TILE_ROW]));
    }
    packed[..needed].par_chunks_mut(block_lines).enumerate().for_each(|(rb, block)| {
        for r in 0..32 {
            let source = (rb * 32 + r < x.rows).then(|| x.row(rb * 32 + r));
            for t in 0..steps {
                let mut raw = [0u16; TILE_ROW];
                if let Some(row) = source {
                    let chunk =
                        &row[(t * TILE_ROW).min(row.len())..((t + 1) * TILE_ROW).min(row.len())];
                    raw[..chunk.len()].copy_from_slice(chunk);
                }
                match operands {
                    Operands::Bf16 => block[t * 32 + r].0 = raw,
                    Operands::F16Split => {
                        let Parts { hi, hi_finite, lo } = split_line(&raw);
                        for (p, part) in [hi, hi_finite, lo, lo].into_iter().enumerate() {
                            block[(4 * t + p) * 32 + r].0 = part;
                        }
                    }
                }
            }
        }
    });
    steps * passes
}

/// Weight rows `first..first+width` (zero beyond w), k `k0..k0+depth` (zero beyond, `steps`
/// original tile steps) as VNNI tiles: the tile for 16 weight rows `g` and expanded step `e`
/// starts at line `(g·steps·passes + e)·16`, and its line p holds, for each of the 16 rows, the
/// pair (2p, 2p + 1) of that step's 32 k.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_weights(
    w: &MatRef<u16>,
    first: usize,
    width: usize,
    k0: usize,
    depth: usize,
    steps: usize,
    operands: Operands,
    packed: &mut Vec<Line>,
) {
    let passes = operands.passes();
    let expanded = steps * passes;
    // Every tile is written below (pads included), so old contents need no clearing.
    let needed = width / 16 * expanded * 16;
    if packed.len() < needed {
        packed.resize(needed, Line([0; TILE_ROW]));
    }
    let dst_base = packed.as_mut_ptr() as *mut u16;
    let tile = |g: usize, e: usize| {
        // SAFETY: tile (g, e) lies inside `packed` (width/16 · expanded tiles of TILE u16).
        unsafe { dst_base.add((g * expanded + e) * TILE) }
    };
    for g in 0..width / 16 {
        let row0 = first + 16 * g;
        for t in 0..steps {
            let kk = k0 + t * TILE_ROW;
            let whole = row0 + 16 <= w.rows && kk + TILE_ROW <= k0 + depth;
            if whole && operands == Operands::Bf16 {
                // SAFETY: 16 weight rows from row0 with 32 values from kk exist in w; the tile is
                // whole; AVX-512F comes with AMX (checked by the caller).
                unsafe {
                    transpose_cells(
                        w.data[row0 * w.row_stride + kk..].as_ptr(),
                        w.row_stride,
                        tile(g, t),
                        TILE_ROW,
                    )
                };
                continue;
            }
            // Gather (zero-padded) rows, split them if f16, transpose each part into its tiles.
            let mut rows = [[0u16; TILE_ROW]; 16];
            for (j, dst) in rows.iter_mut().enumerate() {
                if row0 + j < w.rows {
                    let start = (row0 + j) * w.row_stride + kk;
                    let len = TILE_ROW.min((k0 + depth).saturating_sub(kk));
                    dst[..len].copy_from_slice(&w.data[start..start + len]);
                }
            }
            let parts: Vec<[[u16; TILE_ROW]; 16]> = match operands {
                Operands::Bf16 => vec![rows],
                Operands::F16Split => {
                    let mut split = [[[0u16; TILE_ROW]; 16]; 3];
                    for j in 0..16 {
                        let Parts { hi, hi_finite, lo } = split_line(&rows[j]);
                        (split[0][j], split[1][j], split[2][j]) = (hi, hi_finite, lo);
                    }
                    let [hi, hi_finite, lo] = split;
                    vec![hi, lo, hi_finite, lo]
                }
            };
            for (p, part) in parts.iter().enumerate() {
                // SAFETY: `part` is 16 rows of 32 u16 (stride 32); the tile is whole.
                unsafe {
                    transpose_cells(
                        part.as_ptr() as *const u16,
                        TILE_ROW,
                        tile(g, t * passes + p),
                        TILE_ROW,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_splits_exactly_into_two_bf16_parts() {
        let mut raw = [0u16; TILE_ROW];
        let specials = [0x7C00u16, 0xFC00, 0x7E00, 0x7BFF, 0x0001, 0x8001, 0x3C00, 0x3555];
        raw[..specials.len()].copy_from_slice(&specials);
        let mut state = 12345u32;
        let mut checked = 0;
        for round in 0..200 {
            if round > 0 {
                for v in raw.iter_mut() {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    *v = (state >> 16) as u16;
                }
            }
            let parts = split_line(&raw);
            assert_eq!(parts, split_line_scalar(&raw), "vector and scalar splits differ");
            for i in 0..TILE_ROW {
                let v = half::f16::from_bits(raw[i]).to_f32();
                let part = |bits: [u16; TILE_ROW]| half::bf16::from_bits(bits[i]).to_f32();
                let (h, hf, l) = (part(parts.hi), part(parts.hi_finite), part(parts.lo));
                if v.is_finite() {
                    assert_eq!(h + l, v, "{:#06x}: {h} + {l}", raw[i]);
                    assert_eq!(hf, h);
                    checked += 1;
                } else {
                    assert!(
                        (h == v || h.is_nan() && v.is_nan()) && hf == 0.0 && l == 0.0,
                        "{:#06x}",
                        raw[i]
                    );
                }
            }
        }
        assert!(checked > 6000);
    }
}

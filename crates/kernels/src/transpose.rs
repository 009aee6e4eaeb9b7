//! 16 × 16 transposes of 32-bit cells (a cell = two adjacent bf16 values along k): the AMX B
//! operand wants, for each pair of k, the 16 output columns side by side, while the weights
//! store each output column's k values side by side.

/// Scalar reference (edges and tests): `dst[c][r] = src[r][c]`, strides in u16 units, every
/// cell two u16 values.
///
/// # Safety
/// `src` must be readable for 16 rows of 32 u16 at `src_stride`, `dst` writable for 16 rows of
/// 32 u16 at `dst_stride`, and the two regions must not overlap.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(crate) unsafe fn transpose_cells_scalar(
    src: *const u16,
    src_stride: usize,
    dst: *mut u16,
    dst_stride: usize,
) {
    for r in 0..16 {
        for c in 0..16 {
            for e in 0..2 {
                // SAFETY: r, c < 16 and e < 2 stay inside the regions the caller vouched for.
                unsafe {
                    *dst.add(c * dst_stride + 2 * r + e) = *src.add(r * src_stride + 2 * c + e)
                };
            }
        }
    }
}

/// AVX-512 version of [`transpose_cells_scalar`], same contract; needs AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_cells(
    src: *const u16,
    src_stride: usize,
    dst: *mut u16,
    dst_stride: usize,
) {
    use std::arch::x86_64::*;
    let mut rows = [_mm512_setzero_si512(); 16];
    for (r, row) in rows.iter_mut().enumerate() {
        // SAFETY: row r of the source holds 32 u16 = 64 readable bytes (caller's contract).
        *row = unsafe { _mm512_loadu_si512(src.add(r * src_stride) as *const __m512i) };
    }
    // Step 1: interleave cells of row pairs; step 2: 64-bit pairs of those; after it, 128-bit
    // lane L of quad[4g + c] holds rows 4g..4g+4 of column 4L + c.
    let mut pairs = [_mm512_setzero_si512(); 16];
    for p in 0..8 {
        pairs[2 * p] = _mm512_unpacklo_epi32(rows[2 * p], rows[2 * p + 1]);
        pairs[2 * p + 1] = _mm512_unpackhi_epi32(rows[2 * p], rows[2 * p + 1]);
    }
    let mut quad = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let (lo, hi) = (pairs[4 * g], pairs[4 * g + 1]);
        let (lo2, hi2) = (pairs[4 * g + 2], pairs[4 * g + 3]);
        quad[4 * g] = _mm512_unpacklo_epi64(lo, lo2);
        quad[4 * g + 1] = _mm512_unpackhi_epi64(lo, lo2);
        quad[4 * g + 2] = _mm512_unpacklo_epi64(hi, hi2);
        quad[4 * g + 3] = _mm512_unpackhi_epi64(hi, hi2);
    }
    // Steps 3-4: gather lane L of the four row groups into output row 4L + c.
    for c in 0..4 {
        let low_a = _mm512_shuffle_i32x4::<0x44>(quad[c], quad[4 + c]);
        let high_a = _mm512_shuffle_i32x4::<0xEE>(quad[c], quad[4 + c]);
        let low_b = _mm512_shuffle_i32x4::<0x44>(quad[8 + c], quad[12 + c]);
        let high_b = _mm512_shuffle_i32x4::<0xEE>(quad[8 + c], quad[12 + c]);
        let out = [
            _mm512_shuffle_i32x4::<0x88>(low_a, low_b),
            _mm512_shuffle_i32x4::<0xDD>(low_a, low_b),
            _mm512_shuffle_i32x4::<0x88>(high_a, high_b),
            _mm512_shuffle_i32x4::<0xDD>(high_a, high_b),
        ];
        for (lane, v) in out.into_iter().enumerate() {
            // SAFETY: output row 4·lane + c < 16 holds 64 writable bytes (caller's contract).
            unsafe { _mm512_storeu_si512(dst.add((4 * lane + c) * dst_stride) as *mut __m512i, v) };
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn simd_transpose_equals_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let stride = 40; // wider than a row, so strides are exercised
        let src: Vec<u16> =
            (0..16 * stride as u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u16).collect();
        let mut expected = vec![0u16; 16 * 36];
        let mut got = vec![0u16; 16 * 36];
        // SAFETY: both buffers hold 16 rows of at least 32 u16 at their strides.
        unsafe {
            transpose_cells_scalar(src.as_ptr(), stride, expected.as_mut_ptr(), 36);
            transpose_cells(src.as_ptr(), stride, got.as_mut_ptr(), 36);
        }
        assert_eq!(got, expected);
        assert_eq!(expected[36 + 2 * 3], src[3 * stride + 2], "cell (3,1) moved to (1,3)");
    }
}

//! Row-major matrix views with a row stride (so a sub-block or a padded buffer can be passed
//! without copying), checked once on construction.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::KernelError;

/// Which 16-bit float format a `Half16` type is (the kernels pick a path by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfFormat {
    /// bfloat16: f32's 8-bit exponent, 7 mantissa bits.
    Bf16,
    /// IEEE half precision: 5-bit exponent, 10 mantissa bits.
    F16,
}

/// The 16-bit float types the kernels accept.
pub trait Half16: Copy + Send + Sync + 'static {
    /// The format this type is.
    const FORMAT: HalfFormat;
    /// Widens exactly (every 16-bit value is an f32).
    fn to_f32(self) -> f32;
    /// Rounds to nearest even.
    fn from_f32(value: f32) -> Self;
    /// The same values as their raw 16-bit patterns (no copy).
    fn slice_to_bits(values: &[Self]) -> &[u16];
    /// Widens `src` into `dst` (same length), using F16C/AVX-512 where `half` finds them.
    fn widen(src: &[Self], dst: &mut [f32]);
    /// Rounds `src` to nearest even into `dst` (same length).
    fn narrow(src: &[f32], dst: &mut [Self]);
}

/// f32 → bf16, round to nearest even, NaN kept NaN; branch-free so the loop vectorizes
/// (`half`'s scalar conversion does not, and was most of a linear layer's time outside AMX).
/// Compiled twice: for the baseline x86-64 (SSE2, 4 lanes) and for AVX-512 (16 lanes), picked
/// at run time; the arithmetic is the same integer rounding, so both give the same bits.
fn narrow_bf16(src: &[f32], dst: &mut [bf16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx512f && !crate::cpu::portable_forced() {
        // SAFETY: AVX-512F was detected at run time.
        return unsafe { narrow_bf16_avx512(src, dst) };
    }
    narrow_bf16_lanes(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn narrow_bf16_avx512(src: &[f32], dst: &mut [bf16]) {
    narrow_bf16_lanes(src, dst)
}

#[inline(always)]
fn narrow_bf16_lanes(src: &[f32], dst: &mut [bf16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        let bits = v.to_bits();
        let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
        let quiet_nan = ((bits >> 16) | 0x40) as u16;
        let is_nan = (bits & 0x7FFF_FFFF) > 0x7F80_0000;
        *d = bf16::from_bits(if is_nan { quiet_nan } else { rounded });
    }
}

/// `rows[r][i] += bias[i]` for every row of `rows` (whole rows of `bias.len()` values), in 16
/// lanes where the CPU has AVX-512 (one rounded add per element either way: same bits).
pub(crate) fn add_bias_rows(rows: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx512f && !crate::cpu::portable_forced() {
        // SAFETY: AVX-512F was detected at run time.
        return unsafe { add_bias_rows_avx512(rows, bias) };
    }
    add_bias_rows_lanes(rows, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn add_bias_rows_avx512(rows: &mut [f32], bias: &[f32]) {
    add_bias_rows_lanes(rows, bias)
}

#[inline(always)]
fn add_bias_rows_lanes(rows: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    for row in rows.chunks_mut(bias.len()) {
        for (s, b) in row.iter_mut().zip(bias) {
            *s += b;
        }
    }
}

/// Both types convert the same way through `half`; only the format tag differs.
macro_rules! impl_half16 {
    ($ty:ty, $format:expr, $narrow:expr) => {
        impl Half16 for $ty {
            const FORMAT: HalfFormat = $format;
            fn to_f32(self) -> f32 {
                <$ty>::to_f32(self)
            }
            fn from_f32(value: f32) -> Self {
                <$ty>::from_f32(value)
            }
            fn slice_to_bits(values: &[Self]) -> &[u16] {
                values.reinterpret_cast()
            }
            fn widen(src: &[Self], dst: &mut [f32]) {
                src.convert_to_f32_slice(dst)
            }
            fn narrow(src: &[f32], dst: &mut [Self]) {
                $narrow(src, dst)
            }
        }
    };
}

impl_half16!(bf16, HalfFormat::Bf16, narrow_bf16);
// half converts f16 slices with F16C where the CPU has it.
impl_half16!(f16, HalfFormat::F16, |src: &[f32], dst: &mut [f16]| dst.convert_from_f32_slice(src));

fn check(
    name: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
) -> Result<(), KernelError> {
    if row_stride < cols {
        return Err(KernelError::StrideTooSmall { name, cols, row_stride });
    }
    let needed = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * row_stride + cols };
    if len < needed {
        return Err(KernelError::TooShort { name, rows, cols, row_stride, needed, len });
    }
    Ok(())
}

/// A read-only row-major matrix: element (r, c) is `data[r * row_stride + c]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// `name` is used in the error when `data` cannot hold the described matrix.
    pub fn new(
        name: &'static str,
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Self, KernelError> {
        check(name, data.len(), rows, cols, row_stride)?;
        Ok(Self { data, rows, cols, row_stride })
    }

    pub(crate) fn row(&self, r: usize) -> &'a [T] {
        &self.data[r * self.row_stride..r * self.row_stride + self.cols]
    }
}

impl<'a, T: Half16> MatRef<'a, T> {
    /// The same matrix seen as raw 16-bit patterns.
    pub(crate) fn bits(&self) -> MatRef<'a, u16> {
        MatRef {
            data: T::slice_to_bits(self.data),
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
        }
    }
}

/// A writable row-major f32 matrix: element (r, c) is `data[r * row_stride + c]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A view of `data` as `rows` × `cols` with `row_stride`; `name` is the argument an error names.
    pub fn new(
        name: &'static str,
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Self, KernelError> {
        check(name, data.len(), rows, cols, row_stride)?;
        Ok(Self { data, rows, cols, row_stride })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorizable_bf16_rounding_equals_half() {
        let mut values = vec![
            0.0f32,
            -0.0,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
        ];
        // Ties and near-ties around several exponents, and a seeded spread of bit patterns.
        for base in [1.0f32, 3.5, -1024.0, 6.1e-5] {
            let bits = base.to_bits();
            values.extend(
                [bits + 0x7FFF, bits + 0x8000, bits + 0x8001, bits + 0x18000].map(f32::from_bits),
            );
        }
        let mut state = 0x1234_5678u32;
        values.extend((0..4096).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(state)
        }));
        let mut ours = vec![bf16::ZERO; values.len()];
        narrow_bf16(&values, &mut ours);
        // The baseline build of the loop gives the same bits as the one picked at run time.
        let mut baseline = vec![bf16::ZERO; values.len()];
        narrow_bf16_lanes(&values, &mut baseline);
        assert!(ours.iter().zip(&baseline).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut rows: Vec<f32> =
            values.iter().map(|v| if v.is_nan() { 0.5 } else { *v }).take(4000).collect();
        let bias: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 3.0).collect();
        let expected: Vec<f32> = rows.iter().enumerate().map(|(i, v)| v + bias[i % 40]).collect();
        add_bias_rows(&mut rows, &bias);
        assert!(rows.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
        for (v, o) in values.iter().zip(&ours) {
            let want = bf16::from_f32(*v);
            if v.is_nan() {
                assert!(o.is_nan(), "{v}");
            } else {
                assert_eq!(o.to_bits(), want.to_bits(), "{v:e} ({:#x})", v.to_bits());
            }
        }
    }
}

//! Row-major matrix views with a row stride (so a sub-block or a padded buffer can be passed
//! without copying), checked once on construction.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::KernelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfFormat {
    Bf16,
    F16,
}

/// The 16-bit float types the kernels accept.
pub trait Half16: Copy + Send + Sync + 'static {
    const FORMAT: HalfFormat;
    fn to_f32(self) -> f32;
    /// Rounds to nearest even.
    fn from_f32(value: f32) -> Self;
    fn slice_to_bits(values: &[Self]) -> &[u16];
    /// Widens `src` into `dst` (same length), using F16C/AVX-512 where `half` finds them.
    fn widen(src: &[Self], dst: &mut [f32]);
}

/// Both types convert the same way through `half`; only the format tag differs.
macro_rules! impl_half16 {
    ($ty:ty, $format:expr) => {
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
        }
    };
}

impl_half16!(bf16, HalfFormat::Bf16);
impl_half16!(f16, HalfFormat::F16);

fn check(name: &'static str, len: usize, rows: usize, cols: usize, row_stride: usize) -> Result<(), KernelError> {
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
    pub fn new(name: &'static str, data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Result<Self, KernelError> {
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
        MatRef { data: T::slice_to_bits(self.data), rows: self.rows, cols: self.cols, row_stride: self.row_stride }
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
    pub fn new(name: &'static str, data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Result<Self, KernelError> {
        check(name, data.len(), rows, cols, row_stride)?;
        Ok(Self { data, rows, cols, row_stride })
    }
}

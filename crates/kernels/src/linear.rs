//! A whole linear layer in 16 bits: `out = round(x · wᵀ + b)`, with the product and the bias
//! added in f32 and one rounding at the end (as PyTorch's bf16 linear does).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::matrix::{Half16, MatMut, MatRef};
use crate::{matmul_transposed, Backend, Kernel, KernelError};

/// Output elements per rayon task when adding the bias and rounding.
const CHUNK: usize = 1 << 14;

thread_local! {
    /// The f32 product before rounding, kept between calls.
    static PRODUCT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out` (m × n, contiguous) = x · wᵀ + bias, rounded to `T`. `bias`, when given, has n values.
pub fn linear<T: Half16>(
    x: MatRef<T>,
    w: MatRef<T>,
    bias: Option<&[T]>,
    out: &mut [T],
    backend: Backend,
) -> Result<Kernel, KernelError> {
    let (m, n) = (x.rows, w.rows);
    if let Some(b) = bias {
        if b.len() != n {
            return Err(KernelError::BiasLength { expected: n, len: b.len() });
        }
    }
    if out.len() != m * n {
        return Err(KernelError::OutputLength { rows: m, cols: n, len: out.len() });
    }
    let bias: Option<Vec<f32>> = bias.map(|b| b.iter().map(|v| v.to_f32()).collect());
    crate::scratch::with_buffer(&PRODUCT, |y| {
        if y.len() < m * n {
            y.resize(m * n, 0.0);
        }
        let y = &mut y[..m * n];
        let kernel = matmul_transposed(x, w, MatMut::new("y", y, m, n, n)?, backend)?;
        if n == 0 {
            return Ok(kernel);
        }
        // Chunks are whole rows, so bias index = position in the row.
        let rows_per_chunk = (CHUNK / n).max(1);
        out.par_chunks_mut(rows_per_chunk * n).zip(y.par_chunks_mut(rows_per_chunk * n)).for_each(
            |(dst, src)| {
                if let Some(b) = &bias {
                    crate::matrix::add_bias_rows(src, b);
                }
                T::narrow(src, dst);
            },
        );
        Ok(kernel)
    })
}

/// Shapes of `batch` independent products `out[b] = x[b] · w[b]ᵀ` (attention heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Independent products (attention heads × batch).
    pub batch: usize,
    /// Rows of each `x[b]` and `out[b]`.
    pub m: usize,
    /// Rows of each `w[b]`: columns of each `out[b]`.
    pub n: usize,
    /// The shared inner dimension: columns of `x[b]` and `w[b]`.
    pub k: usize,
}

/// `out[b] = round(x[b] · w[b]ᵀ)` with x batch × m × k, w batch × n × k and out batch × m × n,
/// all contiguous; the products run in parallel (each one is often too small to split).
pub fn batched_transposed<T: Half16>(
    x: &[T],
    w: &[T],
    shape: BatchShape,
    out: &mut [T],
    backend: Backend,
) -> Result<(), KernelError> {
    let BatchShape { batch, m, n, k } = shape;
    MatRef::new("batched x", x, batch * m, k, k)?;
    MatRef::new("batched w", w, batch * n, k, k)?;
    if out.len() != batch * m * n {
        return Err(KernelError::OutputLength { rows: batch * m, cols: n, len: out.len() });
    }
    if m * n == 0 {
        return Ok(());
    }
    out.par_chunks_mut(m * n).enumerate().try_for_each(|(b, dst)| {
        let xb = MatRef::new("batched x", &x[b * m * k..(b + 1) * m * k], m, k, k)?;
        let wb = MatRef::new("batched w", &w[b * n * k..(b + 1) * n * k], n, k, k)?;
        linear(xb, wb, None, dst, backend).map(|_| ())
    })
}

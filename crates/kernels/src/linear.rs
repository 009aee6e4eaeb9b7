//! A whole linear layer in 16 bits: `out = round(x · wᵀ + b)`, with the product and the bias
//! added in f32 and one rounding at the end (as PyTorch's bf16 linear does).

use rayon::prelude::*;

use crate::matrix::{Half16, MatMut, MatRef};
use crate::{matmul_transposed, Backend, Kernel, KernelError};

/// Output elements per rayon task when adding the bias and rounding.
const CHUNK: usize = 1 << 14;

/// `out` (m × n, contiguous) = x · wᵀ + bias, rounded to `T`. `bias`, when given, has n values.
pub fn linear<T: Half16>(x: MatRef<T>, w: MatRef<T>, bias: Option<&[T]>, out: &mut [T], backend: Backend) -> Result<Kernel, KernelError> {
    let (m, n) = (x.rows, w.rows);
    if let Some(b) = bias {
        if b.len() != n {
            return Err(KernelError::BiasLength { expected: n, len: b.len() });
        }
    }
    if out.len() != m * n {
        return Err(KernelError::OutputLength { rows: m, cols: n, len: out.len() });
    }
    let mut y = vec![0f32; m * n];
    let kernel = matmul_transposed(x, w, MatMut::new("y", &mut y, m, n, n)?, backend)?;
    if n == 0 {
        return Ok(kernel);
    }
    // Chunks are whole rows, so bias index = position in the row.
    let rows_per_chunk = (CHUNK / n).max(1);
    out.par_chunks_mut(rows_per_chunk * n).zip(y.par_chunks(rows_per_chunk * n)).for_each(|(dst, src)| {
        for (drow, srow) in dst.chunks_mut(n).zip(src.chunks(n)) {
            match bias {
                Some(b) => {
                    for ((d, &s), &bv) in drow.iter_mut().zip(srow).zip(b) {
                        *d = T::from_f32(s + bv.to_f32());
                    }
                }
                None => {
                    for (d, &s) in drow.iter_mut().zip(srow) {
                        *d = T::from_f32(s);
                    }
                }
            }
        }
    });
    Ok(kernel)
}

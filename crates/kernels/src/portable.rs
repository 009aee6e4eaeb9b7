//! The fallback that works on every CPU: widen both operands to f32 and multiply with `gemm`
//! (which picks its own AVX-512/FMA/scalar kernels at run time).

use rayon::prelude::*;

use crate::matrix::{Half16, MatMut, MatRef};

/// Rows of the matrix as a contiguous f32 buffer (rows × cols).
fn widen<T: Half16>(m: &MatRef<T>) -> Vec<f32> {
    let mut out = vec![0f32; m.rows * m.cols];
    if m.cols == 0 {
        return out;
    }
    out.par_chunks_mut(m.cols).enumerate().for_each(|(r, dst)| T::widen(m.row(r), dst));
    out
}

pub(crate) fn matmul<T: Half16>(x: &MatRef<T>, w: &MatRef<T>, y: &mut MatMut) {
    let (m, n, k) = (x.rows, w.rows, x.cols);
    if k == 0 {
        for r in 0..m {
            y.data[r * y.row_stride..r * y.row_stride + n].fill(0.0);
        }
        return;
    }
    let xf = widen(x);
    let wf = widen(w);
    // SAFETY: every pointer/stride pair describes memory inside a live buffer: xf is m × k
    // row-major, wf is n × k row-major read as the k × n matrix wᵀ (row stride 1, column stride
    // k), and y was checked on construction to hold m rows of n with its row stride. read_dst is
    // false, so y's previous contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.data.as_mut_ptr(),
            1,
            y.row_stride as isize,
            false,
            xf.as_ptr(),
            1,
            k as isize,
            wf.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

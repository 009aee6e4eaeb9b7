//! 16-bit CPU matrix products for linear layers: `y = x · wᵀ` with `x` (m × k) and `w` (n × k)
//! both bf16 or both f16, accumulated and returned in f32.
//!
//! Which kernel runs is decided at run time from the CPU's features:
//! - bf16 with Intel AMX (AMX-TILE + AMX-BF16, and the kernel granting tile state): tile kernel,
//!   `amx` module. AMX is what oneDNN (PyTorch) uses on such CPUs; AVX-512 BF16 alone has about a
//!   quarter of its throughput, so it would not reach PyTorch's speed.
//! - f16 with AMX and AVX-512 BF16: each f16 value split exactly into two bf16 parts and the
//!   same tile kernel run on four part products (`amx::pack`), still ~4× fewer cycles than f32.
//! - one or two rows (the decode step) with AVX-512F: row-parallel dot products reading the 16-bit
//!   weights directly (memory bound), `gemv` module.
//! - everything else, and whenever the portable backend is asked for: convert to f32 and multiply
//!   with the `gemm` crate, `portable` module. Correct on any CPU.
//!
//! Setting `TOKENSCALE_KERNELS=portable` in the environment forces the portable path everywhere
//! (for comparison and for checking that the fallback gives the same results).

#![warn(missing_docs)]

mod amx;
mod cpu;
mod gemv;
mod gemv_f32;
mod linear;
mod matrix;
mod portable;
mod scratch;
mod transpose;

pub use cpu::{features, portable_forced, CpuFeatures};
pub use gemv_f32::{dot_f32, f32_rows_transposed};
pub use half::{bf16, f16};
pub use linear::{batched_transposed, linear, BatchShape};
pub use matrix::{Half16, HalfFormat, MatMut, MatRef};

/// What went wrong with a call; every variant names the offending argument.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{name}: {rows} rows of {cols} with row stride {row_stride} need {needed} elements, the slice has {len}")]
    /// A matrix slice ends before its last row does.
    TooShort {
        /// The argument (`x`, `w`, `out`...).
        name: &'static str,
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Elements from one row's start to the next's.
        row_stride: usize,
        /// Elements the view reaches: `(rows - 1) * row_stride + cols`.
        needed: usize,
        /// Elements the slice has.
        len: usize,
    },
    #[error("{name}: row stride {row_stride} is smaller than the {cols} columns")]
    /// Rows would overlap: the row stride is below the column count.
    StrideTooSmall {
        /// The argument.
        name: &'static str,
        /// Columns of the view.
        cols: usize,
        /// The stride given.
        row_stride: usize,
    },
    #[error("shapes do not fit y = x·wᵀ: x is {x_rows}×{x_cols}, w is {w_rows}×{w_cols}, y is {y_rows}×{y_cols}")]
    /// `x`, `w` and `y` do not fit `y = x·wᵀ` (x m × k, w n × k, y m × n).
    ShapeMismatch {
        /// Rows of `x` (m).
        x_rows: usize,
        /// Columns of `x` (k).
        x_cols: usize,
        /// Rows of `w` (n).
        w_rows: usize,
        /// Columns of `w` (must equal k).
        w_cols: usize,
        /// Rows of `y` (must equal m).
        y_rows: usize,
        /// Columns of `y` (must equal n).
        y_cols: usize,
    },
    #[error("bias has {len} values, the layer has {expected} outputs")]
    /// The bias does not have one value per output.
    BiasLength {
        /// Outputs of the layer (n).
        expected: usize,
        /// Values in the bias.
        len: usize,
    },
    #[error("output has {len} elements, {rows}×{cols} are needed")]
    /// The output slice is not exactly rows × cols long.
    OutputLength {
        /// Rows the product has.
        rows: usize,
        /// Columns the product has.
        cols: usize,
        /// Elements the output slice has.
        len: usize,
    },
}

/// Which code paths may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The fastest kernel the CPU supports (unless `TOKENSCALE_KERNELS=portable` is set).
    Auto,
    /// Only code without CPU-specific instructions of our own: f32 conversion + `gemm`, scalar dot
    /// products.
    Portable,
}

/// The kernel that computed a product (for tests and benchmark reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Intel AMX tiles on bf16 inputs.
    AmxBf16,
    /// f16 as exact bf16 hi + lo parts, four AMX products per 32 k.
    AmxF16Split,
    /// AVX-512F dot products reading the 16-bit weights row by row (one or two rows of x).
    Avx512Gemv,
    /// The same dot products without CPU-specific instructions (portable backend, few rows).
    ScalarGemv,
    /// Both inputs widened to f32 and multiplied with the `gemm` crate.
    PortableF32Gemm,
}

impl Kernel {
    /// The kernel's name in reports and benchmark tables (`amx-bf16`, `f32-convert+gemm`...).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::AmxBf16 => "amx-bf16",
            Kernel::AmxF16Split => "amx-f16-split",
            Kernel::Avx512Gemv => "avx512-gemv",
            Kernel::ScalarGemv => "scalar-gemv",
            Kernel::PortableF32Gemm => "f32-convert+gemm",
        }
    }
}

/// Up to this many rows the product reads the weights once per row in dot products; above it the
/// matrix kernels (which repack the weights) win.
const GEMV_MAX_ROWS: usize = 2;

/// `y = x · wᵀ`: x is m × k, w is n × k (a linear layer's weight as stored), y is m × n.
/// Returns the kernel that ran.
pub fn matmul_transposed<T: Half16>(
    x: MatRef<T>,
    w: MatRef<T>,
    y: MatMut,
    backend: Backend,
) -> Result<Kernel, KernelError> {
    if x.cols != w.cols || y.rows != x.rows || y.cols != w.rows {
        return Err(KernelError::ShapeMismatch {
            x_rows: x.rows,
            x_cols: x.cols,
            w_rows: w.rows,
            w_cols: w.cols,
            y_rows: y.rows,
            y_cols: y.cols,
        });
    }
    let mut y = y;
    if x.rows == 0 || w.rows == 0 {
        return Ok(Kernel::PortableF32Gemm);
    }
    let fast = backend == Backend::Auto && !cpu::portable_forced();
    let cpu = features();
    if x.rows <= GEMV_MAX_ROWS {
        return Ok(if fast && cpu.avx512f {
            gemv::avx512(&x, &w, &mut y);
            Kernel::Avx512Gemv
        } else {
            gemv::scalar(&x, &w, &mut y);
            Kernel::ScalarGemv
        });
    }
    if fast && T::FORMAT == HalfFormat::Bf16 && cpu.amx_bf16_usable() {
        amx::matmul(&x.bits(), &w.bits(), &mut y, amx::Operands::Bf16);
        return Ok(Kernel::AmxBf16);
    }
    if fast && T::FORMAT == HalfFormat::F16 && cpu.amx_bf16_usable() && cpu.avx512bf16 {
        amx::matmul(&x.bits(), &w.bits(), &mut y, amx::Operands::F16Split);
        return Ok(Kernel::AmxF16Split);
    }
    portable::matmul(&x, &w, &mut y);
    Ok(Kernel::PortableF32Gemm)
}

//! 16-bit CPU matrix-multiply kernels (work in progress, see issue 6).

//! Tensor operations and their routing to the kernels: the forward context every layer reads
//! ([`forward`]), the layers and ops ([`nn`]), the linear-layer and matmul kernels ([`matvec`]),
//! fused element-wise work ([`fused`]), attention over the KV cache ([`attention`]) and the
//! op counter ([`opcount`]).

pub mod attention;
pub mod forward;
pub mod fused;
pub mod matvec;
pub mod nn;
pub mod opcount;

//! `uniform`: N evenly spaced vision tokens (see the module docs of [`crate::reducers`]).

use anyhow::Result;
use candle_core::Tensor;

use super::{check_budget, ImageTokens, TokenReducer};

/// The `uniform` plug-in.
pub struct Uniform;

impl TokenReducer for Uniform {
    fn reduce(&self, tokens: &ImageTokens, n: usize) -> Result<Tensor> {
        uniform(tokens.features, n)
    }
}

/// `floor((2i+1)·len / (2n))` for i = 0..n: strictly increasing, in `0..len`.
pub fn uniform_indices(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| (2 * i + 1) * len / (2 * n)).collect()
}

/// The `uniform` reducer on `[L, D]` tokens.
pub fn uniform(x: &Tensor, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    if n == len {
        return Ok(x.clone());
    }
    let idx = Tensor::new(
        uniform_indices(len, n).into_iter().map(|i| i as u32).collect::<Vec<_>>(),
        x.device(),
    )?;
    Ok(x.index_select(&idx, 0)?)
}

//! `pool`: average pooling of the CLIP features before the projector (see the module docs of
//! [`crate::reducers`]).

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::{check_budget, weighted_rows, ImageTokens, TokenReducer};

/// The `pool` plug-in.
pub struct Pool;

impl TokenReducer for Pool {
    fn reduce(&self, tokens: &ImageTokens, n: usize) -> Result<Tensor> {
        pool(tokens.features, tokens.grid, n)
    }
}

/// PyTorch adaptive-pool bins: `[floor(i·L/N), ceil((i+1)·L/N))` for i = 0..N.
pub fn adaptive_bins(len: usize, n: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i * len / n, ((i + 1) * len).div_ceil(n))).collect()
}

/// The mean of each row's `members` among the `len` tokens of `x`.
fn pool_rows(rows: Vec<Vec<usize>>, len: usize, x: &Tensor) -> Result<Tensor> {
    let n = rows.len();
    let mut w = vec![0f32; n * len];
    for (i, members) in rows.iter().enumerate() {
        let share = 1.0 / members.len() as f32;
        for &j in members {
            w[i * len + j] = share;
        }
    }
    weighted_rows(w, n, x)
}

/// 1D adaptive average pooling of `x` (`[L, D]`) to `[n, D]`.
pub fn adaptive_avg_pool_1d(x: &Tensor, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    if n == len {
        return Ok(x.clone());
    }
    let rows = adaptive_bins(len, n).into_iter().map(|(a, b)| (a..b).collect()).collect();
    pool_rows(rows, len, x)
}

/// 2D adaptive average pooling of a row-major `h`×`w` grid `x` (`[h·w, D]`) to `[oh·ow, D]`.
pub fn adaptive_avg_pool_2d(
    x: &Tensor,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    if len != h * w {
        bail!("2D pooling: {len} tokens do not form a {h}×{w} grid");
    }
    if oh == 0 || ow == 0 || oh > h || ow > w {
        bail!("2D pooling: output grid {oh}×{ow} must be within 1×1 ..= {h}×{w}");
    }
    if (oh, ow) == (h, w) {
        return Ok(x.clone());
    }
    let (rb, cb) = (adaptive_bins(h, oh), adaptive_bins(w, ow));
    let mut rows = Vec::with_capacity(oh * ow);
    for &(r0, r1) in &rb {
        for &(c0, c1) in &cb {
            rows.push((r0..r1).flat_map(|r| (c0..c1).map(move |c| r * w + c)).collect());
        }
    }
    pool_rows(rows, len, x)
}

fn perfect_square(n: usize) -> Option<usize> {
    let s = (n as f64).sqrt().round() as usize;
    (s * s == n).then_some(s)
}

/// The `pool` reducer on `[L, D]` tokens; `grid` is the token grid when the tokens are exactly
/// the patch grid (2D pooling is used for square N then).
pub fn pool(x: &Tensor, grid: Option<(usize, usize)>, n: usize) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    check_budget(n, len)?;
    match (grid, perfect_square(n)) {
        (Some((h, w)), Some(s)) if h * w == len && s <= h && s <= w => {
            adaptive_avg_pool_2d(x, (h, w), (s, s))
        }
        _ => adaptive_avg_pool_1d(x, n),
    }
}

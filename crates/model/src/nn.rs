//! Layer constructors over [`Weights`] and the activations HF configs name.

use anyhow::{bail, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, Linear, RmsNorm};
use serde::Deserialize;

use crate::weights::Weights;

pub fn linear(w: &Weights, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let w = w.pp(name);
    let weight = w.get("weight", &[out_dim, in_dim])?;
    let bias = if bias { Some(w.get("bias", &[out_dim])?) } else { None };
    Ok(Linear::new(weight, bias))
}

/// A linear layer whose bias is used when the checkpoint has one.
pub fn linear_maybe_bias(w: &Weights, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
    let has_bias = w.pp(name).contains("bias");
    linear(w, name, in_dim, out_dim, has_bias)
}

pub fn layer_norm(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let w = w.pp(name);
    Ok(LayerNorm::new(w.get("weight", &[dim])?, w.get("bias", &[dim])?, eps))
}

pub fn rms_norm(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
    Ok(RmsNorm::new(w.pp(name).get("weight", &[dim])?, eps))
}

pub fn conv2d(
    w: &Weights,
    name: &str,
    shape: [usize; 4],
    stride: usize,
    padding: usize,
    bias: bool,
) -> Result<Conv2d> {
    let w = w.pp(name);
    let weight = w.get("weight", &shape)?;
    let bias = if bias { Some(w.get("bias", &[shape[0]])?) } else { None };
    let config = Conv2dConfig { stride, padding, ..Default::default() };
    Ok(Conv2d::new(weight, bias, config))
}

/// Activation functions by their HF config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    QuickGelu,
    /// Exact (erf) GELU, which is what HF's "gelu" means.
    Gelu,
    GeluPytorchTanh,
    GeluNew,
    Silu,
    Relu,
}

impl Activation {
    pub fn parse(name: &str, field: &str) -> Result<Self> {
        Ok(match name {
            "quick_gelu" => Self::QuickGelu,
            "gelu" => Self::Gelu,
            "gelu_pytorch_tanh" => Self::GeluPytorchTanh,
            "gelu_new" => Self::GeluNew,
            "silu" | "swish" => Self::Silu,
            "relu" => Self::Relu,
            other => bail!(
                "unsupported activation `{other}` in `{field}` (supported: quick_gelu, gelu, gelu_pytorch_tanh, gelu_new, silu, relu)"
            ),
        })
    }

    pub fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluPytorchTanh | Self::GeluNew => xs.gelu(),
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }
}

pub fn forward<M: Module>(m: &M, xs: &Tensor) -> Result<Tensor> {
    Ok(m.forward(xs)?)
}

//! The layers (linear, norms, convolution) and the ops between them (softmax, RoPE, attention's
//! products, activations), each run under a [`Forward`] context: in training mode they use
//! formulas written with differentiable tensor ops instead of candle's fused CPU kernels
//! (which have no backward pass), and the products report to the context's op counter.
//! Also the layer constructors over [`Weights`] and the activations HF configs name.

use anyhow::{bail, Result};
use candle_core::{Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig};
use serde::Deserialize;

use crate::forward::Forward;
use crate::opcount::Op;
use crate::weights::Weights;

/// A linear layer `y = x·Wᵀ + b`, run through the runtime's kernels (see [`crate::matvec`]).
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// A layer from `weight` (`[out, in]`) and an optional `bias` (`[out]`).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { inner: candle_nn::Linear::new(weight, bias) }
    }

    /// The weight matrix, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// The bias vector, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }

    /// The layer applied to `xs` (`[.., in]`): 16-bit weights through the kernels, a single f32
    /// row through the row-parallel path, anything else through candle's forward.
    pub fn forward(&self, ctx: &Forward, xs: &Tensor) -> Result<Tensor> {
        crate::matvec::apply(ctx, &self.inner, xs)
    }

    /// [`Self::forward`] for a batch of decode rows (`[B, 1, in]`, one per sequence): each f32
    /// row's result is bitwise what [`Self::forward`] gives it alone.
    pub fn forward_rows(&self, ctx: &Forward, xs: &Tensor) -> Result<Tensor> {
        crate::matvec::apply_rows(ctx, &self.inner, xs)
    }
}

/// Loads `{name}.weight` (`[out_dim, in_dim]`) and, when `bias`, `{name}.bias` (`[out_dim]`);
/// fails on a missing or mis-shaped tensor.
pub fn linear(
    w: &Weights,
    name: &str,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
) -> Result<Linear> {
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

/// Loads `{name}.weight` and `{name}.bias` (both `[dim]`) as a LayerNorm with epsilon `eps`.
pub fn layer_norm(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let w = w.pp(name);
    Ok(LayerNorm { weight: w.get("weight", &[dim])?, bias: w.get("bias", &[dim])?, eps })
}

/// Loads `{name}.weight` (`[dim]`) as an RMSNorm with epsilon `eps`.
pub fn rms_norm(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
    Ok(RmsNorm { weight: w.pp(name).get("weight", &[dim])?, eps })
}

/// Layer normalisation over the last dimension, with affine weight and bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Normalises `xs` over its last dimension: `(x − mean) / sqrt(var + eps) · weight + bias`.
    pub fn forward(&self, ctx: &Forward, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !ctx.differentiable() {
            return candle_nn::ops::layer_norm(
                &xs.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            );
        }
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// RMS normalisation over the last dimension, with a learned scale (LLaMA's norm).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Normalises `xs` over its last dimension: `x / sqrt(mean(x²) + eps) · weight`.
    pub fn forward(&self, ctx: &Forward, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !ctx.differentiable() {
            return candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32);
        }
        let ms = xs.sqr()?.mean_keepdim(D::Minus1)?;
        xs.broadcast_div(&(ms + self.eps)?.sqrt()?)?.broadcast_mul(&self.weight)
    }
}

/// Softmax over the last dimension (lives with the fused kernels it dispatches to).
pub use crate::fused::softmax_last_dim;

/// Rotary embedding of `[B, H, T, D]` with `cos`/`sin` of `[T, D/2]` (HF's rotate-half layout).
pub fn rope(ctx: &Forward, xs: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if ctx.differentiable() {
        candle_nn::rotary_emb::rope_slow(xs, cos, sin)
    } else {
        candle_nn::rotary_emb::rope(xs, cos, sin)
    }
}

/// Every matrix product of attention goes through here (one place to count or specialise).
pub fn matmul(ctx: &Forward, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    // 16-bit products go through tokenscale-kernels (candle 0.9's CPU matmul rejects bf16/f16).
    let out = crate::matvec::matmul(a, b)?;
    ctx.count(Op::Matmul, || (out.elem_count() * a.dims().last().copied().unwrap_or(0)) as u64);
    Ok(out)
}

/// Every convolution of the vision towers goes through here.
pub fn conv(ctx: &Forward, layer: &Conv2d, xs: &Tensor) -> Result<Tensor> {
    let out = crate::matvec::conv2d(layer, xs)?;
    let per_output = layer.weight().elem_count() / layer.weight().dim(0)?.max(1);
    ctx.count(Op::Conv, || (out.elem_count() * per_output) as u64);
    Ok(out)
}

/// Loads a 2-D convolution: `{name}.weight` of `shape` (`[out, in, kh, kw]`) and, when
/// `bias`, `{name}.bias` (`[out]`), with the given stride and padding.
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
    /// `x · sigmoid(1.702 x)` (CLIP's `quick_gelu`).
    QuickGelu,
    /// Exact (erf) GELU, which is what HF's "gelu" means.
    Gelu,
    /// The tanh approximation of GELU (`gelu_pytorch_tanh`).
    GeluPytorchTanh,
    /// The tanh approximation of GELU under its older name (`gelu_new`).
    GeluNew,
    /// `x · sigmoid(x)` (also read from `swish`).
    Silu,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Parses an HF activation name; `field` names the config field in the error for an
    /// unsupported one.
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

    /// Applies the activation element-wise to `xs`.
    pub fn apply(self, ctx: &Forward, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => crate::fused::quick_gelu(ctx, xs),
            Self::Gelu => crate::fused::gelu_erf(ctx, xs),
            Self::GeluPytorchTanh | Self::GeluNew => xs.gelu(),
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }
}

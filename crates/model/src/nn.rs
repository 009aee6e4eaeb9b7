//! Layer constructors over [`Weights`] and the activations HF configs name.

use std::cell::Cell;

use anyhow::{bail, Result};
use candle_core::{Module, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, Linear};
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
    Ok(LayerNorm { weight: w.get("weight", &[dim])?, bias: w.get("bias", &[dim])?, eps })
}

pub fn rms_norm(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
    Ok(RmsNorm { weight: w.pp(name).get("weight", &[dim])?, eps })
}

thread_local! {
    static DIFFERENTIABLE: Cell<bool> = const { Cell::new(false) };
}

/// candle's fused CPU kernels for softmax, the norms and RoPE have no backward pass. Training
/// switches every layer run on this thread to the same formulas written with differentiable
/// tensor ops (per thread, so an inference on another thread is unaffected).
pub fn set_differentiable(on: bool) {
    DIFFERENTIABLE.with(|d| d.set(on));
}

pub fn differentiable() -> bool {
    DIFFERENTIABLE.with(|d| d.get())
}

thread_local! {
    static ATTENTION: std::cell::RefCell<Option<Vec<Tensor>>> = const { std::cell::RefCell::new(None) };
}

/// Starts keeping, on this thread, the attention probabilities `[B, heads, T, S]` of every
/// attention layer run from now on (training losses on where a layer looks).
pub fn capture_attention() {
    ATTENTION.with(|a| *a.borrow_mut() = Some(Vec::new()));
}

/// The probabilities kept since `capture_attention`, in the order the layers ran; stops keeping.
pub fn take_attention() -> Vec<Tensor> {
    ATTENTION.with(|a| a.borrow_mut().take().unwrap_or_default())
}

/// True while [`capture_attention`] is keeping this thread's attention probabilities.
pub fn capturing_attention() -> bool {
    ATTENTION.with(|a| a.borrow().is_some())
}

pub(crate) fn record_attention(probs: &Tensor) {
    ATTENTION.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            list.push(probs.clone());
        }
    });
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !differentiable() {
            return candle_nn::ops::layer_norm(&xs.contiguous()?, &self.weight, &self.bias, self.eps as f32);
        }
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !differentiable() {
            return candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32);
        }
        let ms = xs.sqr()?.mean_keepdim(D::Minus1)?;
        xs.broadcast_div(&(ms + self.eps)?.sqrt()?)?.broadcast_mul(&self.weight)
    }
}

pub fn softmax_last_dim(xs: &Tensor) -> candle_core::Result<Tensor> {
    if !differentiable() {
        // candle's CPU softmax sums 16-bit exponentials in 16 bits (over 577 CLIP tokens that
        // costs bf16 its last digits); the fused one sums in f32 and rounds once, as PyTorch.
        if matches!(xs.dtype(), candle_core::DType::BF16 | candle_core::DType::F16) {
            return crate::fused::scaled_masked_softmax(xs, 1.0, None);
        }
        return candle_nn::ops::softmax_last_dim(xs);
    }
    let shifted = xs.broadcast_sub(&xs.max_keepdim(D::Minus1)?.detach())?;
    let exp = shifted.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
}

/// Rotary embedding of `[B, H, T, D]` with `cos`/`sin` of `[T, D/2]` (HF's rotate-half layout).
pub fn rope(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if differentiable() {
        candle_nn::rotary_emb::rope_slow(xs, cos, sin)
    } else {
        candle_nn::rotary_emb::rope(xs, cos, sin)
    }
}

/// Every matrix product of attention goes through here (one place to count or specialise).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    // 16-bit products go through tokenscale-kernels (candle 0.9's CPU matmul rejects bf16/f16).
    let out = crate::matvec::matmul(a, b)?;
    crate::opcount::record(crate::opcount::Op::Matmul, || (out.elem_count() * a.dims().last().copied().unwrap_or(0)) as u64);
    Ok(out)
}

/// Every convolution of the vision towers goes through here.
pub fn conv(layer: &Conv2d, xs: &Tensor) -> Result<Tensor> {
    let out = crate::matvec::conv2d(layer, xs)?;
    let per_output = layer.weight().elem_count() / layer.weight().dim(0)?.max(1);
    crate::opcount::record(crate::opcount::Op::Conv, || (out.elem_count() * per_output) as u64);
    Ok(out)
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
            Self::QuickGelu => crate::fused::quick_gelu(xs),
            Self::Gelu => crate::fused::gelu_erf(xs),
            Self::GeluPytorchTanh | Self::GeluNew => xs.gelu(),
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }
}

pub fn forward<M: Module>(m: &M, xs: &Tensor) -> Result<Tensor> {
    Ok(m.forward(xs)?)
}

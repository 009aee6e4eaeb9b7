//! CLIP vision tower (HF `CLIPVisionModel`, and the vision half of `CLIPModel`), pre-layernorm,
//! returning the hidden states of every layer.

use anyhow::{bail, Result};
use candle_core::Tensor;
use candle_nn::Conv2d;
use serde::Deserialize;

use crate::forward::Forward;
use crate::fused;
use crate::nn::{self, Activation, LayerNorm, Linear};
use crate::weights::Weights;

fn default_hidden() -> usize {
    768
}
fn default_intermediate() -> usize {
    3072
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_image_size() -> usize {
    224
}
fn default_patch_size() -> usize {
    32
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_channels() -> usize {
    3
}

/// HF `CLIPVisionConfig`, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the token embeddings (default 768).
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    /// Inner width of each encoder MLP (default 3072).
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    /// Number of encoder layers (default 12).
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads (default 12).
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Side of the square input image, in pixels (default 224).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// Side of a square patch, in pixels (default 32).
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// MLP activation name (default `"quick_gelu"`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm (default 1e-5).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Input image channels (default 3).
    #[serde(default = "default_channels")]
    pub num_channels: usize,
}

impl ClipVisionConfig {
    /// Patches per side: `image_size / patch_size`.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patches per image (`grid()²`), not counting the CLS token.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    /// The attention output and, when `detail`, the probabilities `[B, heads, T, T]` and the raw
    /// keys (`k_proj` output, before any scaling) averaged over heads, `[B, T, head_dim]`.
    fn forward_detailed(
        &self,
        ctx: &Forward,
        xs: &Tensor,
        detail: bool,
    ) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let (b, t, h) = xs.dims3()?;
        let shape = |x: Tensor| -> Result<Tensor> {
            debug_assert_eq!(x.dims3().ok(), Some((b, t, self.heads * self.head_dim)));
            Ok(fused::split_heads(ctx, &x, self.heads)?)
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = shape((self.q.forward(ctx, xs)? * scale)?)?;
        let k = shape(self.k.forward(ctx, xs)?)?;
        let v = shape(self.v.forward(ctx, xs)?)?;
        let fast = crate::attention::bidirectional(ctx, &q, &k, &v)?;
        if let (Some(context), false) = (&fast, detail) {
            return Ok((self.out.forward(ctx, context)?, None));
        }
        // With the fast path, a layer whose probabilities are wanted (VisionZip) still returns
        // the same hidden states as without: the probabilities are computed beside it, and not
        // counted again (the fast path recorded the layer's products).
        let scores = if fast.is_some() {
            crate::matvec::matmul(&q, &k.t()?)?
        } else {
            nn::matmul(ctx, &q, &k.t()?)?
        };
        let probs = nn::softmax_last_dim(ctx, &scores)?;
        let context = match fast {
            Some(context) => context,
            None => nn::matmul(ctx, &probs, &v)?.transpose(1, 2)?.reshape((b, t, h))?,
        };
        let detail = if detail { Some((probs, k.mean(1)?)) } else { None };
        Ok((self.out.forward(ctx, &context)?, detail))
    }
}

struct EncoderLayer {
    attn: Attention,
    ln1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ln2: LayerNorm,
    act: Activation,
}

impl EncoderLayer {
    fn forward_detailed(
        &self,
        ctx: &Forward,
        xs: &Tensor,
        detail: bool,
    ) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let (attn, detail) =
            self.attn.forward_detailed(ctx, &self.ln1.forward(ctx, xs)?, detail)?;
        let h = fused::add(ctx, xs, &attn)?;
        let mlp = self.fc2.forward(
            ctx,
            &self.act.apply(ctx, &self.fc1.forward(ctx, &self.ln2.forward(ctx, &h)?)?)?,
        )?;
        Ok((fused::add(ctx, &h, &mlp)?, detail))
    }
}

/// The self-attention of one encoder layer, for token reducers (VisionZip).
pub struct ClipLayerAttention {
    /// Softmax probabilities `[B, heads, T, T]` (row = query, column = key; token 0 is CLS).
    pub probs: Tensor,
    /// `k_proj` output averaged over heads, `[B, T, head_dim]` (VisionZip's similarity metric).
    pub keys_mean: Tensor,
}

/// Outputs of a CLIP vision forward pass.
pub struct ClipVisionOutput {
    /// `hidden_states[0]` is the embedding after `pre_layrnorm`; `hidden_states[i]` the output of layer i.
    pub hidden_states: Vec<Tensor>,
    /// `post_layernorm` of the CLS token, when the checkpoint has a post-layernorm.
    pub pooler_output: Option<Tensor>,
}

/// A CLIP ViT vision tower: patch and position embeddings, pre-LN and encoder layers.
pub struct ClipVisionTransformer {
    /// The config the tower was loaded from.
    pub config: ClipVisionConfig,
    patch_embedding: Conv2d,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_layernorm: Option<LayerNorm>,
}

impl ClipVisionTransformer {
    /// Loads from weights rooted at the `vision_model.` level (e.g. `vision_model` of a CLIPVisionModel).
    /// Only the first `num_layers` encoder layers are loaded when given (LLaVA needs fewer).
    pub fn load(w: &Weights, config: &ClipVisionConfig, num_layers: Option<usize>) -> Result<Self> {
        let c = config;
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            bail!(
                "vision config: image_size {} is not a multiple of patch_size {}",
                c.image_size,
                c.patch_size
            );
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            bail!(
                "vision config: hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let act = Activation::parse(&c.hidden_act, "hidden_act")?;
        let h = c.hidden_size;
        let emb = w.pp("embeddings");
        let patch_embedding = nn::conv2d(
            &emb,
            "patch_embedding",
            [h, c.num_channels, c.patch_size, c.patch_size],
            c.patch_size,
            0,
            false,
        )?;
        let class_embedding = emb.get("class_embedding", &[h])?;
        let position_embedding = emb.get("position_embedding.weight", &[c.num_patches() + 1, h])?;
        let pre_layrnorm = nn::layer_norm(w, "pre_layrnorm", h, c.layer_norm_eps)?;
        let count = num_layers.unwrap_or(c.num_hidden_layers).min(c.num_hidden_layers);
        // Grown as layers load: a corrupt count in config.json fails at the first missing layer
        // instead of reserving memory for it.
        let mut layers = Vec::new();
        for i in 0..count {
            let lw = w.pp(&format!("encoder.layers.{i}"));
            let aw = lw.pp("self_attn");
            layers.push(EncoderLayer {
                attn: Attention {
                    q: nn::linear(&aw, "q_proj", h, h, true)?,
                    k: nn::linear(&aw, "k_proj", h, h, true)?,
                    v: nn::linear(&aw, "v_proj", h, h, true)?,
                    out: nn::linear(&aw, "out_proj", h, h, true)?,
                    heads: c.num_attention_heads,
                    head_dim: h / c.num_attention_heads,
                },
                ln1: nn::layer_norm(&lw, "layer_norm1", h, c.layer_norm_eps)?,
                fc1: nn::linear(&lw, "mlp.fc1", h, c.intermediate_size, true)?,
                fc2: nn::linear(&lw, "mlp.fc2", c.intermediate_size, h, true)?,
                ln2: nn::layer_norm(&lw, "layer_norm2", h, c.layer_norm_eps)?,
                act,
            });
        }
        let post_layernorm = if w.contains("post_layernorm.weight") {
            Some(nn::layer_norm(w, "post_layernorm", h, c.layer_norm_eps)?)
        } else {
            None
        };
        Ok(Self {
            config: c.clone(),
            patch_embedding,
            class_embedding,
            position_embedding,
            pre_layrnorm,
            layers,
            post_layernorm,
        })
    }

    /// Number of encoder layers loaded (may be fewer than the config's).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `pixel_values` is `[B, C, image_size, image_size]`.
    pub fn forward(&self, ctx: &Forward, pixel_values: &Tensor) -> Result<ClipVisionOutput> {
        Ok(self.forward_with_attention(ctx, pixel_values, None)?.0)
    }

    /// [`Self::forward`], also returning the attention probabilities and head-averaged keys of
    /// encoder layer `layer` (0-based; its output is `hidden_states[layer + 1]`) when asked.
    pub fn forward_with_attention(
        &self,
        ctx: &Forward,
        pixel_values: &Tensor,
        layer: Option<usize>,
    ) -> Result<(ClipVisionOutput, Option<ClipLayerAttention>)> {
        if let Some(l) = layer {
            if l >= self.layers.len() {
                bail!(
                    "CLIP attention of layer {l} requested but the tower has {} layers",
                    self.layers.len()
                );
            }
        }
        let c = &self.config;
        let dims = pixel_values.dims();
        if dims.len() != 4
            || dims[1] != c.num_channels
            || dims[2] != c.image_size
            || dims[3] != c.image_size
        {
            bail!(
                "pixel_values has shape {:?}, expected [B, {}, {}, {}]",
                dims,
                c.num_channels,
                c.image_size,
                c.image_size
            );
        }
        let b = dims[0];
        // As HF does: the pixels take the tower's dtype (a 16-bit tower gets 16-bit pixels).
        let pixel_values = pixel_values.to_dtype(self.patch_embedding.weight().dtype())?;
        let patches = nn::conv(ctx, &self.patch_embedding, &pixel_values)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let cls = self.class_embedding.reshape((1, 1, c.hidden_size))?.repeat((b, 1, 1))?;
        let xs = Tensor::cat(&[&cls, &patches], 1)?
            .broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let mut xs = self.pre_layrnorm.forward(ctx, &xs)?;
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(xs.clone());
        let mut attention = None;
        for (i, l) in self.layers.iter().enumerate() {
            let (next, detail) = l.forward_detailed(ctx, &xs, layer == Some(i))?;
            if let Some((probs, keys_mean)) = detail {
                attention = Some(ClipLayerAttention { probs, keys_mean });
            }
            xs = next;
            hidden_states.push(xs.clone());
        }
        let pooler_output = match &self.post_layernorm {
            Some(ln) => Some(ln.forward(ctx, &xs.narrow(1, 0, 1)?.squeeze(1)?)?),
            None => None,
        };
        Ok((ClipVisionOutput { hidden_states, pooler_output }, attention))
    }

    /// Hidden state of layer `index` (negative counts from the end, as in Python).
    pub fn select_layer(hidden_states: &[Tensor], index: i64) -> Result<Tensor> {
        let len = hidden_states.len() as i64;
        let i = if index < 0 { len + index } else { index };
        if i < 0 || i >= len {
            bail!("vision_feature_layer {index} is out of range for {} hidden states", len);
        }
        Ok(hidden_states[i as usize].clone())
    }
}

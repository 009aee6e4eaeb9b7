//! LLaMA-family causal decoder: Llama-2/Vicuna, Llama-3 (GQA, rope_scaling "llama3"), Mistral,
//! Qwen2 (qkv bias, tied embeddings). Takes ids or input embeddings, keeps a KV cache and can
//! return the hidden states of every layer at every position.
//!
//! One decoder loop ([`Llama::forward_embeds_with`]) serves every forward pass; a
//! [`DecoderHook`] may look at a layer's attention and change which positions go on between
//! layers (FastV, in `crate::reducers::fastv`, is one).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::Embedding;
use serde::Deserialize;

use crate::attention::{self, Heads, LayerKv};
use crate::config::token_ids;
use crate::forward::Forward;
use crate::fused;
use crate::nn::{self, Activation, Linear, RmsNorm};
use crate::weights::Weights;

/// The `model_type` values of `config.json` this decoder can load.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2"];

/// HF `rope_scaling` (or v5 `rope_parameters`) block; every field is optional and checked
/// by rope type.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    /// `"default"`, `"linear"` or `"llama3"` (also read from the older key `type`).
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// Frequency divisor for `"linear"` and `"llama3"` scaling.
    pub factor: Option<f64>,
    /// `"llama3"`: wavelengths above `original_max_position_embeddings / low_freq_factor`
    /// are scaled.
    pub low_freq_factor: Option<f64>,
    /// `"llama3"`: wavelengths below `original_max_position_embeddings / high_freq_factor`
    /// are kept.
    pub high_freq_factor: Option<f64>,
    /// `"llama3"`: the context length the model was pre-trained with, in tokens.
    pub original_max_position_embeddings: Option<usize>,
    /// RoPE base (transformers v5 `rope_parameters` only); the top-level `rope_theta` wins.
    pub rope_theta: Option<f64>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

/// The fields of an HF Llama / Mistral / Qwen2 `config.json` this runtime uses.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// `"llama"`, `"mistral"` or `"qwen2"`; `None` reads as `"llama"`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Width of the residual stream (embedding size).
    pub hidden_size: usize,
    /// Inner width of the gated MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA); `None` means as many as query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; `None` means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Epsilon of every RMSNorm (default 1e-6).
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base; `None` falls back to `rope_parameters` and then 10000.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE frequency scaling, if any (see [`RopeScaling`]).
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers v5 puts theta and scaling together here.
    #[serde(default)]
    pub rope_parameters: Option<RopeScaling>,
    /// Longest context the model supports, in tokens (default 2048); caps cache preallocation.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Number of rows of the embedding table and of the LM head.
    pub vocab_size: usize,
    /// Reuse the embedding table as the LM head when no `lm_head.weight` is stored.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the q/k/v/o projections carry biases (q/k/v always do for Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the MLP projections carry biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// MLP activation name (default `"silu"`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence id(s): a number, a list or null.
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    /// End-of-sequence id(s): a number, a list or null.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Padding id: a number, a list (the first is used) or null.
    #[serde(default)]
    pub pad_token_id: Option<serde_json::Value>,
}

impl LlamaConfig {
    /// Parses a (possibly sparse) config: nested sub-configs such as llava-hf's `text_config`
    /// only store values that differ from the class defaults, so those defaults are filled in.
    pub fn from_value(value: &serde_json::Value, origin: &str, field: &str) -> Result<Self> {
        let mut value = value.clone();
        let Some(map) = value.as_object_mut() else {
            bail!("{origin}: field `{field}` must be an object");
        };
        let model_type =
            map.get("model_type").and_then(|v| v.as_str()).unwrap_or("llama").to_string();
        let defaults = match model_type.as_str() {
            "llama" => {
                serde_json::json!({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                "num_attention_heads": 32, "vocab_size": 32000, "max_position_embeddings": 2048})
            }
            "mistral" => {
                serde_json::json!({"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 131072})
            }
            "qwen2" => {
                serde_json::json!({"hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 151936, "max_position_embeddings": 32768})
            }
            other => bail!(
                "{origin}: unsupported model_type `{other}` in `{}` (supported: {})",
                if field.is_empty() { "model_type" } else { field },
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        };
        if let Some(d) = defaults.as_object() {
            for (k, v) in d {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let config: Self = crate::config::parse(&value, origin, field)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// The model type, `"llama"` when the config names none.
    pub fn model_type(&self) -> &str {
        self.model_type.as_deref().unwrap_or("llama")
    }
    /// Number of key/value heads (query heads when `num_key_value_heads` is unset).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// Every end-of-sequence id (empty when none is set).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        token_ids(self.eos_token_id.as_ref())
    }
    /// The padding id, if the config names one.
    pub fn pad_token_id(&self) -> Option<u32> {
        token_ids(self.pad_token_id.as_ref()).first().copied()
    }
    /// Every beginning-of-sequence id (empty when none is set).
    pub fn bos_token_ids(&self) -> Vec<u32> {
        token_ids(self.bos_token_id.as_ref())
    }
    fn qkv_bias(&self) -> bool {
        self.model_type() == "qwen2" || self.attention_bias
    }
    fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0)
    }
    fn scaling(&self) -> Option<&RopeScaling> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    /// Checks the model type is supported and the query heads divide into the key/value heads.
    /// `origin` prefixes the error message.
    pub fn validate(&self, origin: &str) -> Result<()> {
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type()) {
            bail!(
                "{origin}: unsupported model_type `{}` (supported: {})",
                self.model_type(),
                SUPPORTED_MODEL_TYPES.join(", ")
            );
        }
        if self.num_attention_heads == 0
            || self.kv_heads() == 0
            || !self.num_attention_heads.is_multiple_of(self.kv_heads())
        {
            bail!(
                "{origin}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            );
        }
        Ok(())
    }

    /// Inverse RoPE frequencies, following HF's default, "linear" and "llama3" rope types.
    pub fn inv_freq(&self) -> Result<Vec<f64>> {
        let dim = self.head_dim();
        let base = self.rope_theta();
        // As torch computes them: `1 / base ** (arange(0, dim, 2).float() / dim)` in f32 (exponent and
        // reciprocal rounded to f32, the power to f32 once). In f64 throughout, 10 of the 32
        // frequencies of a 64-wide head came out an ulp away, which at position 2500 turns the
        // rotation by up to 4e-5 rad (2.6e-4 in the query-fused model's logits over 16 crops).
        let inv_f32 = |i: usize| {
            let exponent = i as f32 / dim as f32;
            1.0f32 / ((base as f32) as f64).powf(exponent as f64) as f32
        };
        let mut inv: Vec<f64> = (0..dim).step_by(2).map(|i| inv_f32(i) as f64).collect();
        let Some(s) = self.scaling() else { return Ok(inv) };
        match s.rope_type.as_deref().unwrap_or("default") {
            "default" => {}
            "linear" => {
                let factor = s.factor.context("rope_scaling: missing field `factor`")?;
                inv.iter_mut().for_each(|f| *f /= factor);
            }
            "llama3" => {
                let factor = s.factor.context("rope_scaling: missing field `factor`")?;
                let low = s.low_freq_factor.context("rope_scaling: missing field `low_freq_factor`")?;
                let high = s.high_freq_factor.context("rope_scaling: missing field `high_freq_factor`")?;
                let old = s
                    .original_max_position_embeddings
                    .context("rope_scaling: missing field `original_max_position_embeddings`")? as f64;
                let low_wavelen = old / low;
                let high_wavelen = old / high;
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            other => bail!("rope_scaling: unsupported rope_type `{other}` (supported: default, linear, llama3)"),
        }
        Ok(inv)
    }
}

/// Keys and values of every layer for the positions seen so far (see [`LayerKv`]).
#[derive(Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers, growing as positions are appended.
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }
    /// A cache that allocates room for `positions` tokens per layer on first use (it still
    /// grows if a sequence runs longer).
    pub fn with_capacity(num_layers: usize, positions: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| LayerKv::with_reserve(positions)).collect() }
    }
    /// Number of positions cached so far (layer 0's count; 0 for an empty cache).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::len)
    }
    /// Cached positions of every layer (they differ after FastV-style pruning, where layers ≥ K
    /// keep only the surviving tokens; the next position is always `seq_len()`, layer 0's count).
    pub fn layer_lens(&self) -> Vec<usize> {
        self.layers.iter().map(LayerKv::len).collect()
    }
}

/// Which positions' logits a forward pass computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Logits {
    /// The last position's only, `[B, 1, V]` (prefill before generation, decoding).
    #[default]
    Last,
    /// Every position's, `[B, T, V]` (scoring, training).
    All,
}

/// What a forward pass returns besides the logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Which positions' logits to compute.
    pub logits: Logits,
    /// Also return the hidden states of every layer (see [`LlamaOutput::hidden_states`]).
    pub hidden_states: bool,
}

impl ForwardOptions {
    /// The last position's logits, no hidden states.
    pub const LAST: Self = Self { logits: Logits::Last, hidden_states: false };
    /// Every position's logits, no hidden states.
    pub const ALL: Self = Self { logits: Logits::All, hidden_states: false };

    /// These options, also returning the hidden states of every layer.
    pub fn with_hidden_states(self) -> Self {
        Self { hidden_states: true, ..self }
    }
}

/// The decoder loop's state between two layers: the hidden states of the positions that go on
/// and their RoPE tables. A [`DecoderHook`] may drop positions.
pub struct DecoderState {
    /// `[B, T', H]`, the positions still in the pass.
    pub xs: Tensor,
    cos: Tensor,
    sin: Tensor,
    /// The tables of every input position, to select from.
    all_cos: Tensor,
    all_sin: Tensor,
}

impl DecoderState {
    /// Keeps only the input positions `offsets` (ascending offsets within the call's input,
    /// which must all still be in the pass): their hidden states, and their RoPE angles, so
    /// survivors keep their original position ids.
    pub fn keep_positions(&mut self, offsets: &[usize]) -> Result<()> {
        let idx =
            Tensor::new(offsets.iter().map(|&k| k as u32).collect::<Vec<_>>(), self.xs.device())?;
        self.xs = self.xs.index_select(&idx, 1)?;
        self.cos = self.all_cos.index_select(&idx, 0)?;
        self.sin = self.all_sin.index_select(&idx, 0)?;
        Ok(())
    }
}

/// Work inside the decoder loop (in-LLM token reduction): told about the pass before it starts,
/// it may ask a layer for the last query's attention and change the positions between layers.
/// Every method does nothing by default.
pub trait DecoderHook {
    /// Checks the pass (batch size `batch`, `t` input positions, `layers` decoder layers)
    /// before any work.
    fn begin(&mut self, _layers: usize, _batch: usize, _t: usize) -> Result<()> {
        Ok(())
    }

    /// Whether layer `layer` should also return the last query's attention over every key,
    /// averaged over heads (`[B, past + T']`, f32), for [`Self::after_attention`].
    fn wants_last_row(&self, _layer: usize) -> bool {
        false
    }

    /// Layer `layer`'s last-query attention row, when [`Self::wants_last_row`] asked for it.
    fn after_attention(&mut self, _layer: usize, _last_row: Option<Tensor>) -> Result<()> {
        Ok(())
    }

    /// Before layer `layer` runs (and with `layer` = the layer count after the last one): may
    /// change which positions go on.
    fn before_layer(&mut self, _layer: usize, _state: &mut DecoderState) -> Result<()> {
        Ok(())
    }
}

/// The plain pass: no hook.
struct NoHook;

impl DecoderHook for NoHook {}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Causal attention of the new positions `xs` over the cached ones and themselves; also
    /// returns, when `last_probs`, the attention probabilities of the last query over every
    /// key (cached ones first), averaged over heads: `[B, S]`.
    fn forward_detailed(
        &self,
        ctx: &Forward,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut LayerKv,
        last_probs: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, _) = xs.dims3()?;
        let split = |x: Tensor, heads: usize| -> Result<Tensor> {
            debug_assert_eq!(x.dims3().ok(), Some((b, t, heads * self.head_dim)));
            Ok(fused::split_heads(ctx, &x, heads)?)
        };
        // q and k are rotated while they are split into heads (one pass, RoPE in place).
        let rotated = |x: Tensor, heads: usize| -> Result<Tensor> {
            debug_assert_eq!(x.dims3().ok(), Some((b, t, heads * self.head_dim)));
            Ok(fused::split_heads_rope(ctx, &x, heads, cos, sin)?)
        };
        let q = rotated(self.q.forward(ctx, xs)?, self.heads)?;
        let k = rotated(self.k.forward(ctx, xs)?, self.kv_heads)?;
        let v = split(self.v.forward(ctx, xs)?, self.kv_heads)?;
        let shape = Heads { heads: self.heads, kv_heads: self.kv_heads, head_dim: self.head_dim };
        let (context, last) = attention::causal(ctx, &q, &k, &v, cache, shape, last_probs)?;
        Ok((self.o.forward(ctx, &context)?, last))
    }

    /// One new position for each of several sequences: row i of `xs` (`[B, 1, H]`) belongs to
    /// `slots[i]` at the position of `ropes[i]`. The projections are one product over the
    /// batch; RoPE and attention run per sequence against its own cache.
    fn forward_rows(
        &self,
        ctx: &Forward,
        xs: &Tensor,
        ropes: &[(Tensor, Tensor)],
        slots: &mut [&mut LayerKv],
    ) -> Result<Tensor> {
        let q = self.q.forward_rows(ctx, xs)?;
        let k = self.k.forward_rows(ctx, xs)?;
        let v = self.v.forward_rows(ctx, xs)?;
        let shape = Heads { heads: self.heads, kv_heads: self.kv_heads, head_dim: self.head_dim };
        let mut contexts = Vec::with_capacity(slots.len());
        for (i, ((cos, sin), slot)) in ropes.iter().zip(slots.iter_mut()).enumerate() {
            let row = |x: &Tensor| -> Result<Tensor> { Ok(x.narrow(0, i, 1)?.contiguous()?) };
            let q = fused::split_heads_rope(ctx, &row(&q)?, self.heads, cos, sin)?;
            let k = fused::split_heads_rope(ctx, &row(&k)?, self.kv_heads, cos, sin)?;
            let v = fused::split_heads(ctx, &row(&v)?, self.kv_heads)?;
            contexts.push(attention::causal(ctx, &q, &k, &v, slot, shape, false)?.0);
        }
        self.o.forward_rows(ctx, &Tensor::cat(&contexts, 0)?)
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    fn forward(&self, ctx: &Forward, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(ctx, xs, Linear::forward)
    }

    /// The MLP with `product` as its linear layers ([`Linear::forward_rows`] for a decode batch).
    fn forward_with(
        &self,
        ctx: &Forward,
        xs: &Tensor,
        product: fn(&Linear, &Forward, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let (gate, up) = (product(&self.gate, ctx, xs)?, product(&self.up, ctx, xs)?);
        let gated = match self.act {
            Activation::Silu => fused::silu_mul(ctx, &gate, &up)?,
            act => (act.apply(ctx, &gate)? * up)?,
        };
        product(&self.down, ctx, &gated)
    }
}

struct DecoderLayer {
    attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

/// What one forward pass returns.
pub struct LlamaOutput {
    /// `[B, T, V]` for every position, or `[B, 1, V]` for the last position only.
    pub logits: Tensor,
    /// HF's `hidden_states`: index 0 = input embeddings, i = output of layer i, the last one after
    /// the final norm. Empty unless requested.
    pub hidden_states: Vec<Tensor>,
}

/// A loaded LLaMA-family decoder (embeddings, layers, final norm, LM head) with its RoPE table.
pub struct Llama {
    /// The config the model was loaded from.
    pub config: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    inv_freq: Tensor,
    norm_dtype: DType,
}

impl Llama {
    /// `w` is rooted where `model.` and `lm_head.` live (a `*ForCausalLM` checkpoint). When
    /// `model_prefix` differs (e.g. llava-hf's `model.language_model`) pass the two views directly.
    pub fn load(w: &Weights, config: &LlamaConfig, origin: &str) -> Result<Self> {
        Self::load_parts(&w.pp("model"), w, config, origin)
    }

    /// Like [`Llama::load`], with the decoder (`embed_tokens`, `layers`, `norm`) read from `model`
    /// and `lm_head` from `head`. Fails on a missing or mis-shaped tensor.
    pub fn load_parts(
        model: &Weights,
        head: &Weights,
        config: &LlamaConfig,
        origin: &str,
    ) -> Result<Self> {
        let c = config;
        c.validate(origin)?;
        let h = c.hidden_size;
        let hd = c.head_dim();
        let act = Activation::parse(&c.hidden_act, "hidden_act")?;
        let embed_weight = model.get("embed_tokens.weight", &[c.vocab_size, h])?;
        // Grown as layers load: a corrupt count in config.json fails at the first missing layer.
        let mut layers = Vec::new();
        for i in 0..c.num_hidden_layers {
            let lw = model.pp(&format!("layers.{i}"));
            let aw = lw.pp("self_attn");
            let mw = lw.pp("mlp");
            let qkv_bias = c.qkv_bias();
            layers.push(DecoderLayer {
                attn: Attention {
                    q: nn::linear(&aw, "q_proj", h, c.num_attention_heads * hd, qkv_bias)?,
                    k: nn::linear(&aw, "k_proj", h, c.kv_heads() * hd, qkv_bias)?,
                    v: nn::linear(&aw, "v_proj", h, c.kv_heads() * hd, qkv_bias)?,
                    o: nn::linear(&aw, "o_proj", c.num_attention_heads * hd, h, c.attention_bias)?,
                    heads: c.num_attention_heads,
                    kv_heads: c.kv_heads(),
                    head_dim: hd,
                },
                mlp: Mlp {
                    gate: nn::linear(&mw, "gate_proj", h, c.intermediate_size, c.mlp_bias)?,
                    up: nn::linear(&mw, "up_proj", h, c.intermediate_size, c.mlp_bias)?,
                    down: nn::linear(&mw, "down_proj", c.intermediate_size, h, c.mlp_bias)?,
                    act,
                },
                input_layernorm: nn::rms_norm(&lw, "input_layernorm", h, c.rms_norm_eps)?,
                post_attention_layernorm: nn::rms_norm(
                    &lw,
                    "post_attention_layernorm",
                    h,
                    c.rms_norm_eps,
                )?,
            });
        }
        let norm = nn::rms_norm(model, "norm", h, c.rms_norm_eps)?;
        let lm_head = if head.contains("lm_head.weight") {
            nn::linear(head, "lm_head", h, c.vocab_size, false)?
        } else if c.tie_word_embeddings {
            Linear::new(embed_weight.clone(), None)
        } else {
            bail!(
                "{origin}: missing tensor `{}` (and tie_word_embeddings is false)",
                head.key("lm_head.weight")
            );
        };
        let inv: Vec<f32> = c.inv_freq()?.into_iter().map(|f| f as f32).collect();
        let inv_freq = Tensor::new(inv, model.device())?;
        let norm_dtype = embed_weight.dtype();
        Ok(Self {
            config: c.clone(),
            embed_tokens: Embedding::new(embed_weight, h),
            layers,
            norm,
            lm_head,
            inv_freq,
            norm_dtype,
        })
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of the residual stream.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// An empty KV cache with one slot per layer.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// A cache whose layers allocate room for `positions` tokens at once (capped at the
    /// context length), so a generation of known length never regrows it.
    pub fn new_cache_for(&self, positions: usize) -> KvCache {
        KvCache::with_capacity(
            self.layers.len(),
            positions.min(self.config.max_position_embeddings),
        )
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.inv_freq.device()
    }

    /// The working dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.norm_dtype
    }

    /// Logits of residual states `[.., H]` read through the final norm and the LM head, as if the
    /// layers above them were skipped (the "logit lens" over `hidden_states`).
    pub fn logits_of(&self, ctx: &Forward, states: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(ctx, &self.norm.forward(ctx, states)?)
    }

    /// `ids` is `[B, T]` (u32) → `[B, T, H]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let vocab = self.config.vocab_size as u32;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max >= vocab {
            bail!("token id {max} is outside the vocabulary of {vocab}");
        }
        Ok(self.embed_tokens.forward(ids)?)
    }

    fn rope_tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let positions = Tensor::arange(start as u32, (start + len) as u32, self.device())?
            .to_dtype(DType::F32)?;
        let freqs = positions.unsqueeze(1)?.matmul(&self.inv_freq.unsqueeze(0)?)?;
        Ok((freqs.cos()?.to_dtype(self.dtype())?, freqs.sin()?.to_dtype(self.dtype())?))
    }

    /// The cache length before `t` new positions, after checking they fit the context (and
    /// giving a cache of the wrong depth a fresh start).
    fn check_context(&self, cache: &mut KvCache, t: usize) -> Result<usize> {
        if cache.layers.len() != self.layers.len() {
            *cache = self.new_cache();
        }
        let past = cache.seq_len();
        if past + t > self.config.max_position_embeddings {
            bail!(
                "sequence of {} tokens exceeds the context of {} (max_position_embeddings)",
                past + t,
                self.config.max_position_embeddings
            );
        }
        Ok(past)
    }

    /// Runs the decoder over `embeds` (`[B, T, H]`) appended after what `cache` holds.
    pub fn forward_embeds(
        &self,
        ctx: &Forward,
        embeds: &Tensor,
        cache: &mut KvCache,
        options: ForwardOptions,
    ) -> Result<LlamaOutput> {
        self.forward_embeds_with(ctx, embeds, cache, options, &mut NoHook)
    }

    /// [`Self::forward_embeds`] with `hook` inside the layer loop. After a hook dropped positions
    /// the cache holds fewer positions in the layers after that; continue decoding with
    /// `forward_embeds`/`forward_ids` as usual (each layer's causal mask counts its own cached
    /// positions, and the next position is always layer 0's count).
    pub fn forward_embeds_with(
        &self,
        ctx: &Forward,
        embeds: &Tensor,
        cache: &mut KvCache,
        options: ForwardOptions,
        hook: &mut dyn DecoderHook,
    ) -> Result<LlamaOutput> {
        let (b, t, _) = embeds.dims3()?;
        hook.begin(self.layers.len(), b, t)?;
        let past = self.check_context(cache, t)?;
        let (cos, sin) = self.rope_tables(past, t)?;
        let mut state = DecoderState {
            xs: embeds.clone(),
            all_cos: cos.clone(),
            all_sin: sin.clone(),
            cos,
            sin,
        };
        let mut hidden_states = Vec::new();
        for (i, (layer, slot)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            hook.before_layer(i, &mut state)?;
            if options.hidden_states {
                hidden_states.push(state.xs.clone());
            }
            let want_row = hook.wants_last_row(i);
            let normed = layer.input_layernorm.forward(ctx, &state.xs)?;
            let (attn, row) = layer
                .attn
                .forward_detailed(ctx, &normed, &state.cos, &state.sin, slot, want_row)?;
            if want_row {
                hook.after_attention(i, row)?;
            }
            let h = fused::add(ctx, &state.xs, &attn)?;
            let mlp = layer.mlp.forward(ctx, &layer.post_attention_layernorm.forward(ctx, &h)?)?;
            state.xs = fused::add(ctx, &h, &mlp)?;
        }
        hook.before_layer(self.layers.len(), &mut state)?;
        let normed = self.norm.forward(ctx, &state.xs)?;
        if options.hidden_states {
            hidden_states.push(normed.clone());
        }
        let last = match options.logits {
            Logits::All => normed,
            Logits::Last => {
                let positions = normed.dim(1)?;
                normed.narrow(1, positions - 1, 1)?
            }
        };
        let logits = self.lm_head.forward(ctx, &last)?;
        Ok(LlamaOutput { logits, hidden_states })
    }

    /// Embeds `ids` (`[B, T]` token ids) and runs [`Llama::forward_embeds`] on them.
    pub fn forward_ids(
        &self,
        ctx: &Forward,
        ids: &Tensor,
        cache: &mut KvCache,
        options: ForwardOptions,
    ) -> Result<LlamaOutput> {
        self.forward_embeds(ctx, &self.embed(ids)?, cache, options)
    }

    /// One decode step of several independent sequences (continuous batching): `tokens[i]` is
    /// appended to `caches[i]`, each at its own position. Norms, linear layers and the MLP run
    /// as one product over the batch `[B, 1, H]` (a decode step's time goes to reading the
    /// weights, once per step however many sequences share it); RoPE and attention run per
    /// sequence against its own cache. Returns the next-token logits `[B, V]`. In f32 every row
    /// is bitwise what [`Self::forward_ids`] gives that sequence alone; 16-bit products may
    /// round differently with the batch size.
    pub fn decode_step(
        &self,
        ctx: &Forward,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        if tokens.is_empty() || tokens.len() != caches.len() {
            bail!(
                "decode step: {} tokens for {} caches (one token per sequence, at least one)",
                tokens.len(),
                caches.len()
            );
        }
        let mut ropes = Vec::with_capacity(tokens.len());
        for cache in caches.iter_mut() {
            let past = self.check_context(cache, 1)?;
            ropes.push(self.rope_tables(past, 1)?);
        }
        let ids = Tensor::new(tokens, self.device())?.unsqueeze(1)?;
        let mut xs = self.embed(&ids)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut slots: Vec<&mut LayerKv> =
                caches.iter_mut().map(|c| &mut c.layers[l]).collect();
            let attn = layer.attn.forward_rows(
                ctx,
                &layer.input_layernorm.forward(ctx, &xs)?,
                &ropes,
                &mut slots,
            )?;
            let h = fused::add(ctx, &xs, &attn)?;
            let mlp = layer.mlp.forward_with(
                ctx,
                &layer.post_attention_layernorm.forward(ctx, &h)?,
                Linear::forward_rows,
            )?;
            xs = fused::add(ctx, &h, &mlp)?;
        }
        Ok(self.lm_head.forward_rows(ctx, &self.norm.forward(ctx, &xs)?)?.squeeze(1)?)
    }
}

/// Greedy argmax of a `[V]` logits row.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

//! tokenscale-cost: what a vision-token budget n costs, from a `config.json` alone (no weights,
//! no tensor library): parameters, multiply-accumulates (MACs), FLOPs, KV-cache bytes and a
//! peak-activation estimate per component of LLaVA-1.5, the query-fused model ("imgque"),
//! LLaMA-family LLMs and CLIP vision towers.
//!
//! # Conventions
//! * **FLOPs = 2 · MACs.** Only matrix products and convolutions are counted, as
//!   `torch.utils.flop_counter.FlopCounterMode` counts them (it reports 2·MACs per `mm`, `addmm`,
//!   `bmm`, convolution): every linear layer (bias adds are not counted), the patch-embedding
//!   convolution and imgque's 3×3/s2 merge convolution (every output position counts the full
//!   kernel, padding included), attention's QKᵀ and AV products over the full score matrix the
//!   runtime computes (a causal mask does not halve it; GQA heads are repeated, so the products
//!   run over all query heads), the LM head only on positions whose logits are computed (the
//!   last prompt position at prefill, one per decode step).
//! * **Not counted:** layer/RMS norms, softmax, activations (GELU, quick-GELU, SiLU), residual
//!   and position-embedding adds, RoPE (the angle table is an outer product, not a matmul in
//!   transformers; the runtime's T·head_dim/2 products are left out too), embedding look-ups, the reducers' own
//!   selection work (pooling, VisionZip's similarity, FastV's top-k).
//! * What runs is what the runtime (`crates/model`) runs: LLaVA's vision tower stops at
//!   `vision_feature_layer` (23 of 24 CLIP-L layers for −2; HF transformers runs all 24 and
//!   throws the last away); imgque's tower runs all layers on each of K crops.
//! * `params` counts the checkpoint's stored elements, used or not (LLaVA's last CLIP layer and
//!   `post_layernorm` included). `llm_decode` repeats `llm_prefill`'s parameters (same
//!   weights); the `total` row counts them once.
//! * `llm_decode` over `new_tokens` = K single-token forwards, the i-th attending to the prompt
//!   plus i cached/new positions.
//! * `kv_cache_bytes`: the LLM's cache (2 · layers · kv_heads · head_dim · positions · bytes);
//!   `llm_prefill` holds the prompt, `llm_decode` the growth, `total` the cache at the end. The
//!   query decoder's transient K/V are part of its activation estimate instead.
//! * `peak_activation_bytes` is an estimate: the largest set of intermediate tensors alive at
//!   once inside one layer of the component (see [`llm_pass_peak`], [`clip_peak`]), in the
//!   chosen dtype; `total` takes the maximum over components (they run one after another).

#![warn(missing_docs)]

pub mod advise;
pub mod config;
pub mod timing;

use anyhow::{bail, Result};
use serde::Serialize;

pub use config::{parse_config, read_config, Arch, ClipShape, ImgQueShape, LlavaShape, LlmShape};

/// Storage type of activations / KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float: 4 bytes.
    F32,
    /// bfloat16: 2 bytes.
    Bf16,
    /// IEEE half precision: 2 bytes.
    F16,
}

impl Dtype {
    /// `f32`/`float32`, `bf16`/`bfloat16` or `f16`/`float16`, in any case.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Self::F32,
            "bf16" | "bfloat16" => Self::Bf16,
            "f16" | "float16" => Self::F16,
            other => bail!("unknown dtype `{other}` (known: f32, bf16, f16)"),
        })
    }

    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }

    /// The short name `parse` reads back (`f32`, `bf16`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

/// LLaVA token reducers (defined in `tokenscale-law`, shared with the runtime). Only the LLM's
/// sequence changes: pool/uniform/visionzip reduce before the projector; FastV prunes inside
/// the LLM after layer K.
pub use tokenscale_base::Reducer;

/// Everything besides n that the cost depends on.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Prompt tokens other than the vision tokens.
    pub text_tokens: u64,
    /// Decode steps after the prefill.
    pub new_tokens: u64,
    /// Image views K: LLaVA 1; imgque 1 + rows·cols (`None`: 1 + num_crops, the full grid).
    pub crops: Option<u64>,
    /// imgque: CLIP tokens of the question in the query decoder's row (0 = DropQuery).
    pub query_text_tokens: u64,
    /// LLaVA: how the CLIP tokens are cut down to n (`None`: n must be what the tower gives).
    pub reducer: Option<Reducer>,
    /// Storage type of activations and KV cache (the byte columns scale with it).
    pub dtype: Dtype,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            text_tokens: 64,
            new_tokens: 0,
            crops: None,
            query_text_tokens: 0,
            reducer: None,
            dtype: Dtype::Bf16,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The vision-token budget.
    pub n: u64,
    /// `vision_tower`, `projector`, `query_decoder`, `llm_prefill`, `llm_decode` or `total`.
    pub component: String,
    /// Stored parameter elements of the component.
    pub params: u64,
    /// Multiply-accumulates of matrix products and convolutions (see the crate docs).
    pub macs: u64,
    /// 2 · `macs`.
    pub flops: u64,
    /// Bytes of LLM KV cache the component adds (`total`: the cache at the end).
    pub kv_cache_bytes: u64,
    /// Estimated bytes of intermediate tensors alive at once inside one layer.
    pub peak_activation_bytes: u64,
}

impl Row {
    fn new(n: u64, component: &str, params: u64, macs: u64, kv: u64, peak: u64) -> Self {
        Self {
            n,
            component: component.into(),
            params,
            macs,
            flops: 2 * macs,
            kv_cache_bytes: kv,
            peak_activation_bytes: peak,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// CLIP vision tower as stored: patch conv (no bias), CLS, positions, pre-LN, layers, and
/// `post_layernorm` when stored (imgque stores `pos_layrnorm` instead: same size).
pub fn clip_params(c: &ClipShape) -> u64 {
    let h = c.hidden;
    let embeddings = h * c.channels * c.patch_size * c.patch_size + h + c.tokens() * h;
    let layer = 4 * (h * h + h)
        + (h * c.intermediate + c.intermediate)
        + (c.intermediate * h + h)
        + 2 * 2 * h;
    embeddings + 2 * h + c.layers * layer + if c.post_layernorm { 2 * h } else { 0 }
}

/// LLaMA-family decoder: embeddings, layers, final norm, LM head unless tied / absent.
pub fn llm_params(l: &LlmShape) -> u64 {
    let h = l.hidden;
    let q = l.heads * l.head_dim;
    let kv = l.kv_heads * l.head_dim;
    let attn = h * q
        + 2 * h * kv
        + q * h
        + if l.qkv_bias { q + 2 * kv } else { 0 }
        + if l.o_bias { h } else { 0 };
    let mlp = 3 * h * l.intermediate + if l.mlp_bias { 2 * l.intermediate + h } else { 0 };
    let layer = attn + mlp + 2 * h;
    let head = if l.has_head && !l.tied { l.vocab * h } else { 0 };
    l.vocab * h + l.layers * layer + h + head
}

/// LLaVA's linear–GELU–linear projector.
pub fn llava_projector_params(s: &LlavaShape) -> u64 {
    let (v, t) = (s.vision.hidden, s.llm.hidden);
    v * t + t * t + if s.projector_bias { 2 * t } else { 0 }
}

/// imgque's `vision_embed_merge` (3×3, no bias) + `token_LF`.
pub fn hd_merge_params(s: &ImgQueShape) -> u64 {
    let h = s.vision.hidden;
    h * h * 9 + h
}

// ---------------------------------------------------------------------------------------------
// MACs
// ---------------------------------------------------------------------------------------------

/// One crop through the CLIP tower: the patch convolution and `layers` encoder layers over
/// CLS + patches (q/k/v/out projections, QKᵀ, AV, fc1, fc2).
pub fn clip_macs_per_crop(c: &ClipShape, layers: u64) -> u64 {
    let (h, t) = (c.hidden, c.tokens());
    let patch = c.patches() * h * c.channels * c.patch_size * c.patch_size;
    let layer = 4 * t * h * h + 2 * t * t * h + 2 * t * h * c.intermediate;
    patch + layers * layer
}

/// imgque's merge conv on one crop: every output of the 3×3/s2/pad-1 grid counts 9·h·h.
pub fn hd_merge_macs_per_crop(s: &ImgQueShape) -> u64 {
    let m = s.merged_grid();
    let h = s.vision.hidden;
    m * m * h * h * 9
}

/// Tokens entering / attended by layer i of one forward call: `(t, s)`.
pub type LayerSpan = (u64, u64);

/// One forward call of a LLaMA-family decoder: layer i runs `t_i` tokens against `s_i` keys;
/// `head_rows` logits rows.
pub fn llm_pass_macs(l: &LlmShape, spans: &[LayerSpan], head_rows: u64) -> u64 {
    let h = l.hidden;
    let q = l.heads * l.head_dim;
    let kv = l.kv_heads * l.head_dim;
    let layers: u64 = spans
        .iter()
        .map(|&(t, s)| {
            t * h * (q + 2 * kv)
                + t * q * h
                + 2 * l.heads * t * s * l.head_dim
                + 3 * t * h * l.intermediate
        })
        .sum();
    let head = if l.has_head { head_rows * h * l.vocab } else { 0 };
    layers + head
}

/// Estimated peak elements alive inside one layer of a forward call (times the dtype's bytes):
/// attention stage = residual + normed input + q + k,v over all s keys for every query head
/// (the repeated cache) + scores + probabilities; MLP stage = residual + normed + gate, up and
/// their product; head = logits rows + final hidden states.
pub fn llm_pass_peak(l: &LlmShape, spans: &[LayerSpan], head_rows: u64) -> u64 {
    let h = l.hidden;
    let q = l.heads * l.head_dim;
    let per_layer = spans
        .iter()
        .map(|&(t, s)| {
            let attn = 2 * t * h + t * q + 2 * s * q + 2 * l.heads * t * s;
            let mlp = 2 * t * h + 3 * t * l.intermediate;
            attn.max(mlp)
        })
        .max()
        .unwrap_or(0);
    let head =
        if l.has_head { head_rows * l.vocab + spans.last().map_or(0, |s| s.0) * h } else { 0 };
    per_layer.max(head)
}

/// Estimated peak elements of the CLIP tower on `crops` crops run as one batch.
pub fn clip_peak(c: &ClipShape, crops: u64) -> u64 {
    let (h, t) = (c.hidden, c.tokens());
    let pixels = c.channels * c.image_size * c.image_size + c.patches() * h;
    let attn = 2 * t * h + 3 * t * h + 2 * c.heads * t * t;
    let mlp = 2 * t * h + 2 * t * c.intermediate;
    crops * pixels.max(attn).max(mlp)
}

fn kv_per_position(l: &LlmShape, bytes: u64) -> u64 {
    2 * l.kv_heads * l.head_dim * bytes
}

/// The LLM's prefill and decode rows for a prompt whose layers cache `layer_lens[i]` positions
/// after the prefill (all equal unless FastV pruned: then layers before K hold the unpruned
/// prompt, the others the survivors).
fn llm_rows(n: u64, l: &LlmShape, layer_lens: &[u64], w: &Workload, params: u64) -> Vec<Row> {
    let bytes = w.dtype.bytes();
    let prefill: Vec<LayerSpan> = layer_lens.iter().map(|&p| (p, p)).collect();
    let prefill_macs = llm_pass_macs(l, &prefill, 1);
    let prefill_kv: u64 = layer_lens.iter().map(|&p| p * kv_per_position(l, bytes)).sum();
    let mut decode_macs = 0;
    let mut decode_peak = 0;
    for i in 1..=w.new_tokens {
        let spans: Vec<LayerSpan> = layer_lens.iter().map(|&p| (1, p + i)).collect();
        decode_macs += llm_pass_macs(l, &spans, 1);
        decode_peak = decode_peak.max(llm_pass_peak(l, &spans, 1));
    }
    let decode_kv = w.new_tokens * l.layers * kv_per_position(l, bytes);
    vec![
        Row::new(
            n,
            "llm_prefill",
            params,
            prefill_macs,
            prefill_kv,
            llm_pass_peak(l, &prefill, 1) * bytes,
        ),
        Row::new(n, "llm_decode", params, decode_macs, decode_kv, decode_peak * bytes),
    ]
}

fn check_context(l: &LlmShape, n: u64, prompt: u64, w: &Workload, what: &str) -> Result<()> {
    if prompt + w.new_tokens > l.max_positions {
        bail!(
            "n = {n}: the {what} needs {prompt} prompt + {} new tokens = {} positions but its context is {} (max_position_embeddings)",
            w.new_tokens,
            prompt + w.new_tokens,
            l.max_positions
        );
    }
    Ok(())
}

fn total(n: u64, rows: &[Row]) -> Row {
    let params = rows.iter().filter(|r| r.component != "llm_decode").map(|r| r.params).sum();
    let macs = rows.iter().map(|r| r.macs).sum();
    let kv = rows.iter().map(|r| r.kv_cache_bytes).sum();
    let peak = rows.iter().map(|r| r.peak_activation_bytes).max().unwrap_or(0);
    Row::new(n, "total", params, macs, kv, peak)
}

/// The rows of one n: every component, then `total`.
pub fn cost(arch: &Arch, n: u64, w: &Workload) -> Result<Vec<Row>> {
    if n == 0 {
        bail!("n = 0: at least one vision token is needed");
    }
    let bytes = w.dtype.bytes();
    if w.reducer.is_some() && !matches!(arch, Arch::Llava(_)) {
        bail!("a reducer applies to LLaVA configs only (this config is {})", arch.name());
    }
    let mut rows = Vec::new();
    match arch {
        Arch::Llava(s) => llava_rows(s, n, w, &mut rows)?,
        Arch::ImgQue(s) => imgque_rows(s, n, w, &mut rows)?,
        Arch::Llm(l) => {
            let p = w.text_tokens + n;
            check_context(l, n, p, w, "LLM")?;
            rows.extend(llm_rows(n, l, &vec![p; l.layers as usize], w, llm_params(l)));
        }
        Arch::Clip(c) => {
            let k = w.crops.unwrap_or(1);
            rows.push(Row::new(
                n,
                "vision_tower",
                clip_params(c),
                k * clip_macs_per_crop(c, c.layers),
                0,
                clip_peak(c, k) * bytes,
            ));
        }
    }
    rows.push(total(n, &rows));
    Ok(rows)
}

/// LLaVA's component rows of one n (vision tower, projector, LLM prefill and decode).
fn llava_rows(s: &LlavaShape, n: u64, w: &Workload, rows: &mut Vec<Row>) -> Result<()> {
    let bytes = w.dtype.bytes();
    let crops = w.crops.unwrap_or(1);
    if crops != 1 {
        bail!("crops = {crops}: LLaVA-1.5 encodes one view per image");
    }
    let avail = s.image_tokens();
    if n > avail {
        bail!("n = {n}: LLaVA gives at most {avail} vision tokens per image (1 ≤ n ≤ {avail})");
    }
    rows.push(Row::new(
        n,
        "vision_tower",
        clip_params(&s.vision),
        clip_macs_per_crop(&s.vision, s.vision_layers_used),
        0,
        clip_peak(&s.vision, 1) * bytes,
    ));
    let (vh, th) = (s.vision.hidden, s.llm.hidden);
    let (projected, layer_lens, full) = match w.reducer {
        Some(Reducer::FastV { layer }) => {
            let layer = layer as u64;
            if layer > s.llm.layers {
                bail!(
                    "reducer fastv:{layer}: K must be within 1..={} (the LLM's layers)",
                    s.llm.layers
                );
            }
            let full = w.text_tokens + avail;
            let kept = w.text_tokens + n;
            let lens =
                (0..s.llm.layers).map(|i| if i < layer { full } else { kept }).collect::<Vec<_>>();
            (avail, lens, full)
        }
        _ => {
            let p = w.text_tokens + n;
            (n, vec![p; s.llm.layers as usize], p)
        }
    };
    rows.push(Row::new(
        n,
        "projector",
        llava_projector_params(s),
        projected * (vh * th + th * th),
        0,
        projected * (vh + 2 * th) * bytes,
    ));
    check_context(&s.llm, n, full, w, "LLM")?;
    rows.extend(llm_rows(n, &s.llm, &layer_lens, w, llm_params(&s.llm)));
    Ok(())
}

/// The query-fused model's component rows of one n (vision tower over k crops, HD merge,
/// query decoder, projector, LLM prefill and decode).
fn imgque_rows(s: &ImgQueShape, n: u64, w: &Workload, rows: &mut Vec<Row>) -> Result<()> {
    let bytes = w.dtype.bytes();
    let k = w.crops.unwrap_or_else(|| s.default_crops());
    if k == 0 {
        bail!("crops = 0: the query-fused model needs at least the global view");
    }
    if s.append_special_padding && n - 1 > s.decoder.vocab.saturating_sub(s.clip_vocab) {
        bail!(
            "n = {n}: the query decoder has {} placeholder embeddings (imgque_vocab_size {} − CLIP vocab {}), so n ≤ {}",
            s.decoder.vocab.saturating_sub(s.clip_vocab),
            s.decoder.vocab,
            s.clip_vocab,
            s.decoder.vocab.saturating_sub(s.clip_vocab) + 1
        );
    }
    let v = &s.vision;
    rows.push(Row::new(
        n,
        "vision_tower",
        clip_params(v),
        k * clip_macs_per_crop(v, v.layers),
        0,
        clip_peak(v, k) * bytes,
    ));
    let g = v.grid();
    let m = s.merged_grid();
    rows.push(Row::new(
        n,
        "hd_merge",
        hd_merge_params(s),
        k * hd_merge_macs_per_crop(s),
        0,
        k * v.hidden * (g * g + 2 * m * m) * bytes,
    ));
    let len = k * s.tokens_per_crop() + w.query_text_tokens + n;
    // No context check here: 17 crops alone give 2465 > 2048 (the decoder's default
    // max_position_embeddings); HF's Llama computes RoPE on the fly and has no hard limit.
    let spans = vec![(len, len); s.decoder.layers as usize];
    rows.push(Row::new(
        n,
        "query_decoder",
        llm_params(&s.decoder),
        llm_pass_macs(&s.decoder, &spans, 0),
        0,
        llm_pass_peak(&s.decoder, &spans, 0) * bytes,
    ));
    let (vh, th) = (v.hidden, s.llm.hidden);
    rows.push(Row::new(n, "projector", vh * th, n * vh * th, 0, n * (vh + th) * bytes));
    let p = w.text_tokens + n;
    check_context(&s.llm, n, p, w, "LLM")?;
    rows.extend(llm_rows(n, &s.llm, &vec![p; s.llm.layers as usize], w, llm_params(&s.llm)));
    Ok(())
}

/// Rows for every n of `ns`, in order.
pub fn table(arch: &Arch, ns: &[u64], w: &Workload) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for &n in ns {
        out.extend(cost(arch, n, w)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// The rows as a pretty-printed JSON array (one object per row), newline-terminated.
pub fn to_json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialise") + "\n"
}

/// The rows as CSV with a header line, in `Row`'s field order.
pub fn to_csv(rows: &[Row]) -> String {
    let mut s =
        String::from("n,component,params,macs,flops,kv_cache_bytes,peak_activation_bytes\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.n, r.component, r.params, r.macs, r.flops, r.kv_cache_bytes, r.peak_activation_bytes
        ));
    }
    s
}

/// 1234567 → "1.23 M" (SI prefixes, three significant digits).
pub fn human(x: u64) -> String {
    const UNITS: [&str; 6] = ["", " k", " M", " G", " T", " P"];
    let mut v = x as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{x}")
    } else {
        format!("{v:.3}{}", UNITS[i])
    }
}

/// 1048576 → "1.00 MiB".
pub fn human_bytes(x: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = x as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{x} B")
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

/// The rows as a Markdown table with human-readable numbers; the byte columns' headers name
/// `dtype`, and `total` rows are bold.
pub fn to_markdown(rows: &[Row], dtype: Dtype) -> String {
    let mut s = format!(
        "| n | component | params | MACs | FLOPs | KV cache ({0}) | peak activations ({0}) |\n|---:|---|---:|---:|---:|---:|---:|\n",
        dtype.name()
    );
    for r in rows {
        let name =
            if r.component == "total" { "**total**".to_string() } else { r.component.clone() };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.n,
            name,
            human(r.params),
            human(r.macs),
            human(r.flops),
            human_bytes(r.kv_cache_bytes),
            human_bytes(r.peak_activation_bytes)
        ));
    }
    s
}

/// Parses `1,64,576` (spaces allowed).
pub fn parse_list(s: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u64>() {
            Ok(v) => out.push(v),
            Err(_) => bail!("vision-token list: `{part}` is not a non-negative integer (expected a list like 1,64,576)"),
        }
    }
    if out.is_empty() {
        bail!("vision-token list: empty (expected e.g. 1,64,576)");
    }
    Ok(out)
}

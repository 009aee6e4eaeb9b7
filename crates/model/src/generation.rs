//! Token selection (greedy, temperature + top-p with a seed) and the decode loop with KV cache.

use anyhow::Result;
use candle_core::{DType, Tensor};
use tokenscale_base::rng::SplitMix64;

use crate::forward::Forward;
use crate::llama::{ForwardOptions, KvCache, Llama};
use crate::reducers::SpanPrune;

/// Decoding settings: length limit, sampling (temperature, top-p, seed) and stop tokens.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Most tokens to generate after the prompt (the stop token counts).
    pub max_new_tokens: usize,
    /// 0 (or less) means greedy.
    pub temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities sum to `top_p`
    /// (1.0 keeps all); unused when greedy.
    pub top_p: f64,
    /// Seed of the sampler's random stream; the same seed gives the same tokens.
    pub seed: u64,
    /// Generation ends after emitting one of these (the stop token is returned too).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_new_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 0, stop_tokens: Vec::new() }
    }
}

/// Picks next tokens from logits: greedy or temperature + top-p sampling with a seeded RNG.
pub struct Sampler {
    /// Our own generator: its stream is fixed by this repository, not by a dependency's version.
    rng: SplitMix64,
    temperature: f64,
    top_p: f64,
}

impl Sampler {
    /// A sampler with `config`'s temperature, top-p and seed.
    pub fn new(config: &GenerationConfig) -> Self {
        Self {
            rng: SplitMix64::new(config.seed),
            temperature: config.temperature,
            top_p: config.top_p,
        }
    }

    /// Picks the next token from a `[V]` logits row. Ties in greedy mode go to the lowest id, as
    /// torch.argmax does.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits: Vec<f32> = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if self.temperature <= 0.0 {
            return Ok(argmax_first(&logits));
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l as f64 - max) / self.temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Keep the smallest prefix whose mass reaches top_p (always at least one token).
        let mut kept = 0;
        let mut mass = 0.0;
        for p in &probs {
            kept += 1;
            mass += p.1;
            if mass >= self.top_p {
                break;
            }
        }
        let draw = self.rng.next_f64() * mass;
        let mut acc = 0.0;
        for p in &probs[..kept] {
            acc += p.1;
            if draw < acc {
                return Ok(p.0);
            }
        }
        Ok(probs[kept - 1].0)
    }
}

fn argmax_first(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Generates after `prompt_embeds` (`[1, T, H]`), calling `on_token` with each new token as it
/// is chosen (for streaming). Returns the new tokens.
pub fn generate(
    ctx: &Forward,
    llm: &Llama,
    prompt_embeds: &Tensor,
    config: &GenerationConfig,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    // One allocation for the whole answer: the prompt plus every new token.
    let mut cache: KvCache = llm.new_cache_for(prompt_embeds.dim(1)? + config.max_new_tokens);
    if config.max_new_tokens == 0 {
        return Ok(Vec::new());
    }
    let logits = llm.forward_embeds(ctx, prompt_embeds, &mut cache, ForwardOptions::LAST)?.logits;
    continue_generation(ctx, llm, &mut cache, logits, config, on_token)
}

/// [`generate`] whose prefill prunes a span of the prompt as FastV does (see
/// [`SpanPrune`]); `prune: None` is exactly [`generate`].
pub fn generate_pruned(
    ctx: &Forward,
    llm: &Llama,
    prompt_embeds: &Tensor,
    prune: Option<&SpanPrune>,
    config: &GenerationConfig,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    let Some(prune) = prune else { return generate(ctx, llm, prompt_embeds, config, on_token) };
    if config.max_new_tokens == 0 {
        return Ok(Vec::new());
    }
    let mut cache = llm.new_cache_for(prompt_embeds.dim(1)? + config.max_new_tokens);
    let logits = llm
        .forward_embeds_pruned(ctx, prompt_embeds, &mut cache, ForwardOptions::LAST, prune)?
        .output
        .logits;
    continue_generation(ctx, llm, &mut cache, logits, config, on_token)
}

/// The decode loop after a prefill done elsewhere (e.g. FastV's pruned prefill): `logits` are
/// the prefill's last-position logits and `cache` what it left. Same sampling and stopping as
/// [`generate`].
pub fn continue_generation(
    ctx: &Forward,
    llm: &Llama,
    cache: &mut KvCache,
    mut logits: Tensor,
    config: &GenerationConfig,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    let mut sampler = Sampler::new(config);
    let mut tokens = Vec::new();
    if config.max_new_tokens == 0 {
        return Ok(tokens);
    }
    loop {
        let next = sampler.sample(&logits.flatten_all()?)?;
        tokens.push(next);
        on_token(next)?;
        if config.stop_tokens.contains(&next) || tokens.len() >= config.max_new_tokens {
            break;
        }
        let ids = Tensor::new(&[[next]], llm.device())?;
        logits = llm.forward_ids(ctx, &ids, cache, ForwardOptions::LAST)?.logits;
    }
    Ok(tokens)
}

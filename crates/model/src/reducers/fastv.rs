//! `fastv`: FastV (Chen et al., 2024), in-place with a KV cache: a [`DecoderHook`] that, after
//! LLM layer K − 1, keeps the image tokens the last prompt token attends to most (see the
//! module docs of [`crate::reducers`]).

use anyhow::{bail, Context, Result};
use candle_core::Tensor;

use super::{top_k_sorted, ImageSpan, ImageTokens, Stage, TokenReducer};
use crate::forward::Forward;
use crate::llama::{DecoderHook, DecoderState, ForwardOptions, KvCache, Llama, LlamaOutput};

/// The `fastv:K` plug-in.
pub struct FastV {
    /// K ≥ 1.
    pub layer: usize,
}

impl TokenReducer for FastV {
    fn stage(&self) -> Stage {
        Stage::InLlm
    }

    fn reduce(&self, _tokens: &ImageTokens, _n: usize) -> Result<Tensor> {
        bail!("fastv reduces inside the LLM, not before the projector")
    }

    fn prune(&self, span: ImageSpan, keep: usize, llm_layers: usize) -> Result<SpanPrune> {
        if self.layer > llm_layers {
            bail!(
                "reducer fastv:{}: K must be within 1..={llm_layers} (the LLM's layers)",
                self.layer
            );
        }
        if span.start + span.len >= span.prompt_len {
            bail!("fastv needs at least one prompt token after the image");
        }
        Ok(SpanPrune { layer: self.layer, start: span.start, len: span.len, keep })
    }
}

/// FastV-style pruning of one contiguous span of a forward call's input (e.g. the image tokens).
/// Layers `< layer` see every token; before layer `layer` the `keep` span tokens that the last
/// input token attends to most at layer `layer − 1` (probabilities averaged over heads) are kept,
/// with every token outside the span, and the others are dropped from the hidden states and
/// from the KV caches of layers ≥ `layer`. Survivors keep their original position ids, so a
/// plain decode step (`forward_embeds` with the returned cache) continues at the next position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanPrune {
    /// K ≥ 1.
    pub layer: usize,
    /// Span offset within the `embeds` of the call.
    pub start: usize,
    /// Number of image tokens in the span.
    pub len: usize,
    /// 1 ≤ keep ≤ len.
    pub keep: usize,
}

/// What a pruned forward pass returns.
pub struct PrunedOutput {
    /// Logits of the surviving positions (all of them, or only the last one).
    pub output: LlamaOutput,
    /// Offsets (within the call's input) of the tokens that reach the layers ≥ K, ascending.
    pub kept: Vec<usize>,
    /// Offsets within the span of the kept span tokens, ascending.
    pub kept_in_span: Vec<usize>,
    /// Attention of the last input token over the span at layer K − 1, averaged over heads.
    pub span_scores: Vec<f32>,
}

/// The decoder hook that carries out a [`SpanPrune`] and keeps what it selected.
struct SpanPruneHook<'p> {
    prune: &'p SpanPrune,
    /// Input positions of the call.
    t: usize,
    scores_row: Option<Tensor>,
    selection: Option<(Vec<f32>, Vec<usize>, Vec<usize>)>,
}

impl DecoderHook for SpanPruneHook<'_> {
    fn begin(&mut self, layers: usize, batch: usize, t: usize) -> Result<()> {
        let p = self.prune;
        if batch != 1 {
            bail!("pruned forward needs batch size 1, got {batch}");
        }
        if p.layer == 0 || p.layer > layers {
            bail!(
                "FastV layer K = {} is out of range: 1 ≤ K ≤ {layers} (the decoder's layers)",
                p.layer
            );
        }
        if p.len == 0 || p.start + p.len >= t {
            bail!("the pruned span [{}, {}) must be non-empty and followed by at least one token (input has {t})", p.start, p.start + p.len);
        }
        if p.keep == 0 || p.keep > p.len {
            bail!("FastV keeps {} tokens but 1 ≤ R ≤ {} (the span length)", p.keep, p.len);
        }
        self.t = t;
        Ok(())
    }

    fn wants_last_row(&self, layer: usize) -> bool {
        layer + 1 == self.prune.layer
    }

    fn after_attention(&mut self, _layer: usize, last_row: Option<Tensor>) -> Result<()> {
        self.scores_row = last_row;
        Ok(())
    }

    fn before_layer(&mut self, layer: usize, state: &mut DecoderState) -> Result<()> {
        // K = L: the selection happens after the last layer; only the logits' positions change.
        if layer != self.prune.layer {
            return Ok(());
        }
        let (scores, in_span, kept) = select_span(self.scores_row.take(), self.t, self.prune)?;
        state.keep_positions(&kept)?;
        self.selection = Some((scores, in_span, kept));
        Ok(())
    }
}

impl Llama {
    /// [`Llama::forward_embeds`] with FastV-style pruning of a span of `embeds` (see
    /// [`SpanPrune`]). The cache it leaves has fewer positions in layers ≥ K; continue decoding
    /// with `forward_embeds`/`forward_ids` as usual. Batch size must be 1.
    pub fn forward_embeds_pruned(
        &self,
        ctx: &Forward,
        embeds: &Tensor,
        cache: &mut KvCache,
        options: ForwardOptions,
        prune: &SpanPrune,
    ) -> Result<PrunedOutput> {
        let mut hook = SpanPruneHook { prune, t: 0, scores_row: None, selection: None };
        let output = self.forward_embeds_with(ctx, embeds, cache, options, &mut hook)?;
        let (span_scores, kept_in_span, kept) =
            hook.selection.context("FastV: the decoder never reached layer K")?;
        Ok(PrunedOutput { output, kept, kept_in_span, span_scores })
    }
}

/// FastV's selection from the last query's head-averaged attention row `[1, past + t]`:
/// (span scores, kept offsets within the span, kept offsets within the input).
fn select_span(
    row: Option<Tensor>,
    t: usize,
    p: &SpanPrune,
) -> Result<(Vec<f32>, Vec<usize>, Vec<usize>)> {
    let row = row.context("FastV: no attention row from layer K − 1")?;
    let past = row.dim(1)? - t;
    let row: Vec<f32> = row.squeeze(0)?.to_vec1()?;
    let scores = row[past + p.start..past + p.start + p.len].to_vec();
    let in_span = top_k_sorted(&scores, p.keep);
    let kept = (0..p.start)
        .chain(in_span.iter().map(|&j| p.start + j))
        .chain(p.start + p.len..t)
        .collect();
    Ok((scores, in_span, kept))
}

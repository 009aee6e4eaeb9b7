//! What a training example's loss is: the answer tokens' cross-entropy plus the weighted
//! auxiliary losses of `registry::AUX_LOSSES`, from one forward pass of the model.
//!
//! The auxiliary losses are grouped by what they read: `vision` (the vision tokens and the query
//! decoder's slot states), `llm` (the LLM's hidden states) and `attention` (the LLM's attention
//! probabilities); `heads` holds their linear heads.

mod attention;
pub(crate) mod heads;
mod llm;
pub(crate) mod registry;
mod vision;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use tokenscale_model::chat::token_type::{ANS, EOS};
use tokenscale_model::chat::Conversation;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::nn;

use crate::config::TrainConfig;
use crate::data::Example;
use heads::HeadParams;
use registry::{AuxTerms, Reads, AUX_LOSSES, AUX_TERMS};

/// A QED slot a lookup loss points at.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// The slot of this grid cell (row-major).
    Cell(usize),
    /// The last slot: the decoder's end-of-query state, which holds the whole-image summary.
    Last,
}

/// What an example gives the auxiliary losses to aim at, known before the forward pass.
pub(crate) struct Targets<'e> {
    /// The example.
    pub example: &'e Example,
    /// Its vision-token budget (QED slots the LLM sees).
    pub n: usize,
    /// The slot the answer is read from by a lookup the query and attend losses supervise: the
    /// asked cell, with the anchor loss on also a relation's neighbour, and with
    /// `summary_lookup` the last slot for whole-image questions.
    pub lookup: Option<Slot>,
}

impl<'e> Targets<'e> {
    fn of(config: &TrainConfig, example: &'e Example, n: usize) -> Self {
        let lookup = match (example.asked_cell, example.anchor_cell) {
            (Some(cell), _) => Some(Slot::Cell(cell)),
            (None, Some(_)) if config.aux_anchor_weight > 0.0 => example.answer_cell.map(Slot::Cell),
            _ if example.asks_summary && config.summary_lookup => Some(Slot::Last),
            _ => None,
        };
        Self { example, n, lookup }
    }
}

/// Everything an auxiliary loss may read of one example's forward pass.
pub(crate) struct AuxInputs<'a> {
    /// The run's settings (layers, `routed_from_slot`).
    pub config: &'a TrainConfig,
    /// The example and what it asks for.
    pub targets: &'a Targets<'a>,
    /// The heads being trained.
    pub heads: HeadParams<'a>,
    /// The model (the early-answer loss reads through its LM head).
    pub pipeline: &'a ImgQuePipeline,
    /// The vision tokens of every crop, `[crops, tokens + 1, vision_hidden]`; crop 0 is the global view.
    pub crops: &'a Tensor,
    /// The query decoder's states that fill the QED slots, `[n, vision_hidden]`.
    pub query_states: &'a Tensor,
    /// The LLM's hidden states (index 0: its input); empty unless a `LlmStates` loss applies.
    pub hidden_states: &'a [Tensor],
    /// The LLM's attention probabilities per layer, `[1, heads, T, T]`; empty unless an
    /// `LlmAttention` loss applies.
    pub attention: &'a [Tensor],
    /// The LLM input's token ids (QED slots included).
    pub ids: &'a [u32],
    /// The LLM input's token-type bits.
    pub tps: &'a [u32],
    /// The position that predicts the answer's first token.
    pub answer_position: usize,
    /// The parameter prefix of the head of the loss being computed (see `registry::Head`).
    pub head: Option<&'static str>,
}

impl AuxInputs<'_> {
    /// The prefix of the current loss's own head.
    fn head(&self) -> Result<&'static str> {
        self.head.context("an auxiliary loss without a head of its own asked for one")
    }
}

/// The sequence positions of the LLM input's QED slots, in order.
fn slot_positions(tps: &[u32]) -> Vec<usize> {
    tps.iter().enumerate().filter(|(_, &t)| t & tokenscale_model::imgque::TPS_QED != 0).map(|(i, _)| i).collect()
}

/// The positions trained on and the tokens they predict: position i predicts token i + 1, and
/// training covers the answer and the end-of-answer token.
fn answer_targets(ids: &[u32], tps: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut answer_ids = Vec::new();
    for i in 0..ids.len().saturating_sub(1) {
        let next = tps[i + 1];
        if next & ANS != 0 || (next & EOS != 0 && i > 0 && tps[i] & ANS != 0) {
            rows.push(i as u32);
            answer_ids.push(ids[i + 1]);
        }
    }
    (rows, answer_ids)
}

/// One example's loss and its parts.
pub(crate) struct ExampleLoss {
    /// What to minimise: the answer tokens' cross-entropies summed, plus the weighted auxiliary losses.
    pub loss: Tensor,
    /// Answer tokens trained on (the answer and its end-of-answer token).
    pub answer_tokens: usize,
    /// The summed answer cross-entropy's value.
    pub answer: f64,
    /// Each weighted auxiliary loss's value (0 where it is off or did not apply).
    pub aux: AuxTerms,
}

/// The loss of `example` at budget `n` under the model `pipeline` with auxiliary heads `params`.
pub(crate) fn example_loss(
    pipeline: &ImgQuePipeline,
    params: &HashMap<String, Var>,
    config: &TrainConfig,
    example: &Example,
    n: usize,
) -> Result<ExampleLoss> {
    let p = pipeline;
    let crops = p.encode_image(&example.image)?;
    let conv = Conversation::new().user(example.prompt.clone()).assistant(example.answer.clone());
    let inputs = p.embeddings(&crops, &conv, n, n)?;
    let llm = &p.model.llm;
    let targets = Targets::of(config, example, n);
    let applies = |loss: &registry::AuxLoss| loss.is_on(config) && (loss.applies)(&targets);
    let wanted = |reads: Reads| AUX_LOSSES.iter().any(|l| l.reads == reads && applies(l));
    let (want_query, want_attention) = (wanted(Reads::LlmStates), wanted(Reads::LlmAttention));
    if want_attention {
        nn::capture_attention();
    }
    let out = llm.forward_embeds(&inputs.embeds, &mut llm.new_cache(), true, want_query);
    let attention = nn::take_attention();
    let out = out?;
    let (ids, tps) = (&inputs.record.llm.input_ids, &inputs.record.llm.input_tps);
    let (rows, answer_ids) = answer_targets(ids, tps);
    if rows.is_empty() {
        bail!("example with prompt {:?}: the answer {:?} gives no target tokens", example.prompt, example.answer);
    }
    let logits = out.logits.squeeze(0)?.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
    let answer_ids = Tensor::new(answer_ids.as_slice(), &Device::Cpu)?;
    let answer_tokens = answer_ids.dim(0)?;
    let mut loss = (candle_nn::loss::cross_entropy(&logits, &answer_ids)? * answer_tokens as f64)?;
    let answer = loss.to_scalar::<f32>()? as f64;
    let mut aux_inputs = AuxInputs {
        config,
        targets: &targets,
        heads: HeadParams(params),
        pipeline: p,
        crops: &crops,
        query_states: &inputs.query_states,
        hidden_states: &out.hidden_states,
        attention: &attention,
        ids,
        tps,
        answer_position: rows[0] as usize,
        head: None,
    };
    let mut aux = [0.0; AUX_TERMS];
    for (value, term) in aux.iter_mut().zip(&AUX_LOSSES) {
        if !applies(term) {
            continue;
        }
        aux_inputs.head = term.head.map(|h| h.prefix);
        if let Some(extra) = (term.loss)(&aux_inputs)? {
            let extra = (extra * (term.weight)(config))?;
            *value = extra.to_scalar::<f32>()? as f64;
            loss = (loss + extra)?;
        }
    }
    Ok(ExampleLoss { loss, answer_tokens, answer, aux })
}

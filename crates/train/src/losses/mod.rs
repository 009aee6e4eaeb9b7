//! What a training example's loss is: the answer tokens' cross-entropy plus the weighted
//! auxiliary losses of `registry::AUX_LOSSES`, from one forward pass of the model.
//!
//! `inputs` holds what the auxiliary losses read; they are grouped by what that is: `vision` (the vision tokens and the query
//! decoder's slot states), `llm` (the LLM's hidden states) and `attention` (the LLM's attention
//! probabilities); `heads` holds their linear heads.

mod attention;
pub(crate) mod heads;
mod inputs;
mod llm;
pub(crate) mod registry;
mod vision;

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use tokenscale_model::chat::token_type::{ANS, EOS};
use tokenscale_model::chat::Conversation;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::{AttentionCapture, Forward, ForwardOptions};

use crate::config::TrainConfig;
use crate::data::Example;
use heads::HeadParams;
use inputs::{AuxInputs, Targets};
use registry::{AuxTerms, Reads, AUX_LOSSES, AUX_TERMS};

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
    let crops = p.encode_image(&Forward::TRAINING, &example.image)?;
    let conv = Conversation::new().user(example.prompt.clone()).assistant(example.answer.clone());
    let inputs = p.embeddings(&Forward::TRAINING, &crops, &conv, n, n)?;
    let llm = &p.model.llm;
    let targets = Targets::of(config, example, n);
    let applies = |loss: &registry::AuxLoss| loss.is_on(config) && (loss.applies)(&targets);
    let wanted = |reads: Reads| AUX_LOSSES.iter().any(|l| l.reads == reads && applies(l));
    let (want_query, want_attention) = (wanted(Reads::LlmStates), wanted(Reads::LlmAttention));
    let capture = AttentionCapture::new();
    let ctx =
        if want_attention { Forward::TRAINING.capturing(&capture) } else { Forward::TRAINING };
    let options =
        if want_query { ForwardOptions::ALL.with_hidden_states() } else { ForwardOptions::ALL };
    let out = llm.forward_embeds(&ctx, &inputs.embeds, &mut llm.new_cache(), options);
    let attention = capture.take();
    let out = out?;
    let (ids, tps) = (&inputs.record.llm.input_ids, &inputs.record.llm.input_tps);
    let (rows, answer_ids) = answer_targets(ids, tps);
    if rows.is_empty() {
        bail!(
            "example with prompt {:?}: the answer {:?} gives no target tokens",
            example.prompt,
            example.answer
        );
    }
    let logits =
        out.logits.squeeze(0)?.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
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

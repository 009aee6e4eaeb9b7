//! The probe on image pairs (what `tokenscale probe` measures for `{image_a, image_b, question}`
//! pairs): last-layer hidden states of the LLM at the vision-token positions of both images,
//! streamed into D(n) and the ψ terms, then the bound and its n_balance(n) curve.

use anyhow::{Context, Result};
use image::RgbImage;
use serde::Serialize;
use tokenscale_law::bound::BoundReport;
use tokenscale_law::probe::{ProbeAccumulator, ProbeStats};
use tokenscale_model::chat::{token_type, Conversation};
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::{DType, Tensor};
use tokenscale_model::{Forward, ForwardOptions};

use crate::benchmark::ImagePair;

/// What the probe on image pairs measured, and the bound fitted to it (if any).
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOutcome {
    /// Vision tokens per image (n_l): the probe's n runs over 1..=this.
    pub vision_tokens: usize,
    /// Per-n statistics of the hidden-state differences D(n) and the ψ terms.
    pub stats: ProbeStats,
    /// The bound and its n_balance curve; `None` when it could not be computed.
    pub bound: Option<BoundReport>,
    /// Why there is no bound (e.g. no n ≥ 2 reached).
    pub bound_error: Option<String>,
}

impl ProbeOutcome {
    /// The probe's n_balance: n_balance(n) at the largest n, where ψ averages over the most
    /// positions (None where ψ_AA ≤ ψ_AB there).
    pub fn n_balance(&self) -> Option<f64> {
        self.bound.as_ref()?.rows.last()?.n_balance
    }
}

/// Hidden states `[n, H]` (flattened) of the LLM's last layer at the vision-token positions of
/// `image` asked `question` with `n` vision tokens.
fn vision_states(
    p: &ImgQuePipeline,
    image: &RgbImage,
    question: &str,
    n: usize,
) -> Result<Vec<f32>> {
    let crop_tokens = p.encode_image(&Forward::INFERENCE, image)?;
    let conversation = Conversation::new().user(question).for_generation();
    let inputs = p.embeddings(
        &Forward::INFERENCE,
        &crop_tokens,
        &conversation,
        n,
        p.trained_tokens().1.min(n),
    )?;
    let positions: Vec<u32> = inputs
        .record
        .llm
        .input_tps
        .iter()
        .enumerate()
        .filter(|(_, t)| **t & token_type::QED != 0)
        .map(|(i, _)| i as u32)
        .collect();
    let llm = &p.model.llm;
    let out = llm.forward_embeds(
        &Forward::INFERENCE,
        &inputs.embeds,
        &mut llm.new_cache(),
        ForwardOptions::LAST.with_hidden_states(),
    )?;
    let last = out.hidden_states.last().context("the LLM returned no hidden states")?;
    let index = Tensor::new(positions, last.device())?;
    Ok(last.squeeze(0)?.to_dtype(DType::F32)?.index_select(&index, 0)?.flatten_all()?.to_vec1()?)
}

/// Runs every pair at `n` vision tokens.
pub fn probe_pairs(
    p: &ImgQuePipeline,
    pairs: &[ImagePair],
    n: usize,
    progress: bool,
) -> Result<ProbeOutcome> {
    let mut acc = ProbeAccumulator::new(p.model.llm.hidden_size(), n);
    let bar = progress.then(|| {
        tokenscale_base::progress::Progress::new("probe", pairs.len() as u64, "image pairs")
    });
    for (i, pair) in pairs.iter().enumerate() {
        let a = vision_states(p, &pair.a, &pair.question, n)
            .with_context(|| format!("probe pair {i}, image A"))?;
        let b = vision_states(p, &pair.b, &pair.question, n)
            .with_context(|| format!("probe pair {i}, image B"))?;
        acc.add_pair(&a, &b).with_context(|| format!("probe pair {i}"))?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    let stats = acc.finish();
    let (bound, bound_error) = match stats.bound() {
        Ok(b) => (Some(b), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(ProbeOutcome { vision_tokens: n, stats, bound, bound_error })
}

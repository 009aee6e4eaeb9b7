//! The cost table (crates/cost) for the model's config at the swept n, with the workload measured
//! on the benchmark (views per image, prompt and query-row text tokens) and the measured time per
//! answer next to it.

use std::collections::BTreeMap;
use std::path::Path;
use tokenscale_model::Forward;

use anyhow::{Context, Result};
use serde::Serialize;
use tokenscale_cost::{read_config, table, Dtype, Row, Workload};
use tokenscale_eval::prompt::{build_prompt, PromptStyle};
use tokenscale_eval::Dataset;
use tokenscale_model::chat::{token_type, Conversation};
use tokenscale_model::imgque_pipeline::ImgQuePipeline;

/// The totals of one n, with the measured answer time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostSummary {
    /// Vision tokens per image.
    pub n: usize,
    /// Model parameters counted by the analytic cost model.
    pub params: u64,
    /// Analytic FLOPs of one answer at this n (the `total` row of the cost table).
    pub flops: u64,
    /// KV-cache size in bytes (f32, as the runtime computes).
    pub kv_cache_bytes: u64,
    /// Peak activation memory in bytes (f32).
    pub peak_activation_bytes: u64,
    /// Mean wall time of one answer at this n in the sweep (the query decoder, prefill and
    /// decoding; the n-independent vision tower runs once per image and is not included).
    pub seconds_per_answer: Option<f64>,
}

/// The per-image workload of the benchmark's first item: views K from the HD cut, LLM prompt
/// tokens besides the vision tokens, and question tokens in the query decoder's row.
pub fn benchmark_workload(p: &ImgQuePipeline, datasets: &[Dataset]) -> Result<Workload> {
    let (ds, item) = datasets
        .iter()
        .find_map(|d| d.items.first().map(|i| (d, i)))
        .context("the benchmark has no items")?;
    let image = item
        .decode_images()?
        .into_iter()
        .next()
        .context("the first benchmark item has no image")?
        .to_rgb8();
    let crops = p.encode_image(&Forward::INFERENCE, &image)?.dim(0)? as u64;
    let conversation = Conversation::new()
        .user(build_prompt(item, ds.kind, PromptStyle::Default))
        .for_generation();
    let record = p.parser(1, 1)?.parse(&p.tokenizer, &p.clip_tokenizer, &conversation, true)?;
    let is_qed = |t: &u32| *t & token_type::QED != 0;
    let text_tokens = record.llm.input_tps.iter().filter(|t| !is_qed(t)).count() as u64;
    let query_text_tokens = record.query.as_ref().map_or(0, |q| {
        q.input_tps.iter().filter(|t| **t & token_type::QUE != 0 && !is_qed(t)).count()
    }) as u64;
    // The runtime computes in f32, so caches and activations are counted in f32.
    Ok(Workload {
        text_tokens,
        crops: Some(crops),
        query_text_tokens,
        dtype: Dtype::F32,
        ..Default::default()
    })
}

/// Full rows per component and the per-n totals.
pub fn cost_table(
    model_dir: &Path,
    vision_tokens: &[usize],
    workload: &Workload,
    seconds: &BTreeMap<usize, f64>,
) -> Result<(Vec<Row>, Vec<CostSummary>)> {
    let arch = read_config(&model_dir.join("config.json"))?;
    let ns: Vec<u64> = vision_tokens.iter().map(|&n| n as u64).collect();
    let rows = table(&arch, &ns, workload)?;
    let totals = rows
        .iter()
        .filter(|r| r.component == "total")
        .map(|r| CostSummary {
            n: r.n as usize,
            params: r.params,
            flops: r.flops,
            kv_cache_bytes: r.kv_cache_bytes,
            peak_activation_bytes: r.peak_activation_bytes,
            seconds_per_answer: seconds.get(&(r.n as usize)).copied(),
        })
        .collect();
    Ok((rows, totals))
}

//! `tokenscale probe`: measure the theory's terms on a model. Each pair is two branches sharing a
//! prefix: text `{prompt, chosen, rejected}` (preference-data shape) or image
//! `{image_a, image_b, question}` for vision-language models. The hidden states of the branch
//! positions at one layer are streamed into D(n), ψ_eq, ψ_AA, ψ_BB, ψ_AB; then λ and n_balance.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use tokenscale_model::{Forward, ForwardOptions};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokenscale_base::progress::Progress;
use tokenscale_fsio::write_atomic;
use tokenscale_law::probe::ProbeAccumulator;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Runtime, VisionBudget};
use tokenscale_model::{DType, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder or Hugging Face id (ORG/NAME[@REVISION], local cache): any supported LLM
    /// (text pairs) or VLM (text or image pairs).
    #[arg(long, value_parser = super::model_folder)]
    pub model: PathBuf,
    /// JSONL pairs: {"prompt","chosen","rejected"} or {"image_a","image_b","question"}.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Longest branch prefix measured (n = 1..max_len).
    #[arg(long, default_value_t = 800)]
    pub max_len: usize,
    /// Hidden-state layer: 0 = embeddings … L = after the final norm; negative counts from the end.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub layer: i64,
    /// Use at most this many pairs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Vision tokens for image pairs (LLaVA with --reducer, or the query-fused model's n_l).
    #[command(flatten)]
    pub budget: super::BudgetArgs,
    /// Output folder: probe.json/.csv, bound.json/.csv and figures (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the figures.
    #[arg(long)]
    pub no_figures: bool,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Pair {
    Text { prompt: Text, chosen: Text, rejected: Text },
    Image { image_a: PathBuf, image_b: PathBuf, question: String },
}

/// Preference datasets store turns either as a string or as a list of `{role, content}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Plain(String),
    Turns(Vec<Turn>),
}

#[derive(Deserialize)]
struct Turn {
    content: String,
}

impl Text {
    fn join(&self) -> String {
        match self {
            Text::Plain(s) => s.clone(),
            Text::Turns(t) => t.iter().map(|t| t.content.as_str()).collect::<Vec<_>>().join("\n"),
        }
    }
}

fn layer_index(layer: i64, count: usize) -> Result<usize> {
    let i = if layer < 0 { count as i64 + layer } else { layer };
    if i < 0 || i >= count as i64 {
        bail!("--layer {layer} is out of range for {count} hidden states (0..={})", count - 1);
    }
    Ok(i as usize)
}

/// Hidden states `[T, H]` (f32) of a full forward at the chosen layer.
fn hidden(runtime: &Runtime, embeds: &Tensor, layer: i64) -> Result<Tensor> {
    let llm = runtime.llm();
    let out = llm.forward_embeds(
        &Forward::INFERENCE,
        embeds,
        &mut llm.new_cache(),
        ForwardOptions::LAST.with_hidden_states(),
    )?;
    let i = layer_index(layer, out.hidden_states.len())?;
    Ok(out.hidden_states[i].squeeze(0)?.to_dtype(DType::F32)?)
}

fn rows(h: &Tensor, positions: &[usize]) -> Result<Vec<f32>> {
    let idx = Tensor::new(positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), h.device())?;
    Ok(h.index_select(&idx, 0)?.flatten_all()?.to_vec1()?)
}

/// Branch hidden states of one pair, `(A rows, B rows)`, or `None` when the branches do not diverge.
fn branches(
    runtime: &Runtime,
    pair: &Pair,
    args: &Args,
    base: &Path,
) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    match pair {
        Pair::Text { prompt, chosen, rejected } => {
            let tok = runtime.tokenizer();
            let prompt = prompt.join();
            let a = tok.encode(&format!("{prompt}{}", chosen.join()), true)?;
            let b = tok.encode(&format!("{prompt}{}", rejected.join()), true)?;
            let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let n = (a.len().min(b.len()) - shared).min(args.max_len);
            if n == 0 {
                return Ok(None);
            }
            let llm = runtime.llm();
            let embed = |ids: &[u32]| -> Result<Tensor> {
                llm.embed(&Tensor::new(&ids[..shared + n], llm.device())?.unsqueeze(0)?)
            };
            let positions: Vec<usize> = (shared..shared + n).collect();
            let ha = hidden(runtime, &embed(&a)?, args.layer)?;
            let hb = hidden(runtime, &embed(&b)?, args.layer)?;
            Ok(Some((rows(&ha, &positions)?, rows(&hb, &positions)?)))
        }
        Pair::Image { image_a, image_b, question } => {
            if !runtime.is_vlm() {
                bail!("image pairs need a vision-language model");
            }
            let budget: VisionBudget = args.budget.to_budget();
            let side = |path: &PathBuf| -> Result<Vec<f32>> {
                let path = if path.is_absolute() { path.clone() } else { base.join(path) };
                let prepared = runtime.prepare(
                    &Forward::INFERENCE,
                    Some(&load_image(&path)?),
                    question,
                    false,
                    &budget,
                )?;
                if prepared.prune.is_some() {
                    bail!("fastv prunes inside the LLM; probe image pairs with pool, uniform or visionzip");
                }
                let positions =
                    &prepared.vision_positions[..prepared.vision_positions.len().min(args.max_len)];
                rows(&hidden(runtime, &prepared.embeds, args.layer)?, positions)
            };
            Ok(Some((side(image_a)?, side(image_b)?)))
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let runtime = args.dtype.load(&args.model, false)?;
    let file = std::fs::File::open(&args.pairs)
        .with_context(|| format!("{}: cannot open", args.pairs.display()))?;
    let base = args.pairs.parent().map(Path::to_path_buf).unwrap_or_default();
    let lines: Vec<(usize, String)> = std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            l.map(|l| (i + 1, l))
                .with_context(|| format!("{}: line {}: cannot read", args.pairs.display(), i + 1))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if lines.is_empty() {
        bail!("{}: no pairs", args.pairs.display());
    }
    let dim = runtime.llm().hidden_size();
    let mut acc = ProbeAccumulator::new(dim, args.max_len);
    let bar = Progress::new("probe", lines.len() as u64, "pairs");
    let mut skipped = 0usize;
    for (line, text) in &lines {
        let pair: Pair = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("{}: line {line}: expected {{prompt, chosen, rejected}} or {{image_a, image_b, question}}: {e}", args.pairs.display())
        })?;
        match branches(&runtime, &pair, &args, &base)
            .with_context(|| format!("{}: line {line}", args.pairs.display()))?
        {
            Some((a, b)) => {
                acc.add_pair(&a, &b)
                    .with_context(|| format!("{}: line {line}", args.pairs.display()))?;
            }
            None => skipped += 1,
        }
        bar.inc(1);
    }
    bar.finish();
    if acc.pairs() == 0 {
        bail!("{}: no pair has diverging branches", args.pairs.display());
    }
    let stats = acc.finish();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    write_atomic(&args.out.join("probe.json"), serde_json::to_string_pretty(&stats)?.as_bytes())?;
    let mut csv = String::from("n,pairs,d_mean,d_std,psi_eq,psi_aa,psi_bb,psi_aabb,psi_ab\n");
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &stats.rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.n,
            r.pairs,
            r.d_mean,
            r.d_std,
            r.psi_eq,
            opt(r.psi_aa),
            opt(r.psi_bb),
            opt(r.psi_aabb),
            opt(r.psi_ab)
        );
    }
    write_atomic(&args.out.join("probe.csv"), csv.as_bytes())?;
    eprintln!(
        "{} pairs measured, {skipped} without diverging branches skipped; longest n = {}",
        stats.pairs,
        stats.rows.len()
    );
    match stats.bound() {
        Ok(report) => {
            super::bound::write_report(&report, &args.out, stats.rows.len(), args.no_figures)?
        }
        Err(e) => eprintln!("note: no bound: {e}"),
    }
    eprintln!("wrote probe.json, probe.csv in {}", args.out.display());
    Ok(())
}

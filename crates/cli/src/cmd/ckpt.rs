//! `tokenscale ckpt`: checkpoint tools for the query-fused model.
//!
//! - `ckpt update ROOT`: the seed's `_update_ckpt.py` (latest `checkpoint-N` → a fresh folder
//!   without `post_layernorm` and with the `clip_model.vision_model.vision_model.` prefix fixed).
//! - `ckpt swap-llm`: the seed's `init_imgque_with_new_backbone.py` (another LLM of the same
//!   hidden size; the new LLM's tokenizer is written).
//!
//! Both write into a temporary folder beside the target, verify every tensor and load the result,
//! and only then move it into place; `--dry-run` prints the plan and writes nothing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use tokenscale_model::ckpt::{plan_swap_llm, plan_update, Plan};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CkptCommand,
}

#[derive(Subcommand)]
pub enum CkptCommand {
    /// Turn a training folder's latest checkpoint-N into a fresh checkpoint folder: drop the
    /// vision tower's post_layernorm, rename clip_model.vision_model.vision_model. →
    /// clip_model.vision_model., set text_config.max_position_embeddings = 1024, verify by reloading.
    Update(UpdateArgs),
    /// Replace the LLM backbone of a query-fused checkpoint with another *ForCausalLM of the same
    /// hidden size (vision tower, query decoder and fusion kept; the new LLM's tokenizer written).
    SwapLlm(SwapArgs),
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Training output folder holding checkpoint-N subfolders.
    pub root: PathBuf,
    /// Output checkpoint folder (default: ROOT itself).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing checkpoint (a config.json) in the output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Print what would be done and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::Args)]
pub struct SwapArgs {
    /// Query-fused checkpoint folder.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// The new LLM: a *ForCausalLM folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub llm: PathBuf,
    /// Output checkpoint folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing checkpoint (a config.json) in the output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Print what would be done and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        CkptCommand::Update(a) => {
            let plan = plan_update(&a.root, a.out.as_deref(), a.overwrite)?;
            finish(&plan, a.dry_run)
        }
        CkptCommand::SwapLlm(a) => {
            let plan = plan_swap_llm(&a.ckpt, &a.llm, &a.out, a.overwrite)?;
            finish(&plan, a.dry_run)
        }
    }
}

fn finish(plan: &Plan, dry_run: bool) -> Result<()> {
    if dry_run {
        print!("{}", plan.describe());
        println!("dry run: nothing written");
        return Ok(());
    }
    for note in &plan.notes {
        eprintln!("{note}");
    }
    eprintln!("dropped {} tensors, renamed {}", plan.dropped.len(), plan.renamed.len());
    let report = plan.execute()?;
    let dtypes: Vec<String> = report.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!(
        "wrote {} ({} tensors, {:.1} MB, {}); every tensor equals its source{}",
        report.target.display(),
        report.tensors,
        report.bytes as f64 / 1e6,
        dtypes.join(", "),
        if report.pipeline_loaded { "; the folder loads as a query-fused model" } else { "" }
    );
    Ok(())
}

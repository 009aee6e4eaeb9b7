//! `tokenscale merge`: combine shard run directories into one result.

use anyhow::Result;
use std::path::PathBuf;
use tokenscale_eval::score::{Compat, ScoreOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Run directories written by `tokenscale eval --shard k/N` (same configuration).
    #[arg(required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// Output run directory (may be one of the inputs, e.g. when all shards share one directory).
    #[arg(long)]
    pub out: PathBuf,
    /// Benchmark TSVs, when they are not at the paths recorded in the runs' config.json.
    #[arg(long, value_parser = super::data_file)]
    pub data: Vec<PathBuf>,
    /// Merge even if configurations or predictions disagree.
    #[arg(long)]
    pub force: bool,
    /// VLMEvalKit rules: `head` (current) or `0ff0c3e` (the paper's commit).
    #[arg(long, default_value = "head")]
    pub vlmeval_compat: String,
    /// Captions: PTB-tokenise before BLEU/ROUGE/CIDEr.
    #[arg(long)]
    pub ptb: bool,
}

pub fn run(args: Args) -> Result<()> {
    let opts = ScoreOptions { compat: Compat::parse(&args.vlmeval_compat)?, ptb: args.ptb };
    let rows = tokenscale_eval::merge::merge_runs(
        &args.run_dirs,
        &args.out,
        &args.data,
        opts,
        args.force,
    )?;
    println!(
        "merged {} run dirs into {} ({} score rows)",
        args.run_dirs.len(),
        args.out.display(),
        rows.len()
    );
    Ok(())
}

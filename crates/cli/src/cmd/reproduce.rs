//! `tokenscale reproduce`: the paper's experiment on the shipped model in one command (the work
//! is tokenscale-reproduce's; this file reads the flags).

use std::path::PathBuf;

use anyhow::{bail, Result};
use tokenscale_reproduce::{run as reproduce, Options, DEFAULT_VISION_TOKENS};

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (report.md, scores.json, figures/, ...). Re-running into it resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Query-fused checkpoint folder (default: the embedded tiny model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Test items per benchmark kind (MCQ, Y/N, VQA).
    #[arg(long, default_value_t = 200)]
    pub items: usize,
    /// Vision-token counts n, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VISION_TOKENS)]
    pub vision_tokens: Vec<usize>,
    /// Image pairs for the probe.
    #[arg(long, default_value_t = 64)]
    pub pairs: usize,
    /// Seed of the probe pairs (the test split itself is fixed by the generator).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Longest answer in tokens.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
    /// Bootstrap resamples of the fits (0 = no intervals, else at least 1000).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Train the model from scratch first, then reproduce with it.
    #[arg(long)]
    pub retrain: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.retrain {
        bail!("--retrain: not available yet (the trainer has not landed); run without it to use the shipped model");
    }
    let model_dir = match args.model {
        Some(dir) => dir,
        None => crate::embedded::default_model_dir()?,
    };
    let opts = Options {
        model_dir,
        out: args.out,
        items: args.items,
        vision_tokens: args.vision_tokens,
        pairs: args.pairs,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        bootstrap: args.bootstrap,
        progress: true,
    };
    let outcome = reproduce(&opts)?;
    let total: f64 = outcome.timings.0.iter().map(|t| t.1).sum();
    for (step, secs) in &outcome.timings.0 {
        eprintln!("  {step:<24} {secs:>7.1} s");
    }
    println!("wrote {} ({total:.1} s)", outcome.report.display());
    Ok(())
}

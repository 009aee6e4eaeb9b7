//! `tokenscale reproduce`: the paper's experiment on the shipped model in one command (the work
//! is tokenscale-reproduce's; this file reads the flags).

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_reproduce::{run as reproduce, Options, DEFAULT_VISION_TOKENS};

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (report.md, scores.json, figures/, ...). Re-running into it resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Query-fused checkpoint folder (default: the embedded tiny model).
    #[arg(long, conflicts_with = "retrain")]
    pub model: Option<PathBuf>,
    /// Test items per benchmark kind (MCQ, Y/N, VQA).
    #[arg(long, default_value_t = 1000)]
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
    /// Train the model from scratch first (`tokenscale train` into OUT/train, resumable), then
    /// reproduce with it.
    #[arg(long)]
    pub retrain: bool,
    /// With --retrain: training configuration (JSON, as `tokenscale train --config`; default: the
    /// shipped model's).
    #[arg(long, requires = "retrain")]
    pub train_config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let mut opts = Options {
        model_dir: PathBuf::new(),
        out: args.out,
        items: args.items,
        vision_tokens: args.vision_tokens,
        pairs: args.pairs,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        bootstrap: args.bootstrap,
        progress: true,
        earlier_steps: Vec::new(),
    };
    opts.check()?;
    opts.model_dir = match (args.model, args.retrain) {
        (Some(dir), _) => dir,
        (None, true) => {
            let out = opts.out.join("train");
            let start = std::time::Instant::now();
            super::train::run(super::train::Args { config: args.train_config, out: out.clone(), max_steps: None })?;
            opts.earlier_steps.push(("train the model (this invocation)".to_string(), start.elapsed().as_secs_f64()));
            out.join("model")
        }
        (None, false) => crate::embedded::default_model_dir()?,
    };
    let outcome = reproduce(&opts)?;
    let total: f64 = outcome.timings.0.iter().map(|t| t.1).sum();
    for (step, secs) in &outcome.timings.0 {
        eprintln!("  {step:<24} {secs:>7.1} s");
    }
    println!("wrote {} ({total:.1} s)", outcome.report.display());
    Ok(())
}

//! `tokenscale reproduce`: the paper's experiment on the shipped model in one command (the work
//! is tokenscale-reproduce's; this file reads the flags).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use tokenscale_reproduce::{run as reproduce, Options, DEFAULT_VISION_TOKENS};
use tokenscale_synth::ItemKind;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (report.md, scores.json, figures/, ...). Re-running into it resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Query-fused checkpoint folder (default: the embedded tiny model).
    #[arg(long, conflicts_with = "retrain", value_parser = super::model_folder)]
    pub model: Option<PathBuf>,
    /// Test items per benchmark kind.
    #[arg(long, default_value_t = 3000)]
    pub items: usize,
    /// Item kinds asked, comma-separated: mcq, yorn, vqa (short answers). The default is the kind
    /// the shipped model was trained on (models/tiny-imgque/training/).
    #[arg(long, value_delimiter = ',', default_value = "vqa")]
    pub kinds: Vec<String>,
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
    /// With --retrain: a training stage's configuration (JSON, as `tokenscale train --config`);
    /// repeat for stages run in order, each later one starting from the previous model (default:
    /// the shipped model's stages).
    #[arg(long, requires = "retrain")]
    pub train_config: Vec<PathBuf>,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let mut opts = Options {
        model_dir: PathBuf::new(),
        out: args.out,
        items: args.items,
        kinds: args
            .kinds
            .iter()
            .map(|k| {
                ItemKind::parse(k.trim())
                    .ok_or_else(|| anyhow!("--kinds: unknown kind `{k}` (mcq, yorn, vqa)"))
            })
            .collect::<Result<_>>()?,
        vision_tokens: args.vision_tokens,
        pairs: args.pairs,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        bootstrap: args.bootstrap,
        progress: true,
        earlier_steps: Vec::new(),
        dtype: args.dtype.policy(),
    };
    opts.check()?;
    opts.model_dir = match (args.model, args.retrain) {
        (Some(dir), _) => dir,
        (None, true) => {
            retrain(&opts.out.join("train"), &args.train_config, &mut opts.earlier_steps)?
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

/// Trains the stages in order into `dir/stage<i>` (each resumable as `tokenscale train` is), the
/// configuration of every later stage pointed at the previous stage's last checkpoint (its model
/// and auxiliary heads); returns the last stage's model folder and records each stage's time.
fn retrain(dir: &Path, configs: &[PathBuf], steps: &mut Vec<(String, f64)>) -> Result<PathBuf> {
    let stages: Vec<(String, String)> = if configs.is_empty() {
        crate::embedded::TRAINING_STAGES
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("shipped stage {}", i + 1), text.to_string()))
            .collect()
    } else {
        configs
            .iter()
            .map(|p| {
                Ok((
                    p.display().to_string(),
                    std::fs::read_to_string(p)
                        .with_context(|| format!("{}: cannot read", p.display()))?,
                ))
            })
            .collect::<Result<_>>()?
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut previous: Option<PathBuf> = None;
    let mut last_model: Option<PathBuf> = None;
    for (i, (origin, text)) in stages.iter().enumerate() {
        let mut config: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("{origin}: not a JSON training configuration"))?;
        let object =
            config.as_object_mut().with_context(|| format!("{origin}: not a JSON object"))?;
        if let Some(model) = &previous {
            object.insert("init_from".into(), model.display().to_string().into());
        }
        let path = dir.join(format!("stage{}.json", i + 1));
        tokenscale_fsio::write_atomic(&path, serde_json::to_string_pretty(&config)?.as_bytes())?;
        let out = dir.join(format!("stage{}", i + 1));
        let start = std::time::Instant::now();
        super::train::run(super::train::Args {
            config: Some(path),
            out: out.clone(),
            max_steps: None,
        })
        .with_context(|| format!("--retrain: stage {} ({origin})", i + 1))?;
        steps.push((
            format!("train stage {} (this invocation)", i + 1),
            start.elapsed().as_secs_f64(),
        ));
        // The stage's last checkpoint rather than its model folder: it also hands the auxiliary
        // heads on to the next stage.
        let last = tokenscale_train::checkpoint::latest_checkpoint(&out)?
            .with_context(|| format!("{}: the stage left no checkpoint", out.display()))?;
        previous = Some(last.dir);
        last_model = Some(out.join("model"));
    }
    last_model.context("--retrain: no training stage")
}

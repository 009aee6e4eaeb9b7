//! `tokenscale train`: trains the tiny query-fused VLM on the synthetic benchmark; resumes from
//! the latest checkpoint in --out after a kill.

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_base::progress::Progress;
use tokenscale_plot::{Figure, TrainingFigure};
use tokenscale_train::data::SynthSource;
use tokenscale_train::{TrainConfig, Trainer};

#[derive(clap::Args)]
pub struct Args {
    /// Training configuration (JSON; every field optional, see docs/training.md). Default: the shipped model's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder: model/ (the latest weights, a checkpoint folder every subcommand loads),
    /// checkpoints/, loss.csv, validation.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this many steps in this invocation (the run resumes later).
    #[arg(long)]
    pub max_steps: Option<u64>,
}

pub fn run(args: Args) -> Result<()> {
    let config = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => TrainConfig::default(),
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", args.out.display()))?;
    let source = SynthSource { mix: config.mix()? };
    let mut trainer = Trainer::open(&args.out, config.clone(), &source)?;
    if trainer.step > 0 {
        eprintln!("resuming {} at step {}", args.out.display(), trainer.step);
    }
    let stop =
        args.max_steps.map_or(config.last_step(), |m| (trainer.step + m).min(config.last_step()));
    let bar = Progress::new("train", config.last_step(), "steps");
    bar.resume_at(trainer.step);
    let mut recent = Vec::new();
    while trainer.step < stop {
        let row = trainer.train_step()?;
        recent.push(row.loss);
        bar.set_position(trainer.step);
        if trainer.step % 10 == 0 {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            bar.set_message(&format!("loss {mean:.4} lr {:.2e} {:.2}s/step", row.lr, row.seconds));
            recent.clear();
        }
        if trainer.step % config.checkpoint_every == 0 || trainer.step == stop {
            let mut scores = Vec::new();
            for n in [1, config.model.max_vision_tokens] {
                scores.push(format!("n={n}: {:.3}", trainer.validate(n)?));
            }
            let dir = trainer.checkpoint()?;
            training_figure(&trainer).save(&args.out, "loss")?;
            let line = format!(
                "step {}: validation exact match {} → {}",
                trainer.step,
                scores.join(", "),
                dir.display()
            );
            bar.println(&line);
        }
    }
    bar.finish();
    println!(
        "{}: model after {} of {} steps",
        args.out.join("model").display(),
        trainer.step,
        config.steps
    );
    Ok(())
}

/// Loss per step and validation accuracy per budget, for `out/loss.{svg,png}`.
fn training_figure(trainer: &Trainer) -> TrainingFigure {
    let mut budgets: Vec<usize> = trainer.validation.iter().map(|v| v.vision_tokens).collect();
    budgets.sort();
    budgets.dedup();
    let mut validation_steps: Vec<f64> = trainer.validation.iter().map(|v| v.step as f64).collect();
    validation_steps.dedup();
    let validation = budgets
        .iter()
        .map(|&n| {
            let values = validation_steps
                .iter()
                .map(|&s| {
                    trainer
                        .validation
                        .iter()
                        .find(|v| v.step as f64 == s && v.vision_tokens == n)
                        .map(|v| v.accuracy)
                })
                .collect();
            (format!("n = {n}"), values)
        })
        .collect();
    TrainingFigure {
        title: format!("tokenscale train: {}", trainer.out.display()),
        steps: trainer.history.iter().map(|r| r.step as f64).collect(),
        loss: trainer.history.iter().map(|r| r.loss).collect(),
        window: 50,
        validation_steps,
        validation,
    }
}

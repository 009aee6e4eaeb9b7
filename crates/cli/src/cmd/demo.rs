//! `tokenscale demo`: the embedded trained model (the paper's query-fused architecture, scaled
//! down and trained here on the synthetic benchmark) answers questions about a freshly generated
//! picture at two vision-token budgets. No download.

use std::path::PathBuf;

use anyhow::{bail, Result};
use tokenscale_answer::ModelAnswerer;
use tokenscale_eval::sweep::Answerer;
use tokenscale_synth as synth;
use tokenscale_synth::questions::{ask, candidates};
use tokenscale_synth::{ItemKind, Rng, Scene, SynthItem, SUBTASKS};

/// The questions asked, by subtask: two coarse, four fine.
const ASKED: [&str; 6] =
    ["background", "border", "cell_colour", "cell_shape", "cell_colour", "count_colour"];

#[derive(clap::Args)]
pub struct Args {
    /// Seed of the generated picture (default: taken from the clock, a new picture each run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The vision-token budgets compared.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub vision_tokens: Vec<usize>,
    /// Also save the picture here (PNG).
    #[arg(long)]
    pub save_image: Option<PathBuf>,
    /// A query-fused checkpoint folder (or Hugging Face id in the local cache) instead of the embedded model.
    #[arg(long, value_parser = super::model_folder)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
}

/// Short-answer questions about one scene, one per entry of `ASKED` that the scene allows.
fn questions(scene: &Scene, rng: &mut Rng) -> Vec<SynthItem> {
    let mut items = Vec::new();
    for name in ASKED {
        let Some(subtask) = SUBTASKS.iter().position(|s| s.0 == name) else { continue };
        let cands = candidates(subtask, scene);
        if cands.is_empty() {
            continue;
        }
        let pick = cands[rng.below(cands.len())];
        items.push(SynthItem {
            image: scene.render(),
            question: ask(subtask, pick.subject),
            options: Vec::new(),
            answer: pick.answer.to_string(),
            kind: ItemKind::ShortAnswer,
            category: SUBTASKS[subtask].1,
            subtask: SUBTASKS[subtask].0,
            scene: scene.clone(),
            subject: pick.subject,
        });
    }
    items
}

pub fn run(args: Args) -> Result<()> {
    if args.vision_tokens.is_empty() {
        bail!("--vision-tokens: give at least one budget");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let (dir, origin) = match &args.model {
        Some(dir) => (dir.clone(), dir.display().to_string()),
        None => (
            crate::embedded::default_model_dir()?,
            "embedded tiny query-fused model (trained by `tokenscale train`)".to_string(),
        ),
    };
    let mut model = ModelAnswerer::load(&dir, None, None, false, args.dtype.policy())?;
    model.check_budgets(&args.vision_tokens)?;
    let mut rng = Rng::new(seed);
    let scene = Scene::random(&mut rng);
    let items = questions(&scene, &mut rng);
    let image = scene.render();
    if let Some(path) = &args.save_image {
        tokenscale_fsio::write_atomic(path, &synth::png_bytes(&image)?)?;
    }
    let prepared =
        model.prepare_image(&[tokenscale_model::image::DynamicImage::ImageRgb8(image.clone())])?;
    println!("model:   {origin}");
    println!(
        "picture: seed {seed}, {}x{} px{}",
        image.width(),
        image.height(),
        match &args.save_image {
            Some(p) => format!(", saved to {}", p.display()),
            None => " (--save-image FILE to keep it)".to_string(),
        }
    );
    let header: Vec<String> = args.vision_tokens.iter().map(|n| format!("n = {n}")).collect();
    println!("\n| question | category | truth | {} |", header.join(" | "));
    println!("|---|---|---|{}", "---|".repeat(header.len()));
    let mut right = vec![0usize; args.vision_tokens.len()];
    for item in &items {
        let prompt = synth::prompt_for(item);
        let mut cells = Vec::new();
        for (i, &n) in args.vision_tokens.iter().enumerate() {
            let answer = model.answer(&prepared, &prompt, n, 4)?;
            let ok = answer.trim() == item.answer;
            right[i] += ok as usize;
            cells.push(format!("{} {}", answer.trim(), if ok { "✓" } else { "✗" }));
        }
        println!(
            "| {} | {} | {} | {} |",
            item.question,
            item.category.as_str(),
            item.answer,
            cells.join(" | ")
        );
    }
    let totals: Vec<String> = args
        .vision_tokens
        .iter()
        .zip(&right)
        .map(|(n, r)| format!("n = {n}: {r}/{}", items.len()))
        .collect();
    println!("\nright answers: {}", totals.join(", "));
    Ok(())
}

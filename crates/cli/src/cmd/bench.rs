//! `tokenscale bench`: measured cost of a vision-token budget, after the paper's timing protocol
//! (a seeded sample of images, the prompt "Describe the image in detail.", a fixed number of new
//! tokens): vision + embedding time, time to first token, prefill and decode speed, peak RSS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Runtime, VisionBudget};
use tokenscale_model::{DType, Device};
use tokenscale_plot::atomic_write;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: PathBuf,
    /// Folder of .jpg/.jpeg/.png images (sorted by name, then shuffled with --seed).
    #[arg(long)]
    pub images: PathBuf,
    #[arg(long, value_delimiter = ',', required = true)]
    pub vision_tokens: Vec<usize>,
    /// LLaVA token reducer (pool, uniform, visionzip, fastv).
    #[arg(long)]
    pub reducer: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Repeats per image and n (after one warm-up run).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Images used (the paper: 500).
    #[arg(long, default_value_t = 500)]
    pub sample: usize,
    #[arg(long, default_value_t = 122)]
    pub seed: u64,
    #[arg(long, default_value = "Describe the image in detail.")]
    pub prompt: String,
    #[arg(long)]
    pub out: PathBuf,
}

/// One timed answer.
#[derive(serde::Serialize)]
struct Timing {
    image: String,
    n: usize,
    repeat: usize,
    prompt_tokens: usize,
    new_tokens: usize,
    vision_s: f64,
    ttft_s: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: Option<f64>,
    peak_rss_bytes: Option<u64>,
}

/// Peak resident set size of this process (Linux `VmHWM`), if the platform reports it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn list_images(dir: &Path, sample: usize, seed: u64) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read image folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .jpg/.jpeg/.png images", dir.display());
    }
    // Seeded Fisher–Yates with SplitMix64 (the paper used Python's random.Random(122); the
    // sample differs, the protocol is the same).
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..files.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        files.swap(i, j);
    }
    files.truncate(sample);
    Ok(files)
}

fn time_one(runtime: &Runtime, image: &tokenscale_model::image::RgbImage, args: &Args, n: usize) -> Result<(usize, usize, f64, f64, f64, Option<f64>)> {
    let budget = VisionBudget { tokens: Some(n), short_tokens: None, reducer: args.reducer.clone() };
    let start = Instant::now();
    let prepared = runtime.prepare(Some(image), &args.prompt, false, &budget)?;
    let vision_s = start.elapsed().as_secs_f64();
    // No stop tokens: every answer decodes exactly max_new_tokens.
    let config = GenerationConfig { max_new_tokens: args.max_new_tokens, ..Default::default() };
    let begin = Instant::now();
    let mut first: Option<f64> = None;
    let tokens = runtime.generate(&prepared, &config, |_| {
        first.get_or_insert_with(|| begin.elapsed().as_secs_f64());
        Ok(())
    })?;
    let total = begin.elapsed().as_secs_f64();
    let ttft = first.unwrap_or(total);
    let prompt_tokens = prepared.input_ids.len();
    let decode = (tokens.len() > 1).then(|| (tokens.len() - 1) as f64 / (total - ttft).max(1e-9));
    Ok((prompt_tokens, tokens.len(), vision_s, ttft, prompt_tokens as f64 / ttft.max(1e-9), decode))
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

pub fn run(args: Args) -> Result<()> {
    if args.vision_tokens.is_empty() || args.repeat == 0 || args.sample == 0 {
        bail!("--vision-tokens, --repeat and --sample must be non-empty / at least 1");
    }
    let runtime = Runtime::load(&args.model, DType::F32, &Device::Cpu)?;
    if !runtime.is_vlm() {
        bail!("{}: bench needs a vision-language model", args.model.display());
    }
    let images = list_images(&args.images, args.sample, args.seed)?;
    let first = load_image(&images[0])?;
    for &n in &args.vision_tokens {
        time_one(&runtime, &first, &args, n).with_context(|| format!("warm-up at n = {n}"))?;
    }
    let bar = ProgressBar::new((images.len() * args.vision_tokens.len() * args.repeat) as u64);
    bar.set_style(ProgressStyle::with_template("bench {bar:40} {pos}/{len} ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut rows = Vec::new();
    for path in &images {
        let image = load_image(path)?;
        for &n in &args.vision_tokens {
            for repeat in 0..args.repeat {
                let (prompt_tokens, new_tokens, vision_s, ttft_s, prefill, decode) = time_one(&runtime, &image, &args, n)?;
                rows.push(Timing {
                    image: path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                    n,
                    repeat,
                    prompt_tokens,
                    new_tokens,
                    vision_s,
                    ttft_s,
                    prefill_tokens_per_s: prefill,
                    decode_tokens_per_s: decode,
                    peak_rss_bytes: peak_rss(),
                });
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    let mut jsonl = String::new();
    for r in &rows {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    atomic_write(&args.out.join("bench.jsonl"), jsonl.as_bytes())?;
    let mut md = String::from("| n | prompt tokens | vision+embed s | TTFT s | prefill tok/s | decode tok/s |\n|---|---|---|---|---|---|\n");
    let fmt = |(lo, mid, hi): (f64, f64, f64)| format!("{mid:.3} [{lo:.3}, {hi:.3}]");
    for &n in &args.vision_tokens {
        let sel: Vec<&Timing> = rows.iter().filter(|r| r.n == n).collect();
        let col = |f: &dyn Fn(&Timing) -> Option<f64>| -> String {
            let v: Vec<f64> = sel.iter().filter_map(|r| f(r)).collect();
            if v.is_empty() { "–".into() } else { fmt(quartiles(v)) }
        };
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {} | {} |",
            sel[0].prompt_tokens,
            col(&|r| Some(r.vision_s)),
            col(&|r| Some(r.ttft_s)),
            col(&|r| Some(r.prefill_tokens_per_s)),
            col(&|r| r.decode_tokens_per_s)
        );
    }
    let _ = writeln!(md, "\nmedian [p25, p75] over {} images × {} repeats; peak RSS {} MiB", images.len(), args.repeat, peak_rss().map_or("?".into(), |b| (b >> 20).to_string()));
    atomic_write(&args.out.join("bench.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
}

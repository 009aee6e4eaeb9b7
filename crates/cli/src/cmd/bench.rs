//! `tokenscale bench`: measured cost of a vision-token budget, after the paper's timing protocol
//! (a seeded sample of images, the prompt "Describe the image in detail.", a fixed number of new
//! tokens): vision + embedding time, time to first token, prefill and decode speed, peak RSS;
//! bench.jsonl, bench.md and a figure (bench.svg/.png) with the FLOPs model overlaid.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenscale_model::Forward;

use anyhow::{bail, Context, Result};
use tokenscale_base::progress::Progress;
use tokenscale_cost::timing::{first_token_flops, AffineFit};
use tokenscale_cost::{read_config, Arch, Reducer};
use tokenscale_fsio::write_atomic;
use tokenscale_model::dtype::peak_rss_bytes;
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Runtime, VisionBudget};
use tokenscale_model::Device;
use tokenscale_plot::{BenchFigure, Figure, TimedPoint, TimedSeries};

#[derive(clap::Args)]
pub struct Args {
    /// Model: checkpoint folder, or a Hugging Face id (ORG/NAME[@REVISION]) in the local cache.
    #[arg(long, value_parser = super::model_folder)]
    pub model: PathBuf,
    /// Folder of .jpg/.jpeg/.png images (sorted by name, then shuffled with --seed).
    #[arg(long)]
    pub images: PathBuf,
    /// Vision-token counts n to time, comma-separated (LLaVA below 576 needs --reducer).
    #[arg(long, value_delimiter = ',', required = true)]
    pub vision_tokens: Vec<usize>,
    /// LLaVA token reducer, needed below the native 576 tokens [values: pool, uniform, visionzip,
    /// fastv, fastv:K (FastV after LLM layer K, default 2)].
    #[arg(long, value_parser = super::reducer_name)]
    pub reducer: Option<String>,
    /// Tokens decoded per answer (always exactly this many, for comparable timings).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Repeats per image and n (after one warm-up run).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Images used (the paper: 500).
    #[arg(long, default_value_t = 500)]
    pub sample: usize,
    /// Seed of the image shuffle (122 as the paper's script).
    #[arg(long, default_value_t = 122)]
    pub seed: u64,
    /// The question asked about every image.
    #[arg(long, default_value = "Describe the image in detail.")]
    pub prompt: String,
    /// Output folder: bench.jsonl, bench.md, bench.svg/.png (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
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

/// How the model was loaded (load.json).
#[derive(serde::Serialize)]
struct LoadRecord {
    load_s: f64,
    dtype: String,
    dtype_reason: String,
    parameter_bytes: u64,
    peak_rss_bytes_after_load: Option<u64>,
}

fn list_images(dir: &Path, sample: usize, seed: u64) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read image folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .jpg/.jpeg/.png images", dir.display());
    }
    // Seeded Fisher–Yates with SplitMix64 (the paper used Python's random.Random(122); the
    // sample differs, the protocol is the same).
    let mut rng = tokenscale_base::rng::SplitMix64::new(seed);
    for i in (1..files.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        files.swap(i, j);
    }
    files.truncate(sample);
    Ok(files)
}

fn time_one(
    runtime: &Runtime,
    image: &tokenscale_model::image::RgbImage,
    args: &Args,
    n: usize,
) -> Result<(usize, usize, f64, f64, f64, Option<f64>)> {
    let budget =
        VisionBudget { tokens: Some(n), short_tokens: None, reducer: args.reducer.clone() };
    let start = Instant::now();
    let prepared =
        runtime.prepare(&Forward::INFERENCE, Some(image), &args.prompt, false, &budget)?;
    let vision_s = start.elapsed().as_secs_f64();
    // No stop tokens: every answer decodes exactly max_new_tokens.
    let config = GenerationConfig { max_new_tokens: args.max_new_tokens, ..Default::default() };
    let begin = Instant::now();
    let mut first: Option<f64> = None;
    let tokens = runtime.generate(&Forward::INFERENCE, &prepared, &config, |_| {
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
    let loaded = Runtime::open(&args.model, args.dtype.policy(), &Device::Cpu)?;
    super::report_load(&loaded);
    let load = LoadRecord {
        load_s: loaded.load_s,
        dtype: tokenscale_model::dtype::dtype_name(loaded.dtype.dtype).to_string(),
        dtype_reason: loaded.dtype.reason.clone(),
        parameter_bytes: loaded.dtype.compute_bytes,
        peak_rss_bytes_after_load: peak_rss_bytes(),
    };
    let runtime = loaded.runtime;
    if !runtime.is_vlm() {
        bail!("{}: bench needs a vision-language model", args.model.display());
    }
    let images = list_images(&args.images, args.sample, args.seed)?;
    let first = load_image(&images[0])?;
    for &n in &args.vision_tokens {
        time_one(&runtime, &first, &args, n).with_context(|| format!("warm-up at n = {n}"))?;
    }
    let bar = Progress::new(
        "bench",
        (images.len() * args.vision_tokens.len() * args.repeat) as u64,
        "timings",
    );
    let mut rows = Vec::new();
    for path in &images {
        let image = load_image(path)?;
        for &n in &args.vision_tokens {
            for repeat in 0..args.repeat {
                let (prompt_tokens, new_tokens, vision_s, ttft_s, prefill, decode) =
                    time_one(&runtime, &image, &args, n)?;
                rows.push(Timing {
                    image: path
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    n,
                    repeat,
                    prompt_tokens,
                    new_tokens,
                    vision_s,
                    ttft_s,
                    prefill_tokens_per_s: prefill,
                    decode_tokens_per_s: decode,
                    peak_rss_bytes: peak_rss_bytes(),
                });
                bar.inc(1);
            }
        }
    }
    bar.finish();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    write_atomic(&args.out.join("load.json"), serde_json::to_string_pretty(&load)?.as_bytes())?;
    let mut jsonl = String::new();
    for r in &rows {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    write_atomic(&args.out.join("bench.jsonl"), jsonl.as_bytes())?;
    let mut md = String::from("| n | prompt tokens | vision+embed s | TTFT s | prefill tok/s | decode tok/s |\n|---|---|---|---|---|---|\n");
    let fmt = |(lo, mid, hi): (f64, f64, f64)| format!("{mid:.3} [{lo:.3}, {hi:.3}]");
    for &n in &args.vision_tokens {
        let sel: Vec<&Timing> = rows.iter().filter(|r| r.n == n).collect();
        let col = |f: &dyn Fn(&Timing) -> Option<f64>| -> String {
            let v: Vec<f64> = sel.iter().filter_map(|r| f(r)).collect();
            if v.is_empty() {
                "–".into()
            } else {
                fmt(quartiles(v))
            }
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
    let _ = writeln!(
        md,
        "\nmedian [p25, p75] over {} images × {} repeats; dtype {}; load {:.2} s; peak RSS {} MiB ({} MiB of parameters)",
        images.len(),
        args.repeat,
        load.dtype_reason,
        load.load_s,
        peak_rss_bytes().map_or("?".into(), |b| (b >> 20).to_string()),
        load.parameter_bytes >> 20
    );
    let _ = writeln!(md, "\nFigure bench.svg / bench.png: {}", figure(&args, &rows)?);
    write_atomic(&args.out.join("bench.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
}

/// Median and quartiles of `time` per n.
fn timed(label: &str, args: &Args, rows: &[Timing], time: fn(&Timing) -> f64) -> TimedSeries {
    let points = args
        .vision_tokens
        .iter()
        .map(|&n| {
            let (p25, median, p75) =
                quartiles(rows.iter().filter(|r| r.n == n).map(time).collect());
            TimedPoint { n: n as f64, p25, median, p75 }
        })
        .collect();
    TimedSeries { label: label.into(), points }
}

/// Draws bench.svg/.png: vision + TTFT and TTFT against n, with the FLOPs model scaled to
/// seconds by least squares on the vision + TTFT medians. Returns the sentence for bench.md.
fn figure(args: &Args, rows: &[Timing]) -> Result<String> {
    let latency = timed("vision + TTFT", args, rows, |r| r.vision_s + r.ttft_s);
    let ttft = timed("TTFT (LLM prefill)", args, rows, |r| r.ttft_s);
    let model = flops_model(args, rows, &latency).unwrap_or_else(|e| FlopsModel {
        curve: vec![],
        label: String::new(),
        text: format!("measured times only (no FLOPs model: {e:#})"),
    });
    let title =
        format!("time to first token vs n ({})", tokenscale_model::hub::model_name(&args.model));
    BenchFigure {
        title,
        series: vec![latency, ttft],
        model_label: model.label,
        model: model.curve,
    }
    .save(&args.out, "bench")?;
    Ok(model.text)
}

/// The fitted curve (n, seconds), its legend label and the sentence for bench.md.
struct FlopsModel {
    curve: Vec<(f64, f64)>,
    label: String,
    text: String,
}

/// The FLOPs before the first token (crates/cost, the model's config.json, the measured text
/// length) at every n, fitted to the measured vision + TTFT medians as a + b·FLOPs.
fn flops_model(args: &Args, rows: &[Timing], latency: &TimedSeries) -> Result<FlopsModel> {
    let arch = read_config(&args.model.join("config.json"))?;
    let reducer = args.reducer.as_deref().map(Reducer::parse).transpose()?;
    // The prompt minus its vision tokens, as measured (one value: it does not depend on n).
    let (_, text, _) =
        quartiles(rows.iter().map(|r| r.prompt_tokens.saturating_sub(r.n) as f64).collect());
    let text = text.round() as u64;
    let flops = |n: u64| first_token_flops(&arch, n, text, reducer, None).map(|f| f as f64);
    let xs = args.vision_tokens.iter().map(|&n| flops(n as u64)).collect::<Result<Vec<_>>>()?;
    let ys: Vec<f64> = latency.points.iter().map(|p| p.median).collect();
    let fit = AffineFit::fit(&xs, &ys).context(
        "the FLOPs take fewer than two distinct values (give at least two --vision-tokens)",
    )?;
    let (lo, hi) = (
        *args.vision_tokens.iter().min().unwrap_or(&1) as u64,
        *args.vision_tokens.iter().max().unwrap_or(&1) as u64,
    );
    let step = ((hi - lo) / 200).max(1);
    let curve = (lo..=hi)
        .step_by(step as usize)
        .chain([hi])
        .map(|n| Ok((n as f64, fit.eval(flops(n)?))))
        .collect::<Result<Vec<_>>>()?;
    let crops = if matches!(arch, Arch::ImgQue(_)) {
        "; query-fused model: full crop grid, question tokens not counted"
    } else {
        ""
    };
    let label = format!("a + b·FLOPs(n), least squares: {}", fit.describe_seconds());
    let per_n: Vec<String> =
        args.vision_tokens.iter().zip(&xs).map(|(n, f)| format!("{n}: {:.3}", f / 1e9)).collect();
    let text = format!(
        "vision + TTFT and TTFT (median, p25–p75 whiskers) against n; dashed: the FLOPs model time ≈ a + b·FLOPs fitted by least squares to the vision + TTFT medians, {} — FLOPs before the first token from tokenscale-cost ({text} text tokens{crops}), GFLOPs per n: {}.",
        fit.describe_seconds(),
        per_n.join(", ")
    );
    Ok(FlopsModel { curve, label, text })
}

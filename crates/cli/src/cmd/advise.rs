//! `tokenscale advise`: per benchmark, the Pareto frontier of score against cost over the measured
//! n and the n that meets a target, interpolated with a fitted scaling law (logic in
//! `tokenscale_cost::advise`; this file reads the flags and the files).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tokenscale_cost::advise::input::{read_bench_latency, read_cost_table};
use tokenscale_cost::advise::{
    advise, select, to_csv, to_json, to_markdown, AdviseOptions, CostModel, Target,
};
use tokenscale_cost::{read_config, Dtype, Reducer, Workload};
use tokenscale_law::fit::Space;
use tokenscale_law::Law;

use super::choices::{Format, LawSpace};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("cost_source").required(true).args(["cost", "config"])))]
#[command(group(clap::ArgGroup::new("target").args(["min_score", "max_flops", "max_latency"])))]
pub struct Args {
    /// Score table in any shape `tokenscale fit` reads (eval's scores.json / scores.csv;
    /// series,n,score; the paper-scores shape figure,panel,benchmark,n_l,score; model,benchmark,n,score).
    #[arg(long)]
    pub scores: PathBuf,
    #[command(flatten)]
    pub rows: super::SelectArgs,
    /// Cost table from `tokenscale cost --format csv|json` (its `total` rows; an optional
    /// `latency_s` column gives measured latencies).
    #[arg(long)]
    pub cost: Option<PathBuf>,
    /// The model's config.json instead of a cost table: the analytic FLOPs at every n, exactly.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --config: prompt tokens besides the vision tokens.
    #[arg(long, default_value_t = 64, requires = "config")]
    pub text_tokens: u64,
    /// With --config: decode steps after the prefill.
    #[arg(long, default_value_t = 0, requires = "config")]
    pub new_tokens: u64,
    /// With --config: image views (query-fused model: default 1 + num_crops).
    #[arg(long, requires = "config")]
    pub crops: Option<u64>,
    /// With --config: query-fused model's question tokens in the query decoder's row.
    #[arg(long, default_value_t = 0, requires = "config")]
    pub query_tokens: u64,
    /// With --config: LLaVA reducer [values: pool, uniform, visionzip, fastv, fastv:K].
    #[arg(long, requires = "config", value_parser = super::reducer_name)]
    pub reducer: Option<String>,
    /// Measured latencies: `tokenscale bench`'s bench.jsonl (latency = vision_s + ttft_s, median per n).
    #[arg(long)]
    pub latency: Option<PathBuf>,
    /// Only these series or benchmarks (full series name, benchmark, or its part before/after '@'); repeatable.
    #[arg(long, value_delimiter = ',')]
    pub benchmark: Vec<String>,
    /// Target: the smallest n whose score reaches X.
    #[arg(long, value_name = "X")]
    pub min_score: Option<f64>,
    /// Target: the best n costing at most F FLOPs per answer (e.g. 5e12).
    #[arg(long, value_name = "F")]
    pub max_flops: Option<f64>,
    /// Target: the best n whose measured latency is at most S seconds.
    #[arg(long, value_name = "S")]
    pub max_latency: Option<f64>,
    /// Law used between measured n: paper, paper_dpsi0, power, loglinear, saturating.
    #[arg(long, default_value = "paper")]
    pub law: String,
    /// Fitting space of the law (as `tokenscale fit --space`).
    #[arg(long, value_enum, default_value_t = LawSpace::Score)]
    pub space: LawSpace,
    /// Metrics where lower is better (series, benchmark, or the metric part before '@').
    #[arg(long = "lower-is-better", value_name = "METRIC", value_delimiter = ',')]
    pub lower_is_better: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// Write here (through a temporary file and a rename) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn target(args: &Args) -> Result<Option<Target>> {
    let check = |flag: &str, v: f64| {
        if v.is_finite() {
            Ok(v)
        } else {
            bail!("--{flag} {v}: expected a finite number")
        }
    };
    Ok(match (args.min_score, args.max_flops, args.max_latency) {
        (Some(x), _, _) => Some(Target::MinScore(check("min-score", x)?)),
        (_, Some(f), _) => Some(Target::MaxFlops(check("max-flops", f)?)),
        (_, _, Some(s)) => Some(Target::MaxLatency(check("max-latency", s)?)),
        _ => None,
    })
}

pub fn run(args: Args) -> Result<()> {
    let law = Law::from_name(&args.law).with_context(|| {
        format!("--law {}: unknown (paper, paper_dpsi0, power, loglinear, saturating)", args.law)
    })?;
    let space: Space = args.space.into();
    let render = match args.format {
        Format::Md => to_markdown,
        Format::Json => to_json,
        Format::Csv => to_csv,
    };
    let target = target(&args)?;
    let all = args.rows.read(&args.scores)?;
    let series =
        select(&all, &args.benchmark, &args.scores.display().to_string()).context("--benchmark")?;
    let (cost, mut latency) = match (&args.cost, &args.config) {
        (Some(path), _) => {
            let (table, latency) = read_cost_table(path)?;
            (CostModel::Table(table), latency)
        }
        (None, Some(config)) => {
            let workload = Workload {
                text_tokens: args.text_tokens,
                new_tokens: args.new_tokens,
                crops: args.crops,
                query_text_tokens: args.query_tokens,
                reducer: args.reducer.as_deref().map(Reducer::parse).transpose()?,
                dtype: Dtype::Bf16,
            };
            (CostModel::from_config(read_config(config)?, workload)?, None)
        }
        (None, None) => bail!("give --cost TABLE or --config config.json"),
    };
    if let Some(path) = &args.latency {
        if latency.is_some() {
            bail!("--latency {}: the cost table already has a `latency_s` column; give one of the two", path.display());
        }
        latency = Some(read_bench_latency(path)?);
    }
    if let Some(m) = args
        .lower_is_better
        .iter()
        .find(|m| !all.iter().any(|s| tokenscale_cost::advise::names_series(s, m)))
    {
        bail!(
            "--lower-is-better `{m}`: no series or benchmark matches in {}",
            args.scores.display()
        );
    }
    let opts = AdviseOptions { law, space, target, lower_is_better: args.lower_is_better.clone() };
    let advice = advise(&series, &cost, latency.as_ref(), &opts)?;
    let text = render(&advice);
    match &args.out {
        Some(path) => tokenscale_fsio::write_atomic(path, text.as_bytes()).map_err(Into::into),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

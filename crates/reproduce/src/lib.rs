//! tokenscale-reproduce: the paper's experiment in one run on a query-fused model — generate the
//! synthetic test split, sweep n with the eval machinery, fit the scaling laws, probe image
//! pairs for the bound's n_balance, tabulate the cost, and write `report.md` with figures.
//!
//! Output folder (re-running into it resumes; see [`run`]):
//! `data/` benchmark TSVs · `run/` eval run directory (prediction store, VLMEvalKit scores,
//! predictions) · `scores.json`, `scores.csv` · `fits.json` · `probe.json`, `bound.json` ·
//! `cost.csv` · `figures/` · `report.md` (written last).

#![warn(missing_docs)]

pub mod accuracy;
pub mod benchmark;
pub mod cost;
pub mod figures;
pub mod files;
pub mod fits;
pub mod probe;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokenscale_answer::ModelAnswerer;
use tokenscale_eval::merge::finish_run;
use tokenscale_eval::store::load_run;
use tokenscale_eval::sweep::{read_config, run_sweep, Answerer, RunConfig, SweepConfig};
use tokenscale_eval::{Dataset, ScoreOptions};
use tokenscale_model::checkpoint::Architecture;
use tokenscale_model::dtype::DtypePolicy;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::Device;
use tokenscale_synth::ItemKind;

/// The paper's sweep, 1 to 64 vision tokens.
pub const DEFAULT_VISION_TOKENS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// Everything `tokenscale reproduce` can be told.
#[derive(Clone, Debug)]
pub struct Options {
    /// The query-fused (imgque) checkpoint folder to run.
    pub model_dir: PathBuf,
    /// The output folder; re-running into the same folder resumes.
    pub out: PathBuf,
    /// Test items per benchmark kind.
    pub items: usize,
    /// The item kinds asked (MCQ, yes/no, short answer).
    pub kinds: Vec<ItemKind>,
    /// The vision-token counts n to sweep (e.g. [`DEFAULT_VISION_TOKENS`]).
    pub vision_tokens: Vec<usize>,
    /// Image pairs for the probe.
    pub pairs: usize,
    /// Seed of the probe pairs (the test split is fixed by the generator).
    pub seed: u64,
    /// Cap on generated tokens per answer in the sweep.
    pub max_new_tokens: usize,
    /// Bootstrap resamples of the fits (0: no intervals, else at least 1000 as in `tokenscale fit`).
    pub bootstrap: usize,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Steps the caller ran before (e.g. training the model), reported first with their times.
    pub earlier_steps: Vec<(String, f64)>,
    /// Compute dtype of the model (`Auto`: its storage dtype).
    pub dtype: DtypePolicy,
}

/// Wall time of each step, in order.
#[derive(Clone, Debug, Default)]
pub struct Timings(pub Vec<(String, f64)>);

impl Timings {
    fn time<T>(&mut self, step: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        eprintln!("reproduce: {step} ...");
        let out = work().with_context(|| format!("reproduce: {step}"))?;
        self.0.push((step.to_string(), start.elapsed().as_secs_f64()));
        Ok(out)
    }
}

/// What a run produced, for the command's closing lines.
pub struct Outcome {
    /// Path of the written `report.md`.
    pub report: PathBuf,
    /// Wall time of each step, including the caller's earlier steps.
    pub timings: Timings,
}

impl Options {
    /// Refuses settings no run can use (checked before any work, e.g. before a retraining); on
    /// success, the vision-token counts sorted and deduplicated.
    pub fn check(&self) -> Result<Vec<usize>> {
        if self.items == 0 {
            bail!("items per kind must be at least 1");
        }
        if self.kinds.is_empty() {
            bail!("item kinds: at least one of mcq, yorn, vqa");
        }
        if self.pairs == 0 {
            bail!("probe pairs must be at least 1");
        }
        if self.bootstrap != 0 && self.bootstrap < 1000 {
            bail!(
                "bootstrap resamples must be 0 (no intervals) or at least 1000, got {}",
                self.bootstrap
            );
        }
        let mut ns = self.vision_tokens.clone();
        ns.sort_unstable();
        ns.dedup();
        match ns.first() {
            None => bail!("vision-token counts: at least one value"),
            Some(0) => bail!("vision-token counts: n = 0 is not a budget (n ≥ 1)"),
            _ => Ok(ns),
        }
    }
}

/// Runs the whole experiment into `opts.out`.
///
/// Re-running into the same folder: the benchmark is regenerated (same size: the same bytes), predictions already in `run/` for this model, benchmark and `--max-new-tokens` are
/// reused and only missing (item, n) are answered; a `run/` made with anything else is discarded
/// first. Every other output is recomputed and replaced (each file atomically, `figures/` as a
/// whole), `report.md` last.
pub fn run(opts: &Options) -> Result<Outcome> {
    let ns = opts.check()?;
    let (arch, _) = Architecture::detect(&opts.model_dir)?;
    if !matches!(arch, Architecture::ImgQue) {
        bail!(
            "{}: reproduce runs a query-fused (imgque) model, this is a {} checkpoint",
            opts.model_dir.display(),
            arch.name()
        );
    }
    let mut timings = Timings(opts.earlier_steps.clone());
    let mut notes = Vec::new();
    // Everything that can refuse the input runs before the output folder is touched.
    let (mut answerer, pipeline) = timings.time("load the model", || {
        let answerer = ModelAnswerer::load(&opts.model_dir, None, None, false, opts.dtype)?;
        answerer
            .check_budgets(&ns)
            .with_context(|| format!("{}: vision-token counts", opts.model_dir.display()))?;
        Ok((
            answerer,
            ImgQuePipeline::load(
                &opts.model_dir,
                opts.dtype.resolve(&opts.model_dir)?.dtype,
                &Device::Cpu,
            )?,
        ))
    })?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create", opts.out.display()))?;
    files::remove_temporaries(&opts.out)?;
    let datasets = timings.time("generate the benchmark", || {
        benchmark::write_test_split(&opts.out.join("data"), opts.items, &opts.kinds)
    })?;

    let run_dir = opts.out.join("run");
    let fingerprint = files::model_fingerprint(&opts.model_dir)?;
    let settings = BTreeMap::from([("model".to_string(), fingerprint.clone())]);
    if let Some(note) = discard_stale_run(
        &run_dir,
        &RunConfig::new(&datasets, Some(opts.max_new_tokens), settings.clone()),
    )? {
        notes.push(note);
    }
    let mut sweep = SweepConfig::new(&run_dir, ns.clone());
    sweep.max_new_tokens = Some(opts.max_new_tokens);
    sweep.settings = settings;
    sweep.progress = opts.progress;
    let summary = timings.time("evaluate", || run_sweep(&mut answerer, &datasets, &sweep))?;

    let score_opts = ScoreOptions::default();
    let (model, reducer) = (answerer.model_name(), answerer.reducer());
    let (accuracy, seconds) = timings.time("score", || {
        finish_run(&run_dir, &datasets, score_opts)?;
        let records = load_run(&run_dir)?;
        let lookup = |ds: &Dataset, item: &tokenscale_eval::Item, n: usize| {
            records
                .get(&(model.clone(), reducer.clone(), n, ds.name.clone(), item.index.clone()))
                .map(|r| r.prediction.as_str())
        };
        let table = accuracy::accuracy_table(&datasets, &ns, score_opts, lookup)?;
        Ok((
            table,
            mean_seconds(records.values().filter(|r| r.model == model && r.reducer == reducer)),
        ))
    })?;

    let fits = timings.time("fit the scaling laws", || Ok(fit_subsets(&accuracy, opts)))?;
    let n_max = *ns.last().unwrap_or(&1);
    let probe = timings.time("probe image pairs", || {
        let pairs = benchmark::image_pairs(opts.pairs, opts.seed)?;
        probe::probe_pairs(&pipeline, &pairs, n_max, opts.progress)
    })?;
    let (workload, cost_rows, cost) = timings.time("cost table", || {
        let workload = cost::benchmark_workload(&pipeline, &datasets)?;
        let (rows, totals) = cost::cost_table(&opts.model_dir, &ns, &workload, &seconds)?;
        Ok((workload, rows, totals))
    })?;

    let inputs = report::Inputs {
        opts,
        vision_tokens: &ns,
        model_name: &model,
        fingerprint: &fingerprint,
        datasets: &datasets,
        sweep: &summary,
        accuracy: &accuracy,
        fits: &fits,
        probe: &probe,
        workload: &workload,
        cost_rows: &cost_rows,
        cost: &cost,
        notes: &notes,
    };
    let report = report::write(&opts.out, &inputs, &mut timings)?;
    Ok(Outcome { report, timings })
}

/// Removes `run/` when its stored configuration cannot take this run's (other benchmark bytes,
/// model or decoding limit), so no prediction of another setting is reused.
fn discard_stale_run(run_dir: &Path, wanted: &RunConfig) -> Result<Option<String>> {
    if !run_dir.join("config.json").exists() {
        return Ok(None);
    }
    let reason = match read_config(run_dir) {
        Ok((_, stored)) => match stored.union(wanted) {
            Ok(_) => return Ok(None),
            Err(diff) => diff,
        },
        Err(e) => format!("{e:#}"),
    };
    std::fs::remove_dir_all(run_dir)
        .with_context(|| format!("{}: cannot remove the stale run", run_dir.display()))?;
    let note = format!(
        "{} held predictions of another configuration ({reason}); they were discarded",
        run_dir.display()
    );
    eprintln!("note: {note}");
    Ok(Some(note))
}

/// Mean answer time per n.
fn mean_seconds<'a>(
    records: impl Iterator<Item = &'a tokenscale_eval::store::Record>,
) -> BTreeMap<usize, f64> {
    let mut sums: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for r in records {
        let e = sums.entry(r.n).or_default();
        e.0 += r.seconds;
        e.1 += 1;
    }
    sums.into_iter().map(|(n, (s, c))| (n, s / c as f64)).collect()
}

/// The series the law is fitted to: overall accuracy, and the coarse and fine questions when the
/// benchmark has those categories.
fn fit_subsets(rows: &[accuracy::AccuracyRow], opts: &Options) -> Vec<fits::SeriesFits> {
    let mut out = vec![fits::fit_accuracy(
        "overall",
        &accuracy::series(rows, "overall", "all"),
        opts.bootstrap,
    )];
    for category in ["fine", "coarse"] {
        let points = accuracy::series(rows, "category", category);
        if !points.is_empty() {
            out.push(fits::fit_accuracy(category, &points, opts.bootstrap));
        }
    }
    out
}

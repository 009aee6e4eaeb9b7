//! The n-sweep engine: for every item of every dataset (in this shard), prepare the image once,
//! then answer at each vision-token count n that is not already in the store.
//!
//! Wiring a model (what `tokenscale eval` does):
//!
//! ```no_run
//! use tokenscale_eval::{Dataset, ScoreOptions, SweepConfig};
//! use tokenscale_eval::sweep::{run_sweep, Answerer};
//! use tokenscale_eval::merge::finish_run;
//!
//! struct MyModel; // holds weights, tokenizer...
//! impl Answerer for MyModel {
//!     type Prepared = Vec<f32>; // e.g. vision-tower features, computed once per image
//!     fn model_name(&self) -> String { "my-model".into() }
//!     fn reducer(&self) -> String { "avgpool".into() }
//!     fn prepare_image(&mut self, images: &[image::DynamicImage]) -> anyhow::Result<Vec<f32>> { Ok(vec![]) }
//!     fn answer(&mut self, feats: &Vec<f32>, prompt: &str, n: usize, max_new_tokens: usize) -> anyhow::Result<String> {
//!         Ok(String::new()) // reduce feats to n tokens, generate greedily, decode, strip
//!     }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! let datasets = vec![Dataset::load("MME.tsv".as_ref(), None)?];
//! let mut cfg = SweepConfig::new("runs/mme", vec![1, 8, 16, 32, 64, 128, 256]);
//! cfg.progress = true;                       // progress bar / plain progress lines with ETA
//! // cfg.shard = Shard::parse("3/8")?; cfg.force = true; cfg.max_new_tokens = Some(64);
//! let summary = run_sweep(&mut MyModel, &datasets, &cfg)?;
//! finish_run(&cfg.run_dir, &datasets, ScoreOptions::default())?; // scores.* + predictions/
//! # Ok(()) }
//! ```

use crate::dataset::Dataset;
use crate::kind::Kind;
use crate::prompt::{self, PromptStyle};
use crate::store::{Record, Shard, Store};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokenscale_base::fnv1a;
use tokenscale_base::hash::{FNV_OFFSET, FNV_PRIME};
use tokenscale_base::progress::Progress;
use tokenscale_base::rng::GOLDEN_GAMMA;

/// What a model must provide to be swept over vision-token budgets.
pub trait Answerer {
    /// Image work that does not depend on n (decoded/resized pixels, HD crops, vision-tower
    /// features...), computed once per image and reused for every n.
    type Prepared;
    /// Name used in the store key and the scores table.
    fn model_name(&self) -> String;
    /// Token reducer name used in the store key (e.g. the `--reducer` value).
    fn reducer(&self) -> String {
        "default".to_string()
    }
    /// Prompt builder this model gets (LLaVA-style models get LLaVA's MCQ prompt).
    fn prompt_style(&self) -> PromptStyle {
        PromptStyle::Default
    }
    /// Encodes an item's images once; the result is reused for every n of the sweep.
    fn prepare_image(&mut self, images: &[image::DynamicImage]) -> Result<Self::Prepared>;
    /// Greedy answer for `prompt` with `vision_tokens` image tokens; returns the decoded text.
    fn answer(
        &mut self,
        prepared: &Self::Prepared,
        prompt: &str,
        vision_tokens: usize,
        max_new_tokens: usize,
    ) -> Result<String>;
}

/// Object-safe form of [`Answerer`], so that models of different types can be held together
/// (`Vec<Box<dyn DynAnswerer>>`) and swept one after the other; every `Answerer` whose prepared
/// type is `'static` is one, and `Box<dyn DynAnswerer>` is an `Answerer` again.
pub trait DynAnswerer {
    /// [`Answerer::model_name`], object-safe.
    fn dyn_model_name(&self) -> String;
    /// [`Answerer::reducer`], object-safe.
    fn dyn_reducer(&self) -> String;
    /// [`Answerer::prompt_style`], object-safe.
    fn dyn_prompt_style(&self) -> PromptStyle;
    /// [`Answerer::prepare_image`], with the prepared image boxed as `Any`.
    fn prepare_dyn(&mut self, images: &[image::DynamicImage]) -> Result<Box<dyn std::any::Any>>;
    /// [`Answerer::answer`] on a boxed prepared image; errors if it is of another type.
    fn answer_dyn(
        &mut self,
        prepared: &dyn std::any::Any,
        prompt: &str,
        vision_tokens: usize,
        max_new_tokens: usize,
    ) -> Result<String>;
}

impl<A: Answerer> DynAnswerer for A
where
    A::Prepared: 'static,
{
    fn dyn_model_name(&self) -> String {
        Answerer::model_name(self)
    }
    fn dyn_reducer(&self) -> String {
        Answerer::reducer(self)
    }
    fn dyn_prompt_style(&self) -> PromptStyle {
        Answerer::prompt_style(self)
    }
    fn prepare_dyn(&mut self, images: &[image::DynamicImage]) -> Result<Box<dyn std::any::Any>> {
        Ok(Box::new(self.prepare_image(images)?))
    }
    fn answer_dyn(
        &mut self,
        prepared: &dyn std::any::Any,
        prompt: &str,
        n: usize,
        mnt: usize,
    ) -> Result<String> {
        let p = prepared
            .downcast_ref::<A::Prepared>()
            .ok_or_else(|| anyhow::anyhow!("prepared image of another model"))?;
        self.answer(p, prompt, n, mnt)
    }
}

impl Answerer for Box<dyn DynAnswerer> {
    type Prepared = Box<dyn std::any::Any>;
    fn model_name(&self) -> String {
        (**self).dyn_model_name()
    }
    fn reducer(&self) -> String {
        (**self).dyn_reducer()
    }
    fn prompt_style(&self) -> PromptStyle {
        (**self).dyn_prompt_style()
    }
    fn prepare_image(&mut self, images: &[image::DynamicImage]) -> Result<Self::Prepared> {
        (**self).prepare_dyn(images)
    }
    fn answer(
        &mut self,
        prepared: &Self::Prepared,
        prompt: &str,
        n: usize,
        mnt: usize,
    ) -> Result<String> {
        (**self).answer_dyn(prepared.as_ref(), prompt, n, mnt)
    }
}

/// What decides whether stored predictions are still valid: refused when it differs, unless
/// `--force`. Models, reducers and n are part of each record's key and may change freely.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Every dataset of the run, with the content hash that ties predictions to it.
    pub datasets: Vec<DatasetSpec>,
    /// Override of the per-dataset `max_new_tokens` (None: the paper's limits).
    pub max_new_tokens: Option<usize>,
    /// Free-form settings of the caller that change predictions (dtype, decoding...).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// One dataset as the run fingerprint records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// The dataset name.
    pub name: String,
    /// Its kind (decides prompt and scorer).
    pub kind: Kind,
    /// Path as given (informational; `merge` and `score` use it to find the TSV).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<PathBuf>,
    /// FNV-1a 64 of the TSV bytes, hex.
    pub content_hash: String,
    /// Number of rows (items) in the TSV.
    pub rows: usize,
}

impl DatasetSpec {
    /// The spec of a loaded dataset.
    pub fn of(ds: &Dataset) -> DatasetSpec {
        DatasetSpec {
            name: ds.name.clone(),
            kind: ds.kind,
            path: if ds.path.as_os_str().is_empty() { None } else { Some(ds.path.clone()) },
            content_hash: format!("{:016x}", ds.content_hash),
            rows: ds.items.len(),
        }
    }
}

impl RunConfig {
    /// The config of a run over `datasets` (see the fields).
    pub fn new(
        datasets: &[Dataset],
        max_new_tokens: Option<usize>,
        settings: BTreeMap<String, String>,
    ) -> RunConfig {
        RunConfig {
            datasets: datasets.iter().map(DatasetSpec::of).collect(),
            max_new_tokens,
            settings,
        }
    }

    /// The identity compared across runs (paths excluded: the same file may be mounted elsewhere).
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        for d in &mut c.datasets {
            d.path = None;
        }
        c.datasets.sort_by(|a, b| a.name.cmp(&b.name));
        let s = serde_json::to_string(&c).unwrap();
        format!("{:016x}", fnv1a(s.as_bytes()))
    }
}

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    fingerprint: String,
    config: RunConfig,
}

/// Write `RUN_DIR/config.json`, or check the new configuration against the existing one. The
/// stored configuration is the union of the datasets used so far: adding datasets (or models,
/// reducers, n values) is fine; a dataset whose content or kind changed under the same name, or a
/// different `max_new_tokens` / settings, is refused unless `force` (then the file is replaced and
/// the stored records are kept).
pub fn check_or_write_config(run_dir: &Path, cfg: &RunConfig, force: bool) -> Result<()> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let path = run_dir.join("config.json");
    let mut merged = cfg.clone();
    if path.exists() {
        let old: ConfigFile = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}: not a tokenscale run configuration", path.display()))?;
        match old.config.union(cfg) {
            Ok(u) => {
                if u == old.config {
                    return Ok(());
                }
                merged = u;
            }
            Err(diff) if !force => bail!(
                "{} was produced by a different configuration (fingerprint {} ≠ {}): {diff}; use another run directory, or the `force` option to reuse it anyway",
                run_dir.display(),
                old.fingerprint,
                cfg.fingerprint()
            ),
            Err(_) => eprintln!("warning: `force`: reusing {} although its configuration differs", run_dir.display()),
        }
    }
    let file = ConfigFile { fingerprint: merged.fingerprint(), config: merged };
    Ok(tokenscale_fsio::write_atomic(&path, &serde_json::to_vec_pretty(&file)?)?)
}

impl RunConfig {
    /// The union of two compatible configurations (datasets of both, in first-seen order), or a
    /// description of what conflicts.
    pub fn union(&self, other: &RunConfig) -> std::result::Result<RunConfig, String> {
        let mut d = Vec::new();
        if self.max_new_tokens != other.max_new_tokens {
            d.push(format!(
                "max_new_tokens {:?} vs {:?}",
                self.max_new_tokens, other.max_new_tokens
            ));
        }
        if self.settings != other.settings {
            d.push(format!("settings {:?} vs {:?}", self.settings, other.settings));
        }
        let mut out = self.clone();
        for ds in &other.datasets {
            match self.datasets.iter().find(|x| x.name == ds.name) {
                Some(x) if x.content_hash != ds.content_hash || x.kind != ds.kind => {
                    d.push(format!(
                        "dataset {} has different content or kind ({} {} vs {} {})",
                        ds.name, x.kind, x.content_hash, ds.kind, ds.content_hash
                    ))
                }
                Some(_) => {}
                None => out.datasets.push(ds.clone()),
            }
        }
        if d.is_empty() {
            Ok(out)
        } else {
            Err(d.join("; "))
        }
    }
}

/// Read `RUN_DIR/config.json`.
pub fn read_config(run_dir: &Path) -> Result<(String, RunConfig)> {
    let path = run_dir.join("config.json");
    let f: ConfigFile = serde_json::from_slice(&std::fs::read(&path).with_context(|| {
        format!("{} is not a run directory (no config.json)", run_dir.display())
    })?)
    .with_context(|| format!("{}: not a tokenscale run configuration", path.display()))?;
    Ok((f.fingerprint, f.config))
}

/// How to run a sweep.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The run folder holding the shard stores and the run config.
    pub run_dir: PathBuf,
    /// The vision-token counts n to answer every item at.
    pub vision_tokens: Vec<usize>,
    /// Which slice of each dataset's rows this process answers.
    pub shard: Shard,
    /// Reuse a run dir whose stored run config differs, instead of refusing it.
    pub force: bool,
    /// Override of the per-dataset `max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// Caller settings that change predictions (part of the fingerprint).
    pub settings: BTreeMap<String, String>,
    /// Show progress: a bar on a terminal, plain lines elsewhere (see tokenscale_base::progress).
    pub progress: bool,
    /// Stop at the first item that fails instead of recording it and going on.
    pub fail_fast: bool,
    /// Stop after this many new answers (tests).
    pub max_answers: Option<usize>,
}

impl SweepConfig {
    /// A config for `run_dir` and the counts n, with every other field at its default
    /// (one shard, no force, the paper's token limits, no progress).
    pub fn new(run_dir: impl Into<PathBuf>, vision_tokens: Vec<usize>) -> SweepConfig {
        SweepConfig {
            run_dir: run_dir.into(),
            vision_tokens,
            shard: Shard::default(),
            force: false,
            max_new_tokens: None,
            settings: BTreeMap::new(),
            progress: false,
            fail_fast: false,
            max_answers: None,
        }
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepSummary {
    /// New answers made in this sweep (errors not included).
    pub answered: usize,
    /// Answers that failed (recorded as error records in the store; a rerun retries them).
    pub failed: usize,
    /// (item, n) pairs already stored before the sweep, so not asked again.
    pub skipped: usize,
    /// Images encoded by `prepare_image` (once per image, shared by all n).
    pub images_prepared: usize,
    /// Seconds spent in `prepare_image`.
    pub prepare_seconds: f64,
    /// Seconds spent in `answer`.
    pub answer_seconds: f64,
    /// Wall-clock seconds of the whole sweep.
    pub wall_seconds: f64,
}

/// Run one answerer over `datasets` × `cfg.vision_tokens` (this shard's rows), appending every
/// prediction to the run's store. Items whose every n is already stored are skipped without
/// touching the model; image preparation happens once per image and is reused for all n.
/// An item that fails (its image does not decode, its prompt is too long...) is stored as an
/// error record and the sweep goes on (`cfg.fail_fast`: the sweep stops with the error);
/// failing to write the store always stops it.
pub fn run_sweep<A: Answerer>(
    answerer: &mut A,
    datasets: &[Dataset],
    cfg: &SweepConfig,
) -> Result<SweepSummary> {
    if cfg.vision_tokens.is_empty() {
        bail!("no vision-token counts to sweep");
    }
    let mut seen = std::collections::HashSet::new();
    let vision_tokens: Vec<usize> =
        cfg.vision_tokens.iter().copied().filter(|n| seen.insert(*n)).collect();
    let run_cfg = RunConfig::new(datasets, cfg.max_new_tokens, cfg.settings.clone());
    check_or_write_config(&cfg.run_dir, &run_cfg, cfg.force)?;
    let mut store = Store::open(&cfg.run_dir, cfg.shard)?;
    let model = answerer.model_name();
    let reducer = answerer.reducer();
    let style = answerer.prompt_style();
    let start = Instant::now();
    let mut sum = SweepSummary::default();

    // Work list: (dataset, item, missing n values).
    let mut work: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    let mut total = 0u64;
    for (di, ds) in datasets.iter().enumerate() {
        for (ii, it) in ds.items.iter().enumerate() {
            if !cfg.shard.owns(it.row) {
                continue;
            }
            let missing: Vec<usize> = vision_tokens
                .iter()
                .copied()
                .filter(|&n| {
                    !store.contains(&(
                        model.clone(),
                        reducer.clone(),
                        n,
                        ds.name.clone(),
                        it.index.clone(),
                    ))
                })
                .collect();
            sum.skipped += vision_tokens.len() - missing.len();
            if !missing.is_empty() {
                total += missing.len() as u64;
                work.push((di, ii, missing));
            }
        }
    }
    let bar =
        cfg.progress.then(|| Progress::new(&format!("eval {model}/{reducer}"), total, "answers"));
    let mut cache: Option<(usize, String, A::Prepared)> = None;
    'outer: for (di, ii, missing) in work {
        let ds = &datasets[di];
        let it = &ds.items[ii];
        let place = format!("{}: line {}: index {}", ds.name, it.line, it.index);
        let base_record = |n: usize| Record {
            model: model.clone(),
            reducer: reducer.clone(),
            n,
            dataset: ds.name.clone(),
            index: it.index.clone(),
            prediction: String::new(),
            seconds: 0.0,
            error: None,
        };
        let reuse = matches!(&cache, Some((d, k, _)) if *d == di && *k == it.image_key);
        if !reuse {
            let t = Instant::now();
            let prepared = it.decode_images().and_then(|imgs| answerer.prepare_image(&imgs));
            sum.prepare_seconds += t.elapsed().as_secs_f64();
            match prepared {
                Ok(p) => {
                    sum.images_prepared += 1;
                    cache = Some((di, it.image_key.clone(), p));
                }
                Err(e) => {
                    cache = None;
                    let e = e.context(format!("{place}: preparing the image"));
                    if cfg.fail_fast {
                        return Err(e);
                    }
                    for n in missing {
                        failure(&mut store, &mut sum, bar.as_ref(), base_record(n), &e)?;
                    }
                    continue;
                }
            }
        }
        let Some((_, _, prepared)) = cache.as_ref() else { continue };
        let text = prompt::build_prompt(it, ds.kind, style);
        let mnt = cfg.max_new_tokens.unwrap_or_else(|| prompt::max_new_tokens(&ds.name, ds.kind));
        for n in missing {
            if let Some(m) = cfg.max_answers {
                if sum.answered >= m {
                    break 'outer;
                }
            }
            let t = Instant::now();
            let answer = answerer.answer(prepared, &text, n, mnt);
            let secs = t.elapsed().as_secs_f64();
            sum.answer_seconds += secs;
            match answer {
                Ok(prediction) => {
                    store.append(Record {
                        prediction,
                        seconds: (secs * 1e6).round() / 1e6,
                        ..base_record(n)
                    })?;
                    sum.answered += 1;
                    if let Some(bar) = &bar {
                        bar.inc(1);
                    }
                }
                Err(e) => {
                    let e = e.context(format!("{place}: n={n}"));
                    if cfg.fail_fast {
                        return Err(e);
                    }
                    failure(&mut store, &mut sum, bar.as_ref(), base_record(n), &e)?;
                }
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    sum.wall_seconds = start.elapsed().as_secs_f64();
    // One line per sweep invocation (timings of shared image work vs answers), for reports.
    let log = serde_json::json!({
        "model": model, "reducer": reducer, "shard": format!("{}/{}", cfg.shard.k, cfg.shard.count),
        "vision_tokens": cfg.vision_tokens, "summary": &sum,
    });
    if let Ok(mut f) =
        std::fs::OpenOptions::new().create(true).append(true).open(cfg.run_dir.join("sweeps.jsonl"))
    {
        use std::io::Write;
        let _ = writeln!(f, "{log}");
    }
    Ok(sum)
}

/// Store `record` as failed with `error`, say so once, and count it.
fn failure(
    store: &mut Store,
    sum: &mut SweepSummary,
    bar: Option<&Progress>,
    record: Record,
    error: &anyhow::Error,
) -> Result<()> {
    let message = format!("{error:#}");
    let line = format!("warning: {message} (recorded; a rerun retries it)");
    match bar {
        Some(bar) => bar.println(&line),
        None => eprintln!("{line}"),
    }
    store.append(Record { error: Some(message), ..record })?;
    sum.failed += 1;
    if let Some(bar) = bar {
        bar.inc(1);
    }
    Ok(())
}

/// A deterministic *reference answerer for tests and demos* — not a model. It knows the ground
/// truth of the datasets it was built from and answers correctly with a probability that grows
/// with n (p(n) = 0.3 + 0.65·(1 − e^(−n/48))), decided by a hash of (image, prompt), so the same
/// question is answered identically in every run and correctness is monotone in n.
pub struct EchoAnswerer {
    name: String,
    reducer: String,
    truth: HashMap<u64, (Kind, String, Vec<String>)>,
    /// Sleep per answer (for kill-and-resume tests).
    pub answer_sleep: Duration,
    /// Sleep per prepared image (to model shared image work).
    pub prepare_sleep: Duration,
}

fn pixel_hash(images: &[image::DynamicImage]) -> u64 {
    let mut h = FNV_OFFSET;
    for im in images {
        let rgb = im.to_rgb8();
        h ^= fnv1a(rgb.as_raw()).wrapping_add(rgb.width() as u64 * 31 + rgb.height() as u64);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(GOLDEN_GAMMA);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}

impl EchoAnswerer {
    /// Build from the datasets it will be asked about (decodes their images once).
    pub fn new(name: &str, datasets: &[Dataset], style: PromptStyle) -> Result<EchoAnswerer> {
        let mut truth = HashMap::new();
        for ds in datasets {
            let mut img_hash: HashMap<String, u64> = HashMap::new();
            for it in &ds.items {
                let ph = match img_hash.get(&it.image_key) {
                    Some(h) => *h,
                    None => {
                        let h = pixel_hash(&it.decode_images()?);
                        img_hash.insert(it.image_key.clone(), h);
                        h
                    }
                };
                let text = prompt::build_prompt(it, ds.kind, style);
                let key = mix(ph, fnv1a(text.as_bytes()));
                let opts: Vec<String> = it.options.iter().map(|(l, _)| l.to_string()).collect();
                let ans = it.answers().first().cloned().unwrap_or_default();
                truth.insert(key, (ds.kind, ans, opts));
            }
        }
        Ok(EchoAnswerer {
            name: name.to_string(),
            reducer: "default".into(),
            truth,
            answer_sleep: Duration::ZERO,
            prepare_sleep: Duration::ZERO,
        })
    }

    /// Reports `r` as the reducer name (the answers do not change).
    pub fn with_reducer(mut self, r: &str) -> Self {
        self.reducer = r.to_string();
        self
    }

    /// The probability p(n) = 0.3 + 0.65·(1 − e^(−n/48)) of a correct answer at n.
    pub fn p_correct(n: usize) -> f64 {
        0.3 + 0.65 * (1.0 - (-(n as f64) / 48.0).exp())
    }
}

impl Answerer for EchoAnswerer {
    type Prepared = u64;
    fn model_name(&self) -> String {
        self.name.clone()
    }
    fn reducer(&self) -> String {
        self.reducer.clone()
    }
    fn prepare_image(&mut self, images: &[image::DynamicImage]) -> Result<u64> {
        std::thread::sleep(self.prepare_sleep);
        Ok(pixel_hash(images))
    }
    fn answer(
        &mut self,
        prepared: &u64,
        prompt: &str,
        n: usize,
        _max_new_tokens: usize,
    ) -> Result<String> {
        std::thread::sleep(self.answer_sleep);
        let key = mix(*prepared, fnv1a(prompt.as_bytes()));
        let Some((kind, ans, opts)) = self.truth.get(&key) else {
            return Ok("I don't know.".to_string());
        };
        let u = (mix(key, 0x5eed) % 1_000_000) as f64 / 1_000_000.0;
        let correct = u < Self::p_correct(n);
        Ok(match (kind, correct) {
            (_, true) => ans.clone(),
            (Kind::Mcq, false) => {
                let others: Vec<&String> = opts.iter().filter(|o| *o != ans).collect();
                if others.is_empty() {
                    "Z".into()
                } else {
                    others[(key % others.len() as u64) as usize].clone()
                }
            }
            (Kind::Yorn, false) => if ans == "Yes" { "No" } else { "Yes" }.to_string(),
            (_, false) => "unknown".to_string(),
        })
    }
}

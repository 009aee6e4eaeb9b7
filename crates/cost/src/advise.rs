//! Which vision-token budget to use: per benchmark, the Pareto frontier of score against cost
//! over the measured n, and the n that meets a target — a score to reach (the smallest such n), or
//! a FLOPs or latency budget (the n with the best score within it, the smallest on ties).
//!
//! Between measured n the score comes from a scaling law fitted by tokenscale-law, with the same
//! point estimate `tokenscale fit` reports (`fit_series`; no bootstrap is needed here). Every
//! answer says whether its n lies outside the measured n (the law extrapolates there), and when no
//! n meets the target it says so and why. Beside the law's answer, the answer read off the
//! measured points alone is given.
//!
//! Cost of n: [`CostModel::Config`] runs this crate's analytic model (exact at every n the model
//! allows); [`CostModel::Table`] reads a `tokenscale cost` table (see [`input::CostTable`]; never
//! beyond its listed n). Latency: an [`input::LatencyTable`] (median measured seconds per n,
//! piecewise linear between measured n, never beyond). Candidate n are the integers the cost
//! source covers (with a latency target: also the latency table). FLOPs never decrease with n,
//! which the FLOPs-budget search relies on; measured latency is scanned n by n.

pub mod input;
mod report;

use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use tokenscale_law::data::SeriesData;
use tokenscale_law::fit::{fit_series, FitOptions, FitResult, Space};
use tokenscale_law::{Direction, Law};

use crate::{cost, Arch, Workload};
pub use input::{CostTable, LatencyTable};
pub use report::{to_csv, to_json, to_markdown};

/// The largest n probed when the configuration itself does not bound n (e.g. a CLIP tower).
const N_CAP: u64 = 1 << 20;

/// Where the FLOPs of a budget n come from.
#[derive(Debug, Clone)]
pub enum CostModel {
    /// The analytic model for a config and workload; `max_n` is the largest n it allows.
    Config {
        /// The architecture.
        arch: Box<Arch>,
        /// Everything besides n the cost depends on.
        workload: Workload,
        /// The largest n the model allows (found by bisection, at most 2²⁰).
        max_n: u64,
    },
    /// A `tokenscale cost` table: FLOPs at its listed n only.
    Table(CostTable),
}

impl CostModel {
    /// The analytic model, with the largest n the model allows (n = 1 must be allowed: its error
    /// is returned otherwise). Validity is monotone in n (every limit is an upper bound on n).
    pub fn from_config(arch: Arch, workload: Workload) -> Result<Self> {
        cost(&arch, 1, &workload)?;
        let ok = |n: u64| cost(&arch, n, &workload).is_ok();
        let max_n = if ok(N_CAP) {
            N_CAP
        } else {
            let (mut lo, mut hi) = (1, N_CAP);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if ok(mid) {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            lo
        };
        Ok(Self::Config { arch: Box::new(arch), workload, max_n })
    }

    /// The n this source can cost.
    pub fn range(&self) -> (u64, u64) {
        match self {
            Self::Config { max_n, .. } => (1, *max_n),
            Self::Table(t) => t.range(),
        }
    }

    /// Total FLOPs at n, or why they are unknown.
    pub fn flops(&self, n: u64) -> std::result::Result<f64, String> {
        match self {
            Self::Config { arch, workload, .. } => match cost(arch, n, workload) {
                Ok(rows) => Ok(rows.last().map_or(0, |r| r.flops) as f64),
                Err(e) => Err(e.to_string()),
            },
            Self::Table(t) => t.flops(n).ok_or_else(|| {
                let (lo, hi) = t.range();
                format!("n = {n} is outside the n listed in {} ({lo} … {hi})", t.origin)
            }),
        }
    }

    /// One line naming the source for reports (the model and workload, or the table's file).
    pub fn describe(&self) -> String {
        match self {
            Self::Config { arch, workload, max_n } => format!(
                "analytic model ({} config; {} text tokens, {} new tokens{}{}; n ≤ {max_n})",
                arch.name(),
                workload.text_tokens,
                workload.new_tokens,
                workload.crops.map_or(String::new(), |k| format!(", {k} crops")),
                workload.reducer.map_or(String::new(), |r| format!(", reducer {r:?}")),
            ),
            Self::Table(t) => format!("{} (total FLOPs; {})", t.origin, t.interpolation()),
        }
    }
}

/// What the advice is for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// Reach at least this score (at most, for lower-is-better metrics).
    MinScore(f64),
    /// Spend at most this many FLOPs per answer.
    MaxFlops(f64),
    /// Wait at most this many seconds (the latency table's measure).
    MaxLatency(f64),
}

/// How to advise.
#[derive(Debug, Clone)]
pub struct AdviseOptions {
    /// The scaling law fitted to each series.
    pub law: Law,
    /// Where it is fitted (scores or log scores).
    pub space: Space,
    /// What to choose n for; `None`: only the frontier.
    pub target: Option<Target>,
    /// Series / benchmarks / metrics (the part before '@') where lower is better.
    pub lower_is_better: Vec<String>,
}

/// One measured point.
#[derive(Debug, Clone, Serialize)]
pub struct PointRow {
    /// The measured budget.
    pub n: u64,
    /// Its measured score.
    pub score: f64,
    /// Total FLOPs at n (`None` when the cost source does not cover n).
    pub flops: Option<f64>,
    /// Median latency at n in seconds (`None` without a latency table covering n).
    pub latency_s: Option<f64>,
    /// On the score-vs-FLOPs Pareto frontier (no other point costs no more and scores at least as
    /// well, one of them strictly). False when the FLOPs are unknown.
    pub pareto_flops: bool,
    /// The same against latency (None without a latency at this n).
    pub pareto_latency: Option<bool>,
}

/// An n chosen for a target.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The chosen budget.
    pub n: u64,
    /// The law's score at n (`by_law`) or the measured score (`by_measurement`).
    pub score: f64,
    /// Total FLOPs at n, when known.
    pub flops: Option<f64>,
    /// Latency at n in seconds, when known.
    pub latency_s: Option<f64>,
    /// n lies outside the measured n: the law extrapolates.
    pub extrapolated: bool,
}

/// The answer to one target for one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TargetAdvice {
    /// The target.
    pub target: Target,
    /// The integer n searched (the cost source's range; with a latency target, also the latency table's).
    pub searched: Option<(u64, u64)>,
    /// The n the fitted law gives (`None`: no n meets the target, or no law).
    pub by_law: Option<Choice>,
    /// The n the measured points alone give.
    pub by_measurement: Option<Choice>,
    /// One sentence: the answer, or why there is none.
    pub summary: String,
}

/// The fitted law, as far as the advice uses it.
#[derive(Debug, Clone, Serialize)]
pub struct LawSummary {
    /// Which law.
    pub law: Law,
    /// Its fitting space.
    pub space: Space,
    /// The law with its fitted parameters written in.
    pub formula: String,
    /// The fitted parameters by name.
    pub params: BTreeMap<String, f64>,
    /// R² in the fitting space.
    pub r2: f64,
}

/// The advice for one series.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkAdvice {
    /// The series' full name.
    pub series: String,
    /// Its benchmark (or metric) name.
    pub benchmark: String,
    /// Whether higher or lower scores are better.
    pub direction: Direction,
    /// The fitted law (`None` when it could not be fitted; a note says why).
    pub law: Option<LawSummary>,
    /// The measured points with their cost and frontier marks, by n.
    pub points: Vec<PointRow>,
    /// The answer to the target, when one was asked.
    pub target: Option<TargetAdvice>,
    /// What was left out and why (points without a cost, a law that failed).
    pub notes: Vec<String>,
}

/// The whole advice: where costs came from and one entry per series.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    /// The cost source, as `CostModel::describe` names it.
    pub cost_source: String,
    /// The latency table's file and measure, when one was given.
    pub latency_source: Option<String>,
    /// The law fitted to every series.
    pub law: Law,
    /// Its fitting space.
    pub space: Space,
    /// One entry per selected series, in file order.
    pub benchmarks: Vec<BenchmarkAdvice>,
}

/// Whether `key` names the series: its full name, its benchmark, or the benchmark's metric part
/// (before '@') or dataset part (after '@').
pub fn names_series(s: &SeriesData, key: &str) -> bool {
    s.name == key
        || s.benchmark == key
        || s.benchmark.split('@').next() == Some(key)
        || s.benchmark.rsplit('@').next() == Some(key)
}

/// The series named by `keys` (all when empty), in file order; an unknown key is an error that
/// lists the benchmarks there are.
pub fn select<'a>(
    series: &'a [SeriesData],
    keys: &[String],
    origin: &str,
) -> Result<Vec<&'a SeriesData>> {
    if let Some(k) = keys.iter().find(|k| !series.iter().any(|s| names_series(s, k))) {
        let mut names: Vec<&str> = series.iter().map(|s| s.benchmark.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        bail!(
            "benchmark `{k}`: no series or benchmark of that name in {origin} (benchmarks: {})",
            names.join(", ")
        );
    }
    Ok(series
        .iter()
        .filter(|s| keys.is_empty() || keys.iter().any(|k| names_series(s, k)))
        .collect())
}

fn better(a: f64, b: f64, dir: Direction) -> bool {
    match dir {
        Direction::HigherIsBetter => a > b,
        Direction::LowerIsBetter => a < b,
    }
}

fn meets(score: f64, goal: f64, dir: Direction) -> bool {
    !better(goal, score, dir)
}

/// Pareto flags over (cost, score) points: a point is kept unless another costs no more and scores
/// at least as well, one of the two strictly.
pub fn pareto(points: &[(f64, f64)], dir: Direction) -> Vec<bool> {
    points
        .iter()
        .map(|&(c, s)| {
            !points
                .iter()
                .any(|&(c2, s2)| c2 <= c && meets(s2, s, dir) && (c2 < c || better(s2, s, dir)))
        })
        .collect()
}

/// Pareto flags for the points that have a cost; false / None for the others.
fn pareto_where_known(costs: &[Option<f64>], scores: &[f64], dir: Direction) -> Vec<Option<bool>> {
    let known: Vec<(usize, (f64, f64))> = costs
        .iter()
        .zip(scores)
        .enumerate()
        .filter_map(|(i, (c, s))| Some((i, ((*c)?, *s))))
        .collect();
    let flags = pareto(&known.iter().map(|k| k.1).collect::<Vec<_>>(), dir);
    let mut out = vec![None; costs.len()];
    for ((i, _), f) in known.iter().zip(flags) {
        out[*i] = Some(f);
    }
    out
}

/// Advice for every series.
pub fn advise(
    series: &[&SeriesData],
    cost: &CostModel,
    latency: Option<&LatencyTable>,
    opts: &AdviseOptions,
) -> Result<Advice> {
    if matches!(opts.target, Some(Target::MaxLatency(_))) && latency.is_none() {
        bail!("a maximum-latency target needs measured latencies: a tokenscale bench JSONL, or a `latency_s` column in the cost table");
    }
    let benchmarks =
        series.iter().map(|s| advise_one(s, cost, latency, opts)).collect::<Result<Vec<_>>>()?;
    Ok(Advice {
        cost_source: cost.describe(),
        latency_source: latency.map(|l| format!("{} ({})", l.origin, l.measure)),
        law: opts.law,
        space: opts.space,
        benchmarks,
    })
}

fn advise_one(
    s: &SeriesData,
    cost: &CostModel,
    latency: Option<&LatencyTable>,
    opts: &AdviseOptions,
) -> Result<BenchmarkAdvice> {
    let dir = if opts.lower_is_better.iter().any(|k| names_series(s, k)) {
        Direction::LowerIsBetter
    } else {
        Direction::HigherIsBetter
    };
    let mut notes = Vec::new();
    let mut ns = Vec::new();
    for &(n, _) in &s.points {
        if !(n >= 1.0 && n.fract() == 0.0 && n <= N_CAP as f64) {
            bail!(
                "series `{}`: n = {n} is not a whole number of vision tokens (1 … {N_CAP})",
                s.name
            );
        }
        ns.push(n as u64);
    }
    let scores: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    let flops: Vec<Option<f64>> = ns
        .iter()
        .map(|&n| {
            cost.flops(n)
                .map_err(|why| {
                    notes
                        .push(format!("measured n = {n} has no cost, left off the frontier: {why}"))
                })
                .ok()
        })
        .collect();
    let lat: Vec<Option<f64>> = ns.iter().map(|&n| latency.and_then(|l| l.at(n))).collect();
    let pf = pareto_where_known(&flops, &scores, dir);
    let pl = pareto_where_known(&lat, &scores, dir);
    let points: Vec<PointRow> = (0..ns.len())
        .map(|i| PointRow {
            n: ns[i],
            score: scores[i],
            flops: flops[i],
            latency_s: lat[i],
            pareto_flops: pf[i] == Some(true),
            pareto_latency: pl[i],
        })
        .collect();

    let fit_opts =
        FitOptions { space: opts.space, direction: dir, bootstrap: 0, ..Default::default() };
    let fit = match fit_series(&s.name, &s.points, &[], opts.law, &fit_opts) {
        Ok(f) => Some(f),
        Err(e) => {
            notes.push(format!(
                "no {} law for this series ({e}); only the measured points are used",
                opts.law.name()
            ));
            None
        }
    };
    notes.extend(
        fit.iter()
            .flat_map(|f| f.notes.iter().filter(|n| !n.contains("degenerate intervals")).cloned()),
    );
    let target = opts.target.map(|t| advise_target(t, &points, fit.as_ref(), cost, latency, dir));
    Ok(BenchmarkAdvice {
        series: s.name.clone(),
        benchmark: s.benchmark.clone(),
        direction: dir,
        law: fit.map(|f| LawSummary {
            law: f.law,
            space: f.space,
            formula: f.formula,
            params: f.params,
            r2: f.r2,
        }),
        points,
        target,
        notes,
    })
}

/// What the target asks of one n: its cost or score, and whether it is within the target.
struct Searcher<'a> {
    cost: &'a CostModel,
    latency: Option<&'a LatencyTable>,
}

impl Searcher<'_> {
    fn choice(&self, n: u64, score: f64, measured: (u64, u64)) -> Choice {
        Choice {
            n,
            score,
            flops: self.cost.flops(n).ok(),
            latency_s: self.latency.and_then(|l| l.at(n)),
            extrapolated: n < measured.0 || n > measured.1,
        }
    }

    /// Candidate n: the cost source's range, narrowed to the latency table's for a latency target.
    fn range(&self, target: Target) -> Option<(u64, u64)> {
        let (lo, hi) = self.cost.range();
        match (target, self.latency.and_then(LatencyTable::range)) {
            (Target::MaxLatency(_), Some((a, b))) => {
                (lo.max(a) <= hi.min(b)).then(|| (lo.max(a), hi.min(b)))
            }
            (Target::MaxLatency(_), None) => None,
            _ => Some((lo, hi)),
        }
    }

    /// The largest n in [lo, hi] whose FLOPs fit the budget (FLOPs never decrease with n).
    fn flops_limit(&self, (lo, hi): (u64, u64), budget: f64) -> Option<u64> {
        let fits = |n: u64| self.cost.flops(n).is_ok_and(|f| f <= budget);
        if !fits(lo) {
            return None;
        }
        let (mut a, mut b) = (lo, hi);
        if fits(b) {
            return Some(b);
        }
        while b - a > 1 {
            let mid = a + (b - a) / 2;
            if fits(mid) {
                a = mid
            } else {
                b = mid
            }
        }
        Some(a)
    }
}

fn advise_target(
    target: Target,
    points: &[PointRow],
    fit: Option<&FitResult>,
    cost: &CostModel,
    latency: Option<&LatencyTable>,
    dir: Direction,
) -> TargetAdvice {
    let search = Searcher { cost, latency };
    let measured = (
        points.iter().map(|p| p.n).min().unwrap_or(1),
        points.iter().map(|p| p.n).max().unwrap_or(1),
    );
    let range = search.range(target);
    // [lo, hi] narrowed to a FLOPs budget; a latency budget is checked n by n.
    let window = match (target, range) {
        (Target::MaxFlops(budget), Some(r)) => search.flops_limit(r, budget).map(|top| (r.0, top)),
        (_, r) => r,
    };
    let within = |n: u64| match target {
        Target::MaxLatency(budget) => latency.and_then(|l| l.at(n)).is_some_and(|t| t <= budget),
        _ => true,
    };
    let by_law = fit.zip(window).and_then(|(f, (lo, hi))| {
        let mut candidates = (lo..=hi).filter(|&n| within(n));
        let n = match target {
            Target::MinScore(goal) => candidates.find(|&n| meets(f.eval(n as f64), goal, dir))?,
            _ => candidates.fold(None, |best: Option<u64>, n| match best {
                Some(b) if !better(f.eval(n as f64), f.eval(b as f64), dir) => Some(b),
                _ => Some(n),
            })?,
        };
        Some(search.choice(n, f.eval(n as f64), measured))
    });
    let by_measurement = {
        let ok = |p: &&PointRow| match target {
            Target::MinScore(goal) => meets(p.score, goal, dir),
            Target::MaxFlops(budget) => p.flops.is_some_and(|f| f <= budget),
            Target::MaxLatency(budget) => p.latency_s.is_some_and(|t| t <= budget),
        };
        let mut ok: Vec<&PointRow> = points.iter().filter(ok).collect();
        ok.sort_by_key(|p| p.n);
        let pick = match target {
            Target::MinScore(_) => ok.first().copied(),
            _ => ok.iter().copied().fold(None, |best: Option<&PointRow>, p| match best {
                Some(b) if !better(p.score, b.score, dir) => Some(b),
                _ => Some(p),
            }),
        };
        pick.map(|p| Choice {
            n: p.n,
            score: p.score,
            flops: p.flops,
            latency_s: p.latency_s,
            extrapolated: false,
        })
    };
    let feasible = window.is_some_and(|(lo, hi)| (lo..=hi).any(within));
    let summary =
        summarise(target, range, feasible, fit, &by_law, &by_measurement, &search, measured, dir);
    TargetAdvice { target, searched: range, by_law, by_measurement, summary }
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    target: Target,
    range: Option<(u64, u64)>,
    feasible: bool,
    fit: Option<&FitResult>,
    by_law: &Option<Choice>,
    by_measurement: &Option<Choice>,
    search: &Searcher,
    measured: (u64, u64),
    dir: Direction,
) -> String {
    let measured_text = match by_measurement {
        Some(c) => format!("measured alone: n = {} ({:.4})", c.n, c.score),
        None => "no measured n meets it".into(),
    };
    if let Some(c) = by_law {
        let what = match target {
            Target::MinScore(_) => "smallest n that meets it",
            _ => "best n within it",
        };
        let cost = c.flops.map_or(String::new(), |f| format!(", {}", report::flops_text(f)));
        let lat = c.latency_s.map_or(String::new(), |t| format!(", {t:.3} s"));
        let extra = if c.extrapolated {
            format!("; EXTRAPOLATED: n is outside the measured n ({} … {}), the law is used beyond its data", measured.0, measured.1)
        } else {
            String::new()
        };
        return format!(
            "{what}: n = {} (law: {:.4}{cost}{lat}){extra}; {measured_text}",
            c.n, c.score
        );
    }
    let why = match (range, fit, target) {
        (None, _, _) => {
            "no n to search: the latency table and the cost source share no n".to_string()
        }
        (Some((lo, hi)), _, Target::MaxFlops(budget)) if !feasible => match search.cost.flops(lo) {
            Ok(f) => format!(
                "no n in {lo} … {hi} costs at most {}: n = {lo} already costs {}",
                report::flops_text(budget),
                report::flops_text(f)
            ),
            Err(e) => format!("no n in {lo} … {hi} can be costed: {e}"),
        },
        (Some((lo, hi)), _, Target::MaxLatency(budget)) if !feasible => {
            let fastest = search.latency.and_then(|l| {
                l.points.iter().filter(|p| p.0 >= lo && p.0 <= hi).map(|p| p.1).reduce(f64::min)
            });
            format!(
                "no measured latency in {lo} … {hi} is at most {budget} s (fastest: {} s)",
                fastest.map_or("?".into(), |t| format!("{t:.3}"))
            )
        }
        (_, None, _) => "no law to interpolate with".into(),
        (Some((lo, hi)), Some(f), Target::MinScore(goal)) => {
            let best = (lo..=hi).map(|n| (n, f.eval(n as f64))).fold(
                None,
                |b: Option<(u64, f64)>, (n, s)| match b {
                    Some((_, bs)) if !better(s, bs, dir) => b,
                    _ => Some((n, s)),
                },
            );
            let (n, s) = best.unwrap_or((lo, f.eval(lo as f64)));
            format!("no n in {lo} … {hi} reaches {goal}: the law's best there is {s:.4} at n = {n}")
        }
        (Some(_), Some(_), _) => "the law gives no finite score within the budget".into(),
    };
    format!("{why}; {measured_text}")
}

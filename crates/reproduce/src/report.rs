//! The run's outputs: `scores.json` (every reported number), `scores.csv` (accuracy rows),
//! `fits.json`, `probe.json`, `bound.json`, `cost.csv`, `figures/` and `report.md`, which is
//! built from the same values as `scores.json` and written last.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use tokenscale_cost::{human, human_bytes, Row as CostRow, Workload};
use tokenscale_eval::sweep::SweepSummary;
use tokenscale_eval::Dataset;

use crate::accuracy::AccuracyRow;
use crate::cost::CostSummary;
use crate::fits::{fmt_value, SeriesFits};
use crate::probe::ProbeOutcome;
use crate::{figures, Options, Timings};
use tokenscale_fsio::replace_dir;
use tokenscale_fsio::write_atomic;

/// What the steps produced.
pub struct Inputs<'a> {
    /// The run's options.
    pub opts: &'a Options,
    /// The vision-token counts n that were swept.
    pub vision_tokens: &'a [usize],
    /// The model's name, as shown in the report.
    pub model_name: &'a str,
    /// The model's content fingerprint (ties the sweep's results to these weights).
    pub fingerprint: &'a str,
    /// The generated test datasets, one per item kind.
    pub datasets: &'a [Dataset],
    /// The sweep's summary (items answered, failed, skipped; times).
    pub sweep: &'a SweepSummary,
    /// The accuracy table, every axis and subset at every n.
    pub accuracy: &'a [AccuracyRow],
    /// The laws fitted to each accuracy series.
    pub fits: &'a [SeriesFits],
    /// The probe's outcome on image pairs.
    pub probe: &'a ProbeOutcome,
    /// What the cost depends on besides n (text tokens, crops, dtype).
    pub workload: &'a Workload,
    /// The full cost table: one row per component and n.
    pub cost_rows: &'a [CostRow],
    /// The per-n cost totals, with measured answer times.
    pub cost: &'a [CostSummary],
    /// Notes to print in the report (e.g. a stale run that was discarded).
    pub notes: &'a [String],
}

#[derive(Serialize)]
struct FitRow<'a> {
    series: &'a str,
    law: &'static str,
    formula: &'a str,
    params: &'a std::collections::BTreeMap<String, f64>,
    /// None without bootstrap resamples.
    ci95: Option<&'a std::collections::BTreeMap<String, [f64; 2]>>,
    r2: f64,
    aic: f64,
    delta_aic: f64,
}

#[derive(Serialize)]
struct ProbeSummary<'a> {
    pairs: u64,
    vision_tokens: usize,
    layer: &'static str,
    /// n_balance(n) at the largest n.
    n_balance: Option<f64>,
    balance_point: Option<usize>,
    lambda: Option<f64>,
    lambda_r2: Option<f64>,
    notes: &'a [String],
    error: Option<&'a str>,
}

/// Everything `report.md` states, as `scores.json` holds it.
#[derive(Serialize)]
struct Scores<'a> {
    tokenscale_version: &'static str,
    model: serde_json::Value,
    settings: serde_json::Value,
    accuracy: &'a [AccuracyRow],
    fits: Vec<FitRow<'a>>,
    fit_errors: Vec<serde_json::Value>,
    regimes: Vec<serde_json::Value>,
    probe: ProbeSummary<'a>,
    n_balance_comparison: String,
    workload: serde_json::Value,
    cost: &'a [CostSummary],
    sweep: &'a SweepSummary,
    timings: Vec<serde_json::Value>,
    notes: &'a [String],
}

fn scores<'a>(x: &Inputs<'a>, timings: &Timings) -> Scores<'a> {
    let o = x.opts;
    let fits = x
        .fits
        .iter()
        .flat_map(|s| {
            let best = s.fits.iter().map(|f| f.aic).fold(f64::INFINITY, f64::min);
            s.fits.iter().map(move |f| FitRow {
                series: &s.series,
                law: f.law.name(),
                formula: &f.formula,
                params: &f.params,
                ci95: (o.bootstrap > 0).then_some(&f.ci95),
                r2: f.r2,
                aic: f.aic,
                delta_aic: f.aic - best,
            })
        })
        .collect();
    let bound = x.probe.bound.as_ref();
    let fitted: Vec<(&str, f64, Option<[f64; 2]>)> = x
        .fits
        .iter()
        .filter_map(|f| Some((f.series.as_str(), f.regimes.n_balance?, f.regimes.n_balance_ci95)))
        .collect();
    Scores {
        tokenscale_version: env!("CARGO_PKG_VERSION"),
        model: serde_json::json!({"dir": o.model_dir, "name": x.model_name, "fingerprint": x.fingerprint}),
        settings: serde_json::json!({
            "items_per_kind": o.items, "kinds": o.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "vision_tokens": x.vision_tokens, "pairs": o.pairs, "seed": o.seed,
            "max_new_tokens": o.max_new_tokens, "bootstrap": o.bootstrap, "image_size": crate::benchmark::IMAGE_SIZE,
            "datasets": x.datasets.iter().map(|d| serde_json::json!({"name": d.name, "kind": d.kind, "rows": d.items.len()})).collect::<Vec<_>>(),
        }),
        accuracy: x.accuracy,
        fits,
        fit_errors: x
            .fits
            .iter()
            .flat_map(|s| {
                s.errors
                    .iter()
                    .map(|(law, e)| serde_json::json!({"series": s.series, "law": law, "error": e}))
            })
            .collect(),
        regimes: x
            .fits
            .iter()
            .map(|s| serde_json::json!({"series": s.series, "verdict": s.regimes}))
            .collect(),
        probe: ProbeSummary {
            pairs: x.probe.stats.pairs,
            vision_tokens: x.probe.vision_tokens,
            layer: "last (after the final norm)",
            n_balance: x.probe.n_balance(),
            balance_point: bound.and_then(|b| b.balance_point),
            lambda: bound.and_then(|b| b.lambda),
            lambda_r2: bound.and_then(|b| b.lambda_r2),
            notes: bound.map_or(&[], |b| b.notes.as_slice()),
            error: x.probe.bound_error.as_deref(),
        },
        n_balance_comparison: compare_n_balance(&fitted, x.probe.n_balance()),
        workload: serde_json::json!({
            "text_tokens": x.workload.text_tokens, "query_text_tokens": x.workload.query_text_tokens,
            "crops": x.workload.crops, "new_tokens": x.workload.new_tokens, "dtype": x.workload.dtype.name(),
        }),
        cost: x.cost,
        sweep: x.sweep,
        timings: timings
            .0
            .iter()
            .map(|(step, s)| serde_json::json!({"step": step, "seconds": s}))
            .collect(),
        notes: x.notes,
    }
}

/// Writes every output into `out` (figures timed as a step of their own); returns report.md's path.
pub fn write(out: &Path, x: &Inputs, timings: &mut Timings) -> Result<PathBuf> {
    write_atomic(
        &out.join("fits.json"),
        pretty(&x.fits.iter().flat_map(|s| &s.fits).collect::<Vec<_>>())?.as_bytes(),
    )?;
    write_atomic(&out.join("probe.json"), pretty(&x.probe.stats)?.as_bytes())?;
    match &x.probe.bound {
        Some(b) => write_atomic(&out.join("bound.json"), pretty(b)?.as_bytes())?,
        None => remove_if_present(&out.join("bound.json"))?,
    }
    write_atomic(&out.join("cost.csv"), tokenscale_cost::to_csv(x.cost_rows).as_bytes())?;
    write_atomic(&out.join("scores.csv"), accuracy_csv(x.accuracy).as_bytes())?;
    let figure_files = timings.time("figures", || {
        let tmp = out.join(format!(".figures.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        let files = figures::write_all(&tmp, x.accuracy, x.fits, x.probe)?;
        replace_dir(&tmp, &out.join("figures"))?;
        Ok(files)
    })?;
    let scores = scores(x, timings);
    write_atomic(&out.join("scores.json"), pretty(&scores)?.as_bytes())?;
    let report = out.join("report.md");
    write_atomic(&report, markdown(x, &scores, timings, &figure_files).as_bytes())?;
    Ok(report)
}

fn pretty<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove the previous copy", path.display()))
        }
        _ => Ok(()),
    }
}

fn accuracy_csv(rows: &[AccuracyRow]) -> String {
    let mut s = String::from("n,axis,subset,items,accuracy,chance\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},\"{}\",{},{},{}",
            r.n,
            r.axis,
            r.subset.replace('"', "\"\""),
            r.items,
            r.accuracy,
            r.chance
        );
    }
    s
}

/// An interval that pins n_balance down to within three orders of magnitude (the criterion of
/// the law crate's "poorly determined" note).
fn informative(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi / lo <= 1e3
}

/// Each fit's n_balance against the probe's.
/// `fitted`: (series, n_balance, 95% interval) of the fits that give one.
fn compare_n_balance(fitted: &[(&str, f64, Option<[f64; 2]>)], probe: Option<f64>) -> String {
    let Some(p) = probe else {
        let listed: Vec<String> =
            fitted.iter().map(|(s, nb, _)| format!("{s} {}", fmt_value(*nb))).collect();
        let fits_text = if listed.is_empty() {
            "no fit gives one either".to_string()
        } else {
            format!("the fits' ({}) stand alone", listed.join(", "))
        };
        return format!("The probe gives no n_balance (ψ_AA ≤ ψ_AB at its largest n, or no bound), and {fits_text}.");
    };
    if fitted.is_empty() {
        return format!("No fit gives an n_balance (the paper law's best curves are pure power laws, or it could not be fitted), so the probe's ({}) has nothing to be compared with.", fmt_value(p));
    }
    let sentences: Vec<String> = fitted
        .iter()
        .map(|(series, nb, ci)| {
            let ratio = if p > *nb { p / nb } else { nb / p };
            match ci {
                Some([lo, hi]) if !informative(*lo, *hi) => format!(
                    "The fit to {series} accuracy does not determine n_balance ({}, 95% CI [{}, {}] spans more than three orders of magnitude), so it can neither confirm nor contradict the probe's ({}).",
                    fmt_value(*nb), fmt_value(*lo), fmt_value(*hi), fmt_value(p)
                ),
                Some([lo, hi]) if *lo <= p && p <= *hi => format!(
                    "The probe's n_balance ({}) lies inside the 95% interval of the fit to {series} accuracy ({}, [{}, {}]).",
                    fmt_value(p), fmt_value(*nb), fmt_value(*lo), fmt_value(*hi)
                ),
                Some([lo, hi]) => format!(
                    "The probe's n_balance ({}) lies outside the 95% interval of the fit to {series} accuracy ({}, [{}, {}]); the two differ by a factor of {}.",
                    fmt_value(p), fmt_value(*nb), fmt_value(*lo), fmt_value(*hi), fmt_value(ratio)
                ),
                None => format!("The probe's n_balance ({}) and the fit to {series} accuracy ({}, no interval) differ by a factor of {}.", fmt_value(p), fmt_value(*nb), fmt_value(ratio)),
            }
        })
        .collect();
    sentences.join(" ")
}

fn pct(v: f64) -> String {
    format!("{v:.1}")
}

fn markdown(x: &Inputs, s: &Scores, timings: &Timings, figure_files: &[String]) -> String {
    let o = x.opts;
    let mut md = String::new();
    let _ = writeln!(md, "# tokenscale reproduce\n");
    let rows: Vec<String> =
        x.datasets.iter().map(|d| format!("{} {} rows", d.name, d.items.len())).collect();
    let _ = writeln!(
        md,
        "Model `{}` (`{}`, fingerprint {}). Benchmark: the synthetic generator's test split, {} px images, {} items per kind ({}). Vision tokens n ∈ {{{}}}, greedy answers of at most {} tokens. Probe: {} image pairs, seed {}. tokenscale {}.\n",
        x.model_name,
        o.model_dir.display(),
        x.fingerprint,
        crate::benchmark::IMAGE_SIZE,
        o.items,
        rows.join(", "),
        x.vision_tokens.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        o.max_new_tokens,
        o.pairs,
        o.seed,
        s.tokenscale_version
    );
    let _ = writeln!(md, "## Accuracy against n\n\nAccuracy in percent (VQA items count their soft accuracy); chance = expected accuracy of guessing (MCQ 1/options, Y/N 1/2, short answers one over the subtask's answer set).\n");
    accuracy_table(&mut md, x, &["overall", "kind"]);
    let _ = writeln!(md, "\n## Accuracy per category\n");
    accuracy_table(&mut md, x, &["category", "subtask"]);
    fits_section(&mut md, x);
    let _ = writeln!(md, "\n## n_balance: fit against probe\n");
    let _ = writeln!(md, "| source | n_balance | note |\n|---|---:|---|");
    for f in x.fits {
        let ci = f.regimes.n_balance_ci95.map_or("-".to_string(), |[a, b]| {
            format!("95% CI [{}, {}]", fmt_value(a), fmt_value(b))
        });
        let _ = writeln!(
            md,
            "| fit, {} accuracy | {} | {ci} |",
            f.series,
            f.regimes.n_balance.map_or("-".to_string(), fmt_value)
        );
    }
    let p = &s.probe;
    let probe_note = match (p.error, p.balance_point) {
        (Some(e), _) => format!("no bound: {e}"),
        (None, Some(bp)) => format!(
            "n_balance(n) at n = {}; the curve meets y = n at n = {bp}; λ = {}",
            p.vision_tokens,
            p.lambda.map_or("-".into(), fmt_value)
        ),
        (None, None) => format!(
            "n_balance(n) at n = {}; the curve stays above y = n; λ = {}",
            p.vision_tokens,
            p.lambda.map_or("-".into(), fmt_value)
        ),
    };
    let _ = writeln!(
        md,
        "| probe, {} image pairs, last layer | {} | {probe_note} |",
        p.pairs,
        p.n_balance.map_or("-".to_string(), fmt_value)
    );
    let _ = writeln!(md, "\n{}", s.n_balance_comparison);
    cost_section(&mut md, x);
    let _ = writeln!(md, "\n## Figures\n");
    for f in figure_files.iter().filter(|f| f.ends_with(".svg")) {
        let _ = writeln!(md, "![{}](figures/{f})\n", f.trim_end_matches(".svg"));
    }
    let _ = writeln!(md, "## Time per step\n\n| step | seconds |\n|---|---:|");
    for (step, secs) in &timings.0 {
        let _ = writeln!(md, "| {step} | {secs:.1} |");
    }
    let total: f64 = timings.0.iter().map(|t| t.1).sum();
    let _ = writeln!(md, "| **total** | {total:.1} |");
    let _ = writeln!(
        md,
        "\nEvaluation: {} answers made, {} reused from `run/`; {} images through the vision tower ({:.1} s), answering {:.1} s.",
        x.sweep.answered, x.sweep.skipped, x.sweep.images_prepared, x.sweep.prepare_seconds, x.sweep.answer_seconds
    );
    for note in x.notes {
        let _ = writeln!(md, "\nNote: {note}");
    }
    md
}

fn accuracy_table(md: &mut String, x: &Inputs, axes: &[&str]) {
    let ns = x.vision_tokens;
    let _ = writeln!(
        md,
        "| subset | items | chance | {} |",
        ns.iter().map(|n| format!("n={n}")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|---:|---:|{}", "---:|".repeat(ns.len()));
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in x.accuracy.iter().filter(|r| axes.contains(&r.axis.as_str())) {
        let key = (r.axis.as_str(), r.subset.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let cells: Vec<String> = ns
            .iter()
            .map(|n| {
                x.accuracy
                    .iter()
                    .find(|a| a.n == *n && a.axis == r.axis && a.subset == r.subset)
                    .map_or("-".into(), |a| pct(a.accuracy))
            })
            .collect();
        let label = if r.axis == "overall" {
            "all".to_string()
        } else {
            format!("{} {}", r.axis, r.subset)
        };
        let _ =
            writeln!(md, "| {label} | {} | {} | {} |", r.items, pct(r.chance), cells.join(" | "));
    }
    if seen.is_empty() {
        let _ = writeln!(
            md,
            "| (no {} column in the benchmark) | | | {}",
            axes.join("/"),
            "|".repeat(ns.len())
        );
    }
}

fn fits_section(md: &mut String, x: &Inputs) {
    let intervals = match x.opts.bootstrap {
        0 => "no intervals (0 bootstrap resamples)".to_string(),
        b => format!("95% intervals from {b} residual-bootstrap resamples"),
    };
    let _ = writeln!(md, "\n## Scaling-law fits\n\nThe laws of `tokenscale fit`, least squares on accuracy (%) against n, {intervals}.\n");
    for f in x.fits {
        let _ = writeln!(md, "### {}\n", f.series);
        let best = f.fits.iter().map(|r| r.aic).fold(f64::INFINITY, f64::min);
        if !f.fits.is_empty() {
            let _ = writeln!(md, "| law | parameters (95% CI) | R² | ΔAIC |\n|---|---|---:|---:|");
        }
        for r in &f.fits {
            let params: Vec<String> = r
                .params
                .iter()
                .map(|(k, v)| match r.ci95.get(k).filter(|_| x.opts.bootstrap > 0) {
                    Some([lo, hi]) => {
                        format!("{k} = {} [{}, {}]", fmt_value(*v), fmt_value(*lo), fmt_value(*hi))
                    }
                    None => format!("{k} = {}", fmt_value(*v)),
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.2} |",
                r.law.name(),
                params.join("; "),
                r.r2,
                r.aic - best
            );
        }
        for (law, e) in &f.errors {
            let _ = writeln!(md, "- {law}: not fitted: {e}");
        }
        let _ = writeln!(md, "\n**Regimes.** {}\n", f.regimes.sentence);
    }
}

fn cost_section(md: &mut String, x: &Inputs) {
    let w = x.workload;
    let _ = writeln!(
        md,
        "\n## Cost per answer\n\nFrom `config.json` (crates/cost) for the benchmark's workload: {} image views, {} prompt tokens besides the vision tokens, {} question tokens in the query row, {}, no decoding. Measured: mean wall time of one answer in this run's sweep (query decoder, prefill and decoding; the vision tower runs once per image).\n",
        w.crops.unwrap_or_default(),
        w.text_tokens,
        w.query_text_tokens,
        w.dtype.name()
    );
    let _ = writeln!(md, "| n | params | FLOPs | KV cache | peak activations | measured s/answer |\n|---:|---:|---:|---:|---:|---:|");
    for c in x.cost {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            c.n,
            human(c.params),
            human(c.flops),
            human_bytes(c.kv_cache_bytes),
            human_bytes(c.peak_activation_bytes),
            c.seconds_per_answer.map_or("-".into(), |s| format!("{s:.3}"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_balance_comparison_says_what_the_intervals_allow() {
        let inside = compare_n_balance(&[("overall", 10.0, Some([4.0, 30.0]))], Some(12.0));
        assert!(inside.contains("lies inside"), "{inside}");
        let outside = compare_n_balance(&[("fine", 10.0, Some([8.0, 12.0]))], Some(40.0));
        assert!(
            outside.contains("lies outside") && outside.contains("factor of 4.000"),
            "{outside}"
        );
        let wide = compare_n_balance(&[("overall", 14.0, Some([1e-80, 1e30]))], Some(1.6));
        assert!(wide.contains("does not determine n_balance"), "{wide}");
        let no_probe = compare_n_balance(&[("overall", 14.0, None)], None);
        assert!(
            no_probe.contains("The probe gives no n_balance")
                && no_probe.contains("overall 14.000"),
            "{no_probe}"
        );
        let no_fit = compare_n_balance(&[], Some(2.0));
        assert!(no_fit.starts_with("No fit gives an n_balance"), "{no_fit}");
    }
}

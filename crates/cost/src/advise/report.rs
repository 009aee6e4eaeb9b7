//! Advice as Markdown, JSON and CSV.

use std::fmt::Write as _;

use tokenscale_law::Direction;

use super::{Advice, Choice, Target};
use crate::human;

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("–".into(), f)
}

/// 1.5e12 → "1.500 TFLOPs".
pub(crate) fn flops_text(f: f64) -> String {
    let h = human(f as u64);
    if h.contains(' ') {
        format!("{h}FLOPs")
    } else {
        format!("{h} FLOPs")
    }
}

fn target_text(t: Target, dir: Direction) -> String {
    match (t, dir) {
        (Target::MinScore(x), Direction::HigherIsBetter) => format!("score ≥ {x}"),
        (Target::MinScore(x), Direction::LowerIsBetter) => format!("score ≤ {x} (lower is better)"),
        (Target::MaxFlops(f), _) => format!("at most {} per answer", flops_text(f)),
        (Target::MaxLatency(s), _) => format!("latency ≤ {s} s"),
    }
}

/// The advice as a Markdown report: sources, then per benchmark the law, the points with their
/// frontier marks, and the answer to the target.
pub fn to_markdown(a: &Advice) -> String {
    let mut md = String::from("# Vision-token budget advice\n\n");
    let _ = writeln!(md, "Cost: {}.  ", a.cost_source);
    let _ = writeln!(md, "Latency: {}.  ", a.latency_source.as_deref().unwrap_or("none given"));
    let _ = writeln!(
        md,
        "Law: `{}` fitted in {} space (the point estimate of `tokenscale fit`).\n",
        a.law.name(),
        a.space.name()
    );
    for b in &a.benchmarks {
        let _ = writeln!(md, "## {}\n", b.series);
        match &b.law {
            Some(l) => {
                let params: Vec<String> =
                    l.params.iter().map(|(k, v)| format!("{k} = {v:.4}")).collect();
                let _ = writeln!(
                    md,
                    "Law: {} with {}; R² = {:.4}.\n",
                    l.formula,
                    params.join(", "),
                    l.r2
                );
            }
            None => md.push_str("Law: none (see the notes).\n\n"),
        }
        let timed = a.latency_source.is_some();
        md.push_str(if timed {
            "| n | score | FLOPs | latency s | Pareto (FLOPs) | Pareto (latency) |\n|---:|---:|---:|---:|:---:|:---:|\n"
        } else {
            "| n | score | FLOPs | Pareto (FLOPs) |\n|---:|---:|---:|:---:|\n"
        });
        for p in &b.points {
            let mark = |on: bool| if on { "●" } else { "" };
            let timing = if timed {
                format!(
                    " {} | {} |",
                    opt(p.latency_s, |t| format!("{t:.3}")),
                    p.pareto_latency.map_or("–", mark)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {} | {:.4} | {} | {} |{timing}",
                p.n,
                p.score,
                opt(p.flops, |f| human(f as u64)),
                mark(p.pareto_flops)
            );
        }
        if let Some(t) = &b.target {
            let _ = writeln!(md, "\nTarget {}: {}.", target_text(t.target, b.direction), t.summary);
        }
        for n in &b.notes {
            let _ = writeln!(md, "- note: {n}");
        }
        md.push('\n');
    }
    md
}

/// The advice as pretty-printed JSON (the `Advice` structure), newline-terminated.
pub fn to_json(a: &Advice) -> String {
    serde_json::to_string_pretty(a).expect("advice serialises") + "\n"
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per measured point (`kind` = measured) and per answer (`law`, `measurement`; a
/// target nobody meets gives a `law` row without n); `note` carries the answer's summary.
pub fn to_csv(a: &Advice) -> String {
    let mut s = String::from("series,benchmark,kind,n,score,flops,latency_s,pareto_flops,pareto_latency,extrapolated,note\n");
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for b in &a.benchmarks {
        let head = format!("{},{}", csv_field(&b.series), csv_field(&b.benchmark));
        for p in &b.points {
            let _ = writeln!(
                s,
                "{head},measured,{},{},{},{},{},{},,",
                p.n,
                p.score,
                num(p.flops),
                num(p.latency_s),
                p.pareto_flops,
                p.pareto_latency.map_or(String::new(), |v| v.to_string())
            );
        }
        let Some(t) = &b.target else { continue };
        let note = csv_field(&t.summary);
        let row = |kind: &str, c: &Option<Choice>| match c {
            Some(c) => format!(
                "{head},{kind},{},{},{},{},,,{},{note}\n",
                c.n,
                c.score,
                num(c.flops),
                num(c.latency_s),
                c.extrapolated
            ),
            None => format!("{head},{kind},,,,,,,,{note}\n"),
        };
        s.push_str(&row("law", &t.by_law));
        s.push_str(&row("measurement", &t.by_measurement));
    }
    s
}

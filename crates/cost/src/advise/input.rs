//! The tables `advise` reads besides the scores: a `tokenscale cost` table (CSV or JSON; total
//! FLOPs per n, optionally a `latency_s` column) and a `tokenscale bench` JSONL (latency per n).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Total FLOPs at the n a `tokenscale cost` table lists, and between them.
///
/// Every cost this crate computes is exactly quadratic in n for a fixed workload (the prompt
/// grows linearly in n, attention over it quadratically, the rest is constant), so between the
/// listed n the table is read through the quadratic of its first, middle and last point, in
/// integer arithmetic. With four or more points the quadratic must reproduce every listed total
/// exactly (else the table is read piecewise linearly, e.g. when it mixes workloads); never beyond
/// the listed range.
#[derive(Debug, Clone)]
pub struct CostTable {
    /// The file it was read from (errors and reports name it).
    pub origin: String,
    /// (n, total FLOPs), sorted by n, one per n.
    pub points: Vec<(u64, u64)>,
    quadratic: bool,
}

impl CostTable {
    /// A table of (n, total FLOPs) read from `origin`, in any order; refuses an empty table and an
    /// n listed twice with different totals.
    pub fn new(origin: &str, mut points: Vec<(u64, u64)>) -> Result<Self> {
        points.sort_unstable();
        points.dedup();
        if let Some(w) = points.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!(
                "{origin}: n = {} is listed twice with different total FLOPs ({} and {})",
                w[0].0,
                w[0].1,
                w[1].1
            );
        }
        if points.is_empty() {
            bail!("{origin}: no total rows (expected the `component` = total rows of `tokenscale cost`)");
        }
        let mut table = Self { origin: origin.into(), points, quadratic: false };
        table.quadratic = table.points.len() >= 3
            && table.points.iter().all(|&(n, f)| table.quadratic_at(n) == Some(f));
        Ok(table)
    }

    /// The smallest and largest listed n.
    pub fn range(&self) -> (u64, u64) {
        (self.points[0].0, self.points[self.points.len() - 1].0)
    }

    /// How values between listed n are obtained.
    pub fn interpolation(&self) -> String {
        match (self.quadratic, self.points.len()) {
            (true, 3) => "quadratic in n through the 3 listed points".into(),
            (true, k) => format!("quadratic in n (exact at all {k} listed points)"),
            (false, 1) => "only the listed n".into(),
            (false, _) => {
                "piecewise linear in n between the listed points (they are not one quadratic)"
                    .into()
            }
        }
    }

    /// Total FLOPs at n, or None outside the listed range.
    pub fn flops(&self, n: u64) -> Option<f64> {
        let (lo, hi) = self.range();
        if n < lo || n > hi {
            return None;
        }
        if self.quadratic {
            if let Some(v) = self.quadratic_at(n) {
                return Some(v as f64);
            }
        }
        piecewise_linear(&self.points.iter().map(|&(n, f)| (n, f as f64)).collect::<Vec<_>>(), n)
    }

    /// The quadratic through the first, middle and last point at n (Lagrange form over the
    /// common denominator, exact in i128), rounded to the nearest integer; None on overflow.
    fn quadratic_at(&self, n: u64) -> Option<u64> {
        let k = self.points.len();
        let [(a, ya), (b, yb), (c, yc)] = [self.points[0], self.points[k / 2], self.points[k - 1]]
            .map(|(n, f)| (n as i128, f as i128));
        let n = n as i128;
        let term =
            |y: i128, p: i128, q: i128, r: i128| y.checked_mul(p)?.checked_mul(q)?.checked_mul(r);
        let num = term(ya, n - b, n - c, b - c)?
            .checked_sub(term(yb, n - a, n - c, a - c)?)?
            .checked_add(term(yc, n - a, n - b, a - b)?)?;
        // a < b < c, so the denominator (a−b)(a−c)(b−c) is negative: flip both signs.
        let (num, d) = (-num, -((a - b) * (a - c) * (b - c)));
        u64::try_from(num.checked_mul(2)?.checked_add(d)?.div_euclid(2 * d)).ok()
    }
}

/// Median measured latency per n (seconds).
#[derive(Debug, Clone)]
pub struct LatencyTable {
    /// The file it was read from.
    pub origin: String,
    /// What the latency is (e.g. "vision + time to first token, median of 20 answers").
    pub measure: String,
    /// (n, seconds), sorted by n.
    pub points: Vec<(u64, f64)>,
}

impl LatencyTable {
    /// Latency at n, piecewise linear between measured n; None outside the measured range.
    pub fn at(&self, n: u64) -> Option<f64> {
        piecewise_linear(&self.points, n)
    }

    /// The smallest and largest measured n (`None` when empty).
    pub fn range(&self) -> Option<(u64, u64)> {
        Some((self.points.first()?.0, self.points.last()?.0))
    }
}

fn piecewise_linear(points: &[(u64, f64)], n: u64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 < n);
    let &(n1, y1) = points.get(i)?;
    if n1 == n {
        return Some(y1);
    }
    let &(n0, y0) = points.get(i.checked_sub(1)?)?;
    Some(y0 + (y1 - y0) * (n - n0) as f64 / (n1 - n0) as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Reads a cost table written by `tokenscale cost --format csv` or `--format json`.
pub fn read_cost_table(path: &Path) -> Result<(CostTable, Option<LatencyTable>)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
    if text.trim_start().starts_with('[') {
        parse_cost_json(&text, &origin)
    } else {
        parse_cost_csv(&text, &origin)
    }
}

/// CSV with columns `n` and `flops` (and `component`: then only `total` rows count; and an
/// optional `latency_s`, measured seconds per n, e.g. pasted from a benchmark).
pub fn parse_cost_csv(text: &str, origin: &str) -> Result<(CostTable, Option<LatencyTable>)> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers =
        rdr.headers().with_context(|| format!("{origin}: cannot read the CSV header"))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let list = headers.iter().collect::<Vec<_>>().join(", ");
    let n_col = col("n").with_context(|| format!("{origin}: no `n` column (header: {list})"))?;
    let flops_col =
        col("flops").with_context(|| format!("{origin}: no `flops` column (header: {list})"))?;
    let component_col = col("component");
    let latency_col = col("latency_s");
    let (mut flops, mut latency) = (Vec::new(), Vec::new());
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{origin}: line {line}: malformed CSV"))?;
        if component_col.is_some_and(|c| rec.get(c) != Some("total")) {
            continue;
        }
        let field = |c: usize, name: &str| {
            rec.get(c)
                .filter(|s| !s.is_empty())
                .with_context(|| format!("{origin}: line {line}: `{name}` is empty"))
        };
        let n = whole(field(n_col, "n")?, origin, line, "n")?;
        flops.push((n, whole(field(flops_col, "flops")?, origin, line, "flops")?));
        if let Some(c) = latency_col {
            let raw = field(c, "latency_s")?;
            match raw.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => latency.push((n, v)),
                _ => bail!("{origin}: line {line}: `latency_s` = `{raw}` is not a non-negative number of seconds"),
            }
        }
    }
    let table = CostTable::new(origin, flops)?;
    let latency = latency_col.map(|_| latency_table(origin, "the `latency_s` column", latency));
    Ok((table, latency))
}

/// JSON as `tokenscale cost --format json` writes it: a list of `{n, component, flops, …}`.
pub fn parse_cost_json(text: &str, origin: &str) -> Result<(CostTable, Option<LatencyTable>)> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: invalid JSON: {e}"))?;
    let rows = value.as_array().with_context(|| format!("{origin}: expected a list of rows"))?;
    let mut flops = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.get("component").is_some_and(|c| c != "total") {
            continue;
        }
        let get = |name: &str| {
            row.get(name).and_then(Value::as_u64).with_context(|| {
                format!("{origin}: row {i}: field `{name}` missing or not a whole number")
            })
        };
        flops.push((get("n")?, get("flops")?));
    }
    Ok((CostTable::new(origin, flops)?, None))
}

fn whole(raw: &str, origin: &str, line: usize, name: &str) -> Result<u64> {
    raw.parse::<u64>()
        .with_context(|| format!("{origin}: line {line}: `{name}` = `{raw}` is not a whole number"))
}

fn latency_table(origin: &str, what: &str, samples: Vec<(u64, f64)>) -> LatencyTable {
    let mut ns: Vec<u64> = samples.iter().map(|s| s.0).collect();
    ns.sort_unstable();
    ns.dedup();
    let points = ns
        .iter()
        .map(|&n| (n, median(samples.iter().filter(|s| s.0 == n).map(|s| s.1).collect())))
        .collect();
    LatencyTable { origin: origin.into(), measure: format!("{what}, median per n"), points }
}

/// Reads `tokenscale bench`'s bench.jsonl: latency of one answer = `vision_s` + `ttft_s` (the
/// wait from receiving the image to the first answer token), median over images and repeats.
pub fn read_bench_latency(path: &Path) -> Result<LatencyTable> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
    parse_bench_jsonl(&text, &origin)
}

/// `read_bench_latency` on the text of a bench.jsonl; `origin` names it in errors.
pub fn parse_bench_jsonl(text: &str, origin: &str) -> Result<LatencyTable> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 1;
        let row: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{origin}: line {line_no}: invalid JSON: {e}"))?;
        let n = row.get("n").and_then(Value::as_u64).with_context(|| {
            format!("{origin}: line {line_no}: field `n` missing or not a whole number")
        })?;
        let secs = |name: &str| {
            row.get(name).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0).with_context(|| format!("{origin}: line {line_no}: field `{name}` missing or not a number of seconds"))
        };
        samples.push((n, secs("vision_s")? + secs("ttft_s")?));
    }
    if samples.is_empty() {
        bail!("{origin}: no timing lines (expected tokenscale bench's bench.jsonl)");
    }
    Ok(latency_table(origin, "vision + time to first token (tokenscale bench)", samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_table_is_exact_between_points_and_linear_otherwise() {
        let f = |n: u64| 7 + 3 * n + 5 * n * n;
        let t = CostTable::new("t", [1, 10, 40, 100].map(|n| (n, f(n))).to_vec()).unwrap();
        assert!(t.interpolation().contains("exact at all 4"));
        for n in [1, 2, 37, 99, 100] {
            assert_eq!(t.flops(n), Some(f(n) as f64), "n = {n}");
        }
        assert_eq!((t.flops(0), t.flops(101)), (None, None));
        // not one quadratic: piecewise linear
        let t = CostTable::new("t", vec![(1, 10), (2, 20), (3, 40), (4, 41)]).unwrap();
        assert!(t.interpolation().contains("piecewise"));
        assert_eq!(t.flops(3), Some(40.0));
        let t = CostTable::new("t", vec![(10, 100), (20, 300)]).unwrap();
        assert_eq!(t.flops(15), Some(200.0));
        assert!(CostTable::new("t", vec![(1, 1), (1, 2)])
            .unwrap_err()
            .to_string()
            .contains("n = 1 is listed twice"));
    }

    #[test]
    fn bench_latency_is_the_median_of_vision_plus_ttft() {
        let text = r#"{"n":4,"vision_s":1.0,"ttft_s":0.5}
{"n":4,"vision_s":1.0,"ttft_s":0.7}
{"n":4,"vision_s":1.0,"ttft_s":2.0}
{"n":64,"vision_s":1.0,"ttft_s":1.5}
"#;
        let t = parse_bench_jsonl(text, "b.jsonl").unwrap();
        assert_eq!(t.points, vec![(4, 1.7), (64, 2.5)]);
        assert_eq!(t.at(34), Some(2.1));
        assert_eq!(t.at(65), None);
        let e = parse_bench_jsonl("{\"n\":4,\"vision_s\":1}\n", "b.jsonl").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("`ttft_s`"), "{e}");
    }
}

//! Reading score tables.
//!
//! Accepted CSV shapes (header required, columns in any order):
//! - `series,n,score` (also `tokenscale eval`'s output when it has those columns; extra columns are
//!   ignored). `n` may also be called `n_l` or `tokens`, `score` may be `value`.
//! - the paper-scores shape `figure,panel,benchmark,n_l,score`: series = `figure/benchmark`.
//! - `model,benchmark,n,score` (or `run`/`metric`): series = `model/benchmark`.

use crate::error::LawError;
use crate::Result;
use std::path::Path;

/// One series of (n, score) points, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    /// Full series name (e.g. `scaling_fit_vqq/Overall@MME`).
    pub name: String,
    /// Group (figure or model) when the file has one.
    pub group: Option<String>,
    /// Benchmark / metric name when the file has one (else the series name).
    pub benchmark: String,
    pub points: Vec<(f64, f64)>,
}

fn find(headers: &csv::StringRecord, names: &[&str]) -> Option<usize> {
    headers.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
}

/// Parse a score table from any reader.
pub fn parse_scores<R: std::io::Read>(reader: R) -> Result<Vec<SeriesData>> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    let headers = rdr.headers()?.clone();
    let n_col = find(&headers, &["n", "n_l", "tokens", "n_tokens"]).ok_or_else(|| LawError::Invalid(format!("no token-count column (n or n_l) in header {:?}", headers.iter().collect::<Vec<_>>())))?;
    let s_col = find(&headers, &["score", "value"]).ok_or_else(|| LawError::Invalid("no score column (score or value)".into()))?;
    let series_col = find(&headers, &["series"]);
    let group_col = find(&headers, &["figure", "model", "run", "group"]);
    let bench_col = find(&headers, &["benchmark", "metric", "task"]);
    if series_col.is_none() && bench_col.is_none() && group_col.is_none() {
        return Err(LawError::Invalid("need a `series` column, or `benchmark` (with optional `figure`/`model`)".into()));
    }
    let mut out: Vec<SeriesData> = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let get = |i: usize| rec.get(i).unwrap_or("").to_string();
        let group = group_col.map(get);
        let bench = bench_col.map(get);
        let name = match (series_col, &group, &bench) {
            (Some(i), _, _) => get(i),
            (None, Some(g), Some(b)) => format!("{g}/{b}"),
            (None, None, Some(b)) => b.clone(),
            (None, Some(g), None) => g.clone(),
            _ => unreachable!(),
        };
        let parse = |i: usize, what: &str| -> Result<f64> {
            let raw = get(i);
            raw.parse::<f64>().map_err(|_| LawError::Invalid(format!("line {}: {what} `{raw}` is not a number", line + 2)))
        };
        let n = parse(n_col, "n")?;
        let s = parse(s_col, "score")?;
        match out.iter_mut().find(|d| d.name == name) {
            Some(d) => d.points.push((n, s)),
            None => out.push(SeriesData { benchmark: bench.clone().unwrap_or_else(|| name.clone()), name, group, points: vec![(n, s)] }),
        }
    }
    if out.is_empty() {
        return Err(LawError::Invalid("the score table has no rows".into()));
    }
    Ok(out)
}

/// Read a score table from a file.
pub fn read_scores(path: &Path) -> Result<Vec<SeriesData>> {
    let f = std::fs::File::open(path).map_err(|e| LawError::Invalid(format!("{}: {e}", path.display())))?;
    parse_scores(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes() {
        let a = parse_scores("series,n,score\ns1,1,2\ns1,8,3\ns2,1,5\n".as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].points, vec![(1.0, 2.0), (8.0, 3.0)]);
        let b = parse_scores("figure,panel,benchmark,n_l,score\nf,1,Overall@MME,1,992.1\nf,1,Overall@MME,8,1228.3\n".as_bytes()).unwrap();
        assert_eq!(b[0].name, "f/Overall@MME");
        assert_eq!(b[0].benchmark, "Overall@MME");
        assert_eq!(b[0].group.as_deref(), Some("f"));
        assert!(parse_scores("x,y\n1,2\n".as_bytes()).is_err());
        let bad = parse_scores("series,n,score\ns,abc,1\n".as_bytes()).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
    }
}

//! Reading score tables.
//!
//! Accepted shapes (CSV with a header, columns in any order; or a JSON list of objects):
//! - `tokenscale eval`'s `scores.csv` / `scores.json` (`model,reducer,n,dataset,split,category,
//!   metric,value`): a series is one (model, reducer, dataset, split, category, metric); rows
//!   with a category are left out unless asked for ([`Selection::categories`]).
//! - `series,n,score`: `n` may also be called `n_l` or `tokens`, `score` may be `value`.
//! - the paper-scores shape `figure,panel,benchmark,n_l,score`: series = `figure/benchmark`.
//! - `model,benchmark,n,score` (or `run`/`metric`): series = `model/benchmark`.
//!
//! A series with two points at the same n is refused: it means the table mixes rows that belong
//! to different series (e.g. two datasets), and a law fitted to them would be meaningless.

use crate::error::LawError;
use crate::Result;
use std::path::Path;

pub use crate::select::Selection;

/// One series of (n, score) points, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    /// Full series name (e.g. `scaling_fit_vqq/Overall@MME`).
    pub name: String,
    /// Group (figure or model) when the file has one.
    pub group: Option<String>,
    /// Benchmark / metric name when the file has one (else the series name).
    pub benchmark: String,
    /// (n, score) points in file order (n may repeat across rows only if the file repeats it).
    pub points: Vec<(f64, f64)>,
}

/// A table as text cells: the header and, per row, its cells and where it came from.
pub(crate) struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

impl Table {
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        self.headers.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    }
}

/// Eval columns that qualify a benchmark name when set (`acc@MME[category=color]`).
const QUALIFIERS: [&str; 2] = ["split", "category"];

fn csv_table<R: std::io::Read>(reader: R) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    let headers = rdr.headers()?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        rows.push((format!("line {}", i + 2), rec?.iter().map(str::to_string).collect()));
    }
    Ok(Table { headers, rows })
}

fn json_table(text: &str) -> Result<Table> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LawError::Invalid(format!("invalid JSON: {e}")))?;
    let list =
        value.as_array().ok_or_else(|| LawError::Invalid("expected a JSON list of rows".into()))?;
    let mut headers: Vec<String> = Vec::new();
    for row in list {
        let obj = row
            .as_object()
            .ok_or_else(|| LawError::Invalid("expected every row to be a JSON object".into()))?;
        for k in obj.keys() {
            if !headers.contains(k) {
                headers.push(k.clone());
            }
        }
    }
    let cell = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let rows = list
        .iter()
        .enumerate()
        .map(|(i, row)| (format!("row {i}"), headers.iter().map(|h| cell(row.get(h))).collect()))
        .collect();
    Ok(Table { headers, rows })
}

/// Parse a CSV score table from any reader, overall rows only (see [`parse_scores_with`]).
pub fn parse_scores<R: std::io::Read>(reader: R) -> Result<Vec<SeriesData>> {
    series_of(&csv_table(reader)?, &Selection::default())
}

/// Parse a CSV score table, keeping the rows `selection` keeps.
pub fn parse_scores_with<R: std::io::Read>(
    reader: R,
    selection: &Selection,
) -> Result<Vec<SeriesData>> {
    series_of(&csv_table(reader)?, selection)
}

/// Read a score table (CSV, or JSON when the file starts with `[`), overall rows only.
pub fn read_scores(path: &Path) -> Result<Vec<SeriesData>> {
    read_scores_with(path, &Selection::default())
}

/// Read a score table (CSV, or JSON when the file starts with `[`), keeping the rows `selection` keeps.
pub fn read_scores_with(path: &Path, selection: &Selection) -> Result<Vec<SeriesData>> {
    let parsed = std::fs::read_to_string(path).map_err(LawError::from).and_then(|text| {
        let table = if text.trim_start().starts_with('[') {
            json_table(&text)?
        } else {
            csv_table(text.as_bytes())?
        };
        series_of(&table, selection)
    });
    parsed.map_err(|e| LawError::InFile { path: path.to_path_buf(), source: Box::new(e) })
}

fn series_of(table: &Table, selection: &Selection) -> Result<Vec<SeriesData>> {
    let columns = format!("{:?}", table.headers);
    let n_col = table.column(&["n", "n_l", "tokens", "n_tokens"]).ok_or_else(|| {
        LawError::Invalid(format!("no token-count column (n or n_l) in header {columns}"))
    })?;
    let s_col = table.column(&["score", "value"]).ok_or_else(|| {
        LawError::Invalid(format!("no score column (score or value) in header {columns}"))
    })?;
    let series_col = table.column(&["series"]);
    let dataset_col = table.column(&["dataset"]);
    let group_col = table.column(&["figure", "model", "run", "group"]);
    let bench_col = table.column(&["benchmark", "metric", "task"]);
    if series_col.is_none() && bench_col.is_none() && group_col.is_none() {
        return Err(LawError::Invalid(format!("need a `series` column, or `benchmark` (with optional `figure`/`model`), in header {columns}")));
    }
    let keep = selection.compile(table)?;
    let mut out: Vec<SeriesData> = Vec::new();
    for (place, cells) in table.rows.iter().filter(|(_, cells)| keep(cells)) {
        let get = |i: usize| cells.get(i).cloned().unwrap_or_default();
        let (name, group, bench) = match (series_col, dataset_col, bench_col) {
            (Some(i), _, _) => (get(i), group_col.map(get), bench_col.map(get)),
            (None, Some(d), Some(m)) => {
                // model/reducer/metric@dataset[split=…,category=…]
                let key = |k: &str| table.column(&[k]).map(get).filter(|v| !v.is_empty());
                let group = [key("model"), key("reducer")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                let qualifiers: Vec<String> =
                    QUALIFIERS.iter().filter_map(|k| key(k).map(|v| format!("{k}={v}"))).collect();
                let mut bench = format!("{}@{}", get(m), get(d));
                if !qualifiers.is_empty() {
                    bench += &format!("[{}]", qualifiers.join(","));
                }
                let name =
                    if group.is_empty() { bench.clone() } else { format!("{group}/{bench}") };
                (name, (!group.is_empty()).then_some(group), Some(bench))
            }
            (None, _, _) => {
                let group = group_col.map(get);
                let bench = bench_col.map(get);
                let name = match (&group, &bench) {
                    (Some(g), Some(b)) => format!("{g}/{b}"),
                    (None, Some(b)) => b.clone(),
                    (Some(g), None) => g.clone(),
                    (None, None) => return Err(LawError::Invalid("no series column".into())),
                };
                (name, group, bench)
            }
        };
        let parse = |i: usize, what: &str| -> Result<f64> {
            let raw = get(i);
            raw.parse::<f64>()
                .map_err(|_| LawError::Invalid(format!("{place}: {what} `{raw}` is not a number")))
        };
        let n = parse(n_col, "n")?;
        let s = parse(s_col, "score")?;
        match out.iter_mut().find(|d| d.name == name) {
            Some(d) => d.points.push((n, s)),
            None => out.push(SeriesData {
                benchmark: bench.unwrap_or_else(|| name.clone()),
                name,
                group,
                points: vec![(n, s)],
            }),
        }
    }
    if out.is_empty() {
        return Err(LawError::Invalid(if selection.is_empty() {
            "the score table has no rows".into()
        } else {
            format!("no row of the score table matches the selection {selection}")
        }));
    }
    refuse_repeated_n(&out)?;
    Ok(out)
}

/// Two points of one series at the same n mean rows of different series were pooled.
fn refuse_repeated_n(series: &[SeriesData]) -> Result<()> {
    let mut problems = Vec::new();
    for s in series {
        let mut ns: Vec<f64> = s.points.iter().map(|p| p.0).collect();
        ns.sort_by(f64::total_cmp);
        let mut repeated: Vec<f64> = ns.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        repeated.dedup();
        if !repeated.is_empty() {
            let list: Vec<String> = repeated.iter().map(|n| n.to_string()).collect();
            problems.push(format!(
                "series `{}` has several points at n = {}",
                s.name,
                list.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(LawError::Invalid(format!(
        "{}; the table mixes rows of different series: give each its own series name, or select the rows of one (e.g. by dataset, metric or category)",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes() {
        let a = parse_scores("series,n,score\ns1,1,2\ns1,8,3\ns2,1,5\n".as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].points, vec![(1.0, 2.0), (8.0, 3.0)]);
        let b = parse_scores(
            "figure,panel,benchmark,n_l,score\nf,1,Overall@MME,1,992.1\nf,1,Overall@MME,8,1228.3\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(b[0].name, "f/Overall@MME");
        assert_eq!(b[0].benchmark, "Overall@MME");
        assert_eq!(b[0].group.as_deref(), Some("f"));
        assert!(parse_scores("x,y\n1,2\n".as_bytes()).is_err());
        let bad = parse_scores("series,n,score\ns,abc,1\n".as_bytes()).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
    }

    const EVAL: &str = "model,reducer,n,dataset,split,category,metric,value
m,pool,1,A,,,Overall,0.2
m,pool,1,A,,red,acc,0.1
m,pool,1,B,,,Overall,0.3
m,pool,4,A,,,Overall,0.4
m,pool,4,A,,red,acc,0.5
m,pool,4,B,,,Overall,0.6
";

    #[test]
    fn eval_tables_give_one_series_per_dataset_and_overall_rows_by_default() {
        let s = parse_scores(EVAL.as_bytes()).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["m/pool/Overall@A", "m/pool/Overall@B"]);
        assert_eq!(s[0].points, vec![(1.0, 0.2), (4.0, 0.4)]);
        assert_eq!((s[0].group.as_deref(), s[0].benchmark.as_str()), (Some("m/pool"), "Overall@A"));
        let all =
            parse_scores_with(EVAL.as_bytes(), &Selection::parse(&[], true).unwrap()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].name, "m/pool/acc@A[category=red]");
        let red = parse_scores_with(
            EVAL.as_bytes(),
            &Selection::parse(&["category=red".into()], false).unwrap(),
        )
        .unwrap();
        assert_eq!(red.len(), 1);
        let b = parse_scores_with(
            EVAL.as_bytes(),
            &Selection::parse(&["dataset=B".into(), "category=".into()], false).unwrap(),
        )
        .unwrap();
        assert_eq!(b.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["m/pool/Overall@B"]);
        let none = parse_scores_with(
            EVAL.as_bytes(),
            &Selection::parse(&["dataset=C".into()], false).unwrap(),
        )
        .unwrap_err();
        assert!(none.to_string().contains("dataset=C"), "{none}");
        let unknown = parse_scores_with(
            EVAL.as_bytes(),
            &Selection::parse(&["colour=red".into()], false).unwrap(),
        )
        .unwrap_err();
        assert!(
            unknown.to_string().contains("`colour`") && unknown.to_string().contains("dataset"),
            "{unknown}"
        );
    }

    #[test]
    fn json_tables_read_like_csv() {
        let json = r#"[{"model":"m","reducer":"pool","n":1,"dataset":"A","split":null,"category":null,"metric":"Overall","value":0.2},
                       {"model":"m","reducer":"pool","n":4,"dataset":"A","split":null,"category":null,"metric":"Overall","value":0.4},
                       {"model":"m","reducer":"pool","n":4,"dataset":"A","split":null,"category":"red","metric":"acc","value":0.5}]"#;
        let dir = std::env::temp_dir().join(format!("tokenscale-law-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scores.json");
        std::fs::write(&path, json).unwrap();
        let s = read_scores(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points, vec![(1.0, 0.2), (4.0, 0.4)]);
    }

    #[test]
    fn pooled_series_are_refused() {
        // Old shape naming only the model: both datasets' rows would fall into one series.
        let e = parse_scores("model,n,score\nm,1,0.2\nm,1,0.3\nm,4,0.5\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("series `m` has several points at n = 1"), "{e}");
    }
}

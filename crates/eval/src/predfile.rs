//! Predictions made elsewhere: CSV, TSV or JSONL files with `index` and `prediction` columns
//! (VLMEvalKit's `PRED_FORMAT=tsv|json` outputs, lmms-eval sample logs converted, ...).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// (index, prediction) pairs in file order.
pub fn read_predictions(path: &Path) -> Result<Vec<(String, String)>> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jsonl" | "json" => read_json(path),
        "tsv" => read_delimited(path, b'\t'),
        "csv" => read_delimited(path, b','),
        "xlsx" | "xls" => bail!(
            "{}: xlsx prediction files are not supported; export the sheet as CSV/TSV (or run VLMEvalKit with PRED_FORMAT=tsv)",
            path.display()
        ),
        _ => bail!("{}: unknown predictions format (use .csv, .tsv or .jsonl)", path.display()),
    }
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let t = text.trim_start();
    let mut out = Vec::new();
    let take = |v: &serde_json::Value, line: usize, out: &mut Vec<(String, String)>| -> Result<()> {
        let idx = v.get("index").ok_or_else(|| anyhow!("{}: line {line}: no \"index\" field", path.display()))?;
        let pred = v.get("prediction").ok_or_else(|| anyhow!("{}: line {line}: no \"prediction\" field", path.display()))?;
        out.push((json_to_string(idx), json_to_string(pred)));
        Ok(())
    };
    if t.starts_with('[') {
        let arr: Vec<serde_json::Value> = serde_json::from_str(t).with_context(|| format!("{}: not a JSON list", path.display()))?;
        for (i, v) in arr.iter().enumerate() {
            take(v, i + 1, &mut out)?;
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
            take(&v, i + 1, &mut out)?;
        }
    }
    Ok(out)
}

fn read_delimited(path: &Path, delim: u8) -> Result<Vec<(String, String)>> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = rdr.headers()?.clone();
    let ci = headers.iter().position(|h| h == "index").ok_or_else(|| anyhow!("{}: line 1: no 'index' column", path.display()))?;
    let cp = headers
        .iter()
        .position(|h| h == "prediction")
        .ok_or_else(|| anyhow!("{}: line 1: no 'prediction' column", path.display()))?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let idx = rec.get(ci).ok_or_else(|| anyhow!("{}: line {line}: column 'index' missing", path.display()))?;
        let pred = rec.get(cp).unwrap_or("");
        out.push((idx.to_string(), pred.to_string()));
    }
    Ok(out)
}

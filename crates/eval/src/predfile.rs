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
        "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => read_sheet(path),
        _ => bail!(
            "{}: unknown predictions format (use .csv, .tsv, .jsonl or .xlsx)",
            path.display()
        ),
    }
}

fn cell_to_string(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        // pandas reads whole numbers of an int column back as ints.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => format!("{f}"),
        Data::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        other => other.to_string(),
    }
}

/// VLMEvalKit's own `{model}_{dataset}.xlsx` prediction files (first sheet, header row).
fn read_sheet(path: &Path) -> Result<Vec<(String, String)>> {
    use calamine::Reader;
    let mut wb = calamine::open_workbook_auto(path)
        .with_context(|| format!("cannot open spreadsheet {}", path.display()))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| anyhow!("{}: no worksheet", path.display()))?
        .with_context(|| format!("{}: unreadable first worksheet", path.display()))?;
    let mut rows = range.rows();
    let header: Vec<String> =
        rows.next().map(|r| r.iter().map(cell_to_string).collect()).unwrap_or_default();
    let ci = header
        .iter()
        .position(|h| h == "index")
        .ok_or_else(|| anyhow!("{}: row 1: no 'index' column", path.display()))?;
    let cp = header
        .iter()
        .position(|h| h == "prediction")
        .ok_or_else(|| anyhow!("{}: row 1: no 'prediction' column", path.display()))?;
    let mut out = Vec::new();
    for (i, r) in rows.enumerate() {
        let idx = r.get(ci).map(cell_to_string).unwrap_or_default();
        if idx.is_empty() {
            bail!("{}: row {}: empty 'index'", path.display(), i + 2);
        }
        out.push((idx, r.get(cp).map(cell_to_string).unwrap_or_default()));
    }
    Ok(out)
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let t = text.trim_start();
    let mut out = Vec::new();
    let take =
        |v: &serde_json::Value, line: usize, out: &mut Vec<(String, String)>| -> Result<()> {
            let idx = v
                .get("index")
                .ok_or_else(|| anyhow!("{}: line {line}: no \"index\" field", path.display()))?;
            let pred = v.get("prediction").ok_or_else(|| {
                anyhow!("{}: line {line}: no \"prediction\" field", path.display())
            })?;
            out.push((json_to_string(idx), json_to_string(pred)));
            Ok(())
        };
    if t.starts_with('[') {
        let arr: Vec<serde_json::Value> = serde_json::from_str(t)
            .with_context(|| format!("{}: not a JSON list", path.display()))?;
        for (i, v) in arr.iter().enumerate() {
            take(v, i + 1, &mut out)?;
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
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
    let headers = rdr.headers().map_err(|e| anyhow!("{}: {e}", path.display()))?.clone();
    let ci = headers
        .iter()
        .position(|h| h == "index")
        .ok_or_else(|| anyhow!("{}: line 1: no 'index' column", path.display()))?;
    let cp = headers
        .iter()
        .position(|h| h == "prediction")
        .ok_or_else(|| anyhow!("{}: line 1: no 'prediction' column", path.display()))?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let idx = rec
            .get(ci)
            .ok_or_else(|| anyhow!("{}: line {line}: column 'index' missing", path.display()))?;
        let pred = rec.get(cp).unwrap_or("");
        out.push((idx.to_string(), pred.to_string()));
    }
    Ok(out)
}

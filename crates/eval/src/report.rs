//! Scores tables (`scores.json` / `scores.csv` / `scores.md`) and per-sample prediction files.

use crate::dataset::{Dataset, Item};
use crate::score::{self, Row, ScoreOptions};
use crate::store::{Key, Record};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use tokenscale_fsio::write_atomic;

/// One row of `scores.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    /// The model's name.
    pub model: String,
    /// The reducer's name (`default`, `queries`, `pool`, `fastv:2`, ...).
    pub reducer: String,
    /// Vision tokens per image.
    pub n: usize,
    /// The dataset name.
    pub dataset: String,
    /// The split the metric is restricted to (`None`: all rows).
    pub split: Option<String>,
    /// The category the metric is restricted to (`None`: all rows).
    pub category: Option<String>,
    /// The VLMEvalKit metric name (e.g. `Overall`, `acc`).
    pub metric: String,
    /// The metric's value, on VLMEvalKit's scale for it (mostly percent).
    pub value: f64,
}

type Group = (String, String, usize, String);

fn group_records<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> BTreeMap<Group, Vec<&'a Record>> {
    let mut g: BTreeMap<Group, Vec<&Record>> = BTreeMap::new();
    for r in records {
        g.entry((r.model.clone(), r.reducer.clone(), r.n, r.dataset.clone())).or_default().push(r);
    }
    g
}

/// Score every (model, reducer, n, dataset) group of `records`.
pub fn score_records<'a>(
    datasets: &[Dataset],
    records: impl IntoIterator<Item = &'a Record>,
    opts: ScoreOptions,
) -> Result<Vec<ScoreRow>> {
    let by_name: HashMap<&str, &Dataset> = datasets.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut out = Vec::new();
    for ((model, reducer, n, dsname), recs) in group_records(records) {
        let Some(ds) = by_name.get(dsname.as_str()) else {
            eprintln!("warning: predictions for dataset {dsname} ignored: its TSV was not given");
            continue;
        };
        let preds: HashMap<&str, &str> =
            recs.iter().map(|r| (r.index.as_str(), r.prediction.as_str())).collect();
        let rows: Vec<Row> = ds
            .items
            .iter()
            .filter_map(|it| preds.get(it.index.as_str()).map(|p| Row { item: it, prediction: p }))
            .collect();
        if rows.len() < ds.items.len() {
            eprintln!(
                "warning: {model}/{reducer}/n={n}/{dsname}: {} of {} items have no prediction; scoring the {} present",
                ds.items.len() - rows.len(),
                ds.items.len(),
                rows.len()
            );
        }
        let mut metrics = score::score(&ds.name, ds.kind, &rows, opts)
            .with_context(|| format!("scoring {model}/{reducer}/n={n}/{dsname}"))?;
        metrics.extend(
            column_groups(ds, &rows, opts)
                .with_context(|| format!("scoring {model}/{reducer}/n={n}/{dsname} by column"))?,
        );
        for m in metrics {
            out.push(ScoreRow {
                model: model.clone(),
                reducer: reducer.clone(),
                n,
                dataset: dsname.clone(),
                split: m.split,
                category: m.category,
                metric: m.metric,
                value: m.value,
            });
        }
    }
    Ok(out)
}

/// Extra TSV columns whose values also group the scores (the scorers group by `category` and
/// `l2-category` themselves, as VLMEvalKit does).
pub const GROUP_COLUMNS: [&str; 1] = ["subtask"];

/// For each value `v` of each `GROUP_COLUMNS` column the dataset has: the Overall score of the
/// rows with that value, as an `acc` metric of category `column=v` (same scale as Overall).
fn column_groups(ds: &Dataset, rows: &[Row], opts: ScoreOptions) -> Result<Vec<score::Metric>> {
    let mut out = Vec::new();
    for column in GROUP_COLUMNS.iter().filter(|c| ds.has_column(c)) {
        let value_of = |r: &Row| r.item.extra.get(*column).cloned();
        let values: std::collections::BTreeSet<String> = rows.iter().filter_map(value_of).collect();
        for v in values {
            let group: Vec<Row> = rows
                .iter()
                .filter(|r| value_of(r).as_deref() == Some(v.as_str()))
                .copied()
                .collect();
            let overall = score::score(&ds.name, ds.kind, &group, opts)?
                .into_iter()
                .filter(|m| m.category.is_none() && m.metric == "Overall");
            out.extend(overall.map(|m| {
                score::Metric::new(m.split, Some(format!("{column}={v}")), "acc", m.value)
            }));
        }
    }
    Ok(out)
}

fn json_value(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Write `scores.json`, `scores.csv` and `scores.md` into `dir`.
pub fn write_scores(dir: &Path, rows: &[ScoreRow]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "model": r.model, "reducer": r.reducer, "n": r.n, "dataset": r.dataset,
                "split": r.split, "category": r.category, "metric": r.metric, "value": json_value(r.value),
            })
        })
        .collect();
    write_atomic(
        &dir.join("scores.json"),
        (serde_json::to_string_pretty(&json)? + "\n").as_bytes(),
    )?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["model", "reducer", "n", "dataset", "split", "category", "metric", "value"])?;
    for r in rows {
        w.write_record([
            r.model.as_str(),
            &r.reducer,
            &r.n.to_string(),
            &r.dataset,
            r.split.as_deref().unwrap_or(""),
            r.category.as_deref().unwrap_or(""),
            &r.metric,
            &format!("{}", r.value),
        ])?;
    }
    write_atomic(&dir.join("scores.csv"), &w.into_inner().map_err(|e| e.into_error())?)?;
    let mut md = String::from("| model | reducer | n | dataset | split | category | metric | value |\n|---|---|---:|---|---|---|---|---:|\n");
    for r in rows {
        let esc = |s: &str| s.replace('|', "\\|");
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.4} |\n",
            esc(&r.model),
            esc(&r.reducer),
            r.n,
            esc(&r.dataset),
            esc(r.split.as_deref().unwrap_or("")),
            esc(r.category.as_deref().unwrap_or("")),
            esc(&r.metric),
            r.value
        );
    }
    write_atomic(&dir.join("scores.md"), md.as_bytes())?;
    Ok(())
}

fn item_cell(it: &Item, col: &str) -> String {
    match col {
        "index" => it.index.clone(),
        "image_path" => {
            if it.image_path.len() == 1 {
                it.image_path[0].clone()
            } else if it.image_path.is_empty() {
                String::new()
            } else {
                crate::py::repr_list(&it.image_path)
            }
        }
        "question" => it.question.clone(),
        "hint" => it.hint.clone().unwrap_or_default(),
        "answer" => it.answer.clone().unwrap_or_default(),
        "category" => it.category.clone().unwrap_or_default(),
        "l2-category" => it.l2_category.clone().unwrap_or_default(),
        "split" => it.split.clone().unwrap_or_default(),
        c if c.len() == 1 && c.as_bytes()[0].is_ascii_uppercase() => {
            let l = c.chars().next().unwrap();
            it.options.iter().find(|(x, _)| *x == l).map(|x| x.1.clone()).unwrap_or_default()
        }
        c => it.extra.get(c).cloned().unwrap_or_default(),
    }
}

/// Per-sample predictions: `predictions/{dataset}.csv` and `.jsonl`, one row per (model,
/// reducer, n, item) with the dataset's columns (minus `image`) plus `prediction` and, for MCQ
/// and Y/N, VLMEvalKit's `extracted` answer.
pub fn write_predictions(
    dir: &Path,
    datasets: &[Dataset],
    records: &BTreeMap<Key, Record>,
    opts: ScoreOptions,
) -> Result<()> {
    let pdir = dir.join("predictions");
    std::fs::create_dir_all(&pdir)?;
    let groups = group_records(records.values());
    for ds in datasets {
        let cols: Vec<&String> = ds.columns.iter().filter(|c| *c != "image").collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut j = Vec::new();
        let mut header: Vec<String> = vec!["model".into(), "reducer".into(), "n".into()];
        header.extend(cols.iter().map(|c| c.to_string()));
        header.push("prediction".into());
        header.push("extracted".into());
        w.write_record(&header)?;
        for ((model, reducer, n, dsname), recs) in &groups {
            if *dsname != ds.name {
                continue;
            }
            let preds: HashMap<&str, &str> =
                recs.iter().map(|r| (r.index.as_str(), r.prediction.as_str())).collect();
            for it in &ds.items {
                let Some(p) = preds.get(it.index.as_str()) else { continue };
                let row = Row { item: it, prediction: p };
                let ex = score::extracted(ds.kind, &row, opts).unwrap_or_default();
                let mut rec: Vec<String> = vec![model.clone(), reducer.clone(), n.to_string()];
                let mut obj = serde_json::Map::new();
                obj.insert("model".into(), model.clone().into());
                obj.insert("reducer".into(), reducer.clone().into());
                obj.insert("n".into(), (*n).into());
                for c in &cols {
                    let v = item_cell(it, c);
                    obj.insert(c.to_string(), v.clone().into());
                    rec.push(v);
                }
                rec.push(p.to_string());
                rec.push(ex.clone());
                obj.insert("prediction".into(), p.to_string().into());
                obj.insert("extracted".into(), ex.into());
                w.write_record(&rec)?;
                serde_json::to_writer(&mut j, &serde_json::Value::Object(obj))?;
                j.write_all(b"\n")?;
            }
        }
        write_atomic(
            &pdir.join(format!("{}.csv", ds.name)),
            &w.into_inner().map_err(|e| e.into_error())?,
        )?;
        write_atomic(&pdir.join(format!("{}.jsonl", ds.name)), &j)?;
    }
    Ok(())
}

/// Score everything in `records` and write the predictions and scores files into `dir`.
pub fn write_outputs(
    dir: &Path,
    datasets: &[Dataset],
    records: &BTreeMap<Key, Record>,
    opts: ScoreOptions,
) -> Result<Vec<ScoreRow>> {
    let rows = score_records(datasets, records.values(), opts)?;
    write_predictions(dir, datasets, records, opts)?;
    write_scores(dir, &rows)?;
    Ok(rows)
}

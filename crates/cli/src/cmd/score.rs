//! `tokenscale score`: score predictions made elsewhere (no model is loaded): CSV / TSV / JSONL or
//! VLMEvalKit `.xlsx` files with `index` and `prediction` columns.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokenscale_eval::score::{Compat, ScoreOptions};
use tokenscale_eval::store::Record;
use tokenscale_eval::{Dataset, Kind};

#[derive(clap::Args)]
pub struct Args {
    /// Benchmark TSV in VLMEvalKit format, or a VLMEvalKit name (MME) for NAME.tsv in $LMUData
    /// (repeat, paired with --pred in order).
    #[arg(long, required = true, value_parser = super::data_file)]
    pub data: Vec<PathBuf>,
    /// Predictions: CSV, TSV, JSONL or VLMEvalKit xlsx with `index` and `prediction` columns (one per --data).
    #[arg(long, required = true)]
    pub pred: Vec<PathBuf>,
    /// Output directory for scores.json / scores.csv / scores.md and predictions/.
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset kind, overriding the one read from the file name.
    #[arg(long, value_enum)]
    pub kind: Option<super::choices::DatasetKind>,
    /// Model name for the scores table (default: the predictions file stem).
    #[arg(long)]
    pub model: Option<String>,
    /// Reducer name for the scores table.
    #[arg(long, default_value = "none")]
    pub reducer: String,
    /// Vision-token count for the scores table.
    #[arg(long, default_value_t = 0)]
    pub n: usize,
    /// VLMEvalKit rules: `head` (current) or `0ff0c3e` (the paper's commit).
    #[arg(long, default_value = "head")]
    pub vlmeval_compat: String,
    /// Captions: PTB-tokenise before BLEU/ROUGE/CIDEr (the lmms-eval convention).
    #[arg(long)]
    pub ptb: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.data.len() != args.pred.len() {
        bail!("give one --pred per --data ({} vs {})", args.data.len(), args.pred.len());
    }
    let kind: Option<Kind> = args.kind.map(Into::into);
    let opts = ScoreOptions { compat: Compat::parse(&args.vlmeval_compat)?, ptb: args.ptb };
    let mut datasets = Vec::new();
    let mut records = BTreeMap::new();
    for (d, p) in args.data.iter().zip(&args.pred) {
        let ds = Dataset::load(d, kind)?;
        let model = args.model.clone().unwrap_or_else(|| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let known: std::collections::HashSet<&str> =
            ds.items.iter().map(|i| i.index.as_str()).collect();
        let mut unknown = 0;
        for (index, prediction) in tokenscale_eval::predfile::read_predictions(p)? {
            if !known.contains(index.as_str()) {
                unknown += 1;
                continue;
            }
            let r = Record {
                model: model.clone(),
                reducer: args.reducer.clone(),
                n: args.n,
                dataset: ds.name.clone(),
                index,
                prediction,
                seconds: 0.0,
                error: None,
            };
            records.entry(r.key()).or_insert(r);
        }
        if unknown > 0 {
            eprintln!(
                "warning: {}: {unknown} predictions have an index that is not in {}",
                p.display(),
                d.display()
            );
        }
        datasets.push(ds);
    }
    let rows = tokenscale_eval::report::write_outputs(&args.out, &datasets, &records, opts)?;
    for r in rows.iter().filter(|r| r.category.is_none()) {
        println!(
            "{}\t{}\t{}\t{}\t{:.4}",
            r.dataset,
            r.split.as_deref().unwrap_or("-"),
            r.metric,
            r.n,
            r.value
        );
    }
    println!("wrote {}/scores.json, scores.csv, scores.md, predictions/", args.out.display());
    Ok(())
}

//! `tokenscale eval`: sweep models × vision-token counts × benchmarks into a resumable,
//! shardable run directory, then score it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use tokenscale_answer::ModelAnswerer;
use tokenscale_eval::merge::finish_run;
use tokenscale_eval::score::{Compat, ScoreOptions};
use tokenscale_eval::store::Shard;
use tokenscale_eval::sweep::{run_sweep, SweepConfig};
use tokenscale_eval::{Dataset, Kind};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder or Hugging Face id (ORG/NAME[@REVISION], local cache) of a LLaVA or
    /// query-fused model; repeat for several models.
    #[arg(long, required = true, value_parser = super::model_folder)]
    pub model: Vec<PathBuf>,
    /// Benchmark TSV in VLMEvalKit format, or a VLMEvalKit name (MME) for NAME.tsv in $LMUData
    /// (default ~/LMUData); repeat for several.
    #[arg(long, required = true, value_parser = super::data_file)]
    pub data: Vec<PathBuf>,
    /// Vision-token counts n, comma-separated (LLaVA: tokens after --reducer; query-fused: n_l).
    #[arg(long, value_delimiter = ',', required = true)]
    pub vision_tokens: Vec<usize>,
    /// LLaVA token reducer, needed below the native 576 tokens [values: pool, uniform, visionzip,
    /// fastv, fastv:K (FastV after LLM layer K, default 2)].
    #[arg(long, value_parser = super::reducer_name)]
    pub reducer: Option<String>,
    /// Query-fused model: chat template (default llama-2-vision).
    #[arg(long, value_enum)]
    pub template: Option<super::choices::Template>,
    /// Query-fused model: leave the question out of the query decoder's row.
    #[arg(long)]
    pub drop_query: bool,
    /// Run directory (predictions store, scores).
    #[arg(long)]
    pub out: PathBuf,
    /// Run only slice k of N (0-based), e.g. 3/8; combine with `tokenscale merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Reuse a run directory made with a different configuration.
    #[arg(long)]
    pub force: bool,
    /// Override the per-dataset max_new_tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Dataset kind, overriding the one read from the file name.
    #[arg(long, value_enum)]
    pub kind: Option<super::choices::DatasetKind>,
    /// VLMEvalKit rules: `head` (current) or `0ff0c3e` (the paper's commit).
    #[arg(long, default_value = "head")]
    pub vlmeval_compat: String,
    /// Captions: PTB-tokenise before BLEU/ROUGE/CIDEr.
    #[arg(long)]
    pub ptb: bool,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
    /// Stop at the first item that fails (bad image, prompt too long...) instead of recording it
    /// in the store, going on, and exiting non-zero at the end.
    #[arg(long)]
    pub fail_fast: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.vision_tokens.is_empty() {
        bail!("--vision-tokens needs at least one value");
    }
    let kind: Option<Kind> = args.kind.map(Into::into);
    let opts = ScoreOptions { compat: Compat::parse(&args.vlmeval_compat)?, ptb: args.ptb };
    let datasets = args.data.iter().map(|d| Dataset::load(d, kind)).collect::<Result<Vec<_>>>()?;
    let mut cfg = SweepConfig::new(&args.out, args.vision_tokens.clone());
    cfg.force = args.force;
    cfg.max_new_tokens = args.max_new_tokens;
    cfg.progress = true;
    cfg.fail_fast = args.fail_fast;
    if let Some(s) = &args.shard {
        cfg.shard = Shard::parse(s)?;
    }
    let mut settings = BTreeMap::new();
    if let Some(t) = args.template {
        settings.insert("template".to_string(), t.name().to_string());
    }
    cfg.settings = settings;
    let mut failed = 0;
    for dir in &args.model {
        let mut answerer = ModelAnswerer::load(
            dir,
            args.reducer.as_deref(),
            args.template.map(super::choices::Template::name),
            args.drop_query,
            args.dtype.policy(),
        )?;
        answerer.check_budgets(&args.vision_tokens)?;
        let summary = run_sweep(&mut answerer, &datasets, &cfg)?;
        failed += summary.failed;
        eprintln!(
            "{}: {} answered, {} failed, {} already stored; {} images prepared in {:.1}s, answering {:.1}s",
            dir.display(),
            summary.answered,
            summary.failed,
            summary.skipped,
            summary.images_prepared,
            summary.prepare_seconds,
            summary.answer_seconds
        );
    }
    let rows = finish_run(&args.out, &datasets, opts)?;
    for r in rows.iter().filter(|r| r.category.is_none()) {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{:.4}",
            r.model, r.reducer, r.n, r.dataset, r.metric, r.value
        );
    }
    println!("wrote {}/scores.json, scores.csv, scores.md, predictions/", args.out.display());
    if failed > 0 {
        bail!("{failed} answers failed (error records in {}/store; the scores leave them out; run the same command again to retry them)", args.out.display());
    }
    Ok(())
}

//! `tokenscale synth`: write the synthetic benchmark as VLMEvalKit TSVs (one per item kind) that
//! `tokenscale eval` and `tokenscale score` read like any benchmark.

use anyhow::Result;
use std::path::PathBuf;
use tokenscale_synth::{write_benchmark, Mix, Split};

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (created if missing); existing files of the same names are replaced.
    #[arg(long)]
    pub out: PathBuf,
    /// Split: train, val or test (disjoint seed streams).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Items per file (per kind).
    #[arg(long, default_value_t = 300)]
    pub items: usize,
    /// Subtask and kind weights over the uniform default, e.g. `fine=2,background=0,vqa=0`
    /// (subtasks: background, border, cell_colour, cell_shape, count_shape, count_colour,
    /// relation_colour, relation_shape; groups coarse, fine; kinds mcq, yorn, vqa).
    #[arg(long, default_value = "")]
    pub mix: String,
}

pub fn run(args: Args) -> Result<()> {
    let split = Split::parse(&args.split)?;
    let mix = Mix::parse(&args.mix)?;
    for path in write_benchmark(&args.out, split, args.items, &mix)? {
        println!("{} ({} items)", path.display(), args.items);
    }
    Ok(())
}

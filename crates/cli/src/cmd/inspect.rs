//! `tokenscale inspect DIR`: architecture, tensor count, parameters per component, dtypes.

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_model::checkpoint::{inventory, Architecture};
use tokenscale_model::weights::Weights;
use tokenscale_model::{DType, Device};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (arch, _) = Architecture::detect(&args.dir)?;
    let weights = Weights::from_dir(&args.dir, DType::F32, &Device::Cpu)?;
    let inv = inventory(&weights)?;
    if args.json {
        let report = serde_json::json!({
            "architecture": arch.name(),
            "tensors": inv.tensors,
            "parameters": inv.parameters,
            "components": inv.components,
            "dtypes": inv.dtypes,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("architecture: {}", arch.name());
    println!("tensors:      {}", inv.tensors);
    println!("parameters:   {}", inv.parameters);
    println!("components:");
    for (name, count) in &inv.components {
        println!("  {name:<40} {count:>14}");
    }
    println!("dtypes (parameters per storage dtype):");
    for (dtype, count) in &inv.dtypes {
        println!("  {dtype:<40} {count:>14}");
    }
    Ok(())
}

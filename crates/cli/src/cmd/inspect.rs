//! `tokenscale inspect DIR`: architecture, tensor count, parameters per component, dtypes.

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_model::checkpoint::{inventory, Architecture};
use tokenscale_model::dtype::{dtype_name, human_bytes};
use tokenscale_model::runtime::Runtime;
use tokenscale_model::weights::Weights;
use tokenscale_model::{DType, Device};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder, or a Hugging Face id (ORG/NAME[@REVISION]) in the local cache.
    #[arg(value_parser = super::model_folder)]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also load the model (in the `auto` dtype, or --dtype) and report load time and peak RSS.
    #[arg(long)]
    pub load: bool,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let (arch, _) = Architecture::detect(&args.dir)?;
    let weights = Weights::from_dir(&args.dir, DType::F32, &Device::Cpu)?;
    let inv = inventory(&weights)?;
    let compute = args.dtype.policy().resolve(&args.dir)?;
    let available = tokenscale_model::dtype::available_memory();
    let loaded = if args.load {
        let loaded = Runtime::open(&args.dir, args.dtype.policy(), &Device::Cpu)?;
        Some((loaded.load_s, tokenscale_model::dtype::peak_rss_bytes()))
    } else {
        None
    };
    if args.json {
        let report = serde_json::json!({
            "architecture": arch.name(),
            "tensors": inv.tensors,
            "parameters": inv.parameters,
            "components": inv.components,
            "dtypes": inv.dtypes,
            "compute_dtype": dtype_name(compute.dtype),
            "compute_dtype_reason": compute.reason,
            "parameter_bytes": compute.compute_bytes,
            "available_memory_bytes": available,
            "load_s": loaded.map(|l| l.0),
            "peak_rss_bytes": loaded.and_then(|l| l.1),
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
    println!("compute dtype: {}", compute.reason);
    let room = available.map_or("not reported".to_string(), human_bytes);
    println!(
        "memory:        {} of parameters; {room} available",
        human_bytes(compute.compute_bytes)
    );
    if let Some((load_s, peak)) = loaded {
        let peak = peak.map_or("not reported".to_string(), human_bytes);
        println!("loaded in:     {load_s:.2} s, peak RSS {peak}");
    }
    Ok(())
}

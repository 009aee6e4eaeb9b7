//! Every input reader fuzzed: seeds, then seeded mutations (`TOKENSCALE_FUZZ_INPUTS` per target,
//! 2,000 by default; `TOKENSCALE_FUZZ_SEED`; target names as arguments select targets). A target
//! fails on a panic, an allocation over the cap, or an error that does not name the file;
//! crashing inputs are saved under `TOKENSCALE_FUZZ_CRASHES` (default `target/fuzz-crashes`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use tokenscale_fuzz::alloc::{peak_above, start_measuring, CountingAllocator};
use tokenscale_fuzz::runner::{self, quiet_panics};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[path = "fuzz_targets/mod.rs"]
mod targets;

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The measurement must see allocations, or the memory property could never fail.
fn check_allocator_counts() -> Result<()> {
    let baseline = start_measuring();
    let block = vec![1u8; 8 << 20];
    let seen = peak_above(baseline);
    drop(block);
    anyhow::ensure!(
        seen >= 8 << 20,
        "the counting allocator saw {seen} bytes of an 8 MiB allocation"
    );
    Ok(())
}

fn main() -> Result<()> {
    check_allocator_counts()?;
    let inputs = env_number("TOKENSCALE_FUZZ_INPUTS", 2000)? as usize;
    let seed = env_number("TOKENSCALE_FUZZ_SEED", 18)?;
    let crash_dir = std::env::var_os("TOKENSCALE_FUZZ_CRASHES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/fuzz-crashes"));
    // `cargo test` passes its own flags (`--nocapture`...) through; names are the other arguments.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = targets::all();
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|t| t.name == w.as_str())) {
        let names: Vec<&str> = all.iter().map(|t| t.name).collect();
        anyhow::bail!("unknown fuzz target {unknown:?} (targets: {})", names.join(", "));
    }
    quiet_panics();
    let root = workspace_root();
    let mut failed = Vec::new();
    println!("| target | inputs | accepted | rejected | crashes | peak MiB | seconds |\n|---|---:|---:|---:|---:|---:|---:|");
    for target in all.iter().filter(|t| wanted.is_empty() || wanted.iter().any(|w| w == t.name)) {
        let start = Instant::now();
        let report = runner::run(target, &root, inputs, seed)?;
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            target.name,
            report.inputs,
            report.accepted,
            report.rejected,
            report.crashes.len(),
            report.peak_bytes as f64 / (1 << 20) as f64,
            start.elapsed().as_secs_f64()
        );
        if !report.crashes.is_empty() {
            runner::save_crashes(&crash_dir, target.name, &report.crashes)?;
            for crash in report.crashes.iter().take(3) {
                eprintln!("{}: {}", target.name, crash.what);
            }
            failed.push(target.name);
        }
    }
    let _ = std::panic::take_hook();
    if !failed.is_empty() {
        anyhow::bail!(
            "crashes in {} (inputs saved under {})",
            failed.join(", "),
            crash_dir.display()
        );
    }
    Ok(())
}

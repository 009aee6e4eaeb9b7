//! Test harness: drives `run_sweep` with the reference `EchoAnswerer` (a deterministic fake, not
//! a model). Used by the kill-and-resume test, which SIGKILLs this process mid-sweep.
//!
//! usage: tokenscale-sweep-harness RUN_DIR N_LIST SLEEP_MS SHARD TSV...

use tokenscale_eval::prompt::PromptStyle;
use tokenscale_eval::store::Shard;
use tokenscale_eval::{Dataset, EchoAnswerer, SweepConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!("usage: {} RUN_DIR N_LIST SLEEP_MS SHARD TSV...", args[0]);
    }
    let ns: Vec<usize> = args[2].split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let sleep: u64 = args[3].parse()?;
    let datasets: Vec<Dataset> = args[5..].iter().map(|p| Dataset::load(p.as_ref(), None)).collect::<Result<_, _>>()?;
    let mut a = EchoAnswerer::new("echo", &datasets, PromptStyle::Default)?;
    a.answer_sleep = std::time::Duration::from_millis(sleep);
    let mut cfg = SweepConfig::new(&args[1], ns);
    cfg.shard = Shard::parse(&args[4])?;
    let s = tokenscale_eval::sweep::run_sweep(&mut a, &datasets, &cfg)?;
    println!("answered {} skipped {}", s.answered, s.skipped);
    Ok(())
}

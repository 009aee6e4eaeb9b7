//! Test and demo harness for the sweep engine, driving the reference `EchoAnswerer` — a
//! deterministic fake that answers from the ground truth with an n-dependent error rate; it is
//! *not* a model. The kill-and-resume test SIGKILLs this process mid-sweep.
//!
//! usage:
//!   tokenscale-sweep-harness gen DIR [SEED] [ITEMS]          write the synthetic benchmark TSVs
//!   tokenscale-sweep-harness RUN_DIR N_LIST SLEEP_MS SHARD TSV...
//!       sweep N_LIST (e.g. 1,8,64) over the TSVs as shard SHARD (k/N, 0-based); a 0/1 run also
//!       writes scores.* and predictions/ into RUN_DIR (shards are combined by `tokenscale merge`).

use std::io::IsTerminal;
use tokenscale_eval::prompt::PromptStyle;
use tokenscale_eval::store::Shard;
use tokenscale_eval::{Dataset, EchoAnswerer, ScoreOptions, SweepConfig};

/// `TOKENSCALE_HARNESS_FSIZE=BYTES`: cap the size of files this process may write (RLIMIT_FSIZE),
/// so writes past it fail with EFBIG as on a full disk.
fn limit_file_size() {
    #[cfg(unix)]
    if let Some(bytes) =
        std::env::var("TOKENSCALE_HARNESS_FSIZE").ok().and_then(|s| s.parse::<u64>().ok())
    {
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim =
                libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_file_size();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("gen") {
        let dir = args
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("usage: {} gen DIR [SEED] [ITEMS]", args[0]))?;
        let seed: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0);
        let items: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(40);
        for p in tokenscale_synth::generate(dir.as_ref(), seed, items, 64)? {
            println!("{}", p.display());
        }
        return Ok(());
    }
    if args.len() < 6 {
        anyhow::bail!(
            "usage: {0} gen DIR [SEED] [ITEMS]\n       {0} RUN_DIR N_LIST SLEEP_MS SHARD TSV...",
            args[0]
        );
    }
    let ns: Vec<usize> = args[2].split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
    let sleep: u64 = args[3].parse()?;
    let datasets: Vec<Dataset> =
        args[5..].iter().map(|p| Dataset::load(p.as_ref(), None)).collect::<Result<_, _>>()?;
    let mut a = EchoAnswerer::new("echo-reference", &datasets, PromptStyle::Default)?;
    a.answer_sleep = std::time::Duration::from_millis(sleep);
    let mut cfg = SweepConfig::new(&args[1], ns);
    cfg.shard = Shard::parse(&args[4])?;
    cfg.progress = std::io::stderr().is_terminal();
    let s = tokenscale_eval::sweep::run_sweep(&mut a, &datasets, &cfg)?;
    println!("answered {} skipped {} images_prepared {}", s.answered, s.skipped, s.images_prepared);
    if cfg.shard.count == 1 {
        tokenscale_eval::merge::finish_run(&cfg.run_dir, &datasets, ScoreOptions::default())?;
        println!("wrote {}/scores.json", cfg.run_dir.display());
    }
    Ok(())
}

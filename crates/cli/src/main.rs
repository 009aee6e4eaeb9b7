use clap::{Parser, Subcommand};

mod cmd;
mod embedded;

#[derive(Parser)]
#[command(name = "tokenscale", version, about = "Vision-token scaling toolkit for vision-language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// One variant per subcommand; each lives in its own file under cmd/ with `Args` and `run`.
#[derive(Subcommand)]
enum Command {
    /// Print the tokenscale version.
    Version,
    /// Train the tiny query-fused VLM on the synthetic benchmark (resumable checkpoints).
    Train(cmd::train::Args),
    /// Score predictions made elsewhere against a VLMEvalKit TSV (no model is loaded).
    Score(cmd::score::Args),
    /// Combine the run directories of a sharded sweep into one result.
    Merge(cmd::merge::Args),
    /// Run the embedded default model end to end (no download).
    Demo(cmd::demo::Args),
    /// Fetch a model from the Hugging Face Hub into the local Hugging Face cache (needs a network).
    Download(cmd::download::Args),
    /// Sweep models × vision-token counts × benchmarks (resumable, shardable), then score.
    Eval(cmd::eval::Args),
    /// Measure D(n) and the ψ terms on a model's hidden states over branching pairs; fit λ, n_balance.
    Probe(cmd::probe::Args),
    /// Measured time per vision-token budget: vision, time to first token, prefill/decode speed, RSS.
    Bench(cmd::bench::Args),
    /// Generate an answer for an image and a prompt, streamed to stdout.
    Run(cmd::run::Args),
    /// One forward pass written as safetensors (inputs, logits, hidden states) for parity checks.
    Forward(cmd::forward::Args),
    /// Architecture, tensor and parameter counts of a checkpoint folder.
    Inspect(cmd::inspect::Args),
    /// Fit scaling laws (paper, power, log-linear, saturating) to a score table, with bootstrap CIs and figures.
    Fit(cmd::fit::Args),
    /// Evaluate the bound lambda*sqrt(Upsilon(n)) and n_balance(n) from psi terms (and a measured D(n)).
    Bound(cmd::bound::Args),
    /// Parameters, MACs/FLOPs, KV cache and activations per component for a list of n (config.json only).
    Cost(cmd::cost::Args),
    /// Pareto frontier of score vs cost per benchmark and the n that meets a score, FLOPs or latency target.
    Advise(cmd::advise::Args),
    /// Checkpoint tools for the query-fused model: `update` (latest checkpoint-N → fresh folder), `swap-llm`.
    Ckpt(cmd::ckpt::Args),
    /// The paper's experiment on the shipped model: benchmark, n-sweep, law fits, probe, cost, report.md.
    Reproduce(cmd::reproduce::Args),
    /// Write the synthetic benchmark (coarse and fine questions, MCQ / yes-no / short answer) as VLMEvalKit TSVs.
    Synth(cmd::synth::Args),
}

fn main() {
    // Output piped into `head` and the like: end quietly when the reader goes away, as Unix
    // tools do, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; restoring the default
    // disposition of SIGPIPE touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A flag value refused by its parser (a model or benchmark not found...) is one line, like
        // every other error; usage mistakes keep clap's usage text.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid value"));
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let result: anyhow::Result<()> = match cli.command {
        Command::Version => {
            println!("tokenscale {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Score(args) => cmd::score::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Download(args) => cmd::download::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Probe(args) => cmd::probe::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Forward(args) => cmd::forward::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Fit(args) => cmd::fit::run(args),
        Command::Bound(args) => cmd::bound::run(args),
        Command::Cost(args) => cmd::cost::run(args),
        Command::Advise(args) => cmd::advise::run(args),
        Command::Ckpt(args) => cmd::ckpt::run(args),
        Command::Reproduce(args) => cmd::reproduce::run(args),
        Command::Synth(args) => cmd::synth::run(args),
        Command::Train(args) => cmd::train::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

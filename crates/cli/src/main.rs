use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod embedded;
mod flag_hints;

#[derive(Parser)]
#[command(
    name = "tokenscale",
    version,
    about = "Vision-token scaling toolkit for vision-language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// One variant per subcommand, in the order a user meets them (`--help` lists them so); each lives
// in its own file under cmd/ with `Args` and `run`. The version is `-V` / `--version`.
#[derive(Subcommand)]
enum Command {
    /// Run the embedded default model end to end (no download).
    Demo(cmd::demo::Args),
    /// Fetch a model from the Hugging Face Hub into the local Hugging Face cache (needs a network).
    Download(cmd::download::Args),
    /// Generate an answer for an image and a prompt, streamed to stdout.
    Run(cmd::run::Args),
    /// Write the synthetic benchmark (coarse and fine questions, MCQ / yes-no / short answer) as VLMEvalKit TSVs.
    Synth(cmd::synth::Args),
    /// Sweep models × vision-token counts × benchmarks (resumable, shardable), then score.
    Eval(cmd::eval::Args),
    /// OpenAI-compatible chat-completions server with a vision-token budget per request.
    Serve(cmd::serve::Args),
    /// Score predictions made elsewhere against a VLMEvalKit TSV (no model is loaded).
    Score(cmd::score::Args),
    /// Combine the run directories of a sharded sweep into one result.
    Merge(cmd::merge::Args),
    /// Fit scaling laws (paper, power, log-linear, saturating) to a score table, with bootstrap CIs and figures.
    Fit(cmd::fit::Args),
    /// Pareto frontier of score vs cost per benchmark and the n that meets a score, FLOPs or latency target.
    Advise(cmd::advise::Args),
    /// Parameters, MACs/FLOPs, KV cache and activations per component for a list of n (config.json only).
    Cost(cmd::cost::Args),
    /// Measured time per vision-token budget: vision, time to first token, prefill/decode speed, RSS.
    Bench(cmd::bench::Args),
    /// Measure D(n) and the ψ terms on a model's hidden states over branching pairs; fit λ, n_balance.
    Probe(cmd::probe::Args),
    /// Evaluate the bound lambda*sqrt(Upsilon(n)) and n_balance(n) from psi terms (and a measured D(n)).
    Bound(cmd::bound::Args),
    /// The paper's experiment on the shipped model: benchmark, n-sweep, law fits, probe, cost, report.md.
    Reproduce(cmd::reproduce::Args),
    /// Train the tiny query-fused VLM on the synthetic benchmark (resumable checkpoints).
    Train(cmd::train::Args),
    /// Checkpoint tools for the query-fused model: `update` (latest checkpoint-N → fresh folder), `swap-llm`.
    Ckpt(cmd::ckpt::Args),
    /// Architecture, tensor and parameter counts of a checkpoint folder.
    Inspect(cmd::inspect::Args),
    /// One forward pass written as safetensors (inputs, logits, hidden states) for parity checks.
    Forward(cmd::forward::Args),
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
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A refused flag value (not among the choices, a model or benchmark not found...) is one
        // line and exit code 1, like every other error; usage mistakes keep clap's usage text.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let text = e.to_string();
            let message: Vec<&str> =
                text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            eprintln!("{}", message.join(" "));
            std::process::exit(1);
        }
        Err(e) => e.exit(),
    };
    let result: anyhow::Result<()> = match cli.command {
        Command::Score(args) => cmd::score::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Download(args) => cmd::download::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Probe(args) => cmd::probe::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Serve(args) => cmd::serve::run(args),
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
        let args: Vec<String> = std::env::args().skip(1).collect();
        eprintln!(
            "error: {}",
            flag_hints::with_flag_hints(&format!("{err:#}"), &Cli::command(), &args)
        );
        std::process::exit(1);
    }
}

/// A forward pass allocates and frees activations of a few MiB per op, thousands of times. By
/// default glibc hands such blocks back to the kernel (mmap/trim) and takes fresh zeroed pages
/// on the next allocation: page faults were ~12 % of a bf16 CLIP forward. Keeping freed blocks
/// for reuse costs at most the largest working set, which the model's weights dwarf.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument of every subcommand, with the commands that lack help text.
    fn without_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = ["help", "version"].contains(&arg.get_id().as_str());
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            without_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_has_help_and_commands_come_in_the_order_users_meet_them() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        without_help(&cli, "tokenscale", &mut missing);
        assert!(missing.is_empty(), "flags without help text: {missing:?}");
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(&names[..5], ["demo", "download", "run", "synth", "eval"]);
        assert!(!names.contains(&"version"), "the version is -V");
    }
}

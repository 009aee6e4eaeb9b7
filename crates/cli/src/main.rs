use clap::{Parser, Subcommand};

mod cmd;

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
}

fn main() {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Version => {
            println!("tokenscale {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "tokenscale", version, about = "Vision-token scaling toolkit for vision-language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
}

fn main() {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {};
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

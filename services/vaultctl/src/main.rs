mod bench;
mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let res = match &cli.command {
        cli::Command::Bench(a) => bench::run(a, cli.global.json, cli.global.quiet),
        _ => Err(anyhow::anyhow!("not wired yet")),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

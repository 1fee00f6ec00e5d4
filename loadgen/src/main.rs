use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Thread-per-core, coordinated-omission-correct HTTP/1.1 load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load one URL (or a scenario's request mix) and report throughput, errors and latency.
    Run(loadgen::cli::RunArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => loadgen::cli::run(&a),
    };
    if let Err(e) = r {
        eprintln!("loadgen: {e:#}");
        std::process::exit(1);
    }
}

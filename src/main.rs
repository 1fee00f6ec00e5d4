//! The corelb binary: `run`, `check`, and the quick start without a file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "corelb",
    version,
    about = "A thread-per-core io_uring HTTP/1.1 load balancer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the load balancer (the default command).
    Run(RunArgs),
    /// Validate a configuration file and exit (like `haproxy -c` or `nginx -t`).
    Check {
        /// Configuration file (TOML) to check; every mistake in it is reported, with its line.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Args, Default)]
struct RunArgs {
    /// Configuration file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Number of workers (one pinned executor each); default: one per CPU the process may use.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Quick start without a file: address to listen on (repeatable).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Quick start without a file: backend server address (repeatable).
    #[arg(long, value_name = "ADDR")]
    backend: Vec<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Check { config }) => match corelb::config::load(&config) {
            Ok(_) => {
                println!("configuration file {} is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let cfg = match (
        &args.config,
        args.listen.is_empty() && args.backend.is_empty(),
    ) {
        (Some(path), true) => corelb::config::load(path),
        (None, false) => corelb::config::quick(&args.listen, &args.backend),
        (Some(_), false) => {
            eprintln!("error: give either -c FILE or --listen/--backend, not both");
            return ExitCode::FAILURE;
        }
        (None, true) => {
            eprintln!("error: nothing to run: give -c FILE, or --listen ADDR --backend ADDR [--backend ADDR ...]");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match corelb::server::run(cfg, args.workers.map(usize::from)).context("corelb could not start")
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

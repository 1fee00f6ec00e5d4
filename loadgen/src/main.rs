use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The stack scripts live in the source tree, next to this crate's manifest: the path is baked in at
/// build time, so a binary copied to another machine (or a moved checkout) reports them missing.
const STACK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stack");

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
    Run(Box<loadgen::cli::RunArgs>),
    /// The benchmark stack's MariaDB primary and replica (runs loadgen/stack/mariadb.sh; its
    /// settings come from the environment, e.g. CORELB_STACK_DIR: see `mariadb.sh help`).
    Stack {
        action: StackAction,
        /// Passed on to the script (e.g. `down replica`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The seed-stack benchmark through corelb, HAProxy or nginx (runs loadgen/stack/bench.sh with
    /// these arguments; `loadgen bench --help` prints the script's own usage).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StackAction {
    /// Create (first time) and start both servers, wire up replication.
    Up,
    /// Stop both servers (or one: `down replica`); the data is kept.
    Down,
    /// Each server's state and replication; exit 3 when not all is running and replicating.
    Status,
    /// Down, then delete the state directory.
    Purge,
}

impl StackAction {
    fn word(self) -> &'static str {
        match self {
            StackAction::Up => "up",
            StackAction::Down => "down",
            StackAction::Status => "status",
            StackAction::Purge => "purge",
        }
    }
}

/// Runs `bash SCRIPT ARGS...` with our stdio and returns its exit code (128 + signal when a signal
/// ended it, as a shell reports it), so that callers can tell e.g. "not running" (3) from a failure.
fn run_script(name: &str, args: &[String]) -> anyhow::Result<ExitCode> {
    let script = Path::new(STACK_DIR).join(name);
    if !script.is_file() {
        anyhow::bail!(
            "{} not found: this loadgen was built from a source tree that is no longer there \
             (the stack scripts are not installed with the binary); run it from a checkout, \
             e.g. `cargo run --release -p loadgen -- ...`",
            script.display()
        );
    }
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("running bash {}", script.display()))?;
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    // Exit codes are one byte (wait(2)); anything out of range is reported as a plain failure.
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => loadgen::cli::run(&a).map(|()| ExitCode::SUCCESS),
        Command::Stack { action, args } => {
            let mut all = vec![action.word().to_string()];
            all.extend(args);
            run_script("mariadb.sh", &all)
        }
        Command::Bench { args } => run_script("bench.sh", &args),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_scripts_are_where_the_binary_looks() {
        for s in ["mariadb.sh", "bench.sh"] {
            assert!(Path::new(STACK_DIR).join(s).is_file(), "{s}");
        }
    }
}

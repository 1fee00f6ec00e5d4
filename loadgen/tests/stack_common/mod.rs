//! What both stack tests need: the MariaDB pair script, free ports, bounded child processes, and a
//! check that nothing they started is left running.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/mariadb.sh");
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Bound on building corelb when its debug binary is missing (a cold debug build on 2 busy cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
pub const INSTALL_CMD: &str = "apt-get update && apt-get install -y -o DPkg::Lock::Timeout=120 \
                           mariadb-server mariadb-client";
/// Bound on one run of the script (a fresh pair takes 1-5 s here; its own waits are bounded by
/// CORELB_STACK_TIMEOUT, set below this).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
pub const SCRIPT_INNER_TIMEOUT_SECS: &str = "60";

pub fn mariadbd_installed() -> bool {
    installed("mariadbd")
}

/// Whether `cmd` is on PATH or in an sbin directory (server binaries; a non-root PATH may lack them).
pub fn installed(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(cmd).is_file())
}

/// Under CI (CI=true) a missing package is a failure: CI is expected to install it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Runs a command with a deadline; kills it (by its PID) when the deadline passes.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// PIDs of processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // A zombie has an empty command line: it is already stopped.
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Where a missing corelb is built, under the workspace's target directory. Not the target directory
/// itself: `cargo test` holds that directory's lock while the tests run, so a nested `cargo build`
/// there would wait for the lock until BUILD_TIMEOUT (rust-lang/rust#35816).
const NESTED_TARGET: &str = "stack-test-corelb";

/// The debug corelb binary of this workspace: `<target>/debug/corelb`, where this test binary is
/// `<target>/debug/deps/<name>-<hash>` (so a custom CARGO_TARGET_DIR is followed too). When it is
/// missing, corelb is built (once; later runs are incremental no-ops) into `<target>/NESTED_TARGET`.
pub fn corelb_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let debug_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary path {}", exe.display()));
    let bin = debug_dir.join("corelb");
    if bin.is_file() {
        return bin;
    }
    let target_dir = debug_dir
        .parent()
        .expect("the target directory above debug/")
        .join(NESTED_TARGET);
    eprintln!(
        "{} is missing (run `cargo build -p corelb` first to skip this): building it now with \
         `cargo build -p corelb --bin corelb` into {}",
        bin.display(),
        target_dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run_bounded(
        Command::new(cargo)
            .args(["build", "-p", "corelb", "--bin", "corelb"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(WORKSPACE),
        BUILD_TIMEOUT,
    );
    let built = target_dir.join("debug").join("corelb");
    assert!(
        out.status.success() && built.is_file(),
        "building corelb failed; run `cargo build -p corelb` yourself:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    built
}

/// configs/stack.toml (the stack's corelb configuration, which loadgen/stack/bench.sh runs) with its
/// frontend and app node addresses replaced, as bench.sh does.
pub fn stack_corelb_config(frontend: &str, app1: &str, app2: &str) -> String {
    let path = Path::new(WORKSPACE).join("configs/stack.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for addr in ["127.0.0.1:18110", "127.0.0.1:18101", "127.0.0.1:18102"] {
        assert_eq!(
            text.matches(addr).count(),
            1,
            "{} must hold {addr} once (the tests and bench.sh rewrite it)",
            path.display()
        );
    }
    text.replace("127.0.0.1:18110", frontend)
        .replace("127.0.0.1:18101", app1)
        .replace("127.0.0.1:18102", app2)
}

//! The tests' contact with the machine: whether a tool is installed (and the CI gate when it is not),
//! commands run with a deadline, and which processes are still running.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Installs every Debian package the tests may need (scripts/test.sh does this in CI).
pub const INSTALL_CMD: &str = "apt-get update && apt-get install -y -o DPkg::Lock::Timeout=120 \
                               mariadb-server mariadb-client haproxy jq";

/// Whether `cmd` is on PATH or in an sbin directory (server binaries; a non-root PATH may lack them).
pub fn installed(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(cmd).is_file())
}

pub fn mariadbd_installed() -> bool {
    installed("mariadbd")
}

/// Whether this is a CI run (CI=true).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The gate of a test that needs external tools: true when every one of `tools` is installed.
/// Otherwise it prints `SKIPPED <test>: ...` and returns false, so the test returns and passes,
/// except under CI (CI=true), where it panics: CI is expected to install them.
pub fn require_or_skip(test: &str, tools: &[&str]) -> bool {
    gate(test, tools, in_ci())
}

/// `require_or_skip` with CI passed in (so the CI branch is testable without touching the
/// process environment, which the test threads share).
fn gate(test: &str, tools: &[&str], ci: bool) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !installed(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{missing:?} not installed. Install: {INSTALL_CMD}");
    assert!(!ci, "{test}: CI must run this test, but {msg}");
    eprintln!("SKIPPED {test}: {msg}");
    false
}

/// Runs a command with a deadline; kills it (by its PID) when the deadline passes, then panics.
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

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released), for programs
/// that must be told their port (MariaDB, app nodes, HAProxy).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A port on 127.0.0.1 that refuses connections (bound then released; nothing else in the test
/// process binds fixed ports, so it stays free for the test's duration in practice).
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool no machine has.
    const NO_SUCH_TOOL: &str = "corelb-testkit-no-such-tool";

    #[test]
    fn gate_passes_when_installed_skips_when_missing() {
        assert!(gate("t", &["sh"], true), "sh is on every machine");
        assert!(gate("t", &[], true));
        assert!(!gate("t", &["sh", NO_SUCH_TOOL], false));
    }

    #[test]
    #[should_panic(expected = "CI must run this test")]
    fn gate_fails_under_ci_when_missing() {
        gate("t", &[NO_SUCH_TOOL], true);
    }

    #[test]
    fn run_bounded_returns_the_output() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo hi"]),
            Duration::from_secs(10),
        );
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn run_bounded_kills_at_the_deadline() {
        run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(200));
    }

    #[test]
    fn refused_addr_refuses() {
        let a = refused_addr();
        assert!(std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_err());
    }
}

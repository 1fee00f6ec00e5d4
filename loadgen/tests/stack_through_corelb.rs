//! The whole benchmark stack through corelb, for real: a private MariaDB pair (loadgen/stack/mariadb.sh,
//! its own state directory and free ports), two `appnode`s, corelb in front of them
//! (configs/stack.toml, the benchmark's own configuration, one worker), and `loadgen run` with the
//! standard 90/10 read/write scenario for 3 s. From loadgen's JSON: no errors, both app nodes served
//! and split evenly, and every row the run wrote is visible on the replica. Then everything is
//! stopped by PID, the pair brought down, and no process of it remains.
//!
//! Uses the debug binaries: loadgen and appnode from this crate, corelb from the workspace's target
//! directory (when it is missing, built here with `cargo build -p corelb --bin corelb` into a
//! directory of its own under the target directory: see NESTED_TARGET).
//! Needs mariadb-server (Debian). Without it the test says SKIPPED and passes, except under CI
//! (CI=true), where a missing server is a failure: CI is expected to install it.

use corelb_testkit::mariadb::{SCRIPT, SCRIPT_INNER_TIMEOUT_SECS, SCRIPT_TIMEOUT};
use corelb_testkit::process::{corelb_binary, stack_corelb_config};
use corelb_testkit::tools::processes_mentioning;
use corelb_testkit::{free_port, poll_for, poll_until, require_or_skip, run_bounded, POLL};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const APPNODE: &str = env!("CARGO_BIN_EXE_appnode");
const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
/// Bound on an app node printing its address, and on corelb printing `ready`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// The measured run; loadgen itself is bounded by a deadline well above it (start-up, drain, report).
const RUN_SECS: &str = "3s";
const LOADGEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Replication is asynchronous (p99 a few ms on loopback), and the run's writes arrive in a burst.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(20);
/// Bound on one `mariadb` client query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two row counts while waiting for replication (each starts a `mariadb` client).
const QUERY_POLL: Duration = Duration::from_millis(50);
/// Bound on a stopped process exiting (corelb's grace is 1 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Worker threads per app node: each upstream keep-alive connection of corelb holds one, so more
/// than the run's 16 client connections can make corelb open.
const NODE_THREADS: &str = "64";
/// Share of the requests each app node must serve (round robin over two equal servers).
const SPLIT_MIN: f64 = 0.45;
const SPLIT_MAX: f64 = 0.55;

const SCENARIO: &str = r#"[[kind]]
name = "read"
weight = 9
method = "GET"
path = "/items/{rand:1-1000}"

[[kind]]
name = "write"
weight = 1
method = "POST"
path = "/items"
headers = { Content-Type = "application/json" }
body = '{"name":"through-corelb"}'
"#;

/// Everything this test started; whatever happens, Drop stops it by PID and purges the pair.
struct Stack {
    dir: PathBuf,
    primary_port: u16,
    replica_port: u16,
    children: Vec<(&'static str, Child)>,
    config: PathBuf,
}

impl Stack {
    fn script(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .args(args)
            .env("CORELB_STACK_DIR", &self.dir)
            .env("CORELB_PRIMARY_PORT", self.primary_port.to_string())
            .env("CORELB_REPLICA_PORT", self.replica_port.to_string())
            .env("CORELB_STACK_TIMEOUT", SCRIPT_INNER_TIMEOUT_SECS);
        let started = Instant::now();
        let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
        eprintln!(
            "mariadb.sh {} ({:.1} s, exit {:?}):\n{}{}",
            args.join(" "),
            started.elapsed().as_secs_f64(),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn script_ok(&self, args: &[&str]) {
        assert!(
            self.script(args).status.success(),
            "mariadb.sh {args:?} failed"
        );
    }

    /// Spawns `cmd` with stderr piped and returns the first line, within STARTUP_TIMEOUT, that
    /// `want` accepts; a thread keeps draining (and echoing) the rest so the child never blocks.
    fn spawn_and_wait<T: Send + 'static>(
        &mut self,
        name: &'static str,
        cmd: &mut Command,
        from_stdout: bool,
        mut want: impl FnMut(&str) -> Option<T> + Send + 'static,
    ) -> T {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(if from_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if from_stdout {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stream: Box<dyn std::io::Read + Send> = if from_stdout {
            Box::new(child.stdout.take().expect("stdout"))
        } else {
            Box::new(child.stderr.take().expect("stderr"))
        };
        self.children.push((name, child));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stream).lines();
            let mut tx = Some(tx);
            // Ends at EOF, i.e. when the child exits.
            while let Some(Ok(line)) = lines.next() {
                eprintln!("[{name}] {line}");
                if let Some(v) = want(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        rx.recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("{name} not ready within {STARTUP_TIMEOUT:?}"))
    }

    fn start_node(&mut self, name: &'static str) -> String {
        let mut cmd = Command::new(APPNODE);
        cmd.args(["--listen", "127.0.0.1:0", "--name", name])
            .args(["--primary", &format!("127.0.0.1:{}", self.primary_port)])
            .args(["--replica", &format!("127.0.0.1:{}", self.replica_port)])
            .args(["--db-pool", "8", "--threads", NODE_THREADS]);
        self.spawn_and_wait(name, &mut cmd, true, |line| {
            line.trim()
                .rsplit_once("listening on ")
                .map(|(_, addr)| addr.to_string())
        })
    }

    /// Starts corelb with the stack's own configuration (configs/stack.toml, which the benchmark
    /// runs) in front of the two nodes, and returns the frontend's address, read from its
    /// `corelb: listening frontend=bench addr=...` line, once it printed `corelb: ready`.
    fn start_corelb(&mut self, app1: &str, app2: &str) -> String {
        let toml = stack_corelb_config("127.0.0.1:0", app1, app2);
        std::fs::write(&self.config, toml).expect("write corelb config");
        let mut cmd = Command::new(corelb_binary());
        cmd.arg("run")
            .arg("-c")
            .arg(&self.config)
            .args(["--workers", "1"]);
        let mut addr = None;
        self.spawn_and_wait("corelb", &mut cmd, false, move |line| {
            if let Some(rest) = line.trim_end().strip_prefix("corelb: listening ") {
                let kv: Vec<&str> = rest.split_whitespace().collect();
                if kv.contains(&"frontend=bench") {
                    addr = kv
                        .iter()
                        .find_map(|k| k.strip_prefix("addr="))
                        .map(str::to_string);
                }
                None
            } else if line.starts_with("corelb: ready") {
                Some(addr.take())
            } else {
                None
            }
        })
        .expect("corelb printed no listening line for frontend bench before ready")
    }

    /// SIGTERM to each child (by its PID), then SIGKILL for any still running after EXIT_TIMEOUT.
    fn stop_children(&mut self) -> Vec<(&'static str, u32)> {
        let mut left = Vec::new();
        for (_, child) in &self.children {
            // SAFETY: kill(2) on the PID of our own child, not reaped yet (reaped only below).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        for (name, child) in &mut self.children {
            let within = deadline.saturating_duration_since(Instant::now());
            if poll_for(within, POLL, || child.try_wait().ok().flatten()).is_none() {
                left.push((*name, child.id()));
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.children.clear();
        left
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop_children();
        // The config's directory is this test's private work directory (scenario, JSON).
        if let Some(work) = self.config.parent() {
            let _ = std::fs::remove_dir_all(work);
        }
        // Whatever happened, stop the servers this test started and delete their state.
        let _ = self.script(&["purge"]);
    }
}

/// `SELECT COUNT(*) FROM items` as the app user over TCP.
fn count_rows(port: u16) -> u64 {
    let out = run_bounded(
        Command::new("mariadb")
            .args(["--protocol=tcp", "-h", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .args(["-ucorelb", "-pcorelb", "--connect-timeout=5", "--batch"])
            .args(["--skip-column-names", "corelb", "-e"])
            .arg("SELECT COUNT(*) FROM items"),
        QUERY_TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "count on port {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("row count {text:?}: {e}"))
}

fn u64_at(v: &serde_json::Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn stack_under_load_through_corelb() {
    if !require_or_skip("stack_under_load_through_corelb", &["mariadbd", "mariadb"]) {
        return;
    }
    let test_start = Instant::now();
    // Short (unix socket paths are limited to 107 bytes) and distinct from tests/stack.rs's dirs.
    let dir = PathBuf::from(format!("/tmp/corelb-l{}", std::process::id()));
    let work = std::env::temp_dir().join(format!("loadgen-stack-lb-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut stack = Stack {
        dir: dir.clone(),
        primary_port: free_port(),
        replica_port: free_port(),
        children: Vec::new(),
        config: work.join("corelb.toml"),
    };
    assert_ne!(stack.primary_port, stack.replica_port);
    // With the trailing slash, so that /tmp/corelb-l12 does not match /tmp/corelb-l123/...
    let dir_str = format!("{}/", dir.to_str().expect("utf-8 path"));

    let up_start = Instant::now();
    stack.script_ok(&["up"]);
    let up_time = up_start.elapsed();

    let app1 = stack.start_node("app1");
    let app2 = stack.start_node("app2");
    let lb = stack.start_corelb(&app1, &app2);

    let primary_before = count_rows(stack.primary_port);
    let replica_before = count_rows(stack.replica_port);
    assert_eq!(
        primary_before, replica_before,
        "replica caught up before the run"
    );

    let scenario = work.join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).expect("write scenario");
    let json_path = work.join("out.json");
    let run_start = Instant::now();
    let out = run_bounded(
        Command::new(LOADGEN)
            .args(["run", &format!("http://{lb}/"), "--scenario"])
            .arg(&scenario)
            .args(["-c", "16", "-d", RUN_SECS, "--no-pin", "--json"])
            .arg(&json_path),
        LOADGEN_TIMEOUT,
    );
    let run_time = run_start.elapsed();
    let report_text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "loadgen ({:.1} s):\n{report_text}{}",
        run_time.as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "loadgen run failed");
    let json = std::fs::read_to_string(&json_path).expect("loadgen wrote its JSON");
    let r: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");

    // No errors of any class (connect, timeout, read, write, parse, 4xx, 5xx).
    assert_eq!(
        u64_at(&r["errors_total"], "errors_total"),
        0,
        "{}",
        r["errors"]
    );
    let responses = u64_at(&r["responses"], "responses");
    assert!(responses > 0, "no responses");

    // Both app nodes served, evenly (per X-Served-By), and nothing else answered.
    let backends = r["backends"].as_object().expect("backends");
    let served = |name: &str| backends.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
    let (n1, n2) = (served("app1"), served("app2"));
    assert_eq!(
        n1 + n2,
        responses,
        "every response from app1 or app2: {backends:?}"
    );
    for (name, n) in [("app1", n1), ("app2", n2)] {
        let share = n as f64 / responses as f64;
        assert!(
            (SPLIT_MIN..=SPLIT_MAX).contains(&share),
            "{name} served {n} of {responses} ({:.1} %), outside {SPLIT_MIN}..{SPLIT_MAX}",
            share * 100.0
        );
    }

    // The writes: successful POSTs (201) from the per-kind status counts.
    let kinds = r["kinds"].as_array().expect("kinds");
    let kind = |name: &str| {
        kinds
            .iter()
            .find(|k| k["name"] == name)
            .unwrap_or_else(|| panic!("kind {name} in the report"))
    };
    let written = kind("write")["statuses"]["201"].as_u64().unwrap_or(0);
    let write_responses = u64_at(&kind("write")["responses"], "write responses");
    assert!(written > 0, "no successful writes: {}", kind("write"));
    assert_eq!(written, write_responses, "every write answered 201");
    let reads = u64_at(&kind("read")["responses"], "read responses");
    assert_eq!(
        kind("read")["statuses"]["200"].as_u64(),
        Some(reads),
        "every read of a seed row answered 200"
    );

    // Every row the run wrote is on the primary and reaches the replica. Requests still in flight
    // when the measurement ended are not in the report but may have been written: hence >=, and
    // the replica must match the primary exactly once it caught up (nothing writes any more).
    let primary_after = count_rows(stack.primary_port);
    let on_primary = primary_after - primary_before;
    assert!(
        on_primary >= written,
        "{on_primary} new rows on the primary < {written} successful POSTs"
    );
    let repl_start = Instant::now();
    poll_until(
        REPLICATION_DEADLINE,
        QUERY_POLL,
        format_args!("all {on_primary} new rows on the replica"),
        || match count_rows(stack.replica_port) - replica_before {
            n if n == on_primary => Ok(()),
            n => Err(format!("{n} rows")),
        },
    );
    let repl_time = repl_start.elapsed();

    // Stop everything by PID, then the pair: no process with the state directory remains.
    let before = processes_mentioning(&dir_str);
    assert!(
        !before.is_empty(),
        "the servers run with {dir_str} in their command line"
    );
    let killed = stack.stop_children();
    assert!(
        killed.is_empty(),
        "did not exit within {EXIT_TIMEOUT:?} of SIGTERM: {killed:?}"
    );
    stack.script_ok(&["down"]);
    let left = processes_mentioning(&dir_str);
    assert!(left.is_empty(), "processes left after down: {left:?}");

    eprintln!(
        "stack through corelb: pair up in {:.1} s; {responses} responses ({n1} app1 / {n2} app2), \
         {written} rows written, all on the replica {:.0} ms after the run; loadgen {:.1} s; total {:.1} s",
        up_time.as_secs_f64(),
        repl_time.as_secs_f64() * 1e3,
        run_time.as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
}

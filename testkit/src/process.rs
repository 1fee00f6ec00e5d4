//! Runs the corelb binary as a subprocess on port 0 and finds the addresses it bound; finds (or
//! builds) that binary; writes the test configurations it runs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::tools::run_bounded;
use crate::wait::{poll_for, POLL};

/// The workspace root (the test-support crate is one of its members).
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// How long corelb may take to print `ready` (a debug build on a loaded 2-core CI machine).
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// Most stderr bytes kept for assertions and failure messages.
const MAX_LOG: usize = 4 << 20;

static CONFIG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A test configuration: one frontend "fe" on 127.0.0.1:0 and one backend "be".
#[derive(Clone)]
pub struct Cfg {
    pub servers: Vec<(String, SocketAddr)>,
    pub grace: String,
    /// Extra `key = value` lines for [[frontend]] (e.g. `maxconn = 2`, `trusted_proxies = [...]`).
    pub frontend: Vec<String>,
    /// Lines for [frontend.limits], [frontend.timeouts], [backend.timeouts], [backend.pool].
    pub limits: Vec<String>,
    pub client_timeouts: Vec<String>,
    pub backend_timeouts: Vec<String>,
    pub pool: Vec<String>,
    /// Extra `key = value` lines for [[backend]] itself (e.g. `algorithm = "leastconn"`), emitted
    /// before any [backend.x] table.
    pub backend_lines: Vec<String>,
    /// Extra backend sub-tables, in order: (table name, e.g. "backend.check", its lines).
    pub backend_tables: Vec<(String, Vec<String>)>,
    /// Extra lines per server name, emitted inside that server's [[backend.server]].
    pub server_lines: Vec<(String, String)>,
}

impl Cfg {
    pub fn new(servers: &[(&str, SocketAddr)]) -> Cfg {
        Cfg {
            servers: servers.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            grace: "2s".into(),
            frontend: vec![],
            limits: vec![],
            client_timeouts: vec![],
            backend_timeouts: vec![],
            pool: vec![],
            backend_lines: vec![],
            backend_tables: vec![],
            server_lines: vec![],
        }
    }
    /// A `key = value` line for [[backend]] (e.g. `algorithm = "leastconn"`, `slowstart = "2s"`).
    pub fn backend_line(mut self, line: &str) -> Cfg {
        self.backend_lines.push(line.into());
        self
    }
    /// A backend sub-table (e.g. `"backend.check"`) with its lines. Calling it again with the same
    /// table appends to it (one TOML table, not a duplicate).
    pub fn backend_table(mut self, table: &str, lines: &[&str]) -> Cfg {
        let lines = lines.iter().map(|l| l.to_string());
        match self.backend_tables.iter_mut().find(|(t, _)| t == table) {
            Some((_, v)) => v.extend(lines),
            None => self.backend_tables.push((table.into(), lines.collect())),
        }
        self
    }
    /// An extra line for server `server` (e.g. `backup = true`, `state = "maint"`).
    pub fn server_line(mut self, server: &str, line: &str) -> Cfg {
        assert!(
            self.servers.iter().any(|(n, _)| n == server),
            "server_line: no server named {server:?}"
        );
        self.server_lines.push((server.into(), line.into()));
        self
    }
    pub fn frontend(mut self, line: &str) -> Cfg {
        self.frontend.push(line.into());
        self
    }
    pub fn limit(mut self, line: &str) -> Cfg {
        self.limits.push(line.into());
        self
    }
    pub fn client_timeout(mut self, line: &str) -> Cfg {
        self.client_timeouts.push(line.into());
        self
    }
    pub fn backend_timeout(mut self, line: &str) -> Cfg {
        self.backend_timeouts.push(line.into());
        self
    }
    pub fn pool(mut self, line: &str) -> Cfg {
        self.pool.push(line.into());
        self
    }
    pub fn grace(mut self, g: &str) -> Cfg {
        self.grace = g.into();
        self
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!("[global]\ngrace = \"{}\"\n\n", self.grace);
        s += "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n";
        for l in &self.frontend {
            s += &format!("{l}\n");
        }
        for (table, lines) in [
            ("frontend.limits", &self.limits),
            ("frontend.timeouts", &self.client_timeouts),
        ] {
            if !lines.is_empty() {
                s += &format!("[{table}]\n");
                for l in lines {
                    s += &format!("{l}\n");
                }
            }
        }
        s += "\n[[backend]]\nname = \"be\"\n";
        // Keys of [[backend]] itself must come before its first sub-table.
        for l in &self.backend_lines {
            s += &format!("{l}\n");
        }
        // The built-in tables, merged with `backend_table` lines for the same table (TOML forbids
        // defining a table twice); other `backend_table`s are emitted even when empty (defaults).
        let builtin = [
            ("backend.timeouts", &self.backend_timeouts),
            ("backend.pool", &self.pool),
        ];
        for (table, lines) in builtin {
            let mut all: Vec<&String> = lines.iter().collect();
            let mut named = false;
            for (t, l) in &self.backend_tables {
                if t == table {
                    named = true;
                    all.extend(l.iter());
                }
            }
            if named || !all.is_empty() {
                s += &format!("[{table}]\n");
                for l in all {
                    s += &format!("{l}\n");
                }
            }
        }
        for (table, lines) in &self.backend_tables {
            if builtin.iter().any(|(b, _)| b == table) {
                continue;
            }
            s += &format!("[{table}]\n");
            for l in lines {
                s += &format!("{l}\n");
            }
        }
        for (name, addr) in &self.servers {
            s += &format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n");
            for (_, l) in self.server_lines.iter().filter(|(n, _)| n == name) {
                s += &format!("{l}\n");
            }
        }
        s
    }
}

pub struct Corelb {
    child: Child,
    pub pid: u32,
    /// The address of frontend "fe" (the first bind).
    pub addr: SocketAddr,
    pub binds: Vec<(String, SocketAddr)>,
    log: Arc<Mutex<String>>,
    config_path: PathBuf,
    reaped: Option<ExitStatus>,
}

impl Corelb {
    /// Start corelb with `cfg` and `workers` workers; panics (with its stderr) if it is not ready
    /// within STARTUP_DEADLINE.
    pub fn start(cfg: &Cfg, workers: usize) -> Corelb {
        Self::start_toml(&cfg.to_toml(), workers)
    }

    pub fn start_toml(toml: &str, workers: usize) -> Corelb {
        Self::start_toml_limited(toml, workers, None)
    }

    /// Like `start_toml`, with RLIMIT_NOFILE set to `nofile` (soft and hard) in the child.
    pub fn start_toml_limited(toml: &str, workers: usize, nofile: Option<u64>) -> Corelb {
        let seq = CONFIG_SEQ.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let config_path = std::env::temp_dir().join(format!(
            "corelb-e2e-{}-{seq}-{nanos}.toml",
            std::process::id()
        ));
        std::fs::write(&config_path, toml).expect("write config");
        let mut cmd = Command::new(corelb_binary());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
            // is async-signal-safe, on a stack value.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .arg("--workers")
            .arg(workers.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corelb");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let log2 = log.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            // Ends at EOF, i.e. when corelb exits.
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        {
                            let mut l = log2.lock().unwrap();
                            if l.len() < MAX_LOG {
                                l.push_str(&line);
                            }
                        }
                        let _ = tx.send(line.clone());
                    }
                }
            }
        });
        let mut me = Corelb {
            child,
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            binds: vec![],
            log,
            config_path,
            reaped: None,
        };
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let line = line.trim_end();
                    if let Some(rest) = line.strip_prefix("corelb: listening ") {
                        let mut fe = None;
                        let mut addr = None;
                        for kv in rest.split_whitespace() {
                            if let Some(v) = kv.strip_prefix("frontend=") {
                                fe = Some(v.to_string());
                            } else if let Some(v) = kv.strip_prefix("addr=") {
                                addr = v.parse::<SocketAddr>().ok();
                            }
                        }
                        match (fe, addr) {
                            (Some(f), Some(a)) => me.binds.push((f, a)),
                            _ => panic!("unparsable listening line {line:?}"),
                        }
                    } else if line.starts_with("corelb: ready") {
                        break;
                    }
                }
                Err(_) => panic!(
                    "corelb not ready within {STARTUP_DEADLINE:?} (exit: {:?}); config:\n{toml}\nstderr:\n{}",
                    me.child.try_wait().ok().flatten(),
                    me.logs()
                ),
            }
        }
        me.addr = me
            .binds
            .iter()
            .find(|(f, _)| f == "fe")
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listening line for frontend fe; stderr:\n{}", me.logs()));
        assert_ne!(me.addr.port(), 0, "corelb reported port 0");
        me
    }

    /// Everything corelb wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn sigterm(&self) {
        // SAFETY: plain kill(2) on the pid of our own child, which has not been reaped yet
        // (we only reap in wait_exit / drop), so the pid cannot have been recycled.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(r, 0, "kill(SIGTERM) failed");
    }

    /// Wait up to `deadline` for the process to exit; None if it is still running.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        if self.reaped.is_some() {
            return self.reaped;
        }
        let st = poll_for(deadline, POLL, || self.child.try_wait().ok().flatten());
        self.reaped = st;
        st
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        if self.reaped.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.reaped = Some(st);
                false
            }
            _ => true,
        }
    }

    /// utime + stime of the process so far, in clock ticks (/proc/PID/stat fields 14 and 15).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the parenthesised command name, which may itself contain spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // `rest` starts at field 3 (state), so field 14 is index 11.
        get(11) + get(12)
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/PID/status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Corelb {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            if let Ok(None) = self.child.try_wait() {
                // SAFETY: our own, not yet reaped child.
                unsafe {
                    libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// Where a missing corelb is built, under the workspace's target directory. Not the target directory
/// itself: `cargo test` holds that directory's lock while the tests run, so a nested `cargo build`
/// there would wait for the lock until BUILD_TIMEOUT (rust-lang/rust#35816).
const NESTED_TARGET: &str = "stack-test-corelb";

/// Bound on building corelb when its debug binary is missing (a cold debug build on 2 busy cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The debug corelb binary of this workspace: `<target>/debug/corelb`, where this test binary is
/// `<target>/debug/deps/<name>-<hash>` (so a custom CARGO_TARGET_DIR is followed too). corelb's own
/// integration tests always find it: cargo builds a package's binaries before its integration tests
/// (it is the file `CARGO_BIN_EXE_corelb` names, which only corelb's own tests can see). When it is
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

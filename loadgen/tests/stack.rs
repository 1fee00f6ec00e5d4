//! The stack's database tier and app nodes, for real: `loadgen/stack/mariadb.sh` starts a MariaDB
//! primary and replica (on free ports, in a state directory of this test's own), two `appnode`s talk
//! to them, a write through one node is read back through the other from the replica, reads fall
//! back to the primary while the replica is stopped, and `down` leaves no server process behind.
//!
//! Needs mariadb-server (Debian). Without it the test says SKIPPED and passes, except under CI
//! (CI=true), where a missing server is a failure: CI is expected to install it.

use corelb_testkit::mariadb::{SCRIPT, SCRIPT_INNER_TIMEOUT_SECS, SCRIPT_TIMEOUT};
use corelb_testkit::tools::processes_mentioning;
use corelb_testkit::{free_port, poll_until, require_or_skip, run_bounded};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const APPNODE: &str = env!("CARGO_BIN_EXE_appnode");
/// Replication is asynchronous (p99 a few ms on loopback): reads of a fresh row are polled.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(15);
/// Bound on one HTTP exchange with an app node (its database timeouts are a few seconds).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on an app node printing its listening address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Worker threads per app node: few, so the test can occupy them all.
const NODE_THREADS: usize = 8;
/// Largest response the test reads (bodies here are at most ~1 KiB).
const MAX_RESPONSE: usize = 64 * 1024;

struct Stack {
    dir: PathBuf,
    primary_port: u16,
    replica_port: u16,
    nodes: Vec<Child>,
}

impl Stack {
    fn script_env(&self, dir: &Path, primary_port: u16, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .args(args)
            .env("CORELB_STACK_DIR", dir)
            .env("CORELB_PRIMARY_PORT", primary_port.to_string())
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

    fn script(&self, args: &[&str]) -> Output {
        self.script_env(&self.dir, self.primary_port, args)
    }

    fn script_ok(&self, args: &[&str]) -> String {
        let out = self.script(args);
        assert!(out.status.success(), "mariadb.sh {args:?} failed");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Starts an app node on a free port and returns its address.
    fn start_node(&mut self, name: &str) -> String {
        let mut child = Command::new(APPNODE)
            .args(["--listen", "127.0.0.1:0", "--name", name])
            .args(["--primary", &format!("127.0.0.1:{}", self.primary_port)])
            .args(["--replica", &format!("127.0.0.1:{}", self.replica_port)])
            .args(["--db-pool", "4", "--threads", &NODE_THREADS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn appnode");
        let stdout = child.stdout.take().expect("stdout");
        self.nodes.push(child);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .expect("appnode did not print its address");
        line.trim()
            .rsplit_once("listening on ")
            .map(|(_, addr)| addr.to_string())
            .unwrap_or_else(|| panic!("unexpected appnode banner {line:?}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        // Whatever happened, stop the servers this test started and delete their state.
        let _ = self.script(&["purge"]);
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends one request on a fresh connection and reads the response framed by Content-Length.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect to appnode");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send request");
    read_response(&mut stream, &mut Vec::new())
}

fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Resp {
    let mut chunk = [0u8; 4096];
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head_len) = parsed.parse(buf).expect("valid response") {
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_string(), value)
                })
                .collect();
            let status = parsed.code.expect("status");
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().expect("numeric Content-Length"))
                .expect("every response has a Content-Length");
            while buf.len() < head_len + len {
                let n = stream.read(&mut chunk).expect("read body");
                assert!(n > 0, "connection closed inside a body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[head_len..head_len + len]).into_owned();
            buf.drain(..head_len + len);
            return Resp {
                status,
                headers,
                body,
            };
        }
        assert!(buf.len() < MAX_RESPONSE, "response head too large");
        let n = stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Pause between two looks while polling (each look is an HTTP exchange or a process listing).
const POLL_PAUSE: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns Some, failing after `deadline`.
fn poll<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    poll_until(deadline, POLL_PAUSE, what, || probe().ok_or("None"))
}

#[test]
fn stack_mariadb_pair_and_app_nodes() {
    if !require_or_skip("stack_mariadb_pair_and_app_nodes", &["mariadbd", "mariadb"]) {
        return;
    }
    let test_start = Instant::now();
    let dir = PathBuf::from(format!("/tmp/corelb-t{}", std::process::id()));
    let mut stack = Stack {
        dir: dir.clone(),
        primary_port: free_port(),
        replica_port: free_port(),
        nodes: Vec::new(),
    };
    assert_ne!(stack.primary_port, stack.replica_port);
    // With the trailing slash, so that /tmp/corelb-t12 does not match /tmp/corelb-t123/...
    let dir_str = format!("{}/", dir.to_str().expect("utf-8 path"));

    // Up from nothing, then up again: the second is a no-op that says so.
    let up_start = Instant::now();
    stack.script_ok(&["up"]);
    let up_time = up_start.elapsed();
    let again = stack.script_ok(&["up"]);
    assert!(again.contains("already running"), "second up: {again}");
    let status = stack.script_ok(&["status"]);
    assert!(status.contains("Slave_IO_Running=Yes") && status.contains("Slave_SQL_Running=Yes"));

    // A taken port is refused, naming it, before anything is created.
    let other_dir = PathBuf::from(format!("/tmp/corelb-u{}", std::process::id()));
    let taken = stack.script_env(&other_dir, stack.primary_port, &["up"]);
    let _ = stack.script_env(&other_dir, stack.primary_port, &["purge"]);
    let taken_err = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success(), "up on a taken port must fail");
    assert!(
        taken_err.contains(&format!("port {} is already taken", stack.primary_port))
            && taken_err.contains("mariadbd"),
        "the error names the port and its holder: {taken_err}"
    );

    // read_only binds the app user on the replica (it has no SUPER).
    let mut write = Command::new("mariadb");
    write
        .args(["--protocol=tcp", "-h", "127.0.0.1", "-P"])
        .arg(stack.replica_port.to_string())
        .args(["-ucorelb", "-pcorelb", "--connect-timeout=5", "corelb"])
        .args(["-e", "INSERT INTO items (name) VALUES ('direct')"]);
    let refused = run_bounded(&mut write, HTTP_TIMEOUT);
    let refused_err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && refused_err.contains("read-only"),
        "a write by the app user on the replica must be refused: {refused_err}"
    );

    let app1 = stack.start_node("app1");
    let app2 = stack.start_node("app2");

    for (addr, name) in [(&app1, "app1"), (&app2, "app2")] {
        let health = http(addr, "GET", "/healthz", None);
        assert_eq!(health.status, 200, "healthz: {}", health.body);
        assert_eq!(health.header("X-Served-By"), Some(name));
        let stat = http(addr, "GET", "/static", None);
        assert_eq!((stat.status, stat.body.len()), (200, 1024));
        assert_eq!(stat.header("X-Served-By"), Some(name));
    }

    // The seed rows replicated: row 1 is read from the replica.
    let seed = http(&app2, "GET", "/items/1", None);
    assert_eq!(seed.status, 200, "{}", seed.body);
    assert_eq!(seed.json()["name"], "seed-1");
    assert_eq!(seed.header("X-Read-From"), None);
    assert_eq!(http(&app2, "GET", "/items/999999999", None).status, 404);
    assert_eq!(http(&app2, "GET", "/items/+1", None).status, 404);

    // A write through app1 becomes readable through app2, from the replica.
    let written = Instant::now();
    let post = http(&app1, "POST", "/items", Some(r#"{"name":"stack-test"}"#));
    assert_eq!(post.status, 201, "{}", post.body);
    let id = post.json()["id"].as_u64().expect("id");
    let path = format!("/items/{id}");
    let read = poll("the new row on the replica", REPLICATION_DEADLINE, || {
        Some(http(&app2, "GET", &path, None)).filter(|r| r.status == 200)
    });
    let visible_after = written.elapsed();
    assert_eq!(read.json()["name"], "stack-test");
    assert_eq!(read.header("X-Served-By"), Some("app2"));
    assert_eq!(read.header("X-Read-From"), None, "read from the replica");
    let stats = http(&app2, "GET", "/stats", None).json();
    assert_eq!(stats["read_fallbacks"], 0);
    assert!(stats["reads_replica"].as_u64() >= Some(2));
    assert_eq!(
        http(
            &app1,
            "POST",
            "/items",
            Some(&format!(r#"{{"name":"{}"}}"#, "x".repeat(65)))
        )
        .status,
        400
    );

    // A request without Host is answered 400 by the node, and the connection closed.
    let mut conn = TcpStream::connect(&app1).expect("connect");
    conn.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    conn.write_all(b"GET /static HTTP/1.1\r\n\r\n")
        .expect("send");
    let bad = read_response(&mut conn, &mut Vec::new());
    assert_eq!((bad.status, bad.header("X-Served-By")), (400, Some("app1")));
    assert_eq!(bad.header("Connection"), Some("close"));

    // Keep-alive: two requests on one connection, pipelined.
    let mut conn = TcpStream::connect(&app1).expect("connect");
    conn.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    conn.write_all(
        b"GET /static HTTP/1.1\r\nHost: t\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .expect("send");
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut conn, &mut buf).status, 200);
    let second = read_response(&mut conn, &mut buf);
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["name"], "seed-2");

    // Every worker of app2 held by an idle connection: one more is refused at once with 503
    // (not queued behind connections that may never go idle); capacity comes back when they close.
    let idle: Vec<TcpStream> = (0..NODE_THREADS)
        .map(|_| TcpStream::connect(&app2).expect("connect"))
        .collect();
    let over = http(&app2, "GET", "/static", None);
    assert_eq!(
        (over.status, over.header("X-Served-By")),
        (503, Some("app2"))
    );
    drop(idle);
    poll("app2 serving again", HTTP_TIMEOUT, || {
        (http(&app2, "GET", "/static", None).status == 200).then_some(())
    });

    // Replica stopped: reads fall back to the primary and say so; healthz is 503; writes go on.
    stack.script_ok(&["down", "replica"]);
    let fallback = http(&app1, "GET", &path, None);
    assert_eq!(fallback.status, 200, "{}", fallback.body);
    assert_eq!(fallback.header("X-Read-From"), Some("primary"));
    assert_eq!(fallback.json()["name"], "stack-test");
    let fallbacks = http(&app1, "GET", "/stats", None).json()["read_fallbacks"].as_u64();
    assert!(fallbacks >= Some(1), "fallback counter: {fallbacks:?}");
    assert_eq!(http(&app1, "GET", "/healthz", None).status, 503);
    let post2 = http(
        &app1,
        "POST",
        "/items",
        Some(r#"{"name":"while-replica-down"}"#),
    );
    assert_eq!(post2.status, 201, "{}", post2.body);
    let id2 = post2.json()["id"].as_u64().expect("id");

    // Replica back (up starts only what is missing): it catches up and serves reads again.
    let again = stack.script_ok(&["up"]);
    assert!(again.contains("primary: already running"), "{again}");
    let path2 = format!("/items/{id2}");
    poll("reads back on the replica", REPLICATION_DEADLINE, || {
        let r = http(&app1, "GET", &path2, None);
        (r.status == 200 && r.header("X-Read-From").is_none()).then_some(())
    });
    poll("healthz back to 200", REPLICATION_DEADLINE, || {
        (http(&app1, "GET", "/healthz", None).status == 200).then_some(())
    });

    // Down leaves no server of this test behind (a zombie's empty command line does not match).
    let before = processes_mentioning(&dir_str);
    assert!(
        !before.is_empty(),
        "the servers run with {dir_str} in their command line"
    );
    stack.script_ok(&["down"]);
    let left = processes_mentioning(&dir_str);
    assert!(left.is_empty(), "processes left after down: {left:?}");
    let status = stack.script(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "status after down reports stopped"
    );

    eprintln!(
        "stack test: pair up in {:.1} s, write visible on the replica after {:.1} ms, total {:.1} s",
        up_time.as_secs_f64(),
        visible_after.as_secs_f64() * 1e3,
        test_start.elapsed().as_secs_f64()
    );
}

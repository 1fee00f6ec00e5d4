//! The generator's behaviour: request mix weights and placeholders, error classes, framing, keep-alive,
//! Connection: close, pipelining, X-Served-By counting and the output files.

mod run_config;

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corelb_testkit::latency::{serial, Model, TestServer};
use loadgen::report::{hgrm, Report};
use loadgen::scenario::KindSpec;
use run_config::config;

fn counts(srv: &TestServer) -> HashMap<String, u64> {
    srv.paths.lock().unwrap().clone()
}

/// A GET kind for a scenario.
fn kind(name: &str, weight: u32, path: &str) -> KindSpec {
    KindSpec {
        name: name.into(),
        weight,
        method: "GET".into(),
        path: path.into(),
        headers: Default::default(),
        body: String::new(),
    }
}

/// Weights 1:3:6 over 20 000 requests: each kind within 4 sigma of its binomial expectation, and each
/// value of `{rand:1-10}` within 4 sigma of uniform.
#[test]
fn scenario_weights_and_placeholders_are_honoured() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let mut cfg = config(&srv.url());
    cfg.threads = Some(2);
    cfg.count = Some(20_000);
    cfg.kinds = vec![
        kind("a", 1, "/a/{rand:1-10}"),
        kind("b", 3, "/b"),
        kind("c", 6, "/c"),
    ];
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.responses, 20_000);
    assert_eq!(r.errors_total, 0);
    let paths = counts(&srv);
    let n = 20_000f64;
    let within = |what: &str, got: u64, p: f64, total: f64| {
        let mean = total * p;
        let sigma = (total * p * (1.0 - p)).sqrt();
        assert!(
            (got as f64 - mean).abs() <= 4.0 * sigma,
            "{what}: {got}, expected {mean:.0} ± {:.0}",
            4.0 * sigma
        );
    };
    let a: u64 = (1..=10)
        .map(|i| paths.get(&format!("/a/{i}")).copied().unwrap_or(0))
        .sum();
    let a_all: u64 = paths
        .iter()
        .filter(|(k, _)| k.starts_with("/a/"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(a, a_all, "placeholder out of range: {paths:?}");
    within("kind a", a, 0.1, n);
    within("kind b", paths["/b"], 0.3, n);
    within("kind c", paths["/c"], 0.6, n);
    for i in 1..=10 {
        within(&format!("/a/{i}"), paths[&format!("/a/{i}")], 0.1, a as f64);
    }
    // The generator's per-kind counts agree with the server's.
    assert_eq!(r.kinds[0].responses, a);
    assert_eq!(r.kinds[1].responses, paths["/b"]);
    // X-Served-By: the test server names node0/node1 by connection.
    let backends: u64 = r.backends.values().sum();
    assert_eq!(backends, 20_000);
    assert!(
        r.backends.keys().all(|k| k == "node0" || k == "node1"),
        "{:?}",
        r.backends
    );
}

#[test]
fn status_classes_and_chunked_bodies() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let mut cfg = config(&srv.url());
    cfg.count = Some(2000);
    cfg.kinds = vec![
        kind("ok", 1, "/"),
        kind("e503", 1, "/e503"),
        kind("e404", 1, "/e404"),
        kind("chunked", 1, "/chunked"),
    ];
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    eprintln!("{}", r.text());
    assert_eq!(r.responses, 2000);
    let k = |name: &str| r.kinds.iter().find(|k| k.name == name).unwrap();
    assert_eq!(r.errors["http_5xx"], k("e503").responses);
    assert_eq!(r.errors["http_4xx"], k("e404").responses);
    assert_eq!(k("chunked").statuses["200"], k("chunked").responses);
    assert_eq!(r.errors["parse"] + r.errors["read"], 0);
    // Keep-alive held: the pre-connected connections served everything.
    assert_eq!(r.connects, 4);
}

#[test]
fn timeouts_parse_errors_and_refused_connections() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let mut cfg = config(&format!("http://{}/hang", srv.addr));
    cfg.count = Some(4);
    cfg.connections = 2;
    cfg.timeout = Duration::from_millis(200);
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.errors["timeout"], 4);
    assert_eq!(r.responses, 0);
    // Each timed-out connection was replaced (2 pre-connected + 2 replacements for the second round).
    assert!(r.connects >= 4, "connects {}", r.connects);

    let mut cfg = config(&format!("http://{}/garbage", srv.addr));
    cfg.count = Some(10);
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.errors["parse"], 10);

    // A port nobody listens on (bound then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("http://127.0.0.1:{port}/"));
    cfg.count = Some(5);
    cfg.connections = 1;
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.errors["connect"], 5);
}

/// setsockopt(2) on `fd` with the option value `v`.
fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T) {
    // SAFETY: `v` is a live value of the size passed, which the kernel only reads; `fd` is an open
    // socket of the caller.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
}

/// A server that never reads and resets every connection it accepts. Each write is 32 pipelined
/// requests of almost 1 MiB: more than the client's send buffer (at most net.ipv4.tcp_wmem's 4 MiB)
/// and the server's small receive buffer hold, so no write can finish before the reset, whenever it
/// arrives: every request fails as a write error (not read, not timeout).
#[test]
fn a_reset_during_a_send_is_a_write_error() {
    let _g = serial();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    // Inherited by the accepted sockets; a set size also turns receive-buffer autotuning off.
    setsockopt(
        l.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        &(16 * 1024i32),
    );
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        for c in l.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(c) = c else { continue };
            // SO_LINGER 0: close(2) sends a reset instead of a FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            setsockopt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger);
            drop(c);
        }
    });
    let mut cfg = config(&format!("http://{addr}/"));
    let mut big = kind("big", 1, "/upload");
    big.method = "POST".into();
    big.body = "x".repeat(loadgen::scenario::MAX_REQUEST_BYTES - 1024);
    cfg.kinds = vec![big];
    cfg.connections = 1;
    cfg.pipeline = 32;
    cfg.count = Some(64);
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    server.join().unwrap();
    eprintln!("{}", r.text());
    assert_eq!(r.responses, 0);
    assert_eq!(r.errors_total, 64, "{:?}", r.errors);
    // The server resets each connection the moment it accepts it, so on a busy VM a replacement
    // connection can be reset before loadgen counts it connected: that request is a `connect` error
    // (1 of 64 seen on a quiet run, up to 39 under load, the old main alike). What this test is
    // about: a reset while sending is never taken for a read error or a timeout.
    assert!(r.errors["write"] >= 1, "{:?}", r.errors);
    assert_eq!(
        r.errors["write"] + r.errors["connect"],
        64,
        "only write (or connect) errors: {:?}",
        r.errors
    );
}

#[test]
fn connection_close_and_pipelining() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let mut cfg = config(&srv.url());
    cfg.count = Some(300);
    cfg.close = true;
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.responses, 300);
    assert_eq!(r.errors_total, 0);
    // One connection per request (the 4 pre-connected ones serve the first 4).
    assert!(r.connects >= 300, "connects {}", r.connects);

    let mut cfg = config(&srv.url());
    cfg.count = Some(5000);
    cfg.connections = 2;
    cfg.pipeline = 8;
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    assert_eq!(r.responses, 5000);
    assert_eq!(r.errors_total, 0);
    assert_eq!(r.connects, 2);
}

#[test]
fn outputs_are_well_formed() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::from_millis(1)));
    let mut cfg = config(&srv.url());
    cfg.rate = Some(500.0);
    cfg.duration = Some(Duration::from_secs(2));
    let mut seen = 0;
    let out = loadgen::run(&cfg, |_| seen += 1).unwrap();
    assert_eq!(seen, 2, "one progress callback per second");
    let (r, h) = Report::new("t", &out);
    let j: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(j["mode"], "open");
    assert!(j["latency_corrected"]["p99_ms"].as_f64().unwrap() >= 1.0);
    let g = hgrm(&h);
    assert!(
        g.starts_with("       Value     Percentile TotalCount"),
        "{g}"
    );
    assert!(g.contains("#[Max     ="));
    let last = g
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    assert!(last.contains("1.000000000000"), "{last}");
    let csv = r.csv();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let svg = loadgen::svg::timeseries("t", &r.timeseries);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// The binary end to end: `loadgen run` with a scenario file writes the report and every output file.
#[test]
fn cli_run_writes_every_output() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        "[[kind]]\nname = \"read\"\nweight = 9\npath = \"/items/{rand:1-100}\"\n\n[[kind]]\nname = \"write\"\nweight = 1\nmethod = \"POST\"\npath = \"/items\"\nbody = '{\"a\":1}'\nheaders = { Content-Type = \"application/json\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(srv.url())
        .args(["-R", "400", "-c", "8", "-d", "2s", "-t", "1", "--no-pin"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--hgrm")
        .arg(dir.join("r.hgrm"))
        .arg("--csv")
        .arg(dir.join("r.csv"))
        .arg("--svg")
        .arg(dir.join("r"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("kind read:") && stdout.contains("kind write:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("corrected") && stdout.contains("uncorrected"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(j["responses"], 800);
    assert_eq!(j["kinds"].as_array().unwrap().len(), 2);
    for f in ["r.hgrm", "r.csv", "r-latency.svg", "r-timeseries.svg"] {
        let t = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(t.len() > 50, "{f}: {t}");
    }
    let posts = counts(&srv).get("/items").copied().unwrap_or(0);
    assert!(posts > 20 && posts < 160, "POST /items {posts} of 800");
    let _ = std::fs::remove_dir_all(&dir);

    // Bad input is refused with a message, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "https://x/", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
}

/// `loadgen stack status` runs loadgen/stack/mariadb.sh: with a state directory where nothing runs it
/// prints the script's report and exits with the script's "not running" status, 3 (not a generic 1).
/// An unknown action is refused by the argument parser before any script runs.
#[test]
fn stack_subcommand_passes_the_script_status_through() {
    let dir = std::env::temp_dir().join(format!("loadgen-nostack-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["stack", "status"])
        .env("CORELB_STACK_DIR", &dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run loadgen stack status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("primary: stopped")
            && stdout.contains("replica: stopped")
            && stdout.contains("replication: replica not running"),
        "{stdout}"
    );
    assert!(!dir.exists(), "status must not create the state directory");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["stack", "explode"])
        .env("CORELB_STACK_DIR", &dir)
        .output()
        .expect("run loadgen stack explode");
    assert_eq!(bad.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'explode'"));
}

/// `loadgen run` exits non-zero when no request succeeded (a dead target is not a result), and when
/// the error rate is above `--max-error-rate`; the report is printed either way.
#[test]
fn exit_status_reflects_failed_requests() {
    let _g = serial();
    let run = |url: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["run", url, "-t", "1", "--no-pin", "--seed", "7"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run loadgen")
    };
    let text = |o: &std::process::Output| {
        format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // A port nobody listens on (bound, then closed): every request fails to connect.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run(
        &format!("http://127.0.0.1:{port}/"),
        &["-n", "5", "-c", "1"],
    );
    let n200 = ["-n", "200", "-c", "2"];
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no request succeeded"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("errors       5 ("),
        "the report is still printed: {}",
        text(&o)
    );

    // Every response a 503: responses, but none succeeded.
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let o = run(&format!("http://{}/e503", srv.addr), &n200);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no request succeeded: 200 responses"),
        "{}",
        text(&o)
    );

    // Half the requests 503 (a 1:1 mix, 200 requests): above 10 %, below 90 %, either way written.
    let dir = std::env::temp_dir().join(format!("loadgen-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        "[[kind]]\nname = \"ok\"\nweight = 1\npath = \"/\"\n\n[[kind]]\nname = \"bad\"\nweight = 1\npath = \"/e503\"\n",
    )
    .unwrap();
    let scenario = scenario.to_str().unwrap();
    let url = srv.url();
    let o = run(&url, &[&n200[..], &["--scenario", scenario]].concat());
    assert!(o.status.success(), "no limit given: {}", text(&o));
    let o = run(
        &url,
        &[
            &n200[..],
            &["--scenario", scenario, "--max-error-rate", "10%"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is above --max-error-rate 10.000 %"),
        "{}",
        text(&o)
    );
    let o = run(
        &url,
        &[
            &n200[..],
            &["--scenario", scenario, "--max-error-rate", "0.9"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&url, &[&n200[..], &["--max-error-rate", "5"]].concat());
    assert_eq!(
        o.status.code(),
        Some(2),
        "a bare 5 is no fraction: {}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Process and connection lifecycle: graceful shutdown, maxconn, client timeouts.

use corelb_testkit::backends::Backend;
use corelb_testkit::client::{get_req, Client, Eof};
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{assert_local_error, wait_for, wait_until};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Whether a fresh connection to `addr` is refused (ECONNREFUSED).
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

#[test]
fn sigterm_finishes_in_flight_request_refuses_new_connections_and_exits_0() {
    let slow = Backend::delayed("slow", Duration::from_secs(1));
    let lb = Corelb::start(&Cfg::new(&[("slow", slow.addr)]).grace("3s"), 1);
    let mut lb = lb;
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/inflight"));
    // In flight: the backend has read the whole request and is taking its 1 s over the answer.
    wait_until(
        Duration::from_secs(5),
        "the request reaching the backend",
        || slow.reqs() == 1,
    );
    let term_at = Instant::now();
    lb.sigterm();
    assert!(
        wait_for(Duration::from_millis(800), || refused(lb.addr)),
        "new connections still accepted 800 ms after SIGTERM"
    );
    let r = c
        .try_read_response(false, Duration::from_secs(5))
        .unwrap_or_else(|e| {
            panic!(
                "in-flight request lost on SIGTERM: {e}\nlogs:\n{}",
                lb.logs()
            )
        });
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "slow GET /inflight")
    );
    let status = lb
        .wait_exit(Duration::from_secs(4))
        .unwrap_or_else(|| panic!("corelb still running 4 s after SIGTERM"));
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        lb.logs()
    );
    assert!(
        term_at.elapsed() < Duration::from_secs(4),
        "exit took {:?} with grace 3s",
        term_at.elapsed()
    );
}

#[test]
fn sigterm_with_idle_keepalive_connection_exits_promptly_and_closes_it() {
    let a = Backend::echo("a");
    let mut lb = Corelb::start(&Cfg::new(&[("a", a.addr)]).grace("5s"), 1);
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/").status, 200);
    let t = Instant::now();
    lb.sigterm();
    // The idle connection is closed without a response, and nothing in flight keeps corelb alive.
    assert_eq!(c.read_to_eof(Duration::from_secs(6)), Eof::Closed(vec![]));
    let status = lb
        .wait_exit(Duration::from_secs(6))
        .expect("corelb did not exit");
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        lb.logs()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "idle corelb took {:?} to exit (grace 5s)",
        t.elapsed()
    );
}

#[test]
fn sigterm_with_no_connections_exits_0() {
    let a = Backend::echo("a");
    let mut lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 2);
    lb.sigterm();
    let status = lb
        .wait_exit(Duration::from_secs(3))
        .expect("corelb did not exit within 3 s");
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        lb.logs()
    );
}

#[test]
fn grace_period_bounds_shutdown_when_requests_never_finish() {
    let s = Backend::stall("s");
    let cfg = Cfg::new(&[("s", s.addr)])
        .grace("1s")
        .backend_timeout("response = \"30s\"");
    let mut lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/forever"));
    assert!(wait_for(Duration::from_secs(5), || s.reqs() == 1));
    let t = Instant::now();
    lb.sigterm();
    assert!(
        lb.wait_exit(Duration::from_secs(4)).is_some(),
        "corelb outlived its 1 s grace by > 3 s"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "corelb exited before grace with a request in flight"
    );
    // The client connection is gone with the process.
    assert!(matches!(
        c.read_to_eof(Duration::from_secs(3)),
        Eof::Closed(_)
    ));
}

#[test]
fn maxconn_holds_extra_connections_in_the_backlog() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]).frontend("maxconn = 2"), 1);
    let mut c1 = Client::connect(lb.addr);
    let mut c2 = Client::connect(lb.addr);
    assert_eq!(c1.get("/1").status, 200);
    assert_eq!(c2.get("/2").status, 200);
    let mut c3 = Client::connect(lb.addr);
    c3.send(&get_req("/3"));
    assert!(
        c3.silent_for(Duration::from_millis(300)),
        "a 3rd connection was served with maxconn = 2"
    );
    assert_eq!(a.reqs(), 2);
    // Both first connections are still served while the third waits.
    assert_eq!(c1.get("/1b").status, 200);
    drop(c1);
    let r = c3
        .try_read_response(false, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("3rd connection not served after a slot freed: {e}"));
    assert_eq!(r.body_str(), "a GET /3");
    // Now c2 and c3 hold the two slots.
    let mut c4 = Client::connect(lb.addr);
    c4.send(&get_req("/4"));
    assert!(
        c4.silent_for(Duration::from_millis(300)),
        "a connection beyond maxconn was served"
    );
    drop(c2);
    assert_eq!(c4.read_response().body_str(), "a GET /4");
}

fn with_client_timeouts(lines: &[&str]) -> (Backend, Corelb) {
    let a = Backend::echo("a");
    let mut cfg = Cfg::new(&[("a", a.addr)]);
    for l in lines {
        cfg = cfg.client_timeout(l);
    }
    let lb = Corelb::start(&cfg, 1);
    (a, lb)
}

#[test]
fn slow_request_head_gets_408_then_close() {
    let (a, lb) = with_client_timeouts(&["client_header = \"500ms\""]);
    let mut c = Client::connect(lb.addr);
    let t = Instant::now();
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n");
    let r = c
        .try_read_response(false, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("want 408: {e}"));
    assert_local_error(&r, 408);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "408 after {took:?}"
    );
    c.assert_closed(Duration::from_secs(5));
    assert_eq!(a.reqs(), 0);
}

#[test]
fn dribbled_request_head_still_gets_408() {
    // Slowloris: a byte every 100 ms keeps each read short, but the whole head is late.
    let (a, lb) = with_client_timeouts(&["client_header = \"500ms\""]);
    let mut c = Client::connect(lb.addr);
    let t = Instant::now();
    let head = b"GET /dribble HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for b in head.iter() {
        if c.try_send(&[*b]).is_err() || t.elapsed() > Duration::from_secs(4) {
            break;
        }
        if !c.silent_for(Duration::from_millis(100)) {
            break;
        }
    }
    let r = c
        .try_read_response(false, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("want 408: {e}"));
    assert_local_error(&r, 408);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "408 only after {:?} with client_header 500ms",
        t.elapsed()
    );
    assert_eq!(a.reqs(), 0);
}

#[test]
fn idle_keepalive_connection_is_closed_without_a_response() {
    let (_a, lb) = with_client_timeouts(&["client_keepalive = \"500ms\""]);
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/").status, 200);
    let t = Instant::now();
    assert_eq!(
        c.read_to_eof(Duration::from_secs(5)),
        Eof::Closed(vec![]),
        "idle connection not closed cleanly"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed after {took:?}, before client_keepalive"
    );
    // A fresh connection that never sends anything is closed too, also without a response.
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.read_to_eof(Duration::from_secs(5)), Eof::Closed(vec![]));
}

#[test]
fn stalled_request_body_is_not_waited_for_forever() {
    let (a, lb) = with_client_timeouts(&["client_body = \"500ms\""]);
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /stall HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello");
    match c.read_to_eof(Duration::from_secs(5)) {
        Eof::StillOpen(b) => {
            panic!("client connection still open 5 s into a stalled body (got {b:?})")
        }
        Eof::Closed(bytes) if bytes.is_empty() => {}
        // If corelb answers before closing, it must be a 408 with Connection: close.
        Eof::Closed(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.starts_with("HTTP/1.1 408 "),
                "unexpected answer to a stalled body: {text}"
            );
            assert!(
                text.to_ascii_lowercase().contains("connection: close"),
                "{text}"
            );
        }
    }
    assert!(
        a.requests().iter().all(|r| r.target() != "/stall"),
        "an incomplete body reached the backend as complete"
    );
}

/// Out of file descriptors: accept() fails with EMFILE. corelb must back off instead of spinning on
/// the listener, keep serving the connections it has, and accept again once fds are free.
#[test]
fn emfile_on_accept_backs_off_and_keeps_serving() {
    let a = Backend::echo("a");
    let cfg = Cfg::new(&[("a", a.addr)]);
    // Learn how many fds corelb needs idle, then allow a few more: room for one client and its backend
    // connection, not for the burst below.
    let probe = Corelb::start(&cfg, 1);
    let base = probe.open_fds() as u64;
    drop(probe);
    let lb = Corelb::start_toml_limited(&cfg.to_toml(), 1, Some(base + 4));

    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/one").status, 200);

    // A burst of connections the process has no fds for: they queue in the kernel backlog.
    let burst: Vec<TcpStream> = (0..20)
        .filter_map(|_| TcpStream::connect(lb.addr).ok())
        .collect();
    assert!(!burst.is_empty());
    assert!(
        wait_for(Duration::from_secs(5), || lb
            .logs()
            .contains("Too many open files")),
        "corelb never hit EMFILE (limit {} fds); stderr:\n{}",
        base + 4,
        lb.logs()
    );
    let before = lb.cpu_ticks();
    // The measurement window itself: time passes on purpose.
    std::thread::sleep(Duration::from_secs(1));
    let spent = lb.cpu_ticks() - before;
    // A busy loop on accept would burn ~100 ticks (one core for a second); backing off costs ~nothing.
    assert!(
        spent < 30,
        "corelb burned {spent} clock ticks in 1 s while out of fds"
    );

    // The existing keep-alive connection is still served (its backend connection is pooled).
    assert_eq!(c.get("/two").status, 200);
    drop(c);
    drop(burst);
    // With fds free again, new connections are accepted and served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut n = Client::connect(lb.addr);
        let sent = n.try_send(&get_req("/three"));
        match sent.map(|_| n.try_read_response(false, Duration::from_secs(2))) {
            Ok(Ok(r)) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "not served after fds were freed: {:?}",
                other.map(|r| r.map(|r| r.status))
            ),
        }
    }
    let logs = lb.logs();
    let lines = logs.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        lines <= 20,
        "accept errors must be rate-limited, got {lines} lines"
    );
}

/// A port another process holds: exit 1 with one line that names the frontend and address and gives
/// the OS error once (it used to appear twice: in the message and again as the error's source).
#[test]
fn taken_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corelb"))
        .args(["--listen", &addr.to_string(), "--backend", "127.0.0.1:1"])
        .args(["--workers", "1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn corelb");
    let mut status = None;
    let exited = wait_for(Duration::from_secs(10), || {
        status = child.try_wait().expect("wait for corelb");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("corelb kept running on a taken port");
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("cannot listen"))
        .unwrap_or_else(|| panic!("no bind error in: {stderr}"));
    assert!(line.contains(&addr.to_string()), "{line}");
    assert_eq!(
        line.matches("Address already in use").count(),
        1,
        "the OS error once: {line}"
    );
    drop(taken);
}

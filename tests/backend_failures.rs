//! Backends that are down, slow, broken, or close keep-alive connections under corelb's feet.

use corelb_testkit::backends::{Backend, Next};
use corelb_testkit::client::{get_req, Client, Framing};
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{assert_aborted, assert_local_error, expect_rejected, refused_addr, Pattern};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn all_servers_refusing_is_a_quick_503() {
    let cfg = Cfg::new(&[("a", refused_addr()), ("b", refused_addr())]);
    let lb = Corelb::start(&cfg, 1);
    for _ in 0..3 {
        let t = Instant::now();
        expect_rejected(lb.addr, &get_req("/"), 503);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "503 took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn one_refusing_server_fails_over_to_the_other() {
    let live = Backend::echo("live");
    let cfg = Cfg::new(&[("dead", refused_addr()), ("live", live.addr)]);
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    for i in 0..10 {
        let r = c.get(&format!("/f{i}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.head.raw_str());
        assert_eq!(r.header("x-served-by"), Some("live"));
    }
    // New client connections too (a fresh connection exercises a fresh selection).
    for i in 0..6 {
        let mut c = Client::connect(lb.addr);
        assert_eq!(c.get(&format!("/n{i}")).status, 200);
    }
    assert_eq!(live.reqs(), 16);
}

#[test]
fn stalled_backend_is_504_after_the_response_timeout() {
    let s = Backend::stall("s");
    let cfg = Cfg::new(&[("s", s.addr)]).backend_timeout("response = \"500ms\"");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    let t = Instant::now();
    c.send(&get_req("/slow"));
    let r = c
        .try_read_response(false, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("want 504: {e}"));
    let took = t.elapsed();
    assert_local_error(&r, 504);
    assert!(
        took >= Duration::from_millis(450),
        "504 came before the 500ms timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "504 took {took:?} with a 500ms timeout"
    );
    c.assert_closed(Duration::from_secs(5));
    // A GET that timed out must not have been retried on another connection (it may be running).
    assert!(s.reqs() <= 1, "timed-out request sent {} times", s.reqs());
}

#[test]
fn garbage_backend_is_502() {
    let g = Backend::fixed("g", b"this is not http\r\n\r\n", true);
    let lb = Corelb::start(&Cfg::new(&[("g", g.addr)]), 1);
    expect_rejected(lb.addr, &get_req("/"), 502);
}

#[test]
fn backend_reset_mid_body_closes_client_early() {
    let r = Backend::reset_mid_body("r");
    let lb = Corelb::start(&Cfg::new(&[("r", r.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/"));
    match c.try_read_response(false, Duration::from_secs(10)) {
        Ok(resp) => panic!(
            "complete response from a backend reset mid-body:\n{}",
            resp.head.raw_str()
        ),
        Err(e) => assert_aborted(&e, 200, Framing::Length(100_000), 1000),
    }
}

#[test]
fn backend_stalling_mid_body_is_cut_off_after_the_body_timeout() {
    // Head, 1000 of 100000 body bytes, then silence for far longer than `backend.timeouts.body`.
    const HOLD: Duration = Duration::from_secs(8);
    let s = Backend::start(
        "s",
        None,
        Arc::new(|req, w, _| {
            if req.target() != "/stall" {
                return match w
                    .stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                {
                    Ok(()) => Next::KeepAlive,
                    Err(_) => Next::Close,
                };
            }
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            out.extend_from_slice(&Pattern::vec(1000));
            if w.stream.write_all(&out).is_err() {
                return Next::Close;
            }
            // A stalled backend on purpose.
            std::thread::sleep(HOLD);
            Next::Close
        }),
    );
    let cfg = Cfg::new(&[("s", s.addr)]).backend_timeout("body = \"500ms\"");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    let t = Instant::now();
    c.send(&get_req("/stall"));
    match c.try_read_response(false, Duration::from_secs(10)) {
        Ok(r) => panic!(
            "complete response from a backend that stalled mid-body:\n{}",
            r.head.raw_str()
        ),
        Err(e) => assert_aborted(&e, 200, Framing::Length(100_000), 1000),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed after {took:?}, before the 500ms body timeout"
    );
    assert!(
        took < Duration::from_secs(4),
        "client connection closed only after {took:?} (body timeout 500ms, backend holds {HOLD:?})"
    );
    // corelb keeps serving, on a fresh backend connection.
    let mut c = Client::connect(lb.addr);
    let r = c.get("/again");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(s.conns(), 2, "the stalled backend connection was reused");
}

#[test]
fn backend_connection_close_header_stops_reuse() {
    // The backend says close but keeps its socket open: corelb must still not reuse it.
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = Corelb::start(&Cfg::new(&[("b", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        let r = c.get(&format!("/{i}"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
        // The backend's Connection: close is hop-by-hop; the client connection may stay open.
    }
    let ids: Vec<usize> = b.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(
        ids,
        [1, 2, 3],
        "a backend connection marked Connection: close was reused"
    );
}

/// A backend that closes idle keep-alive connections after ~100 ms, behind a pool that keeps them
/// for 10 s: corelb keeps picking connections the backend is closing.
fn racing_setup() -> (Backend, Corelb) {
    let b = Backend::idle_close("b", Duration::from_millis(100));
    let cfg = Cfg::new(&[("b", b.addr)]).pool("idle_timeout = \"10s\"");
    let lb = Corelb::start(&cfg, 1);
    (b, lb)
}

/// Sleep 100..=150 ms, varying, so requests land on both sides of the backend's close.
fn race_gap(i: usize) -> Duration {
    Duration::from_millis(100 + (i as u64 * 7) % 51)
}

#[test]
fn keepalive_close_race_idempotent_requests_never_fail() {
    let (b, lb) = racing_setup();
    let mut c = Client::connect(lb.addr);
    let mut errors = Vec::new();
    const N: usize = 40;
    for i in 0..N {
        c.send(&get_req(&format!("/g{i}")));
        match c.try_read_response(false, Duration::from_secs(10)) {
            Ok(r) if r.status == 200 && r.body_str() == format!("b GET /g{i}") => {}
            Ok(r) => {
                errors.push(format!("{i}: {}", r.head.raw_str()));
                if r.says_close() {
                    c = Client::connect(lb.addr);
                }
            }
            Err(e) => {
                errors.push(format!("{i}: {e}"));
                c = Client::connect(lb.addr);
            }
        }
        std::thread::sleep(race_gap(i));
    }
    assert!(
        errors.is_empty(),
        "{} of {N} GETs failed in the keep-alive close race: {errors:?}",
        errors.len()
    );
    // The race really happened: the backend kept closing connections.
    assert!(
        b.conns() > N / 4,
        "backend connections: {} (the idle close did not bite)",
        b.conns()
    );
}

#[test]
fn keepalive_close_race_never_duplicates_a_post() {
    let (b, lb) = racing_setup();
    let mut c = Client::connect(lb.addr);
    const N: usize = 40;
    let mut ok = 0;
    for i in 0..N {
        let body = format!("id-{i:04}-end");
        let req = format!(
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if c.try_send(req.as_bytes()).is_err() {
            c = Client::connect(lb.addr);
            continue;
        }
        match c.try_read_response(false, Duration::from_secs(10)) {
            Ok(r) if r.status == 200 => {
                assert_eq!(r.body_str(), body);
                ok += 1;
            }
            // Errors are allowed for a non-idempotent request; duplicates are not.
            Ok(r) if r.says_close() => c = Client::connect(lb.addr),
            Ok(_) => {}
            Err(_) => c = Client::connect(lb.addr),
        }
        std::thread::sleep(race_gap(i));
    }
    let mut seen: Vec<String> = b
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    // Bytes that reached a connection the backend was closing count as "may have been processed".
    for late in b.late_bytes() {
        let text = String::from_utf8_lossy(&late).to_string();
        for part in text.split("id-").skip(1) {
            seen.push(format!("id-{}", part.split("-end").next().unwrap_or("")) + "-end");
        }
    }
    seen.sort();
    let dups: Vec<&String> = seen
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(dups.is_empty(), "POSTs delivered more than once: {dups:?}");
    assert!(ok > N / 2, "only {ok} of {N} POSTs succeeded");
}

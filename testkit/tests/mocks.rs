//! The mocks themselves, without corelb: what they answer, and that dropping or killing one really
//! closes its port (their accept loops block and are woken on purpose).

use corelb_testkit::backends::{Backend, GARBAGE};
use corelb_testkit::client::{get_req, Client, Eof, Framing};
use corelb_testkit::controlled::Controlled;
use corelb_testkit::{wait_for, wait_until, Pattern};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bound on a mock's port opening or closing (a thread wake-up; generous for a loaded machine).
const PORT_DEADLINE: Duration = Duration::from_secs(5);

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn echo_answers_and_counts() {
    let b = Backend::echo("e");
    let mut c = Client::connect(b.addr);
    let r = c.get("/x");
    assert_eq!((r.status, r.body_str().as_str()), (200, "e GET /x"));
    assert_eq!(r.header("x-served-by"), Some("e"));
    assert_eq!(
        (b.conns(), b.reqs(), b.last().target().to_string()),
        (1, 1, "/x".into())
    );
}

#[test]
fn source_sends_the_pattern_chunked() {
    let b = Backend::source("s", 300_000, true);
    let mut c = Client::connect(b.addr);
    c.send(&get_req("/"));
    let r = c.read_response();
    assert_eq!(r.framing, Framing::Chunked);
    assert!(r.body_len == 300_000 && Pattern::shared().matches(0, &r.body));
}

#[test]
fn reset_mid_body_cuts_the_response_off() {
    let b = Backend::reset_mid_body("r");
    let mut c = Client::connect(b.addr);
    c.send(&get_req("/"));
    let e = c
        .try_read_response(false, Duration::from_secs(10))
        .expect_err("the body is cut off");
    corelb_testkit::assert_aborted(&e, 200, Framing::Length(100_000), 1000);
}

#[test]
fn close_mid_body_ends_the_body_early_with_a_fin() {
    let b = Backend::close_mid_body("c");
    let mut c = Client::connect(b.addr);
    c.send(&get_req("/"));
    let e = c
        .try_read_response(false, Duration::from_secs(10))
        .expect_err("the body is cut off");
    assert_eq!(e.error.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    corelb_testkit::assert_aborted(&e, 200, Framing::Length(100_000), 1000);
}

#[test]
fn garbage_is_not_http() {
    let b = Backend::garbage("g");
    let mut c = Client::connect(b.addr);
    c.send(&get_req("/"));
    match c.read_to_eof(Duration::from_secs(10)) {
        Eof::Closed(bytes) => assert_eq!(bytes, GARBAGE),
        other => panic!("garbage mock did not close: {other:?}"),
    }
}

#[test]
fn a_dropped_backend_closes_its_port() {
    let b = Backend::echo("d");
    let addr = b.addr;
    assert!(!refused(addr));
    drop(b);
    wait_until(PORT_DEADLINE, "the dropped mock's port closing", || {
        refused(addr)
    });
}

#[test]
fn controlled_dies_and_comes_back_on_the_same_port() {
    let s = Controlled::start("c");
    assert_eq!(Client::connect(s.addr).get("/a").status, 200);
    s.set_health(503);
    assert_eq!(Client::connect(s.addr).get("/health").status, 503);
    s.kill();
    assert!(refused(s.addr), "a killed backend refuses at once");
    s.restart();
    assert!(
        wait_for(PORT_DEADLINE, || !refused(s.addr)),
        "not listening after restart"
    );
    assert_eq!(Client::connect(s.addr).get("/b").body_str(), "c GET /b");
    assert_eq!(s.reqs(), 2);
}

//! Upgrade handling: WebSocket tunnels after a 101, normal HTTP when the backend declines, h2c stripped.

use corelb_testkit::backends::{Backend, TUNNEL_CLOSE};
use corelb_testkit::client::{get_req, Client, Eof};
use corelb_testkit::process::{Cfg, Corelb};
use std::time::{Duration, Instant};

const WS_REQ: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Read exactly `n` tunnel bytes within 5 s.
fn read_n(c: &mut Client, n: usize) -> Vec<u8> {
    c.wire.deadline = Some(Instant::now() + Duration::from_secs(5));
    let mut got = c.wire.take_buffered();
    while got.len() < n {
        match c.wire.fill() {
            Ok(0) => panic!("tunnel closed after {} of {n} bytes", got.len()),
            Ok(_) => got.extend(c.wire.take_buffered()),
            Err(e) => panic!("tunnel read after {} of {n} bytes: {e}", got.len()),
        }
    }
    c.wire.deadline = None;
    got
}

#[test]
fn websocket_upgrade_tunnels_bytes_both_ways() {
    let b = Backend::upgrade_echo("ws");
    let lb = Corelb::start(&Cfg::new(&[("ws", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(WS_REQ);
    let r = c.read_response();
    assert_eq!(r.status, 101, "{}", r.head.raw_str());
    assert!(
        r.head.list_contains("connection", "upgrade"),
        "101 lacks Connection: upgrade:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.header("upgrade"), Some("websocket"));
    let req = b.last();
    assert_eq!(
        req.header("upgrade"),
        Some("websocket"),
        "{}",
        req.head.raw_str()
    );
    assert!(
        req.head.list_contains("connection", "upgrade"),
        "{}",
        req.head.raw_str()
    );
    assert_eq!(
        req.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    // Small messages, binary bytes, and one large one, in both directions.
    for msg in [
        &b"hello"[..],
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        c.send(msg);
        assert_eq!(read_n(&mut c, msg.len()), msg);
    }
    let big = corelb_testkit::Pattern::vec(3 << 20);
    let sender = {
        let mut s = c.wire.stream.try_clone().expect("clone");
        let big = big.clone();
        std::thread::spawn(move || std::io::Write::write_all(&mut s, &big).expect("tunnel write"))
    };
    assert!(
        read_n(&mut c, big.len()) == big,
        "3 MiB through the tunnel came back different"
    );
    sender.join().unwrap();
    // HTTP parsing is over: nothing corelb-generated may appear, and a client close ends the tunnel.
    assert_eq!(
        b.reqs(),
        1,
        "bytes inside the tunnel were parsed as requests"
    );
    c.wire
        .stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert_eq!(c.read_to_eof(Duration::from_secs(5)), Eof::Closed(vec![]));
}

#[test]
fn backend_closing_the_tunnel_closes_the_client() {
    let b = Backend::upgrade_echo("ws");
    let lb = Corelb::start(&Cfg::new(&[("ws", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(WS_REQ);
    assert_eq!(c.read_response().status, 101);
    c.send(b"ping");
    assert_eq!(read_n(&mut c, 4), b"ping");
    // The backend closes its side of the tunnel: the client connection must close too.
    c.send(TUNNEL_CLOSE);
    assert_eq!(read_n(&mut c, TUNNEL_CLOSE.len()), TUNNEL_CLOSE);
    assert_eq!(
        c.read_to_eof(Duration::from_secs(5)),
        Eof::Closed(vec![]),
        "tunnel not torn down"
    );
}

#[test]
fn upgrade_declined_by_backend_stays_http() {
    // A plain echo backend ignores Upgrade and answers 200.
    let b = Backend::echo("plain");
    let lb = Corelb::start(&Cfg::new(&[("plain", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(WS_REQ);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "plain GET /chat"));
    // The connection still speaks HTTP: these bytes are a request, not tunnel data.
    let r = c.get("/after");
    assert_eq!((r.status, r.body_str().as_str()), (200, "plain GET /after"));
    c.send(&get_req("/third"));
    assert_eq!(c.read_response().body_str(), "plain GET /third");
    assert_eq!(b.reqs(), 3);
}

#[test]
fn h2c_upgrade_is_stripped() {
    let b = Backend::upgrade_echo("b");
    let lb = Corelb::start(&Cfg::new(&[("b", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"GET /h2 HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    let r = c.read_response();
    // The backend never saw Upgrade, so it answered a normal 200 (it would have sent 101 otherwise).
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "b GET /h2"),
        "{}",
        r.head.raw_str()
    );
    let req = b.last();
    assert!(
        !req.has("upgrade"),
        "h2c Upgrade reached the backend:\n{}",
        req.head.raw_str()
    );
    assert!(
        !req.has("http2-settings"),
        "HTTP2-Settings reached the backend:\n{}",
        req.head.raw_str()
    );
    assert!(!req.has("connection"), "{}", req.head.raw_str());
    assert_eq!(c.get("/next").body_str(), "b GET /next");
}

#[test]
fn upgrade_without_connection_upgrade_is_not_an_upgrade() {
    let b = Backend::upgrade_echo("b");
    let lb = Corelb::start(&Cfg::new(&[("b", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /u HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "b GET /u"),
        "{}",
        r.head.raw_str()
    );
    assert!(!b.last().has("upgrade"), "{}", b.last().head.raw_str());
}

#[test]
fn idle_tunnel_is_closed_after_the_idle_timeout() {
    // The tunnel's idle timeout is the client keep-alive timeout: a tunnel nobody uses is closed,
    // a tunnel in use is not (an idle timeout, not a total one).
    let b = Backend::upgrade_echo("ws");
    let cfg = Cfg::new(&[("ws", b.addr)]).client_timeout("client_keepalive = \"500ms\"");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    c.send(WS_REQ);
    assert_eq!(c.read_response().status, 101);
    // 7 × 200 ms of traffic: 1.4 s, almost three times the timeout.
    for i in 0..7 {
        let msg = format!("ping{i}");
        c.send(msg.as_bytes());
        assert_eq!(
            read_n(&mut c, msg.len()),
            msg.as_bytes(),
            "tunnel in use was closed (round {i})"
        );
        // A slow client on purpose: the tunnel is in use, but slowly.
        std::thread::sleep(Duration::from_millis(200));
    }
    c.send(b"last");
    assert_eq!(read_n(&mut c, 4), b"last");
    let idle_since = Instant::now();
    assert_eq!(
        c.read_to_eof(Duration::from_secs(5)),
        Eof::Closed(vec![]),
        "idle tunnel not closed"
    );
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "idle tunnel closed after {took:?} with a 500ms idle timeout"
    );
}

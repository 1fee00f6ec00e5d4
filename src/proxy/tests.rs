//! The exchange's phases driven directly, on a real glommio executor with real sockets: a scripted
//! backend (std thread) and a client (std thread) on loopback, the phases called one by one on a
//! `ClientConn`, and the record they fill checked field by field.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use glommio::net::TcpListener;

use super::exchange::{request_filter, run};
use super::ClientConn;
use crate::buf::Buf;
use crate::error::ProxyError;
use crate::health::board::Board;
use crate::http::request::RequestHead;
use crate::record::{Termination, NO_TIME};
use crate::worker::WorkerCtx;

/// Bounds every blocking read of the helper threads, so a broken phase fails the test, not hangs it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A backend that answers each request head (and its Content-Length body) with `answer`, keeping the
/// connection open. Sends each request's bytes and its connection's number on the channel.
fn backend(answer: &'static [u8]) -> (SocketAddr, mpsc::Receiver<(usize, Vec<u8>)>) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate().take(8) {
            let Ok(mut s) = conn else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut pending = Vec::new();
                let mut b = [0u8; 4096];
                // Bounded by IO_TIMEOUT per read and the client closing.
                loop {
                    if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                        let body = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if pending.len() >= end + 4 + body {
                            let req: Vec<u8> = pending.drain(..end + 4 + body).collect();
                            let _ = tx.send((n, req));
                            if s.write_all(answer).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => pending.extend_from_slice(&b[..k]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A loopback address nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(servers: &[SocketAddr]) -> crate::config::Config {
    let mut toml = String::from(
        "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"b\"\n\
         [frontend.limits]\nmax_body = 1024\n[[backend]]\nname = \"b\"\n",
    );
    for (i, a) in servers.iter().enumerate() {
        toml.push_str(&format!(
            "[[backend.server]]\nname = \"s{i}\"\naddress = \"{a}\"\n"
        ));
    }
    crate::config::from_toml(&toml).expect("test config")
}

/// Runs `phases` on a ClientConn whose client (a thread) sends `request`, then returns what the
/// client received until corelb closed its side, and what `phases` returned.
fn with_client<T: Send + 'static>(
    servers: Vec<SocketAddr>,
    request: &'static [u8],
    phases: impl AsyncFnOnce(&mut ClientConn<glommio::net::TcpStream>) -> T + Send + 'static,
) -> (T, Vec<u8>) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let cfg = Arc::new(config(&servers));
            let board = Arc::new(Board::new(&[servers.len()]));
            let ctx = Rc::new(WorkerCtx::new(0, 1, cfg, board));
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let client = thread::spawn(move || {
                let mut s = StdStream::connect(addr).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.write_all(request).unwrap();
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                got
            });
            let stream = l.accept().await.unwrap();
            let head_max = 64 * 1024;
            let mut conn = ClientConn::new(ctx, 0, stream, addr.ip(), Buf::new(head_max), head_max);
            let out = phases(&mut conn).await;
            let _ = conn.stream.shutdown(Shutdown::Both).await;
            drop(conn);
            (out, client.join().unwrap())
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Reads the head and runs the exchange on it, as the connection loop does.
async fn one(c: &mut ClientConn<glommio::net::TcpStream>) -> (Result<bool, ProxyError>, usize) {
    let f = c.ctx.cfg.frontends[0].clone();
    let head: RequestHead = c.read_head(&f).await.unwrap().unwrap();
    let ctx = c.ctx.clone();
    let mut x = ctx.exchanges.take(c.head_max);
    c.begin_record(Some((&head, &mut x)));
    let r = run(c, &mut x, &f, head).await;
    ctx.exchanges.give_back(x);
    let idle = ctx.backends[0].pool.borrow().idle_count();
    (r, idle)
}

#[test]
fn a_request_goes_through_every_phase_and_fills_the_record() {
    let (addr, seen) = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    const REQ: &[u8] = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let ((r, idle, rec), got) = with_client(vec![addr], REQ, async |c| {
        let (r, idle) = one(c).await;
        (r, idle, c.record)
    });
    assert_eq!(r, Ok(true));
    assert_eq!(idle, 1, "the backend connection went back to the pool");
    let got = String::from_utf8(got).unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello"), "{got}");
    let (conn, req) = seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(conn, 0);
    let req = String::from_utf8(req).unwrap();
    assert!(req.starts_with("POST /p?q=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("x-forwarded-for: 127.0.0.1\r\n"), "{req}");
    assert!(req.ends_with("\r\n\r\nabc"), "{req}");
    assert_eq!((rec.status, rec.local, rec.reused), (200, false, false));
    assert_eq!((rec.backend(), rec.server()), (Some(0), Some(0)));
    assert_eq!(rec.bytes_in, REQ.len() as u64);
    assert_eq!(rec.bytes_out, got.len() as u64);
    assert_ne!(rec.connect_us, NO_TIME);
    assert!(rec.response_us != NO_TIME && rec.response_us >= rec.connect_us);
    assert_eq!((rec.connect_failures, rec.retries), (0, 0));
    assert_eq!(rec.termination(), Termination::Done);
}

#[test]
fn the_second_request_reuses_the_pooled_connection() {
    let (addr, seen) = backend(b"HTTP/1.1 204 No Content\r\n\r\n");
    const REQS: &[u8] = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (recs, got) = with_client(vec![addr], REQS, async |c| {
        let first = one(c).await;
        let r1 = c.record;
        let second = one(c).await;
        (first, r1, second, c.record)
    });
    let ((r1, _), rec1, (r2, idle), rec2) = recs;
    assert_eq!((r1, r2), (Ok(true), Ok(true)));
    assert_eq!(idle, 1);
    assert!(!rec1.reused && rec2.reused, "{rec1:?} {rec2:?}");
    assert_eq!(rec2.connect_us, 0, "no connect for a pooled connection");
    assert_ne!(rec2.response_us, NO_TIME);
    let conns: Vec<usize> = (0..2)
        .map(|_| seen.recv_timeout(IO_TIMEOUT).unwrap().0)
        .collect();
    assert_eq!(conns, [0, 0], "both requests on one backend connection");
    assert_eq!(String::from_utf8(got).unwrap().matches("204").count(), 2);
}

#[test]
fn connect_failures_fail_over_then_answer_503() {
    let servers = vec![closed_port(), closed_port()];
    let (rec, _) = with_client(servers, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", async |c| {
        let (r, _) = one(c).await;
        assert_eq!(
            r,
            Err(ProxyError::ServiceUnavailable(
                "no server accepted the connection"
            ))
        );
        c.record
    });
    assert_eq!(rec.connect_failures, 2, "each server tried once");
    assert_eq!(rec.connect_us, NO_TIME);
}

#[test]
fn a_malformed_response_is_a_502_and_the_connection_is_not_reused() {
    let (addr, _seen) =
        backend(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx");
    let ((r, idle), _) = with_client(
        vec![addr],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        async |c| one(c).await,
    );
    assert!(matches!(r, Err(ProxyError::BadGateway(_))), "{r:?}");
    assert_eq!(idle, 0);
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let (addr, _seen) =
        backend(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let ((r, rec), got) = with_client(
        vec![addr],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        async |c| (one(c).await.0, c.record),
    );
    assert_eq!(r, Ok(true));
    let got = String::from_utf8(got).unwrap();
    let early = got.find("HTTP/1.1 103 ").expect("103 relayed");
    let fin = got.find("HTTP/1.1 200 ").expect("200 relayed");
    assert!(early < fin, "{got}");
    assert_eq!(rec.status, 200);
    assert_eq!(rec.bytes_out, got.len() as u64);
}

#[test]
fn the_request_filter_refuses_a_declared_body_over_max_body() {
    let cfg = config(&[closed_port()]);
    let f = &cfg.frontends[0];
    let parse = |text: &str| {
        crate::http::request::parse_request_head(text.as_bytes(), &f.limits)
            .unwrap()
            .unwrap()
    };
    let ok = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n");
    let big = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n");
    assert_eq!(request_filter(f, &ok), Ok(()));
    assert_eq!(request_filter(f, &big), Err(ProxyError::PayloadTooLarge));
}

//! TCP mode (`mode = "tcp"`) end to end with plain sockets: bytes both ways, a large transfer in both
//! directions at once, half-close, the idle timeout, failover from a refusing server, all servers down,
//! `maxconn`, and the PROXY protocol sent to servers and accepted from trusted peers (TCP and HTTP mode).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use corelb_testkit::process::Corelb;
use corelb_testkit::{wait_for, Pattern};

/// Socket timeout of every blocking op in these tests (generous: CI is noisy).
const IO: Duration = Duration::from_secs(20);
/// Most connections a mock server accepts (bounds its accept loop).
const MAX_ACCEPTS: usize = 1000;

/// A TCP server that, per connection, reads an optional PROXY header (recording it), then echoes every
/// byte back and half-closes when the client does. Counts connections.
struct EchoServer {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn echo_server(expect_proxy: bool) -> EchoServer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let headers = Arc::new(Mutex::new(Vec::new()));
    let (c, h) = (conns.clone(), headers.clone());
    thread::spawn(move || {
        for s in l.incoming().take(MAX_ACCEPTS) {
            let Ok(mut s) = s else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(IO)).unwrap();
                s.set_write_timeout(Some(IO)).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending = Vec::new();
                if expect_proxy {
                    // Read until the header is complete (v1 ends with CRLF; v2 has its length).
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        if let Ok(Some(hd)) = corelb::proxy_protocol::parse(&pending) {
                            h.lock().unwrap().push(pending[..hd.len].to_vec());
                            pending.drain(..hd.len);
                            break;
                        }
                        if pending.len() > 2048 {
                            return;
                        }
                    }
                }
                if s.write_all(&pending).is_err() {
                    return;
                }
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            let _ = s.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    EchoServer {
        addr,
        conns,
        headers,
    }
}

fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn tcp_config(servers: &[SocketAddr], frontend_extra: &str, server_extra: &str) -> String {
    let mut s = format!(
        "[global]\ngrace = \"1s\"\n[[frontend]]\nname = \"fe\"\nmode = \"tcp\"\nbind = [\"127.0.0.1:0\"]\n\
         default_backend = \"be\"\n{frontend_extra}\n[[backend]]\nname = \"be\"\n\
         [backend.timeouts]\nconnect = \"1s\"\n"
    );
    for (i, a) in servers.iter().enumerate() {
        s += &format!("[[backend.server]]\nname = \"s{i}\"\naddress = \"{a}\"\n{server_extra}\n");
    }
    s
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

/// Reads exactly `n` bytes or panics with what arrived.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    out
}

/// Reads until EOF (bounded by the socket timeout and `max` bytes).
fn read_to_eof(s: &mut TcpStream, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    s.take(max as u64).read_to_end(&mut out).unwrap();
    out
}

/// Asserts that corelb closed the connection without sending a byte (EOF, or a reset because our
/// unread bytes were discarded).
fn assert_closed_silently(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn bytes_both_ways_and_half_close() {
    let echo = echo_server(false);
    let lb = Corelb::start_toml(&tcp_config(&[echo.addr], "", ""), 2);
    for _ in 0..20 {
        let mut c = connect(lb.addr);
        c.write_all(b"hello\n").unwrap();
        assert_eq!(read_n(&mut c, 6), b"hello\n");
        // Half-close: our FIN reaches the server, which still answers, then closes its side.
        c.write_all(b"last words").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut c, 1 << 20), b"last words");
    }
    assert_eq!(
        echo.conns.load(Ordering::SeqCst),
        20,
        "one server connection per client"
    );
}

#[test]
fn large_transfer_both_directions_at_once() {
    const LEN: usize = 64 << 20;
    let echo = echo_server(false);
    let lb = Corelb::start_toml(&tcp_config(&[echo.addr], "", ""), 1);
    let c = connect(lb.addr);
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let p = Pattern::shared();
        let mut off = 0usize;
        while off < LEN {
            let n = (LEN - off).min(1 << 20);
            w.write_all(p.slice(off as u64, n)).unwrap();
            off += n;
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = c;
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let p = Pattern::shared();
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            p.matches(got as u64, &buf[..n]),
            "corrupted at offset {got}"
        );
        got += n;
        assert!(got <= LEN);
    }
    writer.join().unwrap();
    assert_eq!(got, LEN);
    assert!(
        lb.peak_rss_kib() < 64 * 1024,
        "64 MiB each way must stream, not buffer: peak RSS {} KiB",
        lb.peak_rss_kib()
    );
}

#[test]
fn idle_connections_are_closed() {
    let echo = echo_server(false);
    let lb = Corelb::start_toml(
        &tcp_config(&[echo.addr], "[frontend.timeouts]\nidle = \"300ms\"", ""),
        1,
    );
    let mut c = connect(lb.addr);
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1), b"x");
    let t = Instant::now();
    let rest = read_to_eof(&mut c, 16);
    let waited = t.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}, idle is 300 ms"
    );
}

#[test]
fn refused_server_fails_over_and_all_down_closes_at_once() {
    let echo = echo_server(false);
    let lb = Corelb::start_toml(&tcp_config(&[closed_port(), echo.addr], "", ""), 1);
    for i in 0..10 {
        let mut c = connect(lb.addr);
        c.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut c, 4), b"ping", "connection {i}");
    }
    drop(lb);

    let lb = Corelb::start_toml(&tcp_config(&[closed_port(), closed_port()], "", ""), 1);
    let mut c = connect(lb.addr);
    let t = Instant::now();
    let got = read_to_eof(&mut c, 16);
    assert!(got.is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t.elapsed()
    );
    // The log line is written before the connection closes, but read from corelb's stderr by
    // another thread: wait for it rather than look once.
    assert!(
        wait_for(Duration::from_secs(5), || lb
            .logs()
            .contains("connect failed")),
        "{}",
        lb.logs()
    );
}

#[test]
fn maxconn_holds_connections_in_the_backlog() {
    let echo = echo_server(false);
    let lb = Corelb::start_toml(&tcp_config(&[echo.addr], "maxconn = 1", ""), 1);
    let mut a = connect(lb.addr);
    a.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut a, 1), b"a");
    // The second connection completes its handshake in the kernel backlog but is not served.
    let mut b = connect(lb.addr);
    b.write_all(b"b").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    assert!(b.read(&mut one).is_err(), "served beyond maxconn");
    assert_eq!(echo.conns.load(Ordering::SeqCst), 1);
    drop(a);
    b.set_read_timeout(Some(IO)).unwrap();
    assert_eq!(read_n(&mut b, 1), b"b", "served once the first closed");
}

#[test]
fn proxy_protocol_sent_to_servers() {
    for (version, prefix) in [
        ("v1", &b"PROXY TCP4 127.0.0.1 127.0.0.1 "[..]),
        ("v2", &b"\r\n\r\n\0\r\nQUIT\n\x21\x11"[..]),
    ] {
        let echo = echo_server(true);
        let lb = Corelb::start_toml(
            &tcp_config(&[echo.addr], "", &format!("send_proxy = \"{version}\"")),
            1,
        );
        let mut c = connect(lb.addr);
        let client_port = c.local_addr().unwrap().port();
        c.write_all(b"data").unwrap();
        assert_eq!(read_n(&mut c, 4), b"data", "the header is not echoed");
        let headers = echo.headers.lock().unwrap().clone();
        assert_eq!(headers.len(), 1);
        let h = &headers[0];
        assert!(
            h.starts_with(prefix),
            "{version}: {:?}",
            String::from_utf8_lossy(h)
        );
        let parsed = corelb::proxy_protocol::parse(h).unwrap().unwrap();
        assert_eq!(
            parsed.src.unwrap().port(),
            client_port,
            "the client's address"
        );
        assert_eq!(
            parsed.dst.unwrap(),
            lb.addr,
            "the address the client connected to"
        );
    }
}

#[test]
fn proxy_protocol_accepted_from_trusted_peers_only() {
    let echo = echo_server(true);
    // TCP mode: the PROXY header we receive names the client we pass on.
    let lb = Corelb::start_toml(
        &tcp_config(
            &[echo.addr],
            "accept_proxy = true\ntrusted_proxies = [\"127.0.0.0/8\"]",
            "send_proxy = \"v1\"",
        ),
        1,
    );
    for header in [
        b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 3306\r\n".to_vec(),
        {
            let mut v2 = [0u8; corelb::proxy_protocol::WRITE_MAX];
            let n = corelb::proxy_protocol::write(
                &mut v2,
                corelb::proxy_protocol::Version::V2,
                "203.0.113.9:51000".parse().unwrap(),
                "10.0.0.1:3306".parse().unwrap(),
            );
            v2[..n].to_vec()
        },
    ] {
        let mut c = connect(lb.addr);
        c.write_all(&header).unwrap();
        c.write_all(b"hi").unwrap();
        assert_eq!(read_n(&mut c, 2), b"hi");
    }
    let headers = echo.headers.lock().unwrap().clone();
    assert_eq!(headers.len(), 2);
    for h in &headers {
        assert_eq!(h, b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 3306\r\n");
    }
    // No header from a trusted peer: closed, nothing reaches a server.
    let mut c = connect(lb.addr);
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_closed_silently(&mut c);
    assert_eq!(echo.conns.load(Ordering::SeqCst), 2);
    drop(lb);

    // A peer outside trusted_proxies is refused even with a valid header.
    let lb = Corelb::start_toml(
        &tcp_config(
            &[echo.addr],
            "accept_proxy = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
            "",
        ),
        1,
    );
    let mut c = connect(lb.addr);
    c.write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 3306\r\nhi")
        .unwrap();
    assert_closed_silently(&mut c);
    assert_eq!(echo.conns.load(Ordering::SeqCst), 2);
    assert!(
        wait_for(Duration::from_secs(5), || lb
            .logs()
            .contains("not in trusted_proxies")),
        "{}",
        lb.logs()
    );
}

#[test]
fn http_mode_takes_the_client_from_the_proxy_header() {
    let backend = corelb_testkit::backends::Backend::echo("app");
    let toml = format!(
        "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         accept_proxy = true\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [[backend]]\nname = \"be\"\n[[backend.server]]\naddress = \"{}\"\n",
        backend.addr
    );
    let lb = Corelb::start_toml(&toml, 1);
    let mut c = connect(lb.addr);
    c.write_all(b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\nGET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_to_eof(&mut c, 1 << 20);
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(
        backend.last().header("x-forwarded-for"),
        Some("198.51.100.7")
    );
}

//! Bodies in both directions, both framings, small to 1 GiB; corelb streams them in constant memory.

use corelb_testkit::backends::{echo, Backend, Next};
use corelb_testkit::client::{get_req, Client, Framing};
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{write_chunked_pattern, write_pattern, Pattern};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
/// Peak RSS allowed for corelb while moving 1 GiB (VmHWM).
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Deadline for one 1 GiB transfer (the target is < 20 s in a debug build; this is the hard stop).
const GIB_DEADLINE: Duration = Duration::from_secs(120);

fn behind(b: &Backend) -> Corelb {
    Corelb::start(&Cfg::new(&[("b", b.addr)]), 1)
}

#[test]
fn content_length_request_bodies_of_many_sizes_arrive_intact() {
    let b = Backend::echo("b");
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for len in [
        1usize,
        2,
        100,
        4095,
        4096,
        32 * 1024,
        65_537,
        300_000,
        1 << 20,
    ] {
        let body = Pattern::vec(len);
        c.send(
            format!("POST /cl{len} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n")
                .as_bytes(),
        );
        c.send(&body);
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), len);
        assert!(r.body == body, "echoed body of {len} bytes differs");
        let req = b.last();
        assert_eq!(req.body_len, len as u64);
        assert!(
            req.body_is_pattern,
            "backend received a corrupted body of {len} bytes"
        );
        assert_eq!(
            req.header("content-length"),
            Some(len.to_string().as_str()),
            "{}",
            req.head.raw_str()
        );
    }
    assert!(b.errors().is_empty(), "{:?}", b.errors());
}

#[test]
fn chunked_request_bodies_arrive_intact_even_if_rechunked() {
    let b = Backend::echo("b");
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    let p = Pattern::new();
    for (len, chunk) in [
        (1u64, 1usize),
        (10, 3),
        (5000, 7),
        (100_000, 4096),
        (300_000, 65_537),
        (1 << 20, 1 << 20),
    ] {
        c.send(
            format!("POST /ch{len} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        );
        write_chunked_pattern(&mut c.wire.stream, &p, len, chunk, b"").expect("write body");
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body_len, len);
        assert!(
            p.matches(0, &r.body),
            "echoed body of {len} bytes (chunks of {chunk}) differs"
        );
        let req = b.last();
        assert_eq!(req.body_len, len);
        assert!(
            req.body_is_pattern,
            "backend received a corrupted chunked body ({len}/{chunk})"
        );
    }
    assert!(b.errors().is_empty(), "{:?}", b.errors());
}

#[test]
fn chunked_and_content_length_responses_arrive_intact() {
    for chunked in [false, true] {
        let b = Backend::echo_with("b", chunked);
        let lb = behind(&b);
        let mut c = Client::connect(lb.addr);
        for len in [1usize, 1000, 65_536, 500_000] {
            let body = Pattern::vec(len);
            c.send(
                format!("POST /r{len} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n")
                    .as_bytes(),
            );
            c.send(&body);
            let r = c.read_response();
            assert_eq!(r.status, 200);
            if !chunked {
                assert_eq!(
                    r.framing,
                    Framing::Length(len as u64),
                    "{}",
                    r.head.raw_str()
                );
            }
            assert!(
                r.body == body,
                "response body of {len} bytes (backend chunked={chunked}) differs"
            );
        }
    }
}

#[test]
fn empty_bodies() {
    let b = Backend::echo_with("b", true);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /e1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read_response().body_str(), "b POST /e1");
    c.send(b"POST /e2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.read_response().body_str(), "b POST /e2");
    let reqs = b.requests();
    assert!(reqs.iter().all(|r| r.body_len == 0));
    // A request without a body must not be sent to the backend with a chunked body or a bogus length.
    assert!(
        reqs[0].header("content-length").is_none_or(|v| v == "0"),
        "{}",
        reqs[0].head.raw_str()
    );
}

/// Upload 1 GiB through corelb to a sink, return the elapsed time.
fn upload_gib(lb: &Corelb, chunked: bool) -> Duration {
    let p = Pattern::new();
    let mut c = Client::connect(lb.addr);
    let t = Instant::now();
    if chunked {
        c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        write_chunked_pattern(&mut c.wire.stream, &p, GIB, 1 << 20, b"").expect("upload");
    } else {
        c.send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {GIB}\r\n\r\n").as_bytes());
        write_pattern(&mut c.wire.stream, &p, GIB).expect("upload");
    }
    let r = c
        .try_read_response(false, GIB_DEADLINE)
        .unwrap_or_else(|e| panic!("1 GiB upload (chunked={chunked}): {e}"));
    assert_eq!(r.status, 200);
    // The sink checks every byte against the pattern while counting.
    let want_chunked = if chunked {
        "chunked=true"
    } else {
        "chunked=false"
    };
    let body = r.body_str();
    assert!(
        body.starts_with(&format!("len={GIB} pattern=true")),
        "sink saw: {body}"
    );
    if !chunked {
        assert!(
            body.ends_with(want_chunked),
            "a Content-Length upload was re-framed: {body}"
        );
    }
    t.elapsed()
}

#[test]
fn one_gib_uploads_stream_in_constant_memory() {
    let b = Backend::sink("sink");
    let lb = behind(&b);
    for chunked in [true, false] {
        let took = upload_gib(&lb, chunked);
        eprintln!("1 GiB upload chunked={chunked}: {took:?}");
        let rss = lb.peak_rss_kib();
        eprintln!("corelb peak RSS: {rss} KiB");
        assert!(
            rss < RSS_LIMIT_KIB,
            "corelb peak RSS {rss} KiB after a 1 GiB upload (limit {RSS_LIMIT_KIB} KiB)"
        );
    }
}

#[test]
fn one_gib_downloads_stream_in_constant_memory() {
    for chunked in [false, true] {
        let b = Backend::source("src", GIB, chunked);
        let lb = behind(&b);
        let p = Pattern::new();
        let mut c = Client::connect(lb.addr);
        let t = Instant::now();
        c.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut off = 0u64;
        let mut intact = true;
        let r = c
            .try_read_response_to(false, GIB_DEADLINE, &mut |d| {
                intact &= p.matches(off, d);
                off += d.len() as u64;
            })
            .unwrap_or_else(|e| panic!("1 GiB download (backend chunked={chunked}): {e}"));
        eprintln!(
            "1 GiB download backend chunked={chunked}: {:?}",
            t.elapsed()
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body_len, GIB);
        assert!(
            intact,
            "1 GiB download corrupted (backend chunked={chunked})"
        );
        if !chunked {
            assert_eq!(r.framing, Framing::Length(GIB));
        }
        let rss = lb.peak_rss_kib();
        eprintln!("corelb peak RSS: {rss} KiB");
        assert!(
            rss < RSS_LIMIT_KIB,
            "corelb peak RSS {rss} KiB after a 1 GiB download (limit {RSS_LIMIT_KIB} KiB)"
        );
    }
}

#[test]
fn a_client_that_does_not_read_does_not_make_corelb_buffer_the_response() {
    const LEN: u64 = 512 << 20;
    let b = Backend::source("src", LEN, false);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    // Let the backend push as hard as it can while the client reads nothing: time passes on
    // purpose (no observable state says every buffer on the way is full).
    std::thread::sleep(Duration::from_secs(2));
    let rss = lb.peak_rss_kib();
    eprintln!("corelb peak RSS: {rss} KiB");
    eprintln!("peak RSS with a stalled reader: {rss} KiB");
    assert!(
        rss < RSS_LIMIT_KIB,
        "corelb buffered a response for a client that does not read: {rss} KiB"
    );
    let p = Pattern::new();
    let mut off = 0u64;
    let mut intact = true;
    let r = c
        .try_read_response_to(false, GIB_DEADLINE, &mut |d| {
            intact &= p.matches(off, d);
            off += d.len() as u64;
        })
        .unwrap_or_else(|e| panic!("download after the pause: {e}"));
    assert!(
        intact && r.body_len == LEN,
        "body after the pause: {} bytes, intact={intact}",
        r.body_len
    );
}

#[test]
fn a_backend_that_does_not_read_does_not_make_corelb_buffer_the_request() {
    // A raw listener that accepts and never reads: corelb must apply backpressure to the client.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let holder = std::thread::spawn(move || {
        let conn = listener.accept().map(|(s, _)| s);
        // A backend that does not read, on purpose.
        std::thread::sleep(Duration::from_secs(4));
        drop(conn);
    });
    let cfg = Cfg::new(&[("deaf", addr)]).backend_timeout("body = \"3s\"");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    c.wire
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    c.send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {GIB}\r\n\r\n").as_bytes());
    let p = Pattern::new();
    // Write until the pipe is full (the write times out) or 256 MiB went out.
    let mut sent = 0u64;
    let chunk = 1 << 20;
    while sent < 256 << 20 {
        if std::io::Write::write_all(&mut c.wire.stream, p.slice(sent, chunk)).is_err() {
            break;
        }
        sent += chunk as u64;
    }
    let rss = lb.peak_rss_kib();
    eprintln!("corelb peak RSS: {rss} KiB");
    eprintln!(
        "client wrote {} MiB into a backend that does not read; peak RSS {rss} KiB",
        sent >> 20
    );
    assert!(
        sent < 256 << 20,
        "corelb accepted 256 MiB for a backend that reads nothing"
    );
    assert!(
        rss < RSS_LIMIT_KIB,
        "corelb buffered the request body: {rss} KiB"
    );
    holder.join().expect("holder");
}

#[test]
fn a_client_that_never_reads_neither_grows_memory_nor_blocks_other_clients() {
    // One client asks for 64 MiB and reads nothing; on the same (single) worker, other clients must
    // still be served promptly, and corelb must not hold the response in memory.
    const LEN: u64 = 64 << 20;
    let b = Backend::start(
        "b",
        None,
        Arc::new(|req, w, st| {
            if req.target() != "/big" {
                return echo(req, w, st, false, Duration::ZERO);
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n");
            match std::io::Write::write_all(&mut w.stream, head.as_bytes())
                .and_then(|_| write_pattern(&mut w.stream, Pattern::shared(), LEN))
            {
                Ok(()) => Next::KeepAlive,
                Err(_) => Next::Close,
            }
        }),
    );
    let lb = behind(&b);
    let mut stuck = Client::connect(lb.addr);
    stuck.send(&get_req("/big"));
    // Let the backend push until every buffer on the way is full: time passes on purpose.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..20 {
        let mut c = Client::connect(lb.addr);
        let t = Instant::now();
        c.send(&get_req(&format!("/small{i}")));
        let r = c
            .try_read_response(false, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("request {i} while a client does not read: {e}"));
        assert_eq!(
            (r.status, r.body_str()),
            (200, format!("b GET /small{i}")),
            "request {i}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "request {i} took {:?} while a client does not read",
            t.elapsed()
        );
    }
    let rss = lb.peak_rss_kib();
    eprintln!("peak RSS with a client that never reads 64 MiB: {rss} KiB");
    assert!(
        rss < RSS_LIMIT_KIB,
        "corelb buffered a 64 MiB response for a client that does not read: {rss} KiB"
    );
    // The stalled GET was sent once, not retried behind the client's back.
    assert_eq!(
        b.requests().iter().filter(|r| r.target() == "/big").count(),
        1
    );
    drop(stuck);
}

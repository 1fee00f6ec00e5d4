//! The "Responses from backends" rows of /work/shared/docs/http-rules.md.

use corelb_testkit::backends::{Backend, Next};
use corelb_testkit::client::{get_req, Client, Framing};
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{assert_aborted, assert_local_error, expect_rejected, Pattern};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn behind(b: &Backend) -> Corelb {
    Corelb::start(&Cfg::new(&[("b", b.addr)]), 1)
}

/// The backend answers every request with `bytes`; the client must get a local 502.
fn expect_502_for(bytes: &[u8], close: bool) {
    let b = Backend::fixed("b", bytes, close);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/"));
    let r = c
        .try_read_response(false, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "backend sent {:?}: want 502, read failed: {e}",
                String::from_utf8_lossy(bytes)
            )
        });
    assert!(
        r.status == 502,
        "backend sent {:?}: want 502, got:\n{}{}",
        String::from_utf8_lossy(bytes),
        r.head.raw_str(),
        r.body_str()
    );
    assert_local_error(&r, 502);
    c.assert_closed(Duration::from_secs(5));
}

#[test]
fn status_outside_100_599_is_502() {
    expect_502_for(b"HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n", false);
    expect_502_for(b"HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n", false);
    expect_502_for(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", false);
    expect_502_for(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", false);
    expect_502_for(b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", false);
}

#[test]
fn ambiguous_response_framing_is_502() {
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        false,
    );
    expect_502_for(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", false);
    expect_502_for(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", false);
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        false,
    );
}

#[test]
fn non_chunked_transfer_encoding_in_response() {
    // The rules allow 502, or handling it without ever reusing that backend connection. Either way the
    // client must not get a response framed as chunked from gzip bytes, nor a second response from them.
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzzzz",
        true,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/"));
    let r = c.read_response();
    if r.status == 502 {
        assert_local_error(&r, 502);
        c.assert_closed(Duration::from_secs(5));
    } else {
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "zzzzz"),
            "{}",
            r.head.raw_str()
        );
        c.send(&get_req("/2"));
        let _ = c.try_read_response(false, Duration::from_secs(5));
        assert_eq!(
            b.conns(),
            2,
            "backend connection with a non-chunked TE body was reused"
        );
    }
}

#[test]
fn bad_response_header_bytes_are_502() {
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    expect_502_for(
        b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    // Over the response head limits (24 KiB, 128 fields).
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "y".repeat(30 * 1024)
    );
    expect_502_for(big.as_bytes(), false);
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    expect_502_for(
        format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n").as_bytes(),
        false,
    );
}

#[test]
fn garbage_instead_of_a_response_is_502() {
    expect_502_for(b"garbage garbage garbage\r\n\r\n", true);
    expect_502_for(b"\x00\x01\x02\x03\xff\xfe\r\n\r\n", true);
    expect_502_for(b"HTTP/1.1 200 OK\r\nContent-Le", true);
    expect_502_for(b"", true);
    expect_502_for(b"SSH-2.0-OpenSSH_9.6\r\n", true);
}

#[test]
fn interim_responses_are_relayed_to_http11_clients_only() {
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for round in 0..2 {
        c.send(&get_req("/hints"));
        let (interim, fin) = c.read_final_response();
        let codes: Vec<u16> = interim.iter().map(|r| r.status).collect();
        assert_eq!(codes, [103, 103], "round {round}");
        assert_eq!(interim[0].header("link"), Some("</a.css>; rel=preload"));
        assert_eq!(interim[1].header("link"), Some("</b.js>; rel=preload"));
        assert_eq!((fin.status, fin.body_str().as_str()), (200, "ok"));
    }
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /hints HTTP/1.0\r\nHost: h\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.status,
        200,
        "an HTTP/1.0 client got an interim response:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.body_str(), "ok");
}

#[test]
fn bytes_after_the_declared_end_stop_reuse() {
    let b = Backend::fixed("b", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsmuggl", false);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        let r = c.get(&format!("/x{i}"));
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "hello"),
            "request {i}"
        );
    }
    let ids: Vec<usize> = b.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(
        ids,
        [1, 2, 3],
        "a backend connection with extra bytes after the response was reused"
    );
}

/// Backend that sends a (forbidden) body with HEAD, 204 and 304 answers, and "hello" otherwise.
fn body_where_none_allowed() -> Backend {
    Backend::start(
        "b",
        None,
        Arc::new(|req, w, _| {
            let out: &[u8] = match (req.method(), req.target()) {
                ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nXXXXX",
                (_, "/204") => b"HTTP/1.1 204 No Content\r\n\r\nXXXXX",
                (_, "/304") => b"HTTP/1.1 304 Not Modified\r\n\r\nXXXXX",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            };
            match w.stream.write_all(out) {
                Ok(()) => Next::KeepAlive,
                Err(_) => Next::Close,
            }
        }),
    )
}

#[test]
fn body_on_head_204_304_is_discarded_and_connection_not_reused() {
    let b = body_where_none_allowed();
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    let mut expected_conns = 0;
    for (req, status) in [
        (&b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"[..], 200),
        (&get_req("/204")[..], 204),
        (&get_req("/304")[..], 304),
    ] {
        c.send(req);
        let r = if status == 200 {
            c.read_head_response()
        } else {
            c.read_response()
        };
        assert_eq!(r.status, status);
        // The next response must be clean: no stray XXXXX in front of it.
        let r = c.get("/after");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
        expected_conns += 1;
        let reqs = b.requests();
        let last_two: Vec<usize> = reqs[reqs.len() - 2..].iter().map(|r| r.conn_id).collect();
        assert_ne!(
            last_two[0], last_two[1],
            "backend connection reused after a body on a {status} (HEAD/204/304)"
        );
    }
    assert!(b.conns() > expected_conns);
}

#[test]
fn close_delimited_response_is_chunked_for_11_and_close_for_10() {
    const LEN: usize = 100_000;
    let mut resp = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n".to_vec();
    resp.extend_from_slice(&Pattern::vec(LEN));
    let b = Backend::fixed("b", &resp, true);
    let lb = behind(&b);

    let mut c = Client::connect(lb.addr);
    for i in 0..2 {
        c.send(&get_req(&format!("/cd{i}")));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.framing,
            Framing::Chunked,
            "HTTP/1.1 client, close-delimited backend:\n{}",
            r.head.raw_str()
        );
        assert_eq!(r.body, Pattern::vec(LEN));
    }
    assert_eq!(b.conns(), 2);

    let mut c = Client::connect(lb.addr);
    c.send(b"GET /cd10 HTTP/1.0\r\nHost: h\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.framing,
        Framing::Close,
        "HTTP/1.0 client, close-delimited backend:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.body, Pattern::vec(LEN));
}

#[test]
fn chunked_response_to_http10_client_is_not_chunked() {
    let b = Backend::echo_with("b", true);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /p HTTP/1.0\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_ne!(
        r.framing,
        Framing::Chunked,
        "chunked sent to an HTTP/1.0 client:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.body_str(), "hello world");
}

#[test]
fn backend_eof_before_content_length_aborts_client_connection() {
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n".to_vec();
    resp.extend_from_slice(&[b'x'; 100]);
    let b = Backend::fixed("b", &resp, true);
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/"));
    match c.try_read_response(false, Duration::from_secs(10)) {
        Ok(r) => panic!(
            "client got a complete response from a truncated one:\n{}",
            r.head.raw_str()
        ),
        Err(e) => assert_aborted(&e, 200, Framing::Length(10000), 100),
    }
}

#[test]
fn backend_eof_mid_chunked_body_gives_no_final_chunk() {
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        true,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/"));
    match c.try_read_response(false, Duration::from_secs(10)) {
        Ok(r) => panic!(
            "client got a clean end (0-chunk) for a truncated chunked body:\n{}",
            r.head.raw_str()
        ),
        Err(e) => assert_aborted(&e, 200, Framing::Chunked, 5),
    }
}

#[test]
fn backend_status_line_only_then_eof_is_502() {
    // A head that never completes.
    expect_502_for(b"HTTP/1.1 200 OK\r\n", true);
    // Sanity: the same corelb setup serves a well-formed response (guards against a test bug).
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/").body_str(), "ok");
    // A locally rejected request on the same corelb still closes cleanly.
    expect_rejected(lb.addr, b"GET / HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn http10_backend_response_is_not_reused() {
    // An HTTP/1.0 response without keep-alive means the server closes after it (RFC 9112 §9.3);
    // this backend leaves its socket open anyway, so reuse would be visible as a shared conn_id.
    let b = Backend::fixed(
        "b",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        let r = c.get(&format!("/{i}"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
        assert_eq!(r.version(), "HTTP/1.1", "corelb answers as HTTP/1.1");
    }
    let ids: Vec<usize> = b.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(ids, [1, 2, 3], "an HTTP/1.0 backend connection was reused");
}

#[test]
fn hop_by_hop_fields_of_a_response_are_not_relayed() {
    // RFC 9110 §7.6.1: a proxy removes Connection, the fields it names, Keep-Alive, Upgrade (when
    // not switching), Proxy-Connection and the backend's own framing from the responses it relays.
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nConnection: X-Hop, x-other\r\nX-Hop: secret\r\nKeep-Alive: timeout=99\r\n\
          Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: X-Checksum\r\n\
          X-Other: 1\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    let r = c.get("/");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    for h in [
        "x-hop",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    ] {
        assert!(
            !r.has(h),
            "response hop-by-hop field {h} relayed:\n{}",
            r.head.raw_str()
        );
    }
    for token in ["x-hop", "x-other"] {
        assert!(
            !r.head.list_contains("connection", token),
            "{}",
            r.head.raw_str()
        );
    }
    assert_eq!(r.header("x-end"), Some("kept"));
}

#[test]
fn unsolicited_101_is_not_a_tunnel() {
    // RFC 9110 §15.2.2: a server must not switch protocols the client did not ask for. Relaying
    // the bytes after it as a tunnel would let a backend hijack the client connection.
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw tunnel bytes",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    c.send(&get_req("/plain"));
    let r = c.read_response();
    assert_ne!(
        r.status,
        101,
        "101 relayed for a request without Upgrade:\n{}",
        r.head.raw_str()
    );
    assert_local_error(&r, 502);
}

#[test]
fn response_trailers_keep_the_connection_in_sync() {
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\nA\r\n, trailers\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        let r = c.get(&format!("/{i}"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello, trailers"));
    }
    assert_eq!(
        b.conns(),
        1,
        "a fully read chunked response should leave the backend connection reusable"
    );
}

#[test]
fn bad_chunked_framing_from_the_backend_never_ends_cleanly() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    ] {
        let b = Backend::fixed("b", bad, false);
        let lb = behind(&b);
        let mut c = Client::connect(lb.addr);
        c.send(&get_req("/"));
        match c.try_read_response(false, Duration::from_secs(10)) {
            // Detected before the head went out: a local 502.
            Ok(r) if r.status == 502 => assert_local_error(&r, 502),
            Ok(r) => panic!(
                "backend sent {:?}; client got a clean response:\n{}{:?}",
                String::from_utf8_lossy(bad),
                r.head.raw_str(),
                r.body_str()
            ),
            Err(e) => {
                eprintln!("backend sent {:?}", String::from_utf8_lossy(bad));
                assert_aborted(&e, 200, Framing::Chunked, 5);
            }
        }
    }
}

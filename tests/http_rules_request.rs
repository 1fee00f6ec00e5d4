//! The "Requests from clients" rows of /work/shared/docs/http-rules.md: every ambiguous or malformed
//! request gets its local 4xx/5xx answer with `Connection: close`, corelb closes, and nothing of the
//! request reaches a backend: a request whose head is faulty never even opens a backend connection,
//! and one whose (streamed) chunked body turns out faulty reaches it only as a cut-off body.

use corelb_testkit::backends::Backend;
use corelb_testkit::client::{Client, RESPONSE_DEADLINE};
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{assert_local_error, expect_rejected};
use std::time::Duration;

/// One echo backend behind corelb with the given extra limits.
fn setup(limits: &[&str]) -> (Backend, Corelb) {
    let a = Backend::echo("a");
    let mut cfg = Cfg::new(&[("a", a.addr)]);
    for l in limits {
        cfg = cfg.limit(l);
    }
    let lb = Corelb::start(&cfg, 1);
    (a, lb)
}

/// Run every (request, code) case on its own connection, each with target `/case<i>`, and check
/// that none of those targets reached the backend. These faults are all visible in the head, so corelb
/// must answer before it opens any backend connection: a head (or part of one) forwarded before the
/// check would not show up as a complete request, but it does show up as a connection.
fn run_cases(a: &Backend, lb: &Corelb, cases: &[(Vec<u8>, u16)]) {
    let conns_before = a.conns();
    for (raw, code) in cases {
        expect_rejected(lb.addr, raw, *code);
        assert_eq!(
            a.conns(),
            conns_before,
            "request {:?} was rejected with {code} only after corelb connected to the backend",
            String::from_utf8_lossy(raw)
        );
    }
    assert_no_case_reached_the_backend(a);
}

/// Like `run_cases`, for faults that sit in a chunked body. corelb streams chunked bodies, so it may
/// already have connected (and even sent part of the request); then the backend must see at most a
/// cut-off body (an EOF inside it), never a complete request, never malformed framing of corelb's
/// making. A connection that carried part of such a request must never be reused: the next request
/// would then be read as body bytes, which the mock reports as an error that is not an EOF.
fn run_body_cases(a: &Backend, lb: &Corelb, cases: &[(Vec<u8>, u16)]) {
    for (raw, code) in cases {
        expect_rejected(lb.addr, raw, *code);
    }
    assert_no_case_reached_the_backend(a);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        let path = format!("/after-cases-{i}");
        assert_eq!(c.get(&path).body_str(), format!("a GET {path}"));
    }
    // The mock logs a read error as soon as it sees bytes it cannot frame. A quiet window, on
    // purpose: the assertion is that no such error comes, and absence has no state to poll.
    std::thread::sleep(Duration::from_millis(100));
    for e in a.errors() {
        assert!(
            e.contains("EOF"),
            "the backend saw something other than a cut-off body: {e}"
        );
    }
}

fn assert_no_case_reached_the_backend(a: &Backend) {
    let leaked: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.target().to_string())
        .filter(|t| t.starts_with("/case"))
        .collect();
    assert!(
        leaked.is_empty(),
        "rejected requests reached the backend: {leaked:?}"
    );
}

/// A POST to /case<i> with the given extra header lines and body.
fn post(i: usize, headers: &str, body: &str) -> Vec<u8> {
    format!("POST /case{i} HTTP/1.1\r\nHost: h\r\n{headers}\r\n{body}").into_bytes()
}

/// A GET to /case<i> with the given extra header lines.
fn get(i: usize, headers: &str) -> Vec<u8> {
    format!("GET /case{i} HTTP/1.1\r\n{headers}\r\n").into_bytes()
}

#[test]
fn ambiguous_body_framing_is_400() {
    let (a, lb) = setup(&[]);
    let te_chunked_body = "0\r\n\r\n";
    let cases = vec![
        // RFC 9112 §6.1/§6.3: CL and TE together.
        (post(0, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", te_chunked_body), 400),
        (post(1, "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", te_chunked_body), 400),
        // Differing Content-Length values, as a list or as two fields.
        (post(2, "Content-Length: 5, 6\r\n", "hello!"), 400),
        (post(3, "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400),
        // Not plain digits (RFC 9110 §8.6). `"+5".parse::<u64>()` is Ok(5): a classic.
        (post(4, "Content-Length: +5\r\n", "hello"), 400),
        (post(5, "Content-Length: -1\r\n", "hello"), 400),
        (post(6, "Content-Length: 0x10\r\n", "hello"), 400),
        (post(7, "Content-Length: 5 5\r\n", "hello"), 400),
        (post(8, "Content-Length: \r\n", "hello"), 400),
        (post(9, "Content-Length: 99999999999999999999999\r\n", "hello"), 400),
        // Transfer-Encoding whose last coding is not chunked, or chunked twice.
        (post(10, "Transfer-Encoding: chunked;x\r\n", te_chunked_body), 400),
        (post(11, "Transfer-Encoding: chunked, chunked\r\n", te_chunked_body), 400),
        (post(12, "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", te_chunked_body), 400),
        (post(13, "Transfer-Encoding: chunked, gzip\r\n", te_chunked_body), 400),
        (post(14, "Transfer-Encoding: gzip\r\n", "hello"), 400),
        // HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1).
        (b"POST /case15 HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 400),
    ];
    run_cases(&a, &lb, &cases);
}

#[test]
fn unknown_transfer_codings_are_501() {
    let (a, lb) = setup(&[]);
    // `gzip, chunked` is well framed but uses a coding corelb does not relay: 501 (RFC 9112 §6.1).
    // `xchunked` is an unknown coding too, but its final coding is not chunked, and for that
    // RFC 9112 §6.3 says the server MUST answer 400: the MUST wins.
    let cases = vec![
        (
            post(0, "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
        ),
        (post(1, "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 400),
    ];
    run_cases(&a, &lb, &cases);
}

#[test]
fn obfuscated_transfer_encoding_is_never_chunked() {
    // The rules allow 400 or 501 here; what matters is that neither is treated as chunked.
    let (a, lb) = setup(&[]);
    for (i, te) in [&b"\x0bchunked"[..], b"chunked\xff", b"\xc2\xa0chunked"]
        .iter()
        .enumerate()
    {
        let mut raw =
            format!("POST /case{i} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ").into_bytes();
        raw.extend_from_slice(te);
        raw.extend_from_slice(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let mut c = Client::connect(lb.addr);
        let _ = c.try_send(&raw);
        let r = c
            .try_read_response(false, RESPONSE_DEADLINE)
            .unwrap_or_else(|e| panic!("TE {:?}: {e}", String::from_utf8_lossy(te)));
        assert!(
            r.status == 400 || r.status == 501,
            "TE {:?}: want 400/501, got {}",
            String::from_utf8_lossy(te),
            r.head.raw_str()
        );
        assert_local_error(&r, r.status);
        c.assert_closed(Duration::from_secs(5));
    }
    assert_eq!(a.reqs(), 0, "an obfuscated TE request reached the backend");
}

#[test]
fn bad_header_syntax_is_400() {
    let (a, lb) = setup(&[]);
    let cases = vec![
        // RFC 9112 §5.1: no whitespace between field name and colon.
        (get(0, "Host: h\r\nX-A : 1\r\n"), 400),
        (get(1, "Host : h\r\n"), 400),
        // §5.2: obs-fold is rejected.
        (get(2, "Host: h\r\nX-A: 1\r\n  continued\r\n"), 400),
        (get(3, "Host: h\r\nX-A: 1\r\n\tcontinued\r\n"), 400),
        // NUL and bare CR in a value (RFC 9110 §5.5).
        (get(4, "Host: h\r\nX-A: a\0b\r\n"), 400),
        (get(5, "Host: h\r\nX-A: a\rb\r\n"), 400),
        // Non-token bytes in a name, empty name.
        (get(6, "Host: h\r\nX(A): 1\r\n"), 400),
        (get(7, "Host: h\r\n: 1\r\n"), 400),
        (get(8, "Host: h\r\nX\"A: 1\r\n"), 400),
        // A field line without a colon.
        (get(9, "Host: h\r\nNoColonHere\r\n"), 400),
    ];
    run_cases(&a, &lb, &cases);
}

#[test]
fn host_rules() {
    let (a, lb) = setup(&[]);
    let cases = vec![
        // RFC 9112 §3.2: missing or duplicated Host in HTTP/1.1; an invalid Host.
        (get(0, ""), 400),
        (get(1, "Host: h\r\nHost: h\r\n"), 400),
        (get(2, "Host: a\r\nHost: b\r\n"), 400),
        (get(3, "Host: a b\r\n"), 400),
        (get(4, "Host: a/b\r\n"), 400),
        (get(5, "Host: h, h\r\n"), 400),
    ];
    run_cases(&a, &lb, &cases);
    // HTTP/1.0 may omit Host.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /ok10 HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn bad_targets_and_methods() {
    let (a, lb) = setup(&[]);
    let cases = vec![
        (b"GET /case0#frag HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (
            b"POST * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
            405,
        ),
        // Malformed request lines.
        (
            b"GET /case1 HTTP/1.1 extra\r\nHost: h\r\n\r\n".to_vec(),
            400,
        ),
        (b"BROKEN\r\n\r\n".to_vec(), 400),
        (b"G\x01T /case2 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET /case3\r\nHost: h\r\n\r\n".to_vec(), 400),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        // Control bytes and spaces inside the target.
        (b"GET /case4\0x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET /case5 x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET /case6\x7f HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET /case7\tx HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
    ];
    run_cases(&a, &lb, &cases);
    assert!(a
        .requests()
        .iter()
        .all(|r| r.target() != "*" && r.method() != "CONNECT"));
    // OPTIONS * is the one legal use of the asterisk form.
    let mut c = Client::connect(lb.addr);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    assert_eq!((a.last().method(), a.last().target()), ("OPTIONS", "*"));
}

#[test]
fn request_line_version_and_target_spaces() {
    let (a, lb) = setup(&[]);
    let cases = vec![
        // RFC 9112 §3: one SP between the parts; a space inside the target is not a longer target.
        (b"GET /case0 /x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        // §2.3: HTTP-name is case-sensitive "HTTP".
        (b"GET /case1 http/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        (b"GET /case2 HTTP/11\r\nHost: h\r\n\r\n".to_vec(), 400),
        // A well-formed version corelb does not speak: 505 (RFC 9110 §15.6.6).
        (b"GET /case3 HTTP/2.0\r\nHost: h\r\n\r\n".to_vec(), 505),
        (b"GET /case4 HTTP/3.0\r\nHost: h\r\n\r\n".to_vec(), 505),
    ];
    run_cases(&a, &lb, &cases);
    // Sanity: the same corelb serves a correct request line.
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/fine").body_str(), "a GET /fine");
}

#[test]
fn bad_chunked_request_bodies_are_400() {
    let (a, lb) = setup(&[]);
    let te = "Transfer-Encoding: chunked\r\n";
    let cases = vec![
        // RFC 9112 §7.1: chunk-size is 1*HEXDIG.
        (post(0, te, "zz\r\nhello\r\n0\r\n\r\n"), 400),
        // An empty size line is not a last chunk (httparse's parse_chunk_size says 0 here).
        (post(1, te, "\r\nhello\r\n0\r\n\r\n"), 400),
        (post(2, te, "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
        (post(3, te, "-5\r\nhello\r\n0\r\n\r\n"), 400),
        (post(4, te, "0x5\r\nhello\r\n0\r\n\r\n"), 400),
        // Control bytes in a chunk extension.
        (post(5, te, "5;a\x01b\r\nhello\r\n0\r\n\r\n"), 400),
        // Data not followed by CRLF.
        (post(6, te, "5\r\nhelloXX\r\n0\r\n\r\n"), 400),
        (post(7, te, "5\r\nhello0\r\n\r\n"), 400),
        // A chunk-size line longer than any sane bound (extensions are not a free-for-all).
        (
            post(
                8,
                te,
                &format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(10_000)),
            ),
            400,
        ),
        // Bare LF where CRLF is required after the data.
        (post(9, te, "5\r\nhello\n0\r\n\r\n"), 400),
    ];
    run_body_cases(&a, &lb, &cases);
}

#[test]
fn size_limits_414_431_413() {
    let (a, lb) = setup(&[
        "max_request_line = 1024",
        "max_header_bytes = 2048",
        "max_headers = 20",
        "max_body = 1000",
    ]);
    let long_target = format!("/case0/{}", "x".repeat(2000));
    let many_fields: String = (0..25).map(|i| format!("X-F{i}: v\r\n")).collect();
    let big_field = format!("X-Big: {}\r\n", "y".repeat(3000));
    let cases = vec![
        (
            format!("GET {long_target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(),
            414,
        ),
        (get(1, &format!("Host: h\r\n{big_field}")), 431),
        (get(2, &format!("Host: h\r\n{many_fields}")), 431),
        (post(3, "Content-Length: 1001\r\n", &"z".repeat(1001)), 413),
    ];
    run_cases(&a, &lb, &cases);
    // A chunked body is streamed: its size is only known as it goes by.
    let body_cases = vec![
        (
            post(
                4,
                "Transfer-Encoding: chunked\r\n",
                &format!("3e9\r\n{}\r\n0\r\n\r\n", "z".repeat(1001)),
            ),
            413,
        ),
        (
            post(
                5,
                "Transfer-Encoding: chunked\r\n",
                &format!(
                    "1f4\r\n{0}\r\n1f4\r\n{0}\r\n1\r\nz\r\n0\r\n\r\n",
                    "z".repeat(500)
                ),
            ),
            413,
        ),
    ];
    run_body_cases(&a, &lb, &body_cases);
    // Exactly at the limits is fine.
    let mut c = Client::connect(lb.addr);
    let fields: String = (0..19).map(|i| format!("X-F{i}: v\r\n")).collect();
    c.send(format!("GET /at-limit HTTP/1.1\r\nHost: h\r\n{fields}\r\n").as_bytes());
    assert_eq!(
        c.read_response().status,
        200,
        "20 fields (Host + 19) is within max_headers = 20"
    );
    c.send(
        format!(
            "POST /at-limit HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n{}",
            "z".repeat(1000)
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!((r.status, r.body_len), (200, 1000));
}

#[test]
fn too_many_headers_with_default_limits_is_431_not_a_crash() {
    let (a, lb) = setup(&[]);
    // 300 tiny fields: far beyond httparse's array of 100, well within 16 KiB.
    let fields: String = (0..300).map(|i| format!("X{i}: v\r\n")).collect();
    expect_rejected(lb.addr, &get(0, &format!("Host: h\r\n{fields}")), 431);
    // Still alive and serving.
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.get("/alive").status, 200);
    assert_eq!(a.reqs(), 1);
}

#[test]
fn local_answer_never_leaves_body_bytes_to_be_read_as_a_request() {
    let (a, lb) = setup(&["max_body = 100"]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let body = format!("{smuggled}{}", "p".repeat(200 - smuggled.len()));
    expect_rejected(lb.addr, &post(0, "Content-Length: 200\r\n", &body), 413);
    let connect = format!(
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    expect_rejected(lb.addr, connect.as_bytes(), 405);
    let hash = format!(
        "POST /case1#x HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    expect_rejected(lb.addr, hash.as_bytes(), 400);
    // A body larger than corelb's drain allowance: still no smuggling (corelb may close instead).
    let mut c = Client::connect(lb.addr);
    let mut raw = b"POST /case2 HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n".to_vec();
    raw.extend_from_slice("q".repeat(100_000).as_bytes());
    raw.extend_from_slice(smuggled.as_bytes());
    let _ = c.try_send(&raw);
    let _ = c.read_to_eof(Duration::from_secs(5));
    // A quiet window, on purpose: the assertion is that no smuggled request ever arrives.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        a.requests()
            .iter()
            .all(|r| r.target() != "/smuggled" && !r.target().starts_with("/case")),
        "a body of a rejected request was parsed as a request: {:?}",
        a.requests()
            .iter()
            .map(|r| r.target().to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn request_trailers_are_dropped_and_body_intact() {
    let (a, lb) = setup(&[]);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"POST /tr HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\nContent-Length: 5\r\nHost: evil\r\n\
          Transfer-Encoding: gzip\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello world"));
    let req = a.last();
    assert_eq!(req.body, b"hello world");
    assert!(
        req.trailers.is_empty(),
        "trailers reached the backend: {:?}",
        String::from_utf8_lossy(&req.trailers)
    );
    assert_eq!(req.header("host"), Some("h"));
    assert!(
        !req.head.raw_str().contains("X-Trailer"),
        "{}",
        req.head.raw_str()
    );
    assert!(a.errors().is_empty(), "{:?}", a.errors());
    // The connection is in sync after the trailer section.
    assert_eq!(c.get("/next").body_str(), "a GET /next");
}

#[test]
fn valid_framing_edge_cases_are_accepted() {
    let (a, lb) = setup(&[]);
    let mut c = Client::connect(lb.addr);
    // Leading zeros are still 1*DIGIT.
    c.send(b"POST /lz HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello");
    assert_eq!(c.read_response().body_str(), "hello");
    // Transfer codings are case-insensitive (RFC 9112 §7).
    c.send(
        b"POST /ci HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    assert_eq!(c.read_response().body_str(), "ok");
    // Upper-case hex and a chunk extension.
    c.send(b"POST /hex HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA;name=\"v\"\r\n0123456789\r\n0\r\n\r\n");
    assert_eq!(c.read_response().body_str(), "0123456789");
    // Content-Length: 0 and an empty chunked body.
    c.send(b"POST /empty HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read_response().body_str(), "a POST /empty");
    c.send(b"POST /empty2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.read_response().body_str(), "a POST /empty2");
    assert_eq!(a.reqs(), 5);
    assert!(a.errors().is_empty(), "{:?}", a.errors());
}

#[test]
fn expect_100_continue_with_a_local_error_gets_no_100() {
    // RFC 9110 §10.1.1: a server that will reject the request answers with the final status instead
    // of 100; the body never comes, and the connection must not wait for it as the next request.
    let (a, lb) = setup(&["max_body = 100"]);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"POST /case0 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
    );
    let r = c.read_response();
    assert_local_error(&r, 413);
    c.assert_closed(Duration::from_secs(5));
    assert_eq!(a.reqs(), 0);
}

#[test]
fn body_bytes_that_look_like_requests_stay_body_bytes() {
    let (a, lb) = setup(&[]);
    let inner = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut c = Client::connect(lb.addr);
    // Content-Length body, then a chunked body whose data contains a fake last chunk and a request.
    let chunk_data = format!("0\r\n\r\n{inner}");
    let mut raw = format!(
        "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    raw += &format!(
        "POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk_data}\r\n0\r\n\r\n",
        chunk_data.len()
    );
    raw += "GET /real HTTP/1.1\r\nHost: h\r\n\r\n";
    c.send(raw.as_bytes());
    assert_eq!(c.read_response().body_str(), inner);
    assert_eq!(c.read_response().body_str(), chunk_data);
    assert_eq!(c.read_response().body_str(), "a GET /real");
    let targets: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.target().to_string())
        .collect();
    assert_eq!(targets, ["/cl", "/te", "/real"]);
    assert!(a.errors().is_empty(), "{:?}", a.errors());
}

#[test]
fn request_body_cut_short_by_the_client_never_reaches_the_backend_as_complete() {
    let (a, lb) = setup(&[]);
    for (i, (framing, partial)) in [
        ("Content-Length: 100\r\n", "x".repeat(50)),
        ("Transfer-Encoding: chunked\r\n", "64\r\nshort".to_string()),
        (
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n".to_string(),
        ),
    ]
    .iter()
    .enumerate()
    {
        let mut c = Client::connect(lb.addr);
        c.send(&post(i, framing, partial));
        c.wire
            .stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        // Whatever corelb answers (400 or nothing), it must close, and the backend must never
        // see a complete request.
        assert!(
            matches!(
                c.read_to_eof(Duration::from_secs(10)),
                corelb_testkit::client::Eof::Closed(_)
            ),
            "case {i}: connection left open after the client's EOF mid-body"
        );
    }
    // A quiet window, on purpose: the assertion is that no complete request ever arrives.
    std::thread::sleep(Duration::from_millis(200));
    let leaked: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.target().to_string())
        .collect();
    assert!(
        leaked.is_empty(),
        "truncated bodies reached the backend as complete requests: {leaked:?}"
    );
}

#[test]
fn obs_text_in_field_values_is_forwarded_unchanged() {
    // RFC 9110 §5.5: field values may carry obs-text (0x80-0xFF); that is not a syntax error.
    let (a, lb) = setup(&[]);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"GET /utf8 HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9 \xe2\x82\xac\r\nX-Tab: a\tb\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 200);
    let req = a.last();
    assert!(
        corelb_testkit::find(&req.head.raw, b"caf\xc3\xa9 \xe2\x82\xac").is_some(),
        "obs-text value changed: {}",
        req.head.raw_str()
    );
    assert_eq!(req.header("x-tab"), Some("a\tb"));
}

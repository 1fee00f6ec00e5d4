//! Basic proxying: balancing, connection reuse, request re-serialization, pipelining, HEAD/204/304,
//! Expect: 100-continue.

use corelb_testkit::backends::{Backend, Next};
use corelb_testkit::client::{get_req, Client};
use corelb_testkit::process::{Cfg, Corelb};
use std::sync::Arc;
use std::time::Duration;

fn two_servers() -> (Backend, Backend, Corelb) {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr), ("b", b.addr)]), 1);
    (a, b, lb)
}

#[test]
fn round_robin_alternates_on_one_connection_and_across_connections() {
    let (_a, _b, lb) = two_servers();
    let mut c = Client::connect(lb.addr);
    let mut seen = Vec::new();
    for i in 0..8 {
        let r = c.get(&format!("/rr{i}"));
        assert_eq!(r.status, 200);
        seen.push(r.header("x-served-by").expect("X-Served-By").to_string());
    }
    // New client connections continue the same per-worker rotation.
    for i in 0..4 {
        let mut c = Client::connect(lb.addr);
        let r = c.get(&format!("/new{i}"));
        seen.push(r.header("x-served-by").expect("X-Served-By").to_string());
    }
    for w in seen.windows(2) {
        assert_ne!(w[0], w[1], "round robin did not alternate: {seen:?}");
    }
    assert!(seen.iter().all(|s| s == "a" || s == "b"), "{seen:?}");
}

#[test]
fn backend_connections_are_reused_for_sequential_requests() {
    let (a, b, lb) = two_servers();
    let mut c = Client::connect(lb.addr);
    for i in 0..200 {
        let r = c.get(&format!("/seq{i}"));
        assert_eq!(r.status, 200, "request {i}");
        let who = r.header("x-served-by").unwrap().to_string();
        assert_eq!(r.body_str(), format!("{who} GET /seq{i}"));
    }
    let conns = a.conns() + b.conns();
    assert_eq!(a.reqs() + b.reqs(), 200);
    assert!(
        conns <= 4,
        "200 sequential requests used {conns} backend connections (want <= 4)"
    );
}

#[test]
fn backend_connections_are_reused_across_client_connections() {
    let (a, b, lb) = two_servers();
    for i in 0..20 {
        let mut c = Client::connect(lb.addr);
        for j in 0..5 {
            assert_eq!(c.get(&format!("/c{i}/{j}")).status, 200);
        }
    }
    let conns = a.conns() + b.conns();
    assert_eq!(a.reqs() + b.reqs(), 100);
    assert!(
        conns <= 4,
        "20 client connections x 5 requests used {conns} backend connections (want <= 4)"
    );
}

#[test]
fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"GET /h?x=1 HTTP/1.1\r\nHost: example.org\r\nConnection: keep-alive, X-Custom-Hop\r\n\
          X-Custom-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Trailer: X-Foo\r\nUpgrade: foo/1\r\nX-Keep: yes\r\nUser-Agent: e2e\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let req = a.last();
    assert_eq!(req.method(), "GET");
    assert_eq!(req.target(), "/h?x=1");
    assert_eq!(req.head.line.2, "HTTP/1.1");
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "x-custom-hop",
    ] {
        assert!(
            !req.has(h),
            "backend received hop-by-hop {h}:\n{}",
            req.head.raw_str()
        );
    }
    assert_eq!(req.header("host"), Some("example.org"));
    assert_eq!(req.header("x-keep"), Some("yes"));
    assert_eq!(req.header("user-agent"), Some("e2e"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-host"), Some("example.org"));
    // The client connection stays usable.
    assert_eq!(c.get("/again").status, 200);
}

#[test]
fn client_forwarding_headers_are_replaced_when_peer_is_not_trusted() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(
        b"GET / HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 200);
    let req = a.last();
    assert_eq!(
        req.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{}",
        req.head.raw_str()
    );
    assert_eq!(
        req.header("x-forwarded-proto"),
        Some("http"),
        "{}",
        req.head.raw_str()
    );
    assert_eq!(
        req.header("x-forwarded-host"),
        Some("h.example"),
        "{}",
        req.head.raw_str()
    );
}

#[test]
fn client_forwarded_header_is_not_passed_through_when_peer_is_not_trusted() {
    // http-rules.md: client-supplied X-Forwarded-For / Forwarded / X-Forwarded-Proto are appended to
    // or overwritten per trusted_proxies; by default they are not trusted. A Forwarded field passed
    // through untouched lets any client claim any address to the backend.
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h.example\r\nForwarded: for=1.2.3.4;proto=https\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    let req = a.last();
    assert!(
        !req.head
            .headers_named("forwarded")
            .iter()
            .any(|v| v.contains("1.2.3.4")),
        "untrusted Forwarded reached the backend:\n{}",
        req.head.raw_str()
    );
}

#[test]
fn client_x_forwarded_for_is_appended_to_when_peer_is_trusted() {
    let a = Backend::echo("a");
    let cfg = Cfg::new(&[("a", a.addr)]).frontend("trusted_proxies = [\"127.0.0.1\"]");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    assert_eq!(
        a.last().header("x-forwarded-for"),
        Some("1.2.3.4, 127.0.0.1")
    );
    // Without a client XFF, the trusted case is just the peer.
    c.send(&get_req("/2"));
    assert_eq!(c.read_response().status, 200);
    assert_eq!(a.last().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn connection_header_cannot_delete_what_corelb_adds_or_framing() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);

    // Listing X-Forwarded-For (and Host) as hop-by-hop must not remove corelb's own XFF.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /xff HTTP/1.1\r\nHost: h.example\r\nConnection: close, X-Forwarded-For, X-Forwarded-Proto\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        r.says_close(),
        "Connection: close from the client must be honoured:\n{}",
        r.head.raw_str()
    );
    c.assert_closed(Duration::from_secs(5));
    let req = a.last();
    assert_eq!(
        req.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{}",
        req.head.raw_str()
    );
    assert_eq!(
        req.header("x-forwarded-proto"),
        Some("http"),
        "{}",
        req.head.raw_str()
    );

    // Listing the framing header must not change framing: the body is still a body.
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /cl HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    c.send(b"POST /te HTTP/1.1\r\nHost: h\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "abc"));
    assert_eq!(c.get("/after").body_str(), "a GET /after");
    let reqs = a.requests();
    assert_eq!(
        reqs.iter()
            .map(|r| r.target().to_string())
            .collect::<Vec<_>>(),
        ["/xff", "/cl", "/te", "/after"]
    );
    assert!(
        a.errors().is_empty(),
        "backend saw broken framing: {:?}",
        a.errors()
    );
}

#[test]
fn absolute_form_target_is_rewritten_to_origin_form() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"GET http://example.com/x?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "/x?q=1",
            "example.com",
        ),
        // RFC 9112 §3.2.2: the authority of an absolute-form target wins over Host.
        (
            b"GET http://example.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "/x",
            "example.com",
        ),
        (
            b"GET http://example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            "/",
            "example.com:8080",
        ),
    ];
    for (raw, target, host) in cases {
        c.send(raw);
        assert_eq!(c.read_response().status, 200);
        let req = a.last();
        assert_eq!(req.target(), target, "{}", req.head.raw_str());
        assert_eq!(req.header("host"), Some(host), "{}", req.head.raw_str());
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_a, _b, lb) = two_servers();
    let mut c = Client::connect(lb.addr);
    let mut all = Vec::new();
    for p in ["/p1", "/p2", "/p3"] {
        all.extend_from_slice(&get_req(p));
    }
    c.send(&all);
    for p in ["/p1", "/p2", "/p3"] {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        let who = r.header("x-served-by").unwrap().to_string();
        assert_eq!(r.body_str(), format!("{who} GET {p}"));
    }
    // A POST without CL/TE has an empty body: what follows it is the next request.
    c.send(b"POST /nobody HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.read_response().body_str().ends_with("POST /nobody"));
    assert!(c.read_response().body_str().ends_with("GET /next"));
}

/// A backend that answers by path: /204, /304, and a correct HEAD (head only, Content-Length: 5).
fn status_backend() -> Backend {
    Backend::start(
        "s",
        None,
        Arc::new(|req, w, _| {
            let out: &[u8] = match (req.method(), req.target()) {
                ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                (_, "/204") => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
                (_, "/304") => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            };
            match std::io::Write::write_all(&mut w.stream, out) {
                Ok(()) => Next::KeepAlive,
                Err(_) => Next::Close,
            }
        }),
    )
}

#[test]
fn head_gets_no_body_and_connection_stays_in_sync() {
    let s = status_backend();
    let lb = Corelb::start(&Cfg::new(&[("s", s.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    for _ in 0..3 {
        c.send(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.read_head_response();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some("5"),
            "HEAD keeps the GET's length:\n{}",
            r.head.raw_str()
        );
        // If corelb had sent a body, it would sit in front of the next response and break it.
        let r = c.get("/x");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    }
    assert_eq!(
        s.conns(),
        1,
        "a correct HEAD exchange must not cost the backend connection"
    );
}

#[test]
fn no_body_for_204_and_304() {
    let s = status_backend();
    let lb = Corelb::start(&Cfg::new(&[("s", s.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    for (path, code) in [("/204", 204), ("/304", 304), ("/204", 204)] {
        let r = c.get(path);
        assert_eq!(r.status, code);
        assert!(!r.has("transfer-encoding"), "{}", r.head.raw_str());
        if code == 204 {
            // RFC 9110 §8.6: no Content-Length in a 204.
            assert!(!r.has("content-length"), "{}", r.head.raw_str());
        }
        let r = c.get("/x");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    }
}

#[test]
fn expect_100_continue_is_answered_by_corelb() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.status,
        100,
        "wanted 100 Continue before sending the body:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.version(), "HTTP/1.1");
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    let req = a.last();
    assert!(
        !req.has("expect"),
        "backend saw Expect:\n{}",
        req.head.raw_str()
    );
    assert_eq!(req.body, b"hello");
    // Same connection, chunked body this time.
    c.send(b"POST /up2 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.read_response().status, 100);
    c.send(b"4\r\nwxyz\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "wxyz"));
}

#[test]
fn client_connection_close_and_http10_close_after_response() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "{}", r.head.raw_str());
    c.assert_closed(Duration::from_secs(5));

    // HTTP/1.0 without keep-alive: the response, then close; Host is optional in 1.0.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /old HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        !r.has("transfer-encoding"),
        "chunked sent to an HTTP/1.0 client:\n{}",
        r.head.raw_str()
    );
    assert_eq!(r.body_str(), "a GET /old");
    c.assert_closed(Duration::from_secs(5));

    // After Connection: close, pipelined requests behind it are never read.
    let mut c = Client::connect(lb.addr);
    let mut both = b"GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec();
    both.extend_from_slice(&get_req("/second"));
    c.send(&both);
    assert_eq!(c.read_response().body_str(), "a GET /first");
    c.assert_closed(Duration::from_secs(5));
    assert!(
        a.requests().iter().all(|r| r.target() != "/second"),
        "a request pipelined after Connection: close reached the backend"
    );
}

#[test]
fn two_workers_serve_requests() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 2);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let addr = lb.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..25 {
                    let r = c.get(&format!("/w{t}/{i}"));
                    assert_eq!(r.body_str(), format!("a GET /w{t}/{i}"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(a.reqs(), 100);
}

#[test]
fn many_concurrent_clients_all_get_their_own_responses() {
    let (a, b, lb) = two_servers();
    const CLIENTS: usize = 64;
    const EACH: usize = 20;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let addr = lb.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..EACH {
                    let body = format!("client {t} request {i}");
                    let req = format!(
                        "POST /m{t}/{i} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    c.send(req.as_bytes());
                    let r = c.read_response();
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body_str(), body, "a response went to the wrong client");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(a.reqs() + b.reqs(), CLIENTS * EACH);
    assert!(a.errors().is_empty() && b.errors().is_empty());
}

#[test]
fn pipelined_requests_keep_order_when_the_first_server_is_slow() {
    let slow = Backend::delayed("slow", Duration::from_millis(300));
    let fast = Backend::echo("fast");
    let lb = Corelb::start(&Cfg::new(&[("slow", slow.addr), ("fast", fast.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    let mut all = Vec::new();
    for i in 0..4 {
        all.extend_from_slice(&get_req(&format!("/o{i}")));
    }
    c.send(&all);
    for i in 0..4 {
        let r = c.read_response();
        let who = r.header("x-served-by").unwrap().to_string();
        assert_eq!(
            r.body_str(),
            format!("{who} GET /o{i}"),
            "responses out of order"
        );
    }
}

#[test]
fn a_hundred_pipelined_requests_in_one_write() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    let all: Vec<u8> = (0..100).flat_map(|i| get_req(&format!("/pp{i}"))).collect();
    c.send(&all);
    for i in 0..100 {
        assert_eq!(c.read_response().body_str(), format!("a GET /pp{i}"));
    }
}

#[test]
fn requests_dribbled_byte_by_byte_are_parsed_correctly() {
    let a = Backend::echo("a");
    let lb = Corelb::start(&Cfg::new(&[("a", a.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    let raw = b"POST /drip HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                3;e=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n\
                GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
    for b in raw.iter() {
        c.send(&[*b]);
        // A slow client on purpose: one byte per segment.
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read_response().body_str(), "abcdefg");
    assert_eq!(c.read_response().body_str(), "a GET /after");
}

#[test]
fn large_but_legal_heads_pass_both_ways() {
    let big_resp_value = "r".repeat(20 * 1024);
    let resp = format!("HTTP/1.1 200 OK\r\nX-Big: {big_resp_value}\r\nContent-Length: 2\r\n\r\nok");
    let b = Backend::fixed("b", resp.as_bytes(), false);
    let lb = Corelb::start(&Cfg::new(&[("b", b.addr)]), 1);
    let mut c = Client::connect(lb.addr);
    // Default limits: 8 KiB request line, 16 KiB of fields.
    let target = format!("/{}", "t".repeat(7 * 1024));
    let value = "q".repeat(15 * 1024);
    c.send(format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-Big: {value}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(r.header("x-big"), Some(big_resp_value.as_str()));
    let req = b.last();
    assert_eq!(req.target(), target);
    assert_eq!(req.header("x-big"), Some(value.as_str()));
}

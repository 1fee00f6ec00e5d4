//! More rows of /work/shared/docs/http-rules.md: bytes a backend sends late on a kept-alive connection,
//! status lines without a reason phrase, 1xx from the backend, HTTP/1.0 keep-alive and Expect, 304
//! metadata, trusted forwarding fields, and routing on a Host with a trailing dot.

use corelb_testkit::backends::{echo, Backend, Next};
use corelb_testkit::client::{get_req, Client, Framing};
use corelb_testkit::process::{Cfg, Corelb};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn behind(b: &Backend) -> Corelb {
    Corelb::start(&Cfg::new(&[("b", b.addr)]), 1)
}

// ---- Bytes after the declared end that arrive late (review D1) ----

/// How long after its response the backend writes the stray bytes: long enough that they arrive in a
/// later segment than the response, so corelb has already put the connection back in its pool.
const STRAY_DELAY: Duration = Duration::from_millis(200);
/// A whole second response, as a response-splitting bug in an application would write it.
const STRAY_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Evil: 1\r\n\r\nEVIL";

/// A backend that answers a few trigger targets correctly and then, STRAY_DELAY later, writes more
/// bytes on the same connection; every other request gets the echo (`X-Served-By: b`, body
/// `"b <method> <target>"`), so a response that went to the wrong client is visible.
fn late_bytes_backend() -> Backend {
    Backend::start(
        "b",
        None,
        Arc::new(|req, w, st| {
            let (resp, late, then): (&[u8], &[u8], Next) = match (req.method(), req.target()) {
                ("GET", "/late") => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                    STRAY_RESPONSE,
                    Next::KeepAlive,
                ),
                ("HEAD", "/headlate") => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
                    b"BODY",
                    Next::KeepAlive,
                ),
                ("GET", "/204late") => (
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                    STRAY_RESPONSE,
                    Next::KeepAlive,
                ),
                // An unsolicited 408 written to an idle keep-alive connection before closing it.
                ("GET", "/408late") => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    Next::Close,
                ),
                _ => return echo(req, w, st, false, Duration::ZERO),
            };
            if w.stream.write_all(resp).is_err() {
                return Next::Close;
            }
            // A late backend on purpose.
            std::thread::sleep(STRAY_DELAY);
            if w.stream.write_all(late).is_err() {
                return Next::Close;
            }
            then
        }),
    )
}

/// Send `first` (expecting `first_status` and body `first_body`), wait for the stray bytes to land,
/// then check that four fresh clients in a row each get their own response, and that the connection
/// that carried the stray bytes was never used again.
fn late_bytes_never_reach_the_next_client(
    first: &[u8],
    head_req: bool,
    first_status: u16,
    first_body: &str,
) {
    let b = late_bytes_backend();
    let lb = behind(&b);
    let mut a = Client::connect(lb.addr);
    a.send(first);
    let r = if head_req {
        a.read_head_response()
    } else {
        a.read_response()
    };
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (first_status, first_body),
        "{}",
        r.head.raw_str()
    );
    drop(a);
    // Time passes on purpose: the stray bytes come STRAY_DELAY after the response, and nothing
    // observable says when corelb has read them.
    std::thread::sleep(STRAY_DELAY + Duration::from_millis(300));
    for i in 0..4 {
        let mut c = Client::connect(lb.addr);
        let path = format!("/client{i}-{}", 1000 + i * 7);
        c.send(&get_req(&path));
        let r = c
            .try_read_response(false, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("client {i} after stray bytes: {e}"));
        assert!(
            !r.has("x-evil"),
            "client {i} got the stray response:\n{}{}",
            r.head.raw_str(),
            r.body_str()
        );
        assert_eq!(
            (r.status, r.header("x-served-by"), r.body_str()),
            (200, Some("b"), format!("b GET {path}")),
            "client {i} did not get its own response:\n{}",
            r.head.raw_str()
        );
    }
    let reqs = b.requests();
    let stray_conn = reqs[0].conn_id;
    let reused: Vec<String> = reqs[1..]
        .iter()
        .filter(|r| r.conn_id == stray_conn)
        .map(|r| r.target().to_string())
        .collect();
    assert!(
        reused.is_empty(),
        "requests sent on the backend connection that had stray bytes: {reused:?}"
    );
}

#[test]
fn late_bytes_after_the_declared_end_never_reach_the_next_client() {
    late_bytes_never_reach_the_next_client(&get_req("/late"), false, 200, "ok");
}

#[test]
fn late_body_after_a_head_response_never_reaches_the_next_client() {
    late_bytes_never_reach_the_next_client(
        b"HEAD /headlate HTTP/1.1\r\nHost: h\r\n\r\n",
        true,
        200,
        "",
    );
}

#[test]
fn late_bytes_after_a_204_never_reach_the_next_client() {
    late_bytes_never_reach_the_next_client(&get_req("/204late"), false, 204, "");
}

#[test]
fn unsolicited_408_on_an_idle_connection_never_reaches_the_next_client() {
    late_bytes_never_reach_the_next_client(&get_req("/408late"), false, 200, "ok");
}

// ---- Status lines without a reason phrase (review D2) ----

#[test]
fn status_line_without_reason_phrase_is_relayed_and_corelb_survives() {
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; the reason may be
    // empty, and recipients should accept a missing SP too. A 1xx without reason goes the same path.
    for resp in [
        &b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 103\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let what = String::from_utf8_lossy(resp).to_string();
        let b = Backend::fixed("b", resp, false);
        let mut lb = behind(&b);
        let interim_want: &[u16] = if resp.starts_with(b"HTTP/1.1 103") {
            &[103]
        } else {
            &[]
        };
        // Two requests on one client connection, then one on a fresh connection.
        let mut c = Client::connect(lb.addr);
        for round in 0..3 {
            if round == 2 {
                c = Client::connect(lb.addr);
            }
            c.send(&get_req(&format!("/r{round}")));
            let (interim, fin) =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    c.read_final_response()
                })) {
                    Ok(x) => x,
                    Err(_) => panic!(
                    "backend sent {what:?}: round {round} failed; corelb running: {}; stderr:\n{}",
                    lb.running(),
                    lb.logs()
                ),
                };
            let codes: Vec<u16> = interim.iter().map(|r| r.status).collect();
            assert_eq!(codes, interim_want, "backend sent {what:?}");
            assert_eq!(
                (fin.status, fin.body_str().as_str()),
                (200, "ok"),
                "backend sent {what:?}:\n{}",
                fin.head.raw_str()
            );
            // Whatever reason corelb writes (empty, or its own), it is printable text.
            assert!(
                fin.head
                    .line
                    .2
                    .bytes()
                    .all(|c| c == b'\t' || (b' '..=b'~').contains(&c)),
                "{}",
                fin.head.raw_str()
            );
        }
        assert!(
            lb.running(),
            "corelb died after {what:?}; stderr:\n{}",
            lb.logs()
        );
        assert!(
            !lb.logs().contains("panicked"),
            "a worker panicked on {what:?}:\n{}",
            lb.logs()
        );
    }
}

// ---- 1xx from the backend ----

#[test]
fn backend_100_continue_is_relayed_before_the_final_response() {
    let b = Backend::fixed(
        "b",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for round in 0..2 {
        c.send(&get_req(&format!("/c{round}")));
        let (interim, fin) = c.read_final_response();
        let codes: Vec<u16> = interim.iter().map(|r| r.status).collect();
        assert_eq!(codes, [100], "round {round}");
        assert_eq!(interim[0].version(), "HTTP/1.1");
        assert_eq!((fin.status, fin.body_str().as_str()), (200, "ok"));
    }
    // No 1xx for an HTTP/1.0 client (RFC 9110 §15.2).
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /c10 HTTP/1.0\r\nHost: h\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "ok"),
        "{}",
        r.head.raw_str()
    );
}

// ---- HTTP/1.0 clients ----

#[test]
fn http10_keep_alive_client_keeps_its_connection() {
    // Echo framed by Content-Length, except /chunked*, which the backend sends chunked.
    let a = Backend::start(
        "a",
        None,
        Arc::new(|req, w, st| {
            echo(
                req,
                w,
                st,
                req.target().starts_with("/chunked"),
                Duration::ZERO,
            )
        }),
    );
    let lb = behind(&a);
    let mut c = Client::connect(lb.addr);
    for i in 0..3 {
        c.send(format!("GET /ka{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert!(
            r.head.list_contains("connection", "keep-alive") && !r.says_close(),
            "HTTP/1.0 keep-alive client, Content-Length response: want connection: keep-alive:\n{}",
            r.head.raw_str()
        );
        assert_eq!(
            r.framing,
            Framing::Length(format!("a GET /ka{i}").len() as u64)
        );
        assert_eq!(r.body_str(), format!("a GET /ka{i}"));
    }
    // A chunked backend response cannot be relayed as such to HTTP/1.0: it is sent close-delimited
    // (or with a restated length), never chunked; if close-delimited, the connection must close.
    c.send(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_ne!(r.framing, Framing::Chunked, "{}", r.head.raw_str());
    assert_eq!(r.body_str(), "a GET /chunked");
    if r.framing == Framing::Close {
        assert!(
            !r.head.list_contains("connection", "keep-alive"),
            "close-delimited response announced keep-alive:\n{}",
            r.head.raw_str()
        );
    } else {
        c.send(b"GET /after HTTP/1.0\r\n\r\n");
        assert_eq!(c.read_response().body_str(), "a GET /after");
        c.assert_closed(Duration::from_secs(5));
    }
}

#[test]
fn http10_expect_100_continue_gets_no_100() {
    // RFC 9110 §10.1.1: a server MUST ignore Expect: 100-continue in an HTTP/1.0 request.
    let a = Backend::echo("a");
    let lb = behind(&a);
    let mut c = Client::connect(lb.addr);
    c.send(b"POST /e HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(
        c.silent_for(Duration::from_millis(500)),
        "corelb answered an HTTP/1.0 Expect before the body: {:?}",
        String::from_utf8_lossy(c.wire.buffered())
    );
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello"),
        "{}",
        r.head.raw_str()
    );
    assert!(!a.last().has("expect"), "{}", a.last().head.raw_str());
}

// ---- 304 ----

#[test]
fn not_modified_keeps_content_length_and_has_no_body() {
    // RFC 9110 §8.6: a 304 may carry the Content-Length the 200 would have had; it is metadata, and
    // no body follows (RFC 9112 §6.3).
    let b = Backend::start(
        "b",
        None,
        Arc::new(|req, w, _| {
            let out: &[u8] = if req.target() == "/304" {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            };
            match w.stream.write_all(out) {
                Ok(()) => Next::KeepAlive,
                Err(_) => Next::Close,
            }
        }),
    );
    let lb = behind(&b);
    let mut c = Client::connect(lb.addr);
    for round in 0..3 {
        let r = c.get("/304");
        assert_eq!(r.status, 304, "round {round}");
        assert_eq!(
            r.header("content-length"),
            Some("1234"),
            "304 lost its Content-Length:\n{}",
            r.head.raw_str()
        );
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert!(!r.has("transfer-encoding"), "{}", r.head.raw_str());
        // A body after the 304 would sit in front of this response.
        let r = c.get("/x");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    }
    assert_eq!(
        b.conns(),
        1,
        "a correct 304 exchange must not cost the backend connection"
    );
}

// ---- Forwarding fields from trusted and untrusted peers ----

const CLAIMS: &[u8] = b"GET / HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-Proto: https\r\n\
    Forwarded: for=1.2.3.4;proto=https\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: orig.example\r\n\r\n";

#[test]
fn trusted_peer_keeps_its_forwarding_fields() {
    let a = Backend::echo("a");
    let cfg = Cfg::new(&[("a", a.addr)]).frontend("trusted_proxies = [\"127.0.0.1\"]");
    let lb = Corelb::start(&cfg, 1);
    let mut c = Client::connect(lb.addr);
    c.send(CLAIMS);
    assert_eq!(c.read_response().status, 200);
    let req = a.last();
    let raw = req.head.raw_str();
    assert_eq!(req.header("x-forwarded-proto"), Some("https"), "{raw}");
    assert_eq!(
        req.head.headers_named("forwarded"),
        ["for=1.2.3.4;proto=https"],
        "{raw}"
    );
    assert_eq!(req.header("x-real-ip"), Some("1.2.3.4"), "{raw}");
    assert_eq!(
        req.header("x-forwarded-host"),
        Some("orig.example"),
        "{raw}"
    );
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"), "{raw}");
}

#[test]
fn untrusted_peer_cannot_claim_an_address_or_scheme() {
    let a = Backend::echo("a");
    let lb = behind(&a);
    let mut c = Client::connect(lb.addr);
    c.send(CLAIMS);
    assert_eq!(c.read_response().status, 200);
    let req = a.last();
    let raw = req.head.raw_str();
    // X-Real-IP is nginx's client-address field: dropped, or at most set to the real peer.
    assert!(
        req.head
            .headers_named("x-real-ip")
            .iter()
            .all(|v| *v == "127.0.0.1"),
        "untrusted X-Real-IP reached the backend:\n{raw}"
    );
    assert!(
        !req.head
            .headers_named("forwarded")
            .iter()
            .any(|v| v.contains("1.2.3.4") || v.contains("https")),
        "untrusted Forwarded reached the backend:\n{raw}"
    );
    assert_eq!(req.header("x-forwarded-proto"), Some("http"), "{raw}");
    assert_eq!(req.header("x-forwarded-host"), Some("h.example"), "{raw}");
}

// ---- Routing ----

#[test]
fn host_with_a_trailing_dot_routes_like_the_name_without_it() {
    // RFC 1034 §3.1: "api.example." is the same (fully qualified) name as "api.example"; a route must
    // not be bypassed by adding the dot.
    let def = Backend::echo("def");
    let api = Backend::echo("api");
    let toml = format!(
        "[global]\ngrace = \"2s\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [[frontend.route]]\nhost = \"api.example\"\nbackend = \"api\"\n\n\
         [[backend]]\nname = \"be\"\n[[backend.server]]\nname = \"def\"\naddress = \"{}\"\n\n\
         [[backend]]\nname = \"api\"\n[[backend.server]]\nname = \"api\"\naddress = \"{}\"\n",
        def.addr, api.addr
    );
    let lb = Corelb::start_toml(&toml, 1);
    let mut c = Client::connect(lb.addr);
    for (host, want) in [
        ("api.example", "api"),
        ("api.example.", "api"),
        ("API.Example.", "api"),
        ("api.example:8080", "api"),
        ("api.example.:8080", "api"),
        ("other.example", "def"),
        ("other.example.", "def"),
        ("api.example.com", "def"),
    ] {
        c.send(format!("GET /r HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "Host {host:?}: {}", r.head.raw_str());
        assert_eq!(
            r.header("x-served-by"),
            Some(want),
            "Host {host:?} routed to the wrong backend"
        );
    }
    // The absolute form's authority routes the same way.
    c.send(b"GET http://api.example./abs HTTP/1.1\r\nHost: api.example.\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("x-served-by"), Some("api"), "{}", r.head.raw_str());
}

#[test]
fn path_prefix_routes_see_the_normalized_path() {
    // RFC 3986 §6.2.2: "/api/../admin/", "/%61dmin/", "//admin/" name the resource "/admin/" once the
    // server normalizes them; a `path_prefix` rule must not be bypassed by spelling it differently.
    // The request target itself reaches the server unchanged.
    let def = Backend::echo("def");
    let admin = Backend::echo("admin");
    let toml = format!(
        "[global]\ngrace = \"2s\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"be\"\n\
         [[frontend.route]]\npath_prefix = \"/admin/\"\nbackend = \"admin\"\n\n\
         [[backend]]\nname = \"be\"\n[[backend.server]]\nname = \"def\"\naddress = \"{}\"\n\n\
         [[backend]]\nname = \"admin\"\n[[backend.server]]\nname = \"admin\"\naddress = \"{}\"\n",
        def.addr, admin.addr
    );
    let lb = Corelb::start_toml(&toml, 1);
    let mut c = Client::connect(lb.addr);
    for (target, want) in [
        ("/admin/x", "admin"),
        ("/api/../admin/x", "admin"),
        ("/%61dmin/x", "admin"),
        ("/%2e%2e/admin/x", "admin"),
        ("//admin/x", "admin"),
        ("/./admin/x?q=1", "admin"),
        ("/admin%2Fx", "def"),
        ("/administrator", "def"),
        ("/admin/../public", "def"),
        ("/x?/admin/", "def"),
    ] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "{target}: {}", r.head.raw_str());
        assert_eq!(
            r.header("x-served-by"),
            Some(want),
            "{target} routed wrongly"
        );
        let got = if want == "admin" {
            admin.last()
        } else {
            def.last()
        };
        assert_eq!(got.target(), target, "the target is forwarded unchanged");
    }
}

//! A raw HTTP/1.1 test client: writes exact bytes, parses responses strictly with a deadline.

use crate::wire::{single_content_length, Head, Wire, MAX_HEAD};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default deadline for reading one complete response.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest single blocking read while waiting for a deadline (keeps deadline checks responsive).
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Response body bytes kept by `read_response` (bigger bodies must use `read_response_to`).
const MAX_KEPT_BODY: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub status: u16,
    pub framing: Framing,
    pub body: Vec<u8>,
    pub body_len: u64,
    pub trailers: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.head.has(name)
    }
    pub fn version(&self) -> &str {
        &self.head.line.0
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    /// Whether the response says the connection closes after it.
    pub fn says_close(&self) -> bool {
        self.head.list_contains("connection", "close")
    }
}

/// A failed read, with whatever was received before the failure.
#[derive(Debug)]
pub struct ReadError {
    pub error: io::Error,
    /// Boxed to keep the error small (clippy::result_large_err).
    pub head: Option<Box<Head>>,
    pub body_len: u64,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {} body bytes; head: {:?})",
            self.error,
            self.body_len,
            self.head.as_ref().map(|h| h.raw_str())
        )
    }
}

/// How `read_to_eof` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Eof {
    /// The peer closed (FIN or RST); the bytes received before.
    Closed(Vec<u8>),
    /// The deadline passed with the connection still open; the bytes received.
    StillOpen(Vec<u8>),
}

pub struct Client {
    pub wire: Wire,
    pub addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to corelb at {addr}: {e}"));
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            wire: Wire::new(stream, OP_TIMEOUT),
            addr,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.wire
            .stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("client write: {e}"));
    }

    /// Like `send` but returns the error (for writes racing a close).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.stream.write_all(bytes)
    }

    /// Send a GET for `path` with a Host header and read the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Read one response (1xx included) to a non-HEAD request; panics with context on failure.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false, RESPONSE_DEADLINE)
            .unwrap_or_else(|e| panic!("reading response: {e}"))
    }

    /// Read one response to a HEAD request (no body whatever the head says).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true, RESPONSE_DEADLINE)
            .unwrap_or_else(|e| panic!("reading HEAD response: {e}"))
    }

    /// Read responses until a final (non-1xx) one; returns (interim responses, final response).
    pub fn read_final_response(&mut self) -> (Vec<Response>, Response) {
        let mut interim = Vec::new();
        for _ in 0..16 {
            let r = self.read_response();
            if r.status >= 200 {
                return (interim, r);
            }
            interim.push(r);
        }
        panic!("more than 16 interim responses: {interim:?}");
    }

    pub fn try_read_response(
        &mut self,
        head_request: bool,
        deadline: Duration,
    ) -> Result<Response, ReadError> {
        let mut body = Vec::new();
        let r = self.try_read_response_to(head_request, deadline, &mut |d| {
            if body.len() + d.len() <= MAX_KEPT_BODY {
                body.extend_from_slice(d);
            }
        });
        r.map(|mut resp| {
            assert!(
                body.len() as u64 == resp.body_len,
                "response body of {} bytes exceeds what read_response keeps; use read_response_to",
                resp.body_len
            );
            resp.body = body;
            resp
        })
    }

    /// Read one response, streaming its decoded body into `sink` (for large bodies). The returned
    /// Response has an empty `body` and the right `body_len`.
    pub fn try_read_response_to(
        &mut self,
        head_request: bool,
        deadline: Duration,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Response, ReadError> {
        self.wire.deadline = Some(Instant::now() + deadline);
        let result = self.read_inner(head_request, sink);
        self.wire.deadline = None;
        result
    }

    fn read_inner(
        &mut self,
        head_request: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Response, ReadError> {
        let err = |error: io::Error, head: Option<Head>, body_len: u64| ReadError {
            error,
            head: head.map(Box::new),
            body_len,
        };
        let raw = match self.wire.read_head(MAX_HEAD) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(err(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "EOF before response"),
                    None,
                    0,
                ))
            }
            Err(e) => return Err(err(e, None, 0)),
        };
        let head = Head::parse(&raw)
            .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e), None, 0))?;
        let version = head.line.0.clone();
        assert!(
            version == "HTTP/1.1" || version == "HTTP/1.0",
            "bad response version in {:?}",
            head.raw_str()
        );
        let status: u16 = match head.line.1.parse() {
            Ok(s) if head.line.1.len() == 3 => s,
            _ => panic!("bad status code in {:?}", head.raw_str()),
        };
        let te = head.headers_named("transfer-encoding").join(",");
        let cl =
            single_content_length(&head).unwrap_or_else(|e| panic!("{e} in {:?}", head.raw_str()));
        assert!(
            te.is_empty() || cl.is_none(),
            "response carries both Transfer-Encoding and Content-Length: {:?}",
            head.raw_str()
        );
        let framing = if head_request || status < 200 || status == 204 || status == 304 {
            Framing::None
        } else if !te.is_empty() {
            assert!(
                te.trim().eq_ignore_ascii_case("chunked"),
                "unexpected response TE {te:?}"
            );
            Framing::Chunked
        } else if let Some(n) = cl {
            Framing::Length(n)
        } else {
            Framing::Close
        };
        let mut body_len = 0u64;
        let mut counting = |d: &[u8]| {
            body_len += d.len() as u64;
            sink(d);
        };
        let mut trailers = Vec::new();
        let r = match framing {
            Framing::None => Ok(()),
            Framing::Length(n) => self.wire.read_exact_to(n, &mut counting),
            Framing::Chunked => self
                .wire
                .read_chunked_to(&mut counting)
                .map(|t| trailers = t),
            Framing::Close => self.wire.read_to_eof_to(&mut counting).map(|_| ()),
        };
        match r {
            Ok(()) => Ok(Response {
                head,
                status,
                framing,
                body: Vec::new(),
                body_len,
                trailers,
            }),
            Err(e) => Err(err(e, Some(head), body_len)),
        }
    }

    /// Read until the peer closes or `deadline` passes. A reset counts as closed.
    pub fn read_to_eof(&mut self, deadline: Duration) -> Eof {
        self.wire.deadline = Some(Instant::now() + deadline);
        let mut got = Vec::new();
        let r = self.wire.read_to_eof_to(&mut |d| {
            if got.len() < MAX_KEPT_BODY {
                got.extend_from_slice(d)
            }
        });
        self.wire.deadline = None;
        match r {
            Ok(_) => Eof::Closed(got),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Eof::StillOpen(got),
            // Any other error (e.g. ECONNABORTED) also means the connection is gone.
            Err(_) => Eof::Closed(got),
        }
    }

    /// Assert the connection gets closed by corelb within `deadline` with no further bytes.
    pub fn assert_closed(&mut self, deadline: Duration) {
        match self.read_to_eof(deadline) {
            Eof::Closed(b) if b.is_empty() => {}
            Eof::Closed(b) => panic!(
                "connection closed, but after extra bytes: {:?}",
                String::from_utf8_lossy(&b)
            ),
            Eof::StillOpen(b) => panic!(
                "connection still open after {deadline:?} (received {:?})",
                String::from_utf8_lossy(&b)
            ),
        }
    }

    /// True if no byte arrives (and no close happens) within `window`.
    pub fn silent_for(&mut self, window: Duration) -> bool {
        if !self.wire.buffered().is_empty() {
            return false;
        }
        self.wire.deadline = Some(Instant::now() + window);
        let r = self.wire.fill();
        self.wire.deadline = None;
        matches!(r, Err(ref e) if e.kind() == io::ErrorKind::TimedOut)
    }
}

/// A GET request with Host, as bytes.
pub fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").into_bytes()
}

// ---- assertions on corelb's answers ----

/// Assert `r` is one of corelb's local error answers: `HTTP/1.1 <code> <reason>`, `Connection: close`
/// and a short body.
pub fn assert_local_error(r: &Response, code: u16) {
    assert_eq!(
        r.status,
        code,
        "expected a local {code}, got:\n{}",
        r.head.raw_str()
    );
    assert_eq!(
        r.version(),
        "HTTP/1.1",
        "local answers are HTTP/1.1: {}",
        r.head.raw_str()
    );
    assert!(
        !r.head.line.2.is_empty(),
        "no reason phrase: {}",
        r.head.raw_str()
    );
    assert!(
        r.says_close(),
        "local {code} lacks Connection: close:\n{}",
        r.head.raw_str()
    );
    assert!(
        r.body_len < 4096,
        "local answer body is not short: {} bytes",
        r.body_len
    );
}

/// Open a connection to `addr`, send `raw` (write errors ignored: corelb may close early), and assert
/// a local `code` answer followed by corelb closing the connection.
pub fn expect_rejected(addr: std::net::SocketAddr, raw: &[u8], code: u16) {
    let mut c = Client::connect(addr);
    let _ = c.try_send(raw);
    let r = c
        .try_read_response(false, RESPONSE_DEADLINE)
        .unwrap_or_else(|e| {
            panic!(
                "request {:?}: expected {code}, read failed: {e}",
                String::from_utf8_lossy(raw)
            )
        });
    if r.status != code {
        panic!(
            "request {:?}: expected {code}, got:\n{}{}",
            String::from_utf8_lossy(raw),
            r.head.raw_str(),
            r.body_str()
        );
    }
    assert_local_error(&r, code);
    c.assert_closed(Duration::from_secs(5));
}

/// Assert that a relayed response was aborted cleanly: a well-formed head with `status` and `framing`
/// (`Length(n)`: exactly `Content-Length: n`; `Chunked`: `Transfer-Encoding: chunked`) reached the
/// client, then at most `max_body` body bytes (fewer than declared / no last chunk), then the connection
/// closed (FIN or reset). A timeout, a missing head or a malformed head of corelb's own making fails.
pub fn assert_aborted(e: &ReadError, status: u16, framing: Framing, max_body: u64) {
    assert!(
        matches!(
            e.error.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        ),
        "want the response cut off by a close, got: {e}"
    );
    let h = e
        .head
        .as_ref()
        .unwrap_or_else(|| panic!("no (well-formed) response head before the close: {e}"));
    assert_eq!(h.line.1, status.to_string(), "{}", h.raw_str());
    match framing {
        Framing::Length(n) => {
            assert_eq!(
                h.header("content-length"),
                Some(n.to_string().as_str()),
                "{}",
                h.raw_str()
            );
            assert!(!h.has("transfer-encoding"), "{}", h.raw_str());
            assert!(e.body_len < n, "{e}");
        }
        Framing::Chunked => {
            assert!(
                h.list_contains("transfer-encoding", "chunked"),
                "{}",
                h.raw_str()
            );
            assert!(!h.has("content-length"), "{}", h.raw_str());
        }
        other => panic!("assert_aborted: unsupported framing {other:?}"),
    }
    assert!(
        e.body_len <= max_body,
        "more body than the backend sent: {e}"
    );
}

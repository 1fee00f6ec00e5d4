//! One active health check of one server (HAProxy `check`), on the worker's glommio executor.
//!
//! Control plane: it runs every `interval` per server, never on the request path, so it may allocate
//! (detail strings, the header list); but every read is bounded by a named constant and the whole
//! check (connect + exchange) by the check's `timeout`, so a broken or hostile server can cost at most
//! one bounded buffer and one timeout.
//!
//! The response head goes through the data plane's strict parser (`http::response`): a server that
//! the proxy would answer 502 for does not pass a check either.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::check_io::{
    connect, read_some, scratch_window, write_all, CheckError, Checked, Deadline, MAX_CHECK_BODY,
    MAX_CHECK_HEAD,
};
pub use super::check_io::{Verdict, SCRATCH_LEN};
use super::mysql::mysql_check;
use crate::config::runtime::{CheckKind, HttpCheck};
use crate::error::ProxyError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::{parse_response_head_into, RespFraming};
use crate::limits::MAX_INTERIM_RESPONSES;

/// `expect_body` is quoted in failure details up to this many characters, to keep log lines short.
const MAX_DETAIL_NEEDLE: usize = 40;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Short, one line, for logs: "HTTP 503", "connect: Connection refused (os error 111)",
    /// "timeout after 1s".
    pub detail: String,
    /// Time from the start of the connect to the verdict.
    pub elapsed: Duration,
}

/// The exact request bytes of an HTTP check, built once per server at startup. Without a configured
/// host, the Host header is the server's address (`[v6]:port` for IPv6, as RFC 9110 §7.2 wants).
/// The method, path and host are validated by the config layer (tokens, no CR/LF).
pub fn http_request(check: &HttpCheck, addr: SocketAddr) -> Vec<u8> {
    let host = match &check.host {
        Some(h) => h.clone(),
        None => addr.to_string(),
    };
    format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: corelb-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        check.method, check.path, host
    )
    .into_bytes()
}

/// Runs one check of `addr`; never panics; the whole check (connect + exchange) is bounded by
/// `timeout` (each socket operation gets only the time left). `request` is [`http_request`]'s output
/// for an HTTP check (ignored otherwise). `backup` is the server's `backup` flag: a MySQL reader check
/// passes a backup (the primary) that is alive. `scratch` is a read buffer reused across checks; it is
/// grown once to [`SCRATCH_LEN`] and never beyond.
pub async fn probe(
    kind: &CheckKind,
    request: &[u8],
    addr: SocketAddr,
    timeout: Duration,
    backup: bool,
    scratch: &mut Vec<u8>,
) -> Outcome {
    let start = Instant::now();
    let deadline = Deadline::new(start, timeout);
    let result = match kind {
        CheckKind::Tcp => tcp_check(addr, &deadline).await,
        CheckKind::Http(check) => http_check(check, request, addr, &deadline, scratch).await,
        CheckKind::Mysql(check) => mysql_check(check, backup, addr, &deadline, scratch).await,
    };
    let (verdict, detail) = match result {
        Ok(v) => v,
        Err(e) => (Verdict::Fail, e.to_string()),
    };
    Outcome {
        verdict,
        detail,
        elapsed: start.elapsed(),
    }
}

async fn tcp_check(addr: SocketAddr, deadline: &Deadline) -> Checked {
    // Dropping the stream closes it: the check is the completed handshake.
    let _stream = connect(addr, deadline).await?;
    Ok((Verdict::Pass, "connected".to_string()))
}

async fn http_check(
    check: &HttpCheck,
    request: &[u8],
    addr: SocketAddr,
    deadline: &Deadline,
    scratch: &mut Vec<u8>,
) -> Checked {
    let mut s = connect(addr, deadline).await?;
    write_all(&mut s, request, deadline).await?;

    let buf = scratch_window(scratch);
    let head_request = check.method.eq_ignore_ascii_case("HEAD");
    let (status, framing, body_start, filled) =
        read_head(&mut s, buf, head_request, deadline).await?;

    if status == 404 && check.disable_on_404 {
        return Ok((Verdict::Drain, "HTTP 404 (disable-on-404)".to_string()));
    }
    let (lo, hi) = check.expect_status;
    if !(lo..=hi).contains(&status) {
        return Ok((Verdict::Fail, format!("HTTP {status}")));
    }
    let Some(needle) = &check.expect_body else {
        return Ok((Verdict::Pass, format!("HTTP {status}")));
    };
    let found = search_body(
        &mut s,
        buf,
        framing,
        body_start,
        filled,
        needle.as_bytes(),
        deadline,
    )
    .await?;
    if found {
        Ok((Verdict::Pass, format!("HTTP {status}")))
    } else {
        Ok((
            Verdict::Fail,
            format!("HTTP {status}, body lacks \"{}\"", short(needle)),
        ))
    }
}

/// Reads the final response head into `buf[..MAX_CHECK_HEAD]`, skipping 1xx interim responses
/// (except 101, which is final). Returns (status, framing, head length, bytes in `buf`).
async fn read_head(
    s: &mut TcpStream,
    buf: &mut [u8],
    head_request: bool,
    deadline: &Deadline,
) -> Result<(u16, RespFraming, usize, usize), CheckError> {
    let mut fields = Vec::new();
    let mut filled = 0usize;
    let mut interim = 0usize;
    // Bounded: each pass either reads at least one byte into the MAX_CHECK_HEAD window, returns, or
    // drops an interim head (at most MAX_INTERIM_RESPONSES times).
    loop {
        match parse_response_head_into(&buf[..filled], head_request, &mut fields) {
            Ok(Some(h)) => {
                if (100..200).contains(&h.status) && h.status != 101 {
                    interim += 1;
                    if interim > MAX_INTERIM_RESPONSES {
                        return Err(CheckError::Other("too many 1xx responses".to_string()));
                    }
                    buf.copy_within(h.head_len..filled, 0);
                    filled -= h.head_len;
                    continue;
                }
                return Ok((h.status, h.framing, h.head_len, filled));
            }
            Ok(None) => {}
            Err(ProxyError::BadGateway(why)) => {
                return Err(CheckError::Other(format!("invalid HTTP response ({why})")));
            }
            Err(e) => return Err(CheckError::Other(format!("invalid HTTP response ({e})"))),
        }
        if filled >= MAX_CHECK_HEAD {
            return Err(CheckError::Other(format!(
                "response head over {MAX_CHECK_HEAD} bytes"
            )));
        }
        let n = read_some(s, &mut buf[filled..MAX_CHECK_HEAD], deadline).await?;
        if n == 0 {
            return Err(CheckError::Other(if filled == 0 {
                "connection closed without a response".to_string()
            } else {
                "connection closed in the response head".to_string()
            }));
        }
        filled += n;
    }
}

/// How the body bytes after the head are turned into payload.
enum Body {
    Empty,
    /// Payload bytes still expected.
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilEof,
}

/// Searches the first `MAX_CHECK_BODY` payload bytes for `needle`, reading until it is found, the
/// body ends (EOF, Content-Length, last chunk) or the bound is reached. Payload is gathered
/// contiguously at `buf[body_start..]`: chunked framing is decoded and squeezed out in place, so a
/// needle split across chunks is still found.
async fn search_body(
    s: &mut TcpStream,
    buf: &mut [u8],
    framing: RespFraming,
    body_start: usize,
    filled: usize,
    needle: &[u8],
    deadline: &Deadline,
) -> Result<bool, CheckError> {
    if needle.is_empty() {
        return Ok(true);
    }
    let mut body = match framing {
        RespFraming::NoBody => Body::Empty,
        RespFraming::Length(n) => Body::Length(n),
        RespFraming::Chunked => Body::Chunked(ChunkedDecoder::new()),
        RespFraming::Close => Body::UntilEof,
    };
    // body_start <= MAX_CHECK_HEAD, so the window fits SCRATCH_LEN.
    let limit = body_start.saturating_add(MAX_CHECK_BODY).min(buf.len());
    // Payload is buf[body_start..out]; undecoded raw bytes are buf[out..raw_end].
    let mut out = body_start;
    let mut raw_end = filled.min(limit);
    let mut searched = body_start;
    // Bounded: each pass reads at least one byte into the `limit` window or returns.
    loop {
        // decode consumes every raw byte unless the body is complete (the rest is not body), so the
        // next read goes right after the payload.
        let complete = decode(&mut body, buf, &mut out, raw_end)?;
        if contains(&buf[searched..out], needle) {
            return Ok(true);
        }
        // Keep needle.len() - 1 bytes so a needle split across reads is found next time.
        searched = out.saturating_sub(needle.len() - 1).max(body_start);
        if complete || out >= limit {
            return Ok(false);
        }
        let n = read_some(s, &mut buf[out..limit], deadline).await?;
        if n == 0 {
            // EOF: a truncated Content-Length or chunked body is searched as far as it went.
            return Ok(false);
        }
        raw_end = out + n;
    }
}

/// Turns raw bytes `buf[*out..raw_end]` into payload appended at `*out`. Returns true once the body is
/// complete.
fn decode(
    body: &mut Body,
    buf: &mut [u8],
    out: &mut usize,
    raw_end: usize,
) -> Result<bool, CheckError> {
    match body {
        Body::Empty => Ok(true),
        Body::UntilEof => {
            *out = raw_end;
            Ok(false)
        }
        Body::Length(left) => {
            let avail = raw_end.saturating_sub(*out);
            let take = usize::try_from(*left).map_or(avail, |l| l.min(avail));
            *out += take;
            *left -= take as u64;
            Ok(*left == 0)
        }
        Body::Chunked(dec) => {
            let mut pos = *out;
            // Bounded by raw_end - pos: each pass consumes at least one byte or stops.
            while pos < raw_end && !dec.is_done() {
                let d = dec.decode(&buf[pos..raw_end]).map_err(|e| {
                    CheckError::Other(format!("invalid HTTP response (chunked body: {e})"))
                })?;
                if d.consumed == 0 {
                    break;
                }
                let payload = pos + d.data.start..pos + d.data.end;
                let len = payload.len();
                // Payload lies at or after *out (framing only shrinks), so this moves it left.
                buf.copy_within(payload, *out);
                *out += len;
                pos += d.consumed;
            }
            Ok(dec.is_done())
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `s` escaped onto one line and cut to MAX_DETAIL_NEEDLE characters, for a detail string.
fn short(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_DETAIL_NEEDLE)
        .flat_map(char::escape_default)
        .collect();
    if s.chars().nth(MAX_DETAIL_NEEDLE).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::thread::JoinHandle;

    /// Bound on every blocking step of a mock server, so a broken test fails instead of hanging.
    const MOCK_IO_TIMEOUT: Duration = Duration::from_secs(5);
    /// Largest request a mock reads (the check request is ~100 bytes).
    const MOCK_MAX_REQUEST: usize = 4096;
    /// Bytes the "huge head" mock sends at most: far above MAX_CHECK_HEAD.
    const MOCK_HUGE_BYTES: usize = 1 << 20;

    enum Mock {
        /// Answers these bytes then closes.
        Respond(Vec<u8>),
        /// Reads the request, answers nothing, holds the connection until the client closes.
        Silent,
        /// Sends an endless head until the client goes away or MOCK_HUGE_BYTES.
        HugeHead,
    }

    /// Serves one connection on 127.0.0.1:0; the thread returns the request bytes it received.
    fn mock(behaviour: Mock) -> (SocketAddr, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let h = std::thread::spawn(move || {
            let deadline = Instant::now() + MOCK_IO_TIMEOUT;
            // Bounded by the deadline.
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("mock: no connection: {e}"),
                }
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(MOCK_IO_TIMEOUT)).unwrap();
            conn.set_write_timeout(Some(MOCK_IO_TIMEOUT)).unwrap();
            let req = read_request(&mut conn);
            match behaviour {
                Mock::Respond(bytes) => {
                    let _ = conn.write_all(&bytes);
                }
                Mock::Silent => {
                    // Until the client closes (Ok(0)) or MOCK_IO_TIMEOUT (Err); bounded by the timeout.
                    let mut b = [0u8; 64];
                    let _ = conn.read(&mut b);
                }
                Mock::HugeHead => {
                    // One endless field value: the byte bound trips, not the field-count bound.
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nX-Pad: ");
                    let pad = [b'a'; 1024];
                    // Bounded by MOCK_HUGE_BYTES; stops early when the client has closed.
                    for _ in 0..MOCK_HUGE_BYTES / pad.len() {
                        if conn.write_all(&pad).is_err() {
                            break;
                        }
                    }
                }
            }
            req
        });
        (addr, h)
    }

    /// Reads until the end of the request head, EOF, MOCK_MAX_REQUEST or the socket timeout.
    fn read_request(conn: &mut StdStream) -> Vec<u8> {
        let mut req = Vec::new();
        let mut b = [0u8; 512];
        while req.len() < MOCK_MAX_REQUEST && !req.ends_with(b"\r\n\r\n") {
            match conn.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&b[..n]),
            }
        }
        req
    }

    /// Runs one probe on a fresh glommio executor (1 MiB io memory: RLIMIT_MEMLOCK is small).
    fn run_probe(kind: CheckKind, addr: SocketAddr, timeout: Duration) -> Outcome {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let request = match &kind {
                    CheckKind::Http(c) => http_request(c, addr),
                    CheckKind::Tcp | CheckKind::Mysql(_) => Vec::new(),
                };
                let mut scratch = Vec::new();
                let o = probe(&kind, &request, addr, timeout, false, &mut scratch).await;
                assert!(scratch.len() <= SCRATCH_LEN);
                o
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn http(expect_body: Option<&str>, disable_on_404: bool) -> CheckKind {
        CheckKind::Http(HttpCheck {
            method: "GET".to_string(),
            path: "/health".to_string(),
            host: None,
            expect_status: (200, 399),
            expect_body: expect_body.map(str::to_string),
            disable_on_404,
        })
    }

    const T: Duration = Duration::from_secs(3);

    fn respond(bytes: &[u8], kind: CheckKind) -> (Outcome, Vec<u8>) {
        let (addr, h) = mock(Mock::Respond(bytes.to_vec()));
        let o = run_probe(kind, addr, T);
        (o, h.join().unwrap())
    }

    #[test]
    fn request_bytes_are_exact() {
        let mut c = HttpCheck {
            method: "HEAD".to_string(),
            path: "/ping?x=1".to_string(),
            host: None,
            expect_status: (200, 200),
            expect_body: None,
            disable_on_404: false,
        };
        let v4: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        assert_eq!(
            http_request(&c, v4),
            b"HEAD /ping?x=1 HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUser-Agent: corelb-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        assert!(http_request(&c, v6).starts_with(b"HEAD /ping?x=1 HTTP/1.1\r\nHost: [::1]:81\r\n"));
        c.host = Some("app.example".to_string());
        assert!(
            http_request(&c, v6).starts_with(b"HEAD /ping?x=1 HTTP/1.1\r\nHost: app.example\r\n")
        );
    }

    #[test]
    fn tcp_pass_when_listening() {
        // The kernel completes the handshake from the backlog; no accept needed.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let o = run_probe(CheckKind::Tcp, l.local_addr().unwrap(), T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert!(o.elapsed < T);
    }

    #[test]
    fn tcp_fail_when_refused() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: the port is closed.
        let o = run_probe(CheckKind::Tcp, addr, T);
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert!(o.detail.starts_with("connect: "), "{}", o.detail);
        assert!(o.detail.contains("refused"), "{}", o.detail);
    }

    #[test]
    fn http_pass_on_200_and_sends_the_request() {
        let kind = http(None, false);
        let (addr, h) = mock(Mock::Respond(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ));
        let o = run_probe(kind.clone(), addr, T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert_eq!(o.detail, "HTTP 200");
        let CheckKind::Http(c) = &kind else {
            unreachable!()
        };
        assert_eq!(h.join().unwrap(), http_request(c, addr));
    }

    #[test]
    fn http_fail_on_503() {
        let (o, _) = respond(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            http(None, false),
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(o.detail, "HTTP 503");
    }

    #[test]
    fn http_404_drains_only_with_disable_on_404() {
        let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let (o, _) = respond(resp, http(None, true));
        assert_eq!(o.verdict, Verdict::Drain, "{o:?}");
        let (o, _) = respond(resp, http(None, false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert_eq!(o.detail, "HTTP 404");
    }

    #[test]
    fn http_expect_body_found_and_not_found() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nstatus: ready now";
        let (o, _) = respond(resp, http(Some("ready"), false));
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        let (o, _) = respond(resp, http(Some("healthy"), false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert_eq!(o.detail, "HTTP 200, body lacks \"healthy\"");
        // Bytes after Content-Length are not body.
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloready";
        let (o, _) = respond(resp, http(Some("ready"), false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
    }

    #[test]
    fn http_expect_body_until_eof_and_chunked() {
        let resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall ready";
        let (o, _) = respond(resp, http(Some("ready"), false));
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        // The needle is split across two chunks: found only if the framing is decoded.
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2\r\ndy\r\n0\r\n\r\n";
        let (o, _) = respond(resp, http(Some("ready"), false));
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nready\r\n0\r\n\r\n";
        let (o, _) = respond(resp, http(Some("ready"), false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert!(
            o.detail.starts_with("invalid HTTP response"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn http_garbage_fails() {
        let (o, _) = respond(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", http(None, false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert!(
            o.detail.starts_with("invalid HTTP response"),
            "{}",
            o.detail
        );
        let (o, _) = respond(b"", http(None, false));
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert_eq!(o.detail, "connection closed without a response");
    }

    #[test]
    fn http_skips_interim_responses() {
        let resp =
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (o, _) = respond(resp, http(None, false));
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert_eq!(o.detail, "HTTP 204");
    }

    #[test]
    fn http_silent_server_fails_within_timeout() {
        let (addr, h) = mock(Mock::Silent);
        let timeout = Duration::from_millis(200);
        let o = run_probe(http(None, false), addr, timeout);
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert_eq!(o.detail, "timeout after 200ms");
        assert!(o.elapsed >= Duration::from_millis(150), "{o:?}");
        assert!(o.elapsed < Duration::from_secs(2), "{o:?}");
        // The probe closed the connection, so the mock ends.
        assert!(!h.join().unwrap().is_empty());
    }

    #[test]
    fn http_huge_head_fails_without_hanging() {
        let (addr, h) = mock(Mock::HugeHead);
        let o = run_probe(http(None, false), addr, T);
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
        assert_eq!(
            o.detail,
            format!("response head over {MAX_CHECK_HEAD} bytes")
        );
        assert!(o.elapsed < Duration::from_secs(2), "{o:?}");
        h.join().unwrap();
    }

    #[test]
    fn short_escapes_and_truncates() {
        assert_eq!(short("a\"b\n"), "a\\\"b\\n");
        let long = "x".repeat(100);
        assert_eq!(
            short(&long),
            format!("{}...", "x".repeat(MAX_DETAIL_NEEDLE))
        );
    }
}

//! Shared end-to-end test harness: a corelb subprocess (`corelb`), misbehaving mock backends
//! (`backends`), a raw HTTP/1.1 client (`client`), and the wire helpers both sides share (this file).
//!
//! Every blocking operation has a timeout and every loop a bound, so a broken proxy makes a test fail
//! with a message instead of hanging the suite.
#![allow(dead_code)]

pub mod backends;
pub mod client;
pub mod cluster;
pub mod corelb;
pub mod mariadb;

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Size of one socket read. Big enough that a 1 GiB body moves in a reasonable number of syscalls.
pub const READ_CHUNK: usize = 256 * 1024;
/// Longest head (start line + fields) either side accepts. corelb's own limits are below this.
pub const MAX_HEAD: usize = 128 * 1024;
/// Longest chunk-size line the decoders accept (size + extensions).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section the decoders accept.
pub const MAX_TRAILERS: usize = 64 * 1024;
/// Period of the test body pattern: a prime, so it never lines up with buffer or chunk sizes.
pub const PATTERN_PERIOD: usize = 251;
/// Longest slice `Pattern::slice` can return (and the largest write the generators make).
pub const PATTERN_WINDOW: usize = 1 << 20;

/// Poll `cond` every 10 ms until it is true or `timeout` passes. Returns the last value of `cond`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The deterministic body used by large-body tests: byte `i` is `i % 251`. Any window of the stream
/// is a contiguous slice of `buf`, so generating and checking cost a memcpy / memcmp, not a loop per byte.
pub struct Pattern {
    buf: Vec<u8>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    pub fn new() -> Self {
        let buf = (0..PATTERN_PERIOD + PATTERN_WINDOW)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect();
        Pattern { buf }
    }

    /// One process-wide instance: building it costs ~1 M iterations in a debug build, too much to
    /// pay per request in a mock.
    pub fn shared() -> &'static Pattern {
        static P: std::sync::OnceLock<Pattern> = std::sync::OnceLock::new();
        P.get_or_init(Pattern::new)
    }

    /// The `len` (≤ PATTERN_WINDOW) pattern bytes that start at stream offset `offset`.
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        assert!(len <= PATTERN_WINDOW, "pattern window is {PATTERN_WINDOW}");
        let start = (offset % PATTERN_PERIOD as u64) as usize;
        &self.buf[start..start + len]
    }

    /// Whether `data` equals the pattern at `offset`.
    pub fn matches(&self, offset: u64, data: &[u8]) -> bool {
        let mut off = offset;
        for piece in data.chunks(PATTERN_WINDOW) {
            if piece != self.slice(off, piece.len()) {
                return false;
            }
            off += piece.len() as u64;
        }
        true
    }

    /// A `len`-byte Vec of the pattern from offset 0 (for small bodies).
    pub fn vec(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % PATTERN_PERIOD) as u8).collect()
    }
}

/// A parsed message head. Field values are kept as bytes-turned-lossy-strings: tests compare them
/// against ASCII, and a non-UTF-8 byte shows up as U+FFFD instead of being silently dropped.
#[derive(Debug, Clone)]
pub struct Head {
    /// The first line split at the first two spaces: (method, target, version) for a request,
    /// (version, status, reason) for a response.
    pub line: (String, String, String),
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, including the final CRLFCRLF.
    pub raw: Vec<u8>,
}

impl Head {
    /// Parse `raw` (ending in CRLFCRLF). Strict enough to notice a proxy that emits a broken head:
    /// lines must end in CRLF, field lines need a colon and no whitespace before it.
    pub fn parse(raw: &[u8]) -> Result<Head, String> {
        let text = raw
            .strip_suffix(b"\r\n\r\n")
            .ok_or_else(|| "head does not end in CRLFCRLF".to_string())?;
        let mut lines = Vec::new();
        let mut rest = text;
        loop {
            match find(rest, b"\r\n") {
                Some(i) => {
                    lines.push(&rest[..i]);
                    rest = &rest[i + 2..];
                }
                None => {
                    lines.push(rest);
                    break;
                }
            }
        }
        let first = String::from_utf8_lossy(lines[0]).to_string();
        if first.contains('\r') || first.contains('\n') {
            return Err(format!("bare CR/LF in start line {first:?}"));
        }
        let mut parts = first.splitn(3, ' ');
        let a = parts.next().unwrap_or("").to_string();
        let b = parts.next().unwrap_or("").to_string();
        let c = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        for l in &lines[1..] {
            let colon = l.iter().position(|&c| c == b':').ok_or_else(|| {
                format!("field line without colon: {:?}", String::from_utf8_lossy(l))
            })?;
            let name = &l[..colon];
            if name.is_empty()
                || name
                    .iter()
                    .any(|c| c.is_ascii_whitespace() || *c == b'\r' || *c == b'\n')
            {
                return Err(format!(
                    "bad field name {:?}",
                    String::from_utf8_lossy(name)
                ));
            }
            let value = &l[colon + 1..];
            if value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
                return Err(format!(
                    "CR/LF/NUL in field value {:?}",
                    String::from_utf8_lossy(l)
                ));
            }
            let value = String::from_utf8_lossy(value)
                .trim_matches([' ', '\t'])
                .to_string();
            headers.push((String::from_utf8_lossy(name).to_string(), value));
        }
        Ok(Head {
            line: (a, b, c),
            headers,
            raw: raw.to_vec(),
        })
    }

    /// The value of the only field called `name` (case-insensitive); panics if it occurs twice,
    /// because a test asking this expects exactly one.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut it = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = it.next().map(|(_, v)| v.as_str());
        assert!(
            it.next().is_none(),
            "field {name} occurs more than once in {:?}",
            self.raw_str()
        );
        first
    }

    /// All values of field `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn raw_str(&self) -> String {
        String::from_utf8_lossy(&self.raw).to_string()
    }

    /// Whether the comma-separated list in field(s) `name` contains `token` (case-insensitive).
    pub fn list_contains(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A buffered reader over a TcpStream with an optional overall deadline. Without a deadline each
/// read waits at most `op_timeout`.
pub struct Wire {
    pub stream: TcpStream,
    /// Bytes `start..end` of `buf` are received and not yet consumed. `buf` is zero-filled once
    /// when it grows, never per read (a per-read memset dominated the 1 GiB tests).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub deadline: Option<Instant>,
    pub op_timeout: Duration,
}

impl Wire {
    pub fn new(stream: TcpStream, op_timeout: Duration) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            deadline: None,
            op_timeout,
        }
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Take everything buffered.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let v = self.buffered().to_vec();
        self.consume(v.len());
        v
    }

    /// Read once more from the socket. Ok(0) is EOF. With a deadline, waits until data, EOF or the
    /// deadline (then `TimedOut`); without one, waits at most `op_timeout`.
    pub fn fill(&mut self) -> io::Result<usize> {
        // Bounded: each round waits up to op_timeout and the deadline ends the rounds.
        loop {
            match self.fill_once() {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => match self.deadline {
                    Some(d) if Instant::now() < d => continue,
                    _ => return Err(e),
                },
                r => return r,
            }
        }
    }

    fn fill_once(&mut self) -> io::Result<usize> {
        let timeout = match self.deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                (d - now).min(self.op_timeout)
            }
            None => self.op_timeout,
        };
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        // Make room: move unread bytes to the front, or grow when the buffer is mostly unread data.
        if self.buf.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK {
                let new_len = self.end + READ_CHUNK;
                self.buf.resize(new_len, 0);
            }
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A read that ran out of time is reported uniformly as TimedOut.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Read a head ending in CRLFCRLF. Ok(None) on EOF before any byte. Errors on EOF mid-head,
    /// on heads longer than `max`, and on timeouts.
    pub fn read_head(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut searched: usize = 0;
        loop {
            let b = self.buffered();
            if let Some(i) = find(&b[searched.saturating_sub(3)..], b"\r\n\r\n") {
                let end = searched.saturating_sub(3) + i + 4;
                let head = b[..end].to_vec();
                self.consume(end);
                return Ok(Some(head));
            }
            searched = b.len();
            if b.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            let empty = b.is_empty();
            if self.fill()? == 0 {
                if empty {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside head: {:?}",
                        String::from_utf8_lossy(self.buffered())
                    ),
                ));
            }
        }
    }

    /// Read one CRLF-terminated line (returned without the CRLF). A bare LF is an error.
    pub fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            let b = self.buffered();
            if let Some(i) = b.iter().position(|&c| c == b'\n') {
                if i == 0 || b[i - 1] != b'\r' {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bare LF in line",
                    ));
                }
                let line = b[..i - 1].to_vec();
                self.consume(i + 1);
                return Ok(line);
            }
            if b.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside line",
                ));
            }
        }
    }

    /// Pass exactly `n` bytes to `sink`.
    pub fn read_exact_to(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF with {n} body bytes missing"),
                ));
            }
            let take = (self.buffered().len() as u64).min(n) as usize;
            sink(&self.buffered()[..take]);
            self.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Pass everything up to EOF to `sink`. Returns the byte count. A reset counts as EOF (the
    /// caller asserts on the byte count).
    pub fn read_to_eof_to(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if !self.buffered().is_empty() {
                let b = self.take_buffered();
                total += b.len() as u64;
                sink(&b);
            }
            match self.fill() {
                Ok(0) => return Ok(total),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }

    /// Decode a chunked body strictly (RFC 9112 §7.1): hex sizes only, CRLF after every chunk.
    /// Data goes to `sink`; the raw trailer section (without the final CRLF) is returned.
    pub fn read_chunked_to(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Vec<u8>> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        // Bounded by the body size: every iteration consumes at least a size line.
        loop {
            let line = self.read_line(MAX_CHUNK_LINE)?;
            let size_part = match line.iter().position(|&c| c == b';') {
                Some(i) => &line[..i],
                None => &line[..],
            };
            let size_str =
                std::str::from_utf8(size_part).map_err(|_| bad("non-ASCII chunk size".into()))?;
            let size_str = size_str.trim_end_matches([' ', '\t']);
            if size_str.is_empty()
                || size_str.len() > 16
                || !size_str.bytes().all(|c| c.is_ascii_hexdigit())
            {
                return Err(bad(format!(
                    "bad chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            let size = u64::from_str_radix(size_str, 16).map_err(|e| bad(e.to_string()))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let t = self.read_line(MAX_CHUNK_LINE)?;
                    if t.is_empty() {
                        return Ok(trailers);
                    }
                    trailers.extend_from_slice(&t);
                    trailers.extend_from_slice(b"\r\n");
                    if trailers.len() > MAX_TRAILERS {
                        return Err(bad("trailers too long".into()));
                    }
                }
            }
            self.read_exact_to(size, sink)?;
            let crlf = self.read_line(2)?;
            if !crlf.is_empty() {
                return Err(bad("chunk data not followed by CRLF".into()));
            }
        }
    }
}

/// Write `len` pattern bytes to `w` as one chunked body with chunks of `chunk` bytes, using large
/// writes (the chunk header is written with its data). Ends with the last chunk and `trailers`.
pub fn write_chunked_pattern(
    w: &mut impl io::Write,
    pattern: &Pattern,
    len: u64,
    chunk: usize,
    trailers: &[u8],
) -> io::Result<()> {
    let chunk = chunk.min(PATTERN_WINDOW);
    let mut off = 0u64;
    let mut out = Vec::with_capacity(chunk + 32);
    while off < len {
        let n = ((len - off) as usize).min(chunk);
        out.clear();
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(pattern.slice(off, n));
        out.extend_from_slice(b"\r\n");
        w.write_all(&out)?;
        off += n as u64;
    }
    w.write_all(b"0\r\n")?;
    w.write_all(trailers)?;
    w.write_all(b"\r\n")
}

/// Write `len` pattern bytes to `w` raw (for Content-Length bodies and close-delimited bodies).
pub fn write_pattern(w: &mut impl io::Write, pattern: &Pattern, len: u64) -> io::Result<()> {
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(PATTERN_WINDOW);
        w.write_all(pattern.slice(off, n))?;
        off += n as u64;
    }
    Ok(())
}

/// A port on 127.0.0.1 that refuses connections (bound then released; nothing else in the test
/// process binds fixed ports, so it stays free for the test's duration in practice).
pub fn refused_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// Assert `r` is one of corelb's local error answers: `HTTP/1.1 <code> <reason>`, `Connection: close`
/// and a short body.
pub fn assert_local_error(r: &client::Response, code: u16) {
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
    let mut c = client::Client::connect(addr);
    let _ = c.try_send(raw);
    let r = c
        .try_read_response(false, client::RESPONSE_DEADLINE)
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
pub fn assert_aborted(e: &client::ReadError, status: u16, framing: client::Framing, max_body: u64) {
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
        client::Framing::Length(n) => {
            assert_eq!(
                h.header("content-length"),
                Some(n.to_string().as_str()),
                "{}",
                h.raw_str()
            );
            assert!(!h.has("transfer-encoding"), "{}", h.raw_str());
            assert!(e.body_len < n, "{e}");
        }
        client::Framing::Chunked => {
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

//! The wire helpers both sides of a test share: a strict message-head parser (`Head`), a buffered
//! reader with deadlines (`Wire`) that decodes Content-Length, chunked and close-delimited bodies, and
//! the deterministic body `Pattern` the large-body tests send and check.

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

/// The Content-Length of a message the proxy sent: must be one field of plain digits.
pub fn single_content_length(head: &Head) -> Result<Option<u64>, String> {
    let cls = head.headers_named("content-length");
    match cls.as_slice() {
        [] => Ok(None),
        [v] if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|e| format!("CL {v:?}: {e}")),
        other => Err(format!("bad Content-Length from the proxy: {other:?}")),
    }
}

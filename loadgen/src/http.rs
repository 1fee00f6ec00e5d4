//! HTTP/1.1 response reading for the generator: the head parsed with httparse, the body drained by its
//! framing (RFC 9112 §6.3) through one fixed-size buffer that never grows, so a huge or endless body
//! costs bounded memory. Everything the server sends is untrusted: malformed framing is a parse error,
//! never a panic.

use std::future::Future;
use std::io;

/// Read buffer per connection (so memory is about connections x 32 KiB). A response head must fit in
/// it (a larger head is a parse error; servers cap theirs well below this); bodies stream through it.
pub const READ_BUF: usize = 32 * 1024;
/// Header fields parsed per response head; more is a parse error (httparse TooManyHeaders).
pub const MAX_HEADERS: usize = 64;
/// Longest X-Served-By value kept; longer values are cut (it names a backend, not data).
pub const MAX_SERVED_BY: usize = 64;
/// Interim (1xx) responses skipped before the final one; a server that sends more is broken.
const MAX_INTERIM: usize = 8;

/// Why an exchange failed, by the report's error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExchError {
    #[error("read")]
    Read,
    #[error("parse")]
    Parse,
}

/// A byte source: a socket in the generator, a slice in tests. `Ok(0)` is EOF. Timeouts are the
/// caller's (the generator's watchdog shuts a late socket down, which ends the read).
pub(crate) trait Source {
    fn read_some(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
}

/// The X-Served-By value of a response, copied to the stack (no allocation per response).
#[derive(Debug, Clone, Copy)]
pub struct ServedBy {
    len: u8,
    bytes: [u8; MAX_SERVED_BY],
}

impl ServedBy {
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        // The copy is cut at a byte count: keep only the valid UTF-8 prefix.
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    /// The connection may carry another request (RFC 9112 §9.3).
    pub keep_alive: bool,
    pub served_by: Option<ServedBy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    keep_alive: bool,
    framing: Framing,
    served_by: Option<ServedBy>,
}

pub struct Reader {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(READ_BUF)
    }
}

impl Reader {
    pub fn new(cap: usize) -> Reader {
        Reader {
            data: vec![0; cap.max(64)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Drops buffered bytes (after the connection is replaced).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes received beyond the last complete response (a stray byte on an idle keep-alive
    /// connection means the framing was off).
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    fn filled(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes. Ok(false): EOF.
    async fn fill<S: Source>(&mut self, s: &mut S) -> Result<bool, ExchError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            // A head or chunk-size line that does not fit the buffer.
            return Err(ExchError::Parse);
        }
        let spare = self.data.get_mut(self.end..).unwrap_or(&mut []);
        match s.read_some(spare).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.end = self.end.saturating_add(n).min(self.data.len());
                Ok(true)
            }
            Err(_) => Err(ExchError::Read),
        }
    }

    /// Reads one complete response (skipping interim 1xx ones) and drains its body.
    pub(crate) async fn read_response<S: Source>(
        &mut self,
        s: &mut S,
        head_request: bool,
    ) -> Result<Response, ExchError> {
        let mut interim = 0;
        let head = loop {
            match self.parse_head(head_request)? {
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    // RFC 9110 §15.2: interim responses precede the final one; they have no body.
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(ExchError::Parse);
                    }
                }
                Some(h) => break h,
                None => {
                    if !self.fill(s).await? {
                        return Err(ExchError::Read);
                    }
                }
            }
        };
        let mut keep_alive = head.keep_alive;
        match head.framing {
            Framing::None => {}
            Framing::Length(n) => self.drain(s, n).await?,
            Framing::Chunked => self.drain_chunked(s).await?,
            Framing::UntilClose => {
                // RFC 9112 §6.3 rule 8: the body ends when the server closes.
                loop {
                    let n = self.buffered();
                    self.consume(n);
                    if !self.fill(s).await? {
                        break;
                    }
                }
                keep_alive = false;
            }
        }
        Ok(Response {
            status: head.status,
            keep_alive,
            served_by: head.served_by,
        })
    }

    /// Ok(None): the head is not complete yet.
    fn parse_head(&mut self, head_request: bool) -> Result<Option<Head>, ExchError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(self.filled()) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ExchError::Parse),
        };
        let status = resp.code.ok_or(ExchError::Parse)?;
        let http10 = resp.version == Some(0);
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut length: Option<u64> = None;
        let mut te: Option<bool> = None; // Some(chunked is the final coding)
        let mut served_by = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_length(h.value).ok_or(ExchError::Parse)?;
                // RFC 9112 §6.3 rule 5: differing Content-Length values are unrecoverable.
                if length.is_some_and(|l| l != v) {
                    return Err(ExchError::Parse);
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h
                    .value
                    .split(|&b| b == b',')
                    .map(trim)
                    .rfind(|t| !t.is_empty());
                te = Some(last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for t in h.value.split(|&b| b == b',').map(trim) {
                    conn_close |= t.eq_ignore_ascii_case(b"close");
                    conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if h.name.eq_ignore_ascii_case("x-served-by") {
                let v = trim(h.value);
                let len = v.len().min(MAX_SERVED_BY);
                let mut bytes = [0u8; MAX_SERVED_BY];
                bytes[..len].copy_from_slice(&v[..len]);
                served_by = Some(ServedBy {
                    len: len as u8,
                    bytes,
                });
            }
        }
        // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        let mut keep_alive = !conn_close && (!http10 || conn_keep_alive);
        // RFC 9112 §6.3: the body length, in the rules' order.
        let framing =
            if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
                Framing::None
            } else if let Some(chunked) = te {
                // Rule 3: Transfer-Encoding overrides Content-Length; such a message is a smuggling
                // hint, so the connection is not reused.
                if length.is_some() {
                    keep_alive = false;
                }
                if chunked {
                    Framing::Chunked
                } else {
                    Framing::UntilClose
                }
            } else if let Some(l) = length {
                Framing::Length(l)
            } else {
                Framing::UntilClose
            };
        self.consume(n);
        Ok(Some(Head {
            status,
            keep_alive,
            framing,
            served_by,
        }))
    }

    async fn drain<S: Source>(&mut self, s: &mut S, mut left: u64) -> Result<(), ExchError> {
        loop {
            let have = self.buffered() as u64;
            let take = have.min(left);
            self.consume(take as usize);
            left -= take;
            if left == 0 {
                return Ok(());
            }
            if !self.fill(s).await? {
                return Err(ExchError::Read);
            }
        }
    }

    /// Consumes one line (up to LF) and returns what `f` makes of it (without CRLF).
    async fn line<S: Source, T>(
        &mut self,
        s: &mut S,
        f: impl Fn(&[u8]) -> Result<T, ExchError>,
    ) -> Result<T, ExchError> {
        loop {
            if let Some(i) = self.filled().iter().position(|&b| b == b'\n') {
                let line = self.filled().get(..i).unwrap_or(&[]);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let r = f(line);
                self.consume(i + 1);
                return r;
            }
            if !self.fill(s).await? {
                return Err(ExchError::Read);
            }
        }
    }

    /// RFC 9112 §7.1: chunk-size [ext] CRLF data CRLF ... 0 CRLF trailers CRLF.
    async fn drain_chunked<S: Source>(&mut self, s: &mut S) -> Result<(), ExchError> {
        loop {
            let size = self.line(s, parse_chunk_size).await?;
            if size == 0 {
                // Trailer section: field lines until an empty line (§7.1.2).
                while !self.line(s, |l| Ok(l.is_empty())).await? {}
                return Ok(());
            }
            self.drain(s, size).await?;
            let empty = self.line(s, |l| Ok(l.is_empty())).await?;
            if !empty {
                return Err(ExchError::Parse);
            }
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    v.get(s..e).unwrap_or(&[])
}

/// RFC 9110 §8.6: Content-Length = 1*DIGIT (no sign, no spaces inside), without overflow.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// RFC 9112 §7.1: chunk-size = 1*HEXDIG, optionally followed by `;ext` (ignored).
fn parse_chunk_size(line: &[u8]) -> Result<u64, ExchError> {
    let hex = line.split(|&b| b == b';').next().map(trim).unwrap_or(&[]);
    if hex.is_empty() {
        return Err(ExchError::Parse);
    }
    hex.iter()
        .try_fold(0u64, |acc, &b| {
            let d = (b as char).to_digit(16)?;
            acc.checked_mul(16)?.checked_add(u64::from(d))
        })
        .ok_or(ExchError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out the input a few bytes at a time, so every parser state sees a split.
    struct Slice<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Source for Slice<'_> {
        async fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn read_all(input: &[u8], head: bool, cap: usize) -> Vec<Result<Response, ExchError>> {
        let mut out = Vec::new();
        for step in [1, 3, 7, 4096] {
            let mut r = Reader::new(cap);
            let mut s = Slice { data: input, step };
            let mut v = Vec::new();
            loop {
                let x = futures_lite::future::block_on(r.read_response(&mut s, head));
                let stop = x.is_err() || x.is_ok_and(|x| !x.keep_alive);
                v.push(x);
                if stop || (s.data.is_empty() && r.buffered() == 0) {
                    break;
                }
            }
            if step == 1 {
                out = v;
            } else {
                assert_eq!(format!("{out:?}"), format!("{v:?}"), "step {step}");
            }
        }
        out
    }

    #[test]
    fn content_length_and_chunked_pipelined() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Served-By: app1\r\n\r\nhelloHTTP/1.1 503 NO\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204 No\r\nContent-Length: 9\r\n\r\n";
        let v = read_all(input, false, 64);
        assert_eq!(v.len(), 3, "{v:?}");
        let r0 = v[0].unwrap();
        assert_eq!(r0.status, 200);
        assert_eq!(r0.served_by.unwrap().as_str(), "app1");
        assert_eq!(v[1].unwrap().status, 503);
        assert_eq!(v[2].unwrap().status, 204);
        assert!(v[2].unwrap().keep_alive);
    }

    #[test]
    fn until_close_and_http10() {
        let v = read_all(b"HTTP/1.0 200 OK\r\n\r\nbody body", false, 64);
        assert_eq!(v.len(), 1);
        assert!(!v[0].unwrap().keep_alive);
        let v = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, 64);
        assert_eq!(v[0].unwrap().status, 200);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        ];
        for c in cases {
            let v = read_all(c, false, 64);
            assert!(
                v.last().unwrap().is_err(),
                "{:?}: {v:?}",
                String::from_utf8_lossy(c)
            );
        }
    }
}

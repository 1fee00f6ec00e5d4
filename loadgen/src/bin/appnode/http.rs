//! The app node's HTTP/1.1 server side (RFC 9112): reads one request at a time from a blocking
//! socket into a bounded buffer, frames its body strictly (Content-Length or chunked), and writes
//! responses that always carry Content-Length. Anything ambiguous is answered with a 4xx/5xx and the
//! connection is closed (the framing of what follows can no longer be trusted).

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Request line plus header block: what a benchmark client or a load balancer sends is far below
/// this; more is refused with 431 (RFC 9110 §15.5.20) rather than buffered without end.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body accepted (a JSON object with a 64-character name needs ~100 bytes).
pub const MAX_BODY: usize = 4 * 1024;
/// Chunked framing overhead allowed on top of `MAX_BODY` (chunk-size lines, extensions, trailers),
/// so a body of many tiny chunks cannot make the buffer grow past a fixed bound.
const MAX_CHUNKED_OVERHEAD: usize = 4 * 1024;
/// Header fields parsed per request; httparse fills a fixed array of this size (a full one is 431).
pub const MAX_HEADERS: usize = 32;
/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 4 * 1024;
/// Digits in a chunk-size: 16 hex digits already exceed any body we accept.
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Why a request could not be read. Each maps to one response status, after which the connection is
/// closed; `Io` and `Eof` mean the peer is gone or too slow and nothing is answered.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request head larger than {MAX_HEAD} bytes or more than {MAX_HEADERS} fields")]
    HeadTooLarge,
    #[error("request body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
    #[error("connection closed in the middle of a request")]
    Eof,
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

impl HttpError {
    /// The status to answer with, or None when the connection is unusable.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::BadRequest(_) => Some(400),
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge => Some(413),
            HttpError::UnsupportedCoding => Some(501),
            HttpError::Eof | HttpError::Io(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The origin-form target without its query.
    pub path: String,
    pub body: Vec<u8>,
    /// False when the client asked to close (RFC 9112 §9.6) or spoke HTTP/1.0.
    pub keep_alive: bool,
}

/// How the body of the request being read is framed (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
}

/// What the head of a request told us, copied out of the buffer so it can be consumed.
struct Head {
    method: Method,
    path: String,
    keep_alive: bool,
    framing: Framing,
    len: usize,
}

/// One client connection: the socket and the bytes read from it but not yet consumed (pipelined
/// requests stay here until their turn).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(2 * 1024),
        }
    }

    /// Reads the next request. `Ok(None)` is a clean close between requests.
    pub fn read_request(&mut self) -> Result<Option<Request>, HttpError> {
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(HttpError::HeadTooLarge);
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HttpError::Eof)
                };
            }
        };
        let body = match head.framing {
            Framing::Length(len) => {
                let end = head.len.checked_add(len).ok_or(HttpError::BodyTooLarge)?;
                while self.buf.len() < end {
                    if self.fill()? == 0 {
                        return Err(HttpError::Eof);
                    }
                }
                let body = self.buf.get(head.len..end).unwrap_or_default().to_vec();
                self.buf.drain(..end);
                body
            }
            Framing::Chunked => loop {
                let wire = self.buf.get(head.len..).unwrap_or_default();
                if let Some((body, used)) = decode_chunked(wire)? {
                    let end = head.len.saturating_add(used);
                    self.buf.drain(..end.min(self.buf.len()));
                    break body;
                }
                if wire.len() >= MAX_BODY + MAX_CHUNKED_OVERHEAD {
                    return Err(HttpError::BodyTooLarge);
                }
                if self.fill()? == 0 {
                    return Err(HttpError::Eof);
                }
            },
        };
        Ok(Some(Request {
            method: head.method,
            path: head.path,
            body,
            keep_alive: head.keep_alive,
        }))
    }

    /// Appends one read's worth of bytes to the buffer; returns how many (0 at EOF).
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// Writes one response. `head_only` leaves the body out (HEAD, RFC 9110 §9.3.2) but keeps its
    /// Content-Length.
    pub fn write_response(
        &mut self,
        resp: &Response,
        served_by: &str,
        keep_alive: bool,
        head_only: bool,
    ) -> io::Result<()> {
        self.out.clear();
        let out = &mut self.out;
        write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Served-By: {}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.body.len(),
            served_by
        )?;
        for (name, value) in &resp.headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&resp.body);
        }
        self.stream.write_all(&self.out)
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: std::borrow::Cow<'static, [u8]>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(value).unwrap_or_default().into(),
        }
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Parses a complete request head at the start of `buf`, or returns None if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest("unparsable request head")),
    };
    if len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let version = req.version.unwrap_or(0);
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("");
    // Only origin-form targets are served (RFC 9112 §3.2.1); `#` never belongs in a target.
    if !target.starts_with('/') || target.contains('#') {
        return Err(HttpError::BadRequest(
            "request target is not in origin-form",
        ));
    }
    let path = target.split('?').next().unwrap_or("").to_string();

    let mut hosts = 0usize;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = version == 0;
    for field in req.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts = hosts.saturating_add(1);
        } else if name.eq_ignore_ascii_case("content-length") {
            // Repeated or listed values must all agree (RFC 9112 §6.3 item 5).
            for value in field.value.split(|&b| b == b',') {
                let n = parse_decimal(trim_ows(value))
                    .ok_or(HttpError::BadRequest("invalid Content-Length"))?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::BadRequest("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a single `chunked` is understood; anything else (other codings, `chunked`
            // twice, obfuscations) is refused (RFC 9112 §6.1, §7).
            if chunked || !trim_ows(field.value).eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::UnsupportedCoding);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let wants_close = field
                .value
                .split(|&b| b == b',')
                .any(|token| trim_ows(token).eq_ignore_ascii_case(b"close"));
            close |= wants_close;
        }
    }
    // HTTP/1.1 requests carry exactly one Host (RFC 9112 §3.2).
    if version == 1 && hosts != 1 {
        return Err(HttpError::BadRequest("missing or repeated Host"));
    }
    let framing = match (chunked, length) {
        // Both present is a smuggling attempt or a broken client (RFC 9112 §6.1).
        (true, Some(_)) => {
            return Err(HttpError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        // HTTP/1.0 has no chunked coding; its framing cannot be trusted (RFC 9112 §6.1).
        (true, None) if version == 0 => {
            return Err(HttpError::BadRequest("Transfer-Encoding in HTTP/1.0"))
        }
        (true, None) => Framing::Chunked,
        (false, Some(n)) if n > MAX_BODY => return Err(HttpError::BodyTooLarge),
        (false, Some(n)) => Framing::Length(n),
        // Neither: no body (RFC 9112 §6.3 item 7); never read a request to EOF.
        (false, None) => Framing::Length(0),
    };
    Ok(Some(Head {
        method,
        path,
        keep_alive: !close,
        framing,
        len,
    }))
}

/// Optional whitespace around field values and list elements (RFC 9110 §5.6.3).
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A non-empty run of ASCII digits, without overflow. `str::parse` would also take "+5".
fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0usize, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

/// Decodes a complete chunked body at the start of `wire` (RFC 9112 §7.1): returns the body and the
/// bytes it used, None when incomplete. Chunk extensions are skipped; trailer fields are discarded.
fn decode_chunked(wire: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let bad = HttpError::BadRequest("malformed chunked body");
    let mut body = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = wire.get(pos..).unwrap_or_default();
        let Some(line_len) = find_crlf(rest) else {
            return Ok(None);
        };
        let line = rest.get(..line_len).unwrap_or_default();
        // chunk-size [ chunk-ext ]: the size is 1*HEXDIG, an extension starts with ';' (after
        // optional whitespace, RFC 9112 §7.1.1) and may not hold control bytes.
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > MAX_CHUNK_SIZE_DIGITS {
            return Err(bad);
        }
        let ext = trim_ows(line.get(digits..).unwrap_or_default());
        if !(ext.is_empty() || ext.first() == Some(&b';'))
            || ext.iter().any(|&b| b.is_ascii_control() && b != b'\t')
        {
            return Err(bad);
        }
        let size = line
            .get(..digits)
            .unwrap_or_default()
            .iter()
            .try_fold(0usize, |acc, &b| {
                let d = (b as char).to_digit(16)?;
                acc.checked_mul(16)?.checked_add(d as usize)
            })
            .ok_or(HttpError::BodyTooLarge)?;
        pos = pos.saturating_add(line_len + 2);
        if size == 0 {
            // Trailer section: field lines up to an empty line, all dropped.
            loop {
                let rest = wire.get(pos..).unwrap_or_default();
                let Some(line_len) = find_crlf(rest) else {
                    return Ok(None);
                };
                pos = pos.saturating_add(line_len + 2);
                if line_len == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(HttpError::BodyTooLarge);
        }
        let end = pos.saturating_add(size);
        let Some(data) = wire.get(pos..end) else {
            return Ok(None);
        };
        match wire.get(end..end.saturating_add(2)) {
            Some(b"\r\n") => {}
            Some(_) => return Err(bad),
            // Fewer than 2 bytes after the data: wait, unless the one there is already wrong.
            None if wire.get(end).is_none_or(|&b| b == b'\r') => return Ok(None),
            None => return Err(bad),
        }
        body.extend_from_slice(data);
        pos = end + 2;
    }
}

/// Length of the line before the first CRLF. A bare LF or CR inside the line is refused by the
/// caller's checks (it is a control byte, or not a hex digit).
fn find_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, HttpError> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn content_length_rules() {
        let ok = head("POST /items HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        assert!(matches!(
            ok,
            Ok(Some(Head {
                framing: Framing::Length(5),
                ..
            }))
        ));
        for bad in ["+5", "-1", "0x10", "", "5 5", "99999999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(head(&raw), Err(HttpError::BadRequest(_))),
                "Content-Length {bad:?} must be refused"
            );
        }
        let differ = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(head(differ), Err(HttpError::BadRequest(_))));
        let same = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\n";
        assert!(matches!(
            head(same),
            Ok(Some(Head {
                framing: Framing::Length(2),
                ..
            }))
        ));
        let big = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(head(&big), Err(HttpError::BodyTooLarge)));
    }

    #[test]
    fn transfer_encoding_rules() {
        let both =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(both), Err(HttpError::BadRequest(_))));
        for te in [
            "gzip",
            "xchunked",
            "chunked;x",
            "chunked, chunked",
            "gzip, chunked",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(
                matches!(head(&raw), Err(HttpError::UnsupportedCoding)),
                "Transfer-Encoding {te:?} must be refused"
            );
        }
        let http10 = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(http10), Err(HttpError::BadRequest(_))));
    }

    #[test]
    fn host_and_connection_rules() {
        assert!(matches!(
            head("GET / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        let two = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        assert!(matches!(head(two), Err(HttpError::BadRequest(_))));
        let close = head("GET /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(
            matches!(close, Ok(Some(Head { keep_alive: false, ref path, .. })) if path == "/x")
        );
        let http10 = head("GET / HTTP/1.0\r\n\r\n");
        assert!(matches!(
            http10,
            Ok(Some(Head {
                keep_alive: false,
                ..
            }))
        ));
        let absolute = head("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(absolute, Err(HttpError::BadRequest(_))));
        assert!(matches!(head("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert!(matches!(head(&raw), Err(HttpError::HeadTooLarge)));
    }

    #[test]
    fn chunked_decoding() {
        let (body, used) = decode_chunked(b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\nNEXT")
            .unwrap()
            .unwrap();
        assert_eq!(body, b"hello!");
        assert_eq!(used, 35);
        assert!(decode_chunked(b"5\r\nhel").unwrap().is_none());
        assert!(decode_chunked(b"5\r\nhello\r").unwrap().is_none());
        assert!(decode_chunked(b"0\r\n").unwrap().is_none());
        let bad_bodies: [&[u8]; 5] = [
            b"\r\n",
            b"z\r\n",
            b"5\r\nhelloXY",
            b"5 x\r\nhello\r\n",
            b"1\x00\r\n",
        ];
        for bad in bad_bodies {
            assert!(decode_chunked(bad).is_err(), "{bad:?} must be refused");
        }
        let huge = format!("{:x}\r\n", MAX_BODY + 1);
        assert!(matches!(
            decode_chunked(huge.as_bytes()),
            Err(HttpError::BodyTooLarge)
        ));
        assert!(decode_chunked(b"fffffffffffffffffff\r\n").is_err());
    }
}

//! Request head parsing: httparse (strict, no lenient flags) into offsets of the read buffer, then the
//! framing and routing facts corelb needs, with every ambiguity rejected (RFC 9112 §3, §6; RFC 9110 §7).

use std::mem::MaybeUninit;

use crate::config::HttpLimits;
use crate::error::ProxyError;
use crate::http::fields::{
    classify, fold_content_length, list_elements, mark_connection_listed, ConnectionTokens,
    HeaderField, HeaderKind, Span, TeAccumulator, TransferCoding,
};
use crate::limits::CEILING_HEADERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// RFC 9110 §9.2.2: only these may be retried automatically after a failure.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// How the request body is delimited (RFC 9112 §6.3). A request is never read to EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, final CRLF CRLF included.
    pub head_len: usize,
    pub method: Method,
    pub method_span: Span,
    /// The origin-form path and query to send to the backend (for absolute-form: its path part).
    pub path: Span,
    /// The absolute-form path was empty or started with '?': send a '/' before `path`.
    pub path_needs_slash: bool,
    /// The request came in absolute-form; its authority replaces Host (RFC 9112 §3.2.2).
    pub absolute_form: bool,
    /// `*` (OPTIONS only).
    pub asterisk: bool,
    pub http10: bool,
    /// The host (authority, or the Host field) with port, as received.
    pub host: Span,
    /// The host without its port, for routing (compare case-insensitively).
    pub host_name: Span,
    pub framing: BodyFraming,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// Protocol the client asks to switch to (Upgrade + Connection: upgrade; never h2c).
    pub upgrade: Option<Span>,
    pub expect_continue: bool,
}

/// The size limits that apply to an INCOMPLETE head (414 for the request line, 431 for the fields),
/// without parsing it: every byte after the request line counts as a header byte, so this must not be
/// applied to a buffer holding a complete head and body bytes. Returns where the request line ends.
pub fn check_partial_limits(buf: &[u8], limits: &HttpLimits) -> Result<Option<usize>, ProxyError> {
    let max_line = limits.max_request_line.get();
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        Some(n) if n + 1 > max_line.saturating_add(2) => Err(ProxyError::UriTooLong),
        None if buf.len() > max_line => Err(ProxyError::UriTooLong),
        Some(n) if buf.len() - (n + 1) > limits.max_header_bytes.get().saturating_add(2) => {
            Err(ProxyError::HeadersTooLarge)
        }
        _ => Ok(line_end),
    }
}

/// Convenience for tests and fuzzing: parses into a fresh field vector.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HttpLimits,
) -> Result<Option<RequestHead>, ProxyError> {
    let mut fields = Vec::with_capacity(limits.max_headers.get());
    parse_request_head_into(buf, limits, &mut fields)
}

/// Parses a request head from the start of `buf`.
/// `Ok(None)`: incomplete, read more (the limits are already checked against what is there).
/// `fields` is cleared and refilled (its capacity is reused: no allocation in steady state).
pub fn parse_request_head_into(
    buf: &[u8],
    limits: &HttpLimits,
    fields: &mut Vec<HeaderField>,
) -> Result<Option<RequestHead>, ProxyError> {
    fields.clear();
    let max_line = limits.max_request_line.get();
    let max_fields_bytes = limits.max_header_bytes.get();
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line. We do not:
    // leading CRLFs are treated as malformed only when not followed by a request; httparse skips them.
    // The request line limit holds whether or not the head is complete (414).
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        Some(n) if n + 1 > max_line.saturating_add(2) => return Err(ProxyError::UriTooLong),
        None if buf.len() > max_line => return Err(ProxyError::UriTooLong),
        _ => {}
    }

    let max_headers = limits.max_headers.get().min(CEILING_HEADERS);
    let mut storage: [MaybeUninit<httparse::Header<'_>>; CEILING_HEADERS] =
        [const { MaybeUninit::uninit() }; CEILING_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut storage[..max_headers]);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // Incomplete: everything after the request line is header bytes so far (431).
            check_partial_limits(buf, limits)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ProxyError::HeadersTooLarge),
        // httparse reports any bad token after the target as a version error: only a well-formed
        // `HTTP/x.y` that is not 1.0 or 1.1 deserves 505 (RFC 9110 §15.6.6); anything else is a
        // malformed request line.
        Err(httparse::Error::Version) if well_formed_other_version(buf) => {
            return Err(ProxyError::VersionNotSupported)
        }
        Err(_) => return Err(ProxyError::BadRequest("malformed request head")),
    };
    let line = line_end.map(|n| n + 1).unwrap_or(head_len);
    if head_len.saturating_sub(line) > max_fields_bytes.saturating_add(2) {
        return Err(ProxyError::HeadersTooLarge);
    }

    let method_bytes = req.method.unwrap_or("").as_bytes();
    let target = req.path.unwrap_or("").as_bytes();
    let http10 = req.version == Some(0);
    let method = Method::from_bytes(method_bytes);
    if method_bytes == b"CONNECT" {
        // corelb is a reverse proxy: no tunnelling to arbitrary authorities.
        return Err(ProxyError::MethodNotAllowed("CONNECT"));
    }

    // Request target forms (RFC 9112 §3.2). A fragment is never sent on the wire (RFC 9110 §4.2.5).
    if target.contains(&b'#') {
        return Err(ProxyError::BadRequest("fragment in request target"));
    }
    let mut path = Span::of(buf, target);
    let mut path_needs_slash = false;
    let mut absolute_form = false;
    let mut authority: Option<&[u8]> = None;
    let asterisk = target == b"*";
    if asterisk {
        if method != Method::Options {
            return Err(ProxyError::BadRequest(
                "asterisk-form with a method other than OPTIONS",
            ));
        }
    } else if target.first() != Some(&b'/') {
        let rest = strip_scheme(target)
            .ok_or(ProxyError::BadRequest("unsupported request target form"))?;
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let (auth, p) = rest.split_at(end);
        if auth.contains(&b'@') {
            // userinfo is deprecated and a phishing vector (RFC 9110 §4.2.4).
            return Err(ProxyError::BadRequest("userinfo in request target"));
        }
        authority = Some(auth);
        absolute_form = true;
        path = Span::of(buf, p);
        path_needs_slash = p.first() != Some(&b'/');
    }

    let mut host_field: Option<Span> = None;
    let mut host_count = 0u32;
    let mut content_length: Option<u64> = None;
    let mut cl_seen = false;
    let mut te = TeAccumulator::default();
    let mut te_seen = false;
    let mut conn = ConnectionTokens::default();
    let mut upgrade: Option<Span> = None;
    let mut upgrade_count = 0u32;
    let mut expect_continue = false;

    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let kind = classify(name);
        let value = Span::of(buf, h.value);
        match kind {
            HeaderKind::Host => {
                host_count += 1;
                host_field = Some(value);
            }
            HeaderKind::ContentLength => {
                cl_seen = true;
                content_length = Some(
                    fold_content_length(content_length, h.value)
                        .ok_or(ProxyError::BadRequest("invalid Content-Length"))?,
                );
            }
            HeaderKind::TransferEncoding => {
                te_seen = true;
                te.add(h.value);
            }
            HeaderKind::Connection => conn.add(buf, value),
            HeaderKind::Upgrade => {
                upgrade_count += 1;
                upgrade = Some(value);
            }
            HeaderKind::Expect => {
                if http10 {
                    // RFC 9110 §10.1.1: ignore 100-continue in HTTP/1.0 requests.
                } else if h.value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(ProxyError::ExpectationFailed);
                }
            }
            _ => {}
        }
        fields.push(HeaderField {
            name: Span::of(buf, name),
            value,
            kind,
        });
    }
    if conn.overflow {
        return Err(ProxyError::BadRequest("too many names in Connection"));
    }
    mark_connection_listed(buf, fields, &conn);

    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, valid; absolute-form authority wins.
    if host_count > 1 {
        return Err(ProxyError::BadRequest("more than one Host"));
    }
    if !http10 && host_count == 0 {
        return Err(ProxyError::BadRequest("missing Host"));
    }
    if let Some(h) = host_field {
        if !valid_host(h.get(buf)) {
            return Err(ProxyError::BadRequest("invalid Host"));
        }
    }
    let host = match authority {
        Some(a) => {
            if !valid_host(a) {
                return Err(ProxyError::BadRequest("invalid authority"));
            }
            Span::of(buf, a)
        }
        None => host_field.unwrap_or_default(),
    };
    let host_name = host_without_port(buf, host);

    // Framing (RFC 9112 §6.1, §6.3).
    let framing = if te_seen {
        if http10 {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if cl_seen {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        match te.finish() {
            TransferCoding::Chunked => BodyFraming::Chunked,
            TransferCoding::Unsupported => return Err(ProxyError::NotImplemented),
            TransferCoding::Invalid => {
                return Err(ProxyError::BadRequest("invalid Transfer-Encoding"))
            }
        }
    } else {
        match content_length {
            Some(0) | None => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };

    let keep_alive = if http10 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    };
    // Upgrade only when the client also said `Connection: upgrade` (RFC 9110 §7.8). h2c is never
    // forwarded: a backend that accepted it would be talked to in HTTP/2 behind our back.
    if upgrade_count > 1 {
        return Err(ProxyError::BadRequest("more than one Upgrade"));
    }
    let upgrade = match upgrade {
        Some(u) if conn.upgrade && !http10 => {
            let v = u.get(buf);
            if list_elements(v).any(|p| p.eq_ignore_ascii_case(b"h2c")) {
                None
            } else {
                Some(u)
            }
        }
        _ => None,
    };

    Ok(Some(RequestHead {
        head_len,
        method,
        method_span: Span::of(buf, method_bytes),
        path,
        path_needs_slash,
        absolute_form,
        asterisk,
        http10,
        host,
        host_name,
        framing,
        keep_alive,
        upgrade,
        expect_continue,
    }))
}

/// True when the request line ends in a syntactically valid HTTP-version (RFC 9112 §2.3).
fn well_formed_other_version(buf: &[u8]) -> bool {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    let v = &line[sp + 1..];
    line.iter().filter(|&&b| b == b' ').count() == 2
        && v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    const HTTP: &[u8] = b"http://";
    const HTTPS: &[u8] = b"https://";
    if target.len() > HTTP.len() && target[..HTTP.len()].eq_ignore_ascii_case(HTTP) {
        Some(&target[HTTP.len()..])
    } else if target.len() > HTTPS.len() && target[..HTTPS.len()].eq_ignore_ascii_case(HTTPS) {
        Some(&target[HTTPS.len()..])
    } else {
        None
    }
}

/// Longest host we accept (a DNS name is at most 253 bytes; with a port and brackets, less than this).
const MAX_HOST_LEN: usize = 512;

/// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): reg-name or IP-literal, digits for the port.
fn valid_host(h: &[u8]) -> bool {
    if h.len() > MAX_HOST_LEN {
        return false;
    }
    if h.is_empty() {
        // An empty Host is allowed when the target URI has no authority (RFC 9112 §3.2).
        return true;
    }
    let (name, port) = if h[0] == b'[' {
        let Some(close) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &h[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &h[close + 1..] {
            [] => (&h[..0], &h[..0]),
            [b':', port @ ..] => (&h[..0], port),
            _ => return false,
        }
    } else {
        match h.iter().rposition(|&b| b == b':') {
            Some(i) => (&h[..i], &h[i + 1..]),
            None => (h, &h[..0]),
        }
    };
    let reg_name_ok = name.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    });
    reg_name_ok && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

fn host_without_port(buf: &[u8], host: Span) -> Span {
    let h = host.get(buf);
    if h.first() == Some(&b'[') {
        let end = h
            .iter()
            .position(|&b| b == b']')
            .map(|i| i + 1)
            .unwrap_or(h.len());
        return Span::of(buf, &h[..end]);
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(i) => Span::of(buf, &h[..i]),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn limits() -> HttpLimits {
        HttpLimits {
            max_request_line: NonZeroUsize::new(8192).unwrap(),
            max_header_bytes: NonZeroUsize::new(16384).unwrap(),
            max_headers: NonZeroUsize::new(100).unwrap(),
            max_body: None,
        }
    }

    fn parse(s: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
        parse_request_head(s, &limits())
    }

    fn status(s: &[u8]) -> u16 {
        parse(s).unwrap_err().status()
    }

    #[test]
    fn simple_get() {
        let b = b"GET /a?b HTTP/1.1\r\nHost: Example.com:8080\r\n\r\nNEXT";
        let h = parse(b).unwrap().unwrap();
        assert_eq!(h.head_len, b.len() - 4);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path.get(b), b"/a?b");
        assert_eq!(h.host.get(b), b"Example.com:8080");
        assert_eq!(h.host_name.get(b), b"Example.com");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive && !h.http10);
    }

    #[test]
    fn partial_is_none() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
        assert_eq!(parse(b"GE").unwrap(), None);
    }

    #[test]
    fn absolute_form_rewritten() {
        let b = b"GET http://Example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = parse(b).unwrap().unwrap();
        assert!(h.absolute_form);
        assert_eq!(h.host.get(b), b"Example.com");
        assert_eq!(h.path.get(b), b"/x?y");
        let b = b"GET http://a.com?q HTTP/1.1\r\nHost: a.com\r\n\r\n";
        let h = parse(b).unwrap().unwrap();
        assert!(h.path_needs_slash);
        assert_eq!(h.path.get(b), b"?q");
    }

    #[test]
    fn framing_rules() {
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        let h = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(5));
        let h = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn syntax_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400, "missing host");
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status(b"GET /#x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n"),
            417
        );
        assert!(
            parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .unwrap()
                .asterisk
        );
    }

    #[test]
    fn limits_enforced() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(status(&long), 414, "incomplete long line");
        long.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status(&long), 414);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..101 {
            big.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(status(&big), 431, "too many headers");
        let mut huge = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'v', 17000));
        assert_eq!(status(&huge), 431, "incomplete huge block");
    }

    #[test]
    fn body_bytes_after_a_complete_head_are_not_header_bytes() {
        let mut b = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n".to_vec();
        let head_len = b.len();
        b.extend(std::iter::repeat_n(b'x', 20000));
        let h = parse(&b).unwrap().unwrap();
        assert_eq!(h.head_len, head_len);
        assert_eq!(h.framing, BodyFraming::Length(20000));
    }

    #[test]
    fn connection_and_upgrade() {
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For, X-A\r\nX-A: 1\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n";
        let mut f = Vec::new();
        let h = parse_request_head_into(b, &limits(), &mut f)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(
            f.iter()
                .filter(|x| x.kind == HeaderKind::ConnectionListed)
                .count()
                == 2
        );
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(parse(b).unwrap().unwrap().upgrade.is_some());
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n";
        assert!(parse(b).unwrap().unwrap().upgrade.is_none());
        let b = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let h = parse(b).unwrap().unwrap();
        assert!(h.keep_alive && h.http10);
        assert!(
            !parse(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }
}

//! Header fields as offsets into the read buffer, and the field-level rules shared by requests and
//! responses: name classification, Content-Length and Transfer-Encoding parsing, Connection tokens.

/// A byte range of the connection's read buffer (u32: heads are bounded far below 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        // Spans are made from the same buffer they index; `get` keeps this total anyway.
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// The span of `part` within `base`. A `part` that does not lie inside `base` gives the empty span:
    /// httparse hands out a static `""` for an absent reason phrase (`HTTP/1.1 200\r\n`), which is
    /// legitimately outside the buffer, and the empty span reads back as the same empty slice.
    #[inline]
    pub fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if end <= base.len() => Span {
                start: start as u32,
                end: end as u32,
            },
            _ => {
                debug_assert!(part.is_empty(), "a non-empty part outside the buffer");
                Span::default()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// What corelb does with a header field when it re-serializes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// Forwarded as is.
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop fields removed at every hop (RFC 9110 §7.6.1): Keep-Alive, Proxy-Connection, TE,
    /// Trailer, HTTP2-Settings (h2c smuggling).
    HopByHop,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    /// RFC 7239 Forwarded, and nginx's X-Real-IP: client-claimed, so kept only from trusted proxies.
    Forwarded,
    /// A field named by the message's own Connection header: hop-by-hop for this message only.
    ConnectionListed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Span,
    pub value: Span,
    pub kind: HeaderKind,
}

/// Classifies a field name, case-insensitively, by length first so most names compare once at most.
pub fn classify(name: &[u8]) -> HeaderKind {
    let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is(b"te") => HeaderKind::HopByHop,
        4 if is(b"host") => HeaderKind::Host,
        6 if is(b"expect") => HeaderKind::Expect,
        7 if is(b"upgrade") => HeaderKind::Upgrade,
        7 if is(b"trailer") => HeaderKind::HopByHop,
        9 if is(b"forwarded") => HeaderKind::Forwarded,
        9 if is(b"x-real-ip") => HeaderKind::Forwarded,
        10 if is(b"connection") => HeaderKind::Connection,
        10 if is(b"keep-alive") => HeaderKind::HopByHop,
        14 if is(b"content-length") => HeaderKind::ContentLength,
        14 if is(b"http2-settings") => HeaderKind::HopByHop,
        15 if is(b"x-forwarded-for") => HeaderKind::XForwardedFor,
        16 if is(b"proxy-connection") => HeaderKind::HopByHop,
        16 if is(b"x-forwarded-host") => HeaderKind::XForwardedHost,
        17 if is(b"transfer-encoding") => HeaderKind::TransferEncoding,
        17 if is(b"x-forwarded-proto") => HeaderKind::XForwardedProto,
        _ => HeaderKind::Other,
    }
}

/// True for tchar (RFC 9110 §5.6.2).
#[inline]
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|'
        | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Trims optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Iterates the non-empty elements of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed.
/// Bounded by the value's length.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Longest decimal Content-Length we accept: 19 digits always fit in a u64.
const MAX_CL_DIGITS: usize = 19;

/// Parses one Content-Length element strictly: 1*DIGIT, no sign, no spaces, no hex (RFC 9110 §8.6).
/// Rust's `"+5".parse::<u64>()` is `Ok(5)`, hence this.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_CL_DIGITS {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Folds one Content-Length field value into the running value. A list of identical values is the same
/// as one value (RFC 9112 §6.3 point 5 allows accepting it); differing values or a bad element are an
/// error. Returns `None` on error.
pub fn fold_content_length(prev: Option<u64>, value: &[u8]) -> Option<u64> {
    let mut cur = prev;
    let mut any = false;
    // An empty value has no elements: invalid. Elements are separated by commas; OWS allowed around.
    for elem in value.split(|&b| b == b',') {
        let n = parse_decimal(trim_ows(elem))?;
        match cur {
            Some(c) if c != n => return None,
            _ => cur = Some(n),
        }
        any = true;
    }
    if any {
        cur
    } else {
        None
    }
}

/// What a Transfer-Encoding field (all its lines together) says about framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// Exactly one coding, `chunked`.
    Chunked,
    /// A syntactically valid coding we do not implement (e.g. `gzip, chunked`, `xchunked`): 501.
    Unsupported,
    /// Malformed: parameters on chunked, chunked twice, chunked not last, empty, bad bytes: 400.
    Invalid,
}

/// Accumulates Transfer-Encoding field lines. corelb only relays `chunked` alone: any other coding would
/// need decoding to re-frame, and obfuscations (`chunked;x`, `xchunked`, control bytes) must never be
/// read as chunked (RFC 9112 §6.1, §7).
#[derive(Debug, Default, Clone, Copy)]
pub struct TeAccumulator {
    chunked: u32,
    unsupported: bool,
    invalid: bool,
    elements: u32,
    last_is_chunked: bool,
}

impl TeAccumulator {
    pub fn add(&mut self, value: &[u8]) {
        for elem in list_elements(value) {
            self.elements += 1;
            if elem.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                self.last_is_chunked = true;
            } else {
                self.last_is_chunked = false;
                if is_token(elem) {
                    self.unsupported = true;
                } else {
                    // Parameters (`chunked;x`), quotes, or control bytes: malformed for our purposes.
                    self.invalid = true;
                }
            }
        }
        if list_elements(value).next().is_none() {
            self.invalid = true;
        }
    }

    pub fn finish(&self) -> TransferCoding {
        if self.invalid || self.chunked > 1 || (self.elements > 0 && !self.last_is_chunked) {
            TransferCoding::Invalid
        } else if self.unsupported {
            TransferCoding::Unsupported
        } else {
            TransferCoding::Chunked
        }
    }
}

/// The tokens of Connection fields that matter to framing, plus the other names it lists.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// More names than we track: treated as malformed (a legitimate client lists a handful).
    pub overflow: bool,
    pub listed: [Span; MAX_CONNECTION_NAMES],
    pub listed_len: usize,
}

/// Most field names one message's Connection headers may list.
pub const MAX_CONNECTION_NAMES: usize = 16;

impl ConnectionTokens {
    /// `value_span` must index `buf`.
    pub fn add(&mut self, buf: &[u8], value_span: Span) {
        for tok in list_elements(value_span.get(buf)) {
            if tok.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if self.listed_len < MAX_CONNECTION_NAMES {
                self.listed[self.listed_len] = Span::of(buf, tok);
                self.listed_len += 1;
            } else {
                self.overflow = true;
            }
        }
    }

    pub fn lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.listed[..self.listed_len]
            .iter()
            .any(|s| s.get(buf).eq_ignore_ascii_case(name))
    }
}

/// Marks every field named in the Connection header as hop-by-hop for this message (RFC 9110 §7.6.1),
/// except those corelb re-creates itself (framing, Host): a client cannot make corelb drop what it adds.
pub fn mark_connection_listed(buf: &[u8], fields: &mut [HeaderField], conn: &ConnectionTokens) {
    if conn.listed_len == 0 {
        return;
    }
    for f in fields.iter_mut() {
        if matches!(
            f.kind,
            HeaderKind::Other
                | HeaderKind::XForwardedFor
                | HeaderKind::XForwardedProto
                | HeaderKind::XForwardedHost
        ) && conn.lists(buf, f.name.get(buf))
        {
            f.kind = HeaderKind::ConnectionListed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_strict() {
        assert_eq!(fold_content_length(None, b"5"), Some(5));
        assert_eq!(fold_content_length(None, b"5, 5"), Some(5));
        assert_eq!(fold_content_length(Some(5), b"5"), Some(5));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"0x10",
            b"5 5",
            b"",
            b" ",
            b"5,6",
            b"99999999999999999999999",
            b"5,",
            b"1e3",
            b"\x0b5",
        ] {
            assert_eq!(fold_content_length(None, bad), None, "{:?}", bad);
        }
        assert_eq!(fold_content_length(Some(5), b"6"), None);
        assert_eq!(
            fold_content_length(None, b"18446744073709551615"),
            None,
            "20 digits"
        );
        assert_eq!(
            fold_content_length(None, b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
    }

    fn te(lines: &[&[u8]]) -> TransferCoding {
        let mut a = TeAccumulator::default();
        for l in lines {
            a.add(l);
        }
        a.finish()
    }

    #[test]
    fn transfer_encoding_only_plain_chunked() {
        assert_eq!(te(&[b"chunked"]), TransferCoding::Chunked);
        assert_eq!(te(&[b"Chunked"]), TransferCoding::Chunked);
        assert_eq!(te(&[b"gzip, chunked"]), TransferCoding::Unsupported);
        assert_eq!(
            te(&[b"xchunked"]),
            TransferCoding::Invalid,
            "last coding not chunked"
        );
        assert_eq!(te(&[b"chunked;x"]), TransferCoding::Invalid);
        assert_eq!(te(&[b"chunked, chunked"]), TransferCoding::Invalid);
        assert_eq!(te(&[b"chunked", b"chunked"]), TransferCoding::Invalid);
        assert_eq!(te(&[b"chunked, gzip"]), TransferCoding::Invalid);
        assert_eq!(te(&[b""]), TransferCoding::Invalid);
        assert_eq!(te(&[b"\"chunked\""]), TransferCoding::Invalid);
    }

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"Content-Length"), HeaderKind::ContentLength);
        assert_eq!(classify(b"TRANSFER-ENCODING"), HeaderKind::TransferEncoding);
        assert_eq!(classify(b"x-forwarded-for"), HeaderKind::XForwardedFor);
        assert_eq!(classify(b"Keep-Alive"), HeaderKind::HopByHop);
        assert_eq!(classify(b"Content-Type"), HeaderKind::Other);
    }

    #[test]
    fn connection_tokens() {
        let buf = b"close, X-Foo, upgrade";
        let mut c = ConnectionTokens::default();
        c.add(
            buf,
            Span {
                start: 0,
                end: buf.len() as u32,
            },
        );
        assert!(c.close && c.upgrade && !c.keep_alive);
        assert!(c.lists(buf, b"x-foo"));
        assert!(!c.lists(buf, b"close"));
    }
}

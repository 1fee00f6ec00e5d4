//! Re-serialization of heads toward the other side. corelb never forwards raw head bytes: it writes a
//! fresh head from the parsed fields, so both parsers downstream see exactly one framing.

use crate::http::cookie;
use crate::http::fields::{HeaderField, HeaderKind};
use crate::http::request::{BodyFraming, RequestHead};
use crate::http::response::ResponseHead;

/// What the request carries about the client, precomputed once per connection.
pub struct Forwarding<'a> {
    /// The client's IP as text (formatted once at accept).
    pub client_ip: &'a [u8],
    /// The peer is a trusted proxy: keep and append to its X-Forwarded-* instead of replacing them.
    pub trusted: bool,
    /// Host to send when the request had none (HTTP/1.0 without Host): the backend's name.
    pub default_host: &'a [u8],
    /// The persistence cookie's name: removed from Cookie fields (HAProxy `indirect`).
    pub strip_cookie: Option<&'a [u8]>,
}

#[inline]
fn put(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends a chunk-size line (`<hex>\r\n`) for a chunk of `n` bytes (RFC 9112 §7.1).
pub fn put_chunk_header(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut n = n as u64;
    loop {
        i -= 1;
        tmp[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head for the backend: HTTP/1.1, origin-form, hop-by-hop fields removed, framing
/// re-stated, X-Forwarded-* set (RFC 9110 §7.6).
pub fn write_request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    fields: &[HeaderField],
    fwd: &Forwarding<'_>,
) {
    put(out, &[head.method_span.get(buf), b" "]);
    if head.asterisk {
        out.push(b'*');
    } else {
        if head.path_needs_slash {
            out.push(b'/');
        }
        out.extend_from_slice(head.path.get(buf));
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let host = head.host.get(buf);
    if head.absolute_form || host.is_empty() {
        let h = if host.is_empty() {
            fwd.default_host
        } else {
            host
        };
        put(out, &[b"host: ", h, b"\r\n"]);
    }
    let mut xff_started = false;
    let mut has_xfp = false;
    let mut has_xfh = false;
    for f in fields {
        let keep = match f.kind {
            HeaderKind::Other => true,
            HeaderKind::Host => !head.absolute_form && !host.is_empty(),
            HeaderKind::XForwardedProto => {
                has_xfp |= fwd.trusted;
                fwd.trusted
            }
            HeaderKind::XForwardedHost => {
                has_xfh |= fwd.trusted;
                fwd.trusted
            }
            // RFC 7239: what an untrusted client says about itself is not forwarded.
            HeaderKind::Forwarded => fwd.trusted,
            HeaderKind::XForwardedFor => false,
            _ => false,
        };
        if keep {
            match fwd.strip_cookie {
                Some(name) if f.kind == HeaderKind::Other && cookie::is_cookie(buf, f) => {
                    cookie::put_without(out, f.name.get(buf), f.value.get(buf), name)
                }
                _ => put(out, &[f.name.get(buf), b": ", f.value.get(buf), b"\r\n"]),
            }
        }
    }
    // X-Forwarded-For: the trusted chain (all its lines folded into one, RFC 9110 §5.3), then the peer.
    if fwd.trusted {
        for f in fields
            .iter()
            .filter(|f| f.kind == HeaderKind::XForwardedFor)
        {
            let v = f.value.get(buf);
            if v.is_empty() {
                continue;
            }
            out.extend_from_slice(if xff_started {
                b", "
            } else {
                b"x-forwarded-for: "
            });
            out.extend_from_slice(v);
            xff_started = true;
        }
    }
    out.extend_from_slice(if xff_started {
        b", "
    } else {
        b"x-forwarded-for: "
    });
    put(out, &[fwd.client_ip, b"\r\n"]);
    if !has_xfp {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if !has_xfh && !host.is_empty() {
        put(out, &[b"x-forwarded-host: ", host, b"\r\n"]);
    }
    match head.framing {
        BodyFraming::None => {
            // A body-less request needs no framing field (RFC 9112 §6.3 point 6).
        }
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if let Some(u) = head.upgrade {
        put(
            out,
            &[b"connection: upgrade\r\nupgrade: ", u.get(buf), b"\r\n"],
        );
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is framed toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No framing field: no body (1xx, 204), or close-delimited toward an HTTP/1.0 client.
    None,
    Length(u64),
    Chunked,
    /// HEAD or 304: Content-Length is metadata about the representation; pass it on as received.
    Metadata(Option<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionField {
    None,
    Close,
    /// Keep-alive toward an HTTP/1.0 client must be explicit.
    KeepAlive,
    Upgrade,
}

pub fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    fields: &[HeaderField],
    framing: ClientFraming,
    connection: ConnectionField,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let s = head.status;
    out.extend_from_slice(&[
        b'0' + (s / 100 % 10) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
        b' ',
    ]);
    put(out, &[head.reason.get(buf), b"\r\n"]);
    for f in fields {
        let keep = match f.kind {
            HeaderKind::Other
            | HeaderKind::Host
            | HeaderKind::Expect
            | HeaderKind::XForwardedFor
            | HeaderKind::XForwardedProto
            | HeaderKind::XForwardedHost
            | HeaderKind::Forwarded => true,
            HeaderKind::Upgrade => connection == ConnectionField::Upgrade,
            _ => false,
        };
        if keep {
            put(out, &[f.name.get(buf), b": ", f.value.get(buf), b"\r\n"]);
        }
    }
    // Fields corelb adds, pre-formatted (the persistence cookie).
    out.extend_from_slice(extra);
    let cl = match framing {
        ClientFraming::None => None,
        ClientFraming::Length(n) => Some(n),
        ClientFraming::Metadata(n) => n,
        ClientFraming::Chunked => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            None
        }
    };
    if let Some(n) = cl {
        out.extend_from_slice(b"content-length: ");
        put_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(match connection {
        ConnectionField::None => b"",
        ConnectionField::Close => b"connection: close\r\n",
        ConnectionField::KeepAlive => b"connection: keep-alive\r\n",
        ConnectionField::Upgrade => b"connection: upgrade\r\n",
    });
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpLimits;
    use crate::http::request::parse_request_head_into;
    use crate::http::response::parse_response_head_into;
    use std::num::NonZeroUsize;

    fn limits() -> HttpLimits {
        HttpLimits {
            max_request_line: NonZeroUsize::new(8192).unwrap(),
            max_header_bytes: NonZeroUsize::new(16384).unwrap(),
            max_headers: NonZeroUsize::new(100).unwrap(),
            max_body: None,
        }
    }

    fn rewrite(req: &[u8], trusted: bool) -> String {
        let mut fields = Vec::new();
        let head = parse_request_head_into(req, &limits(), &mut fields)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let fwd = Forwarding {
            client_ip: b"10.1.2.3",
            trusted,
            default_host: b"127.0.0.1:9001",
            strip_cookie: Some(b"SERVERID"),
        };
        write_request_head(&mut out, req, &head, &fields, &fwd);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_rewrite_strips_hop_by_hop_and_sets_forwarded() {
        let out = rewrite(
            b"POST /p HTTP/1.1\r\nHost: a.com\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nContent-Length: 3\r\nX-Keep: k\r\n\r\n",
            false,
        );
        assert_eq!(
            out,
            "POST /p HTTP/1.1\r\nHost: a.com\r\nX-Keep: k\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.com\r\ncontent-length: 3\r\n\r\n"
        );
        let out = rewrite(
            b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6\r\n\r\n",
            false,
        );
        assert!(
            !out.contains("for=6.6.6.6"),
            "untrusted Forwarded dropped: {out}"
        );
        let out = rewrite(
            b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6\r\n\r\n",
            true,
        );
        assert!(
            out.contains("Forwarded: for=6.6.6.6\r\n"),
            "trusted Forwarded kept: {out}"
        );
        let out = rewrite(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\r\n", true);
        assert!(
            out.contains("x-forwarded-for: 6.6.6.6, 7.7.7.7, 10.1.2.3\r\n"),
            "{out}"
        );
    }

    #[test]
    fn connection_listed_cannot_remove_what_we_add() {
        let out = rewrite(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For\r\n\r\n",
            false,
        );
        assert!(out.contains("x-forwarded-for: 10.1.2.3\r\n"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let out = rewrite(
            b"GET http://b.com?x HTTP/1.1\r\nHost: ignored\r\n\r\n",
            false,
        );
        assert!(
            out.starts_with("GET /?x HTTP/1.1\r\nhost: b.com\r\n"),
            "{out}"
        );
        assert!(!out.contains("ignored"));
        let out = rewrite(b"GET / HTTP/1.0\r\n\r\n", false);
        assert!(out.contains("host: 127.0.0.1:9001\r\n"), "{out}");
    }

    #[test]
    fn response_rewrite() {
        let r =
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\nX-Served-By: a\r\n\r\n";
        let mut fields = Vec::new();
        let head = parse_response_head_into(r, false, &mut fields)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            r,
            &head,
            &fields,
            ClientFraming::Length(5),
            ConnectionField::None,
            b"",
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nX-Served-By: a\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        put_decimal(&mut v, 0);
        put_decimal(&mut v, u64::MAX);
        assert_eq!(v, b"018446744073709551615");
        let mut v = Vec::new();
        put_chunk_header(&mut v, 0x1abc);
        assert_eq!(v, b"1abc\r\n");
    }
}

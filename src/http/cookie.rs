//! The request `Cookie` field, as far as persistence and cookie hashing need it (RFC 6265 §4.2.1,
//! §5.4): find one cookie's value, and re-serialize the field without corelb's own cookie (HAProxy's
//! `indirect`: the server never sees it). No allocation.

use crate::http::fields::HeaderField;

/// The pairs of one Cookie field value: "a=1; b=2". Lenient about spaces around ';' (browsers and
/// scripts differ); a pair without '=' is skipped, as RFC 6265 §5.2 does for Set-Cookie.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    value.split(|&b| b == b';').filter_map(|raw| {
        let pair = trim(raw);
        let eq = pair.iter().position(|&b| b == b'=')?;
        Some((trim(&pair[..eq]), trim(&pair[eq + 1..]), pair))
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn is_cookie_field(buf: &[u8], f: &HeaderField) -> bool {
    f.name.get(buf).eq_ignore_ascii_case(b"cookie")
}

/// The value of the first cookie named `name` (case-sensitive, RFC 6265 §5.4) in any Cookie field,
/// without surrounding double quotes.
pub fn find<'a>(buf: &'a [u8], fields: &[HeaderField], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .filter(|f| is_cookie_field(buf, f))
        .find_map(|f| {
            pairs(f.value.get(buf))
                .find(|(n, _, _)| *n == name)
                .map(|(_, v, _)| unquote(v))
        })
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// True when `f` is a Cookie field (the writer then calls [`put_without`] instead of copying it).
pub fn is_cookie(buf: &[u8], f: &HeaderField) -> bool {
    is_cookie_field(buf, f)
}

/// Writes `field_name: value` with every pair named `name` removed; writes nothing if none is left.
pub fn put_without(out: &mut Vec<u8>, field_name: &[u8], value: &[u8], name: &[u8]) {
    let mut first = true;
    for (n, _, pair) in pairs(value) {
        if n == name {
            continue;
        }
        if first {
            out.extend_from_slice(field_name);
            out.extend_from_slice(b": ");
            first = false;
        } else {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    if !first {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpLimits;
    use crate::http::request::parse_request_head_into;
    use std::num::NonZeroUsize;

    fn fields(req: &[u8]) -> Vec<HeaderField> {
        let limits = HttpLimits {
            max_request_line: NonZeroUsize::new(8192).unwrap(),
            max_header_bytes: NonZeroUsize::new(16384).unwrap(),
            max_headers: NonZeroUsize::new(100).unwrap(),
            max_body: None,
        };
        let mut f = Vec::new();
        parse_request_head_into(req, &limits, &mut f)
            .unwrap()
            .unwrap();
        f
    }

    #[test]
    fn finds_values_across_fields() {
        let req =
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2\r\ncookie: SERVERID=\"s1\"; c=3\r\n\r\n";
        let f = fields(req);
        assert_eq!(find(req, &f, b"b"), Some(&b"2"[..]));
        assert_eq!(find(req, &f, b"SERVERID"), Some(&b"s1"[..]));
        assert_eq!(find(req, &f, b"serverid"), None, "names are case-sensitive");
        assert_eq!(find(req, &f, b"d"), None);
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: junk; =x; e=\r\n\r\n";
        let f = fields(req);
        assert_eq!(find(req, &f, b"e"), Some(&b""[..]));
        assert_eq!(find(req, &f, b"junk"), None);
    }

    #[test]
    fn strips_one_cookie() {
        let mut out = Vec::new();
        put_without(&mut out, b"Cookie", b"a=1; SERVERID=x;b=2", b"SERVERID");
        assert_eq!(out, b"Cookie: a=1; b=2\r\n");
        out.clear();
        put_without(&mut out, b"Cookie", b"SERVERID=x", b"SERVERID");
        assert!(out.is_empty(), "nothing left: no field");
        out.clear();
        put_without(&mut out, b"cookie", b"a=1", b"SERVERID");
        assert_eq!(out, b"cookie: a=1\r\n");
    }
}

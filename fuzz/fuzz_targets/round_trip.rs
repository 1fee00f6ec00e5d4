//! Round trip through corelb's writers: a head that parses, re-serialized with `write_request_head` /
//! `write_response_head` and parsed again, must be the same message: method, target, version (HTTP/1.1
//! on the way out), host, framing, upgrade, and every field corelb forwards (names, values, order).
//! Anything else would mean the backend (or client) reads a different message than corelb checked.
//! The first input byte picks the variant: request or response, trusted or not, HEAD or not.
#![no_main]

use corelb::config::HttpLimits;
use corelb::http::fields::{HeaderField, HeaderKind};
use corelb::http::request::{parse_request_head_into, RequestHead};
use corelb::http::response::{parse_response_head_into, RespFraming, ResponseHead};
use corelb::http::write::{
    write_request_head, write_response_head, ClientFraming, ConnectionField, Forwarding,
};
use corelb::limits::{
    CEILING_HEADERS, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_REQUEST_LINE,
    MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS,
};
use libfuzzer_sys::fuzz_target;
use std::num::NonZeroUsize;

const CLIENT_IP: &[u8] = b"192.0.2.7";
const DEFAULT_HOST: &[u8] = b"backend.test:8080";

fn limits(line: usize, bytes: usize, count: usize) -> HttpLimits {
    // Non-zero constants only: the unwraps cannot fail.
    HttpLimits {
        max_request_line: NonZeroUsize::new(line).unwrap(),
        max_header_bytes: NonZeroUsize::new(bytes).unwrap(),
        max_headers: NonZeroUsize::new(count).unwrap(),
        max_body: None,
    }
}

/// (name, value) of the fields of the given kinds, in order.
fn kept<'a>(
    buf: &'a [u8],
    fields: &[HeaderField],
    keep: impl Fn(HeaderKind) -> bool,
) -> Vec<(&'a [u8], &'a [u8])> {
    fields
        .iter()
        .filter(|f| keep(f.kind))
        .map(|f| (f.name.get(buf), f.value.get(buf)))
        .collect()
}

fn request(input: &[u8], trusted: bool) {
    let first_limits = limits(
        DEFAULT_MAX_REQUEST_LINE,
        DEFAULT_MAX_HEADER_BYTES,
        DEFAULT_MAX_HEADERS,
    );
    let mut fields = Vec::new();
    let Ok(Some(head)) = parse_request_head_into(input, &first_limits, &mut fields) else {
        return;
    };
    let fwd = Forwarding {
        client_ip: CLIENT_IP,
        trusted,
        default_host: DEFAULT_HOST,
        strip_cookie: None,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, input, &head, &fields, &fwd);

    // The rewrite may be a little longer (a '/' before an absolute-form path, the fields corelb adds,
    // ", " between folded X-Forwarded-For values), never by more than these generous limits.
    let second_limits = limits(
        2 * DEFAULT_MAX_REQUEST_LINE,
        4 * DEFAULT_MAX_HEADER_BYTES,
        CEILING_HEADERS,
    );
    let mut fields2 = Vec::new();
    let head2: RequestHead = match parse_request_head_into(&out, &second_limits, &mut fields2) {
        Ok(Some(h)) => h,
        other => panic!(
            "rewritten request does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(head2.head_len, out.len(), "rewritten head length");
    assert_eq!(head2.method, head.method);
    assert_eq!(
        head2.method_span.get(&out),
        head.method_span.get(input),
        "method"
    );
    assert!(!head2.http10, "the rewrite is HTTP/1.1");
    assert!(!head2.absolute_form, "the rewrite is origin-form");
    assert_eq!(head2.asterisk, head.asterisk, "asterisk-form");
    let mut target = Vec::new();
    if head.path_needs_slash {
        target.push(b'/');
    }
    target.extend_from_slice(head.path.get(input));
    assert_eq!(head2.path.get(&out), &target[..], "target");
    let host = head.host.get(input);
    let want_host = if host.is_empty() { DEFAULT_HOST } else { host };
    assert_eq!(head2.host.get(&out), want_host, "host");
    if !host.is_empty() {
        assert_eq!(
            head2.host_name.get(&out),
            head.host_name.get(input),
            "host name"
        );
    }
    assert_eq!(head2.framing, head.framing, "framing");
    assert_eq!(
        head2.upgrade.map(|u| u.get(&out)),
        head.upgrade.map(|u| u.get(input)),
        "upgrade"
    );
    assert!(
        !head2.expect_continue,
        "Expect is answered by corelb, not forwarded"
    );

    // End-to-end fields, and from a trusted proxy what it says about the client.
    let forwarded = |k: HeaderKind| {
        k == HeaderKind::Other
            || (trusted
                && matches!(
                    k,
                    HeaderKind::Forwarded
                        | HeaderKind::XForwardedProto
                        | HeaderKind::XForwardedHost
                ))
    };
    // The rewrite adds x-forwarded-proto/-host only when the client sent none (trusted) or always
    // (untrusted): compare what came from the client, in order, at the start of each list.
    let before = kept(input, &fields, forwarded);
    let after = kept(&out, &fields2, forwarded);
    assert!(
        after.len() >= before.len() && after[..before.len()] == before[..],
        "forwarded fields differ:\n{before:?}\n{after:?}\n{}",
        String::from_utf8_lossy(&out)
    );
    // X-Forwarded-For: one field, the trusted chain then the client.
    let xff = kept(&out, &fields2, |k| k == HeaderKind::XForwardedFor);
    assert_eq!(xff.len(), 1, "one X-Forwarded-For");
    let mut want_xff = Vec::new();
    if trusted {
        for (_, v) in kept(input, &fields, |k| k == HeaderKind::XForwardedFor) {
            if !v.is_empty() {
                want_xff.extend_from_slice(v);
                want_xff.extend_from_slice(b", ");
            }
        }
    }
    want_xff.extend_from_slice(CLIENT_IP);
    assert_eq!(xff[0].1, &want_xff[..], "X-Forwarded-For");
}

/// The framing corelb states toward an HTTP/1.1 client for a backend response (a close-delimited body
/// is re-chunked; HEAD and 304 pass Content-Length on as metadata).
fn client_framing(head: &ResponseHead, head_request: bool) -> ClientFraming {
    match head.framing {
        RespFraming::NoBody if head_request || head.status == 304 => {
            ClientFraming::Metadata(head.content_length)
        }
        RespFraming::NoBody => ClientFraming::None,
        RespFraming::Length(n) => ClientFraming::Length(n),
        RespFraming::Chunked | RespFraming::Close => ClientFraming::Chunked,
    }
}

fn response(input: &[u8], head_request: bool) {
    let mut fields = Vec::new();
    let Ok(Some(head)) = parse_response_head_into(input, head_request, &mut fields) else {
        return;
    };
    let framing = client_framing(&head, head_request);
    let connection = if head.status == 101 && head.upgrade.is_some() {
        ConnectionField::Upgrade
    } else {
        ConnectionField::None
    };
    let mut out = Vec::new();
    write_response_head(&mut out, input, &head, &fields, framing, connection, b"");

    let forwarded = |k: HeaderKind| {
        matches!(
            k,
            HeaderKind::Other
                | HeaderKind::Host
                | HeaderKind::Expect
                | HeaderKind::XForwardedFor
                | HeaderKind::XForwardedProto
                | HeaderKind::XForwardedHost
                | HeaderKind::Forwarded
        )
    };
    let before = kept(input, &fields, forwarded);
    // The rewrite writes `name: value` (maybe one byte more per field than received) and up to two
    // framing/connection fields: near the limits it may not fit them. That is not a round-trip error.
    if out.len() > MAX_RESPONSE_HEAD || before.len() + 3 > MAX_RESPONSE_HEADERS {
        return;
    }
    let mut fields2 = Vec::new();
    let head2 = match parse_response_head_into(&out, head_request, &mut fields2) {
        Ok(Some(h)) => h,
        other => panic!(
            "rewritten response does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(head2.head_len, out.len(), "rewritten head length");
    assert_eq!(head2.status, head.status, "status");
    assert_eq!(head2.reason.get(&out), head.reason.get(input), "reason");
    assert!(!head2.http10, "the rewrite is HTTP/1.1");
    let want = match head.framing {
        RespFraming::Close => RespFraming::Chunked,
        f => f,
    };
    assert_eq!(head2.framing, want, "framing");
    if head.framing == RespFraming::NoBody && matches!(framing, ClientFraming::Metadata(_)) {
        assert_eq!(head2.content_length, head.content_length, "metadata length");
    }
    assert_eq!(
        head2.upgrade.map(|u| u.get(&out)),
        if connection == ConnectionField::Upgrade {
            head.upgrade.map(|u| u.get(input))
        } else {
            None
        },
        "upgrade"
    );
    let after = kept(&out, &fields2, forwarded);
    assert_eq!(
        before,
        after,
        "forwarded fields differ\n{}",
        String::from_utf8_lossy(&out)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    if flags & 1 == 0 {
        request(input, flags & 2 != 0);
    } else {
        response(input, flags & 2 != 0);
    }
});

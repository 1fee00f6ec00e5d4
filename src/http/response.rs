//! Backend response head parsing. A backend is trusted no more than a client: anything ambiguous is a
//! 502 and the backend connection is never reused (RFC 9112 §6.3; shared/docs/http-rules.md).

use std::mem::MaybeUninit;

use crate::error::ProxyError;
use crate::http::fields::{
    classify, fold_content_length, mark_connection_listed, ConnectionTokens, HeaderField,
    HeaderKind, Span, TeAccumulator, TransferCoding,
};
use crate::limits::{MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS};

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespFraming {
    /// 1xx, 204, 304, or the answer to HEAD.
    NoBody,
    Length(u64),
    Chunked,
    /// Read until the backend closes; the connection cannot be reused.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub reason: Span,
    pub http10: bool,
    pub framing: RespFraming,
    /// The backend allows reusing its connection after this response.
    pub keep_alive: bool,
    /// Content-Length as received (for HEAD and 304, where it is metadata, not framing).
    pub content_length: Option<u64>,
    pub upgrade: Option<Span>,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete. `head_request`: the request
/// was HEAD, so the response has no body whatever its fields say.
pub fn parse_response_head_into(
    buf: &[u8],
    head_request: bool,
    fields: &mut Vec<HeaderField>,
) -> Result<Option<ResponseHead>, ProxyError> {
    fields.clear();
    let mut storage: [MaybeUninit<httparse::Header<'_>>; MAX_RESPONSE_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    // Default ParserConfig: every lenient flag off (shared/docs/http-rules.md "Never").
    let strict = httparse::ParserConfig::default();
    let head_len = match strict.parse_response_with_uninit_headers(&mut resp, buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(ProxyError::BadGateway("response head too large"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::BadGateway("too many response headers"))
        }
        Err(_) => return Err(ProxyError::BadGateway("malformed response head")),
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(ProxyError::BadGateway("response head too large"));
    }
    let status = resp.code.unwrap_or(0);
    // httparse accepts any three digits, e.g. `099`; RFC 9110 §15 defines 100..=599 only.
    if !(100..=599).contains(&status) {
        return Err(ProxyError::BadGateway("status code out of range"));
    }
    let http10 = resp.version == Some(0);
    let reason = Span::of(buf, resp.reason.unwrap_or("").as_bytes());

    let mut content_length: Option<u64> = None;
    let mut cl_seen = false;
    let mut te = TeAccumulator::default();
    let mut te_seen = false;
    let mut conn = ConnectionTokens::default();
    let mut upgrade = None;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let kind = classify(name);
        let value = Span::of(buf, h.value);
        match kind {
            HeaderKind::ContentLength => {
                cl_seen = true;
                content_length = Some(
                    fold_content_length(content_length, h.value)
                        .ok_or(ProxyError::BadGateway("invalid Content-Length"))?,
                );
            }
            HeaderKind::TransferEncoding => {
                te_seen = true;
                te.add(h.value);
            }
            HeaderKind::Connection => conn.add(buf, value),
            HeaderKind::Upgrade => upgrade = Some(value),
            _ => {}
        }
        fields.push(HeaderField {
            name: Span::of(buf, name),
            value,
            kind,
        });
    }
    if conn.overflow {
        return Err(ProxyError::BadGateway("too many names in Connection"));
    }
    mark_connection_listed(buf, fields, &conn);
    if te_seen && cl_seen {
        return Err(ProxyError::BadGateway(
            "both Content-Length and Transfer-Encoding",
        ));
    }

    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        RespFraming::NoBody
    } else if te_seen {
        if http10 {
            return Err(ProxyError::BadGateway(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        match te.finish() {
            TransferCoding::Chunked => RespFraming::Chunked,
            _ => return Err(ProxyError::BadGateway("unsupported Transfer-Encoding")),
        }
    } else if let Some(n) = content_length {
        RespFraming::Length(n)
    } else {
        RespFraming::Close
    };
    let keep_alive = framing != RespFraming::Close
        && if http10 {
            conn.keep_alive && !conn.close
        } else {
            !conn.close
        };

    Ok(Some(ResponseHead {
        head_len,
        status,
        reason,
        http10,
        framing,
        keep_alive,
        content_length,
        upgrade: if conn.upgrade { upgrade } else { None },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8], head: bool) -> Result<Option<ResponseHead>, ProxyError> {
        parse_response_head_into(b, head, &mut Vec::new())
    }

    #[test]
    fn framings() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, RespFraming::Length(5));
        assert!(r.keep_alive);
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, RespFraming::Chunked);
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(r.framing, RespFraming::Close);
        assert!(!r.keep_alive);
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, RespFraming::NoBody);
        assert_eq!(r.content_length, Some(5));
        for s in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\n\r\n",
        ] {
            assert_eq!(
                parse(s, false).unwrap().unwrap().framing,
                RespFraming::NoBody
            );
        }
        let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn reason_phrase_may_be_absent() {
        for b in [
            &b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"[..],
            b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
        ] {
            let r = parse(b, false).unwrap().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.reason.get(b), b"");
        }
    }

    #[test]
    fn bad_responses_are_502() {
        for b in [
            &b"HTTP/1.1 099 Low\r\n\r\n"[..],
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"garbage garbage\r\n\r\n",
        ] {
            assert_eq!(
                parse(b, false).unwrap_err().status(),
                502,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }
}

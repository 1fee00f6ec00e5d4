//! The downstream phases: frame the response for this client, send its head, stream its body, and give
//! the server connection back to the pool when the response ended exactly at its framing; or, after a
//! 101, become a tunnel.

use glommio::net::TcpStream;

use crate::buf::{flush, Exchange};
use crate::error::ProxyError;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{RespFraming, ResponseHead};
use crate::http::write::{write_response_head, ClientFraming, ConnectionField};
use crate::proxy::body::{copy_body, BodyError, BodyFailure, Encode, Sink, Source, SrcFraming};
use crate::proxy::route::Req;
use crate::proxy::tunnel::tunnel;
use crate::proxy::ClientConn;
use crate::stream::Stream;

/// How a response body travels: how it is framed toward the client, how the server delimits it (None:
/// no body), how it is encoded, and whether the client connection must close after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ResponsePlan {
    pub client: ClientFraming,
    pub src: Option<SrcFraming>,
    pub encode: Encode,
    pub must_close: bool,
}

/// Frames the body for this client: HTTP/1.0 clients never get chunked (RFC 9112 §7), so a chunked or
/// close-delimited response reaches them close-delimited; HTTP/1.1 clients get a close-delimited one
/// re-chunked, so their connection survives it.
pub(super) fn plan(head: &RequestHead, resp: &ResponseHead) -> ResponsePlan {
    let (client, src, encode, must_close) = match resp.framing {
        RespFraming::NoBody => {
            let meta = head.method == Method::Head || resp.status == 304;
            let client = if meta {
                ClientFraming::Metadata(resp.content_length)
            } else {
                ClientFraming::None
            };
            (client, None, Encode::Raw, false)
        }
        RespFraming::Length(n) => (
            ClientFraming::Length(n),
            Some(SrcFraming::Length(n)),
            Encode::Raw,
            false,
        ),
        RespFraming::Chunked | RespFraming::Close => {
            let src = if resp.framing == RespFraming::Chunked {
                SrcFraming::Chunked
            } else {
                SrcFraming::Eof
            };
            if head.http10 {
                (ClientFraming::None, Some(src), Encode::Raw, true)
            } else {
                (ClientFraming::Chunked, Some(src), Encode::Chunked, false)
            }
        }
    };
    ResponsePlan {
        client,
        src,
        encode,
        must_close,
    }
}

/// The Connection field toward the client: close when the connection will not be kept, and an
/// explicit keep-alive for HTTP/1.0 clients (RFC 9112 §9.3).
pub(super) fn connection_field(keep: bool, http10: bool) -> ConnectionField {
    match (keep, http10) {
        (false, _) => ConnectionField::Close,
        (true, true) => ConnectionField::KeepAlive,
        (true, false) => ConnectionField::None,
    }
}

/// Serializes the response head for the client into `x.out` (sent with the first body bytes) and
/// consumes it from the backend buffer.
fn stage_head<S>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    resp: &ResponseHead,
    framing: ClientFraming,
    connection: ConnectionField,
    extra: &[u8],
) {
    x.out.clear();
    write_response_head(
        &mut x.out,
        x.bbuf.filled(),
        resp,
        &x.resp_fields,
        framing,
        connection,
        extra,
    );
    x.bbuf.consume(resp.head_len);
    c.record.status = resp.status;
    c.record.bytes_out += x.out.len() as u64;
}

/// Sends the response head and streams the body; gives the server connection back when it can be
/// reused. Ok(true): keep the client connection open.
pub(super) async fn respond<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    req: &Req<'_>,
    resp: &ResponseHead,
    set_cookie: &[u8],
    mut b: TcpStream,
    server: usize,
) -> Result<bool, ProxyError> {
    let head = req.head;
    let p = plan(head, resp);
    let keep = head.keep_alive && !p.must_close && !c.ctx.draining.get();
    stage_head(
        c,
        x,
        resp,
        p.client,
        connection_field(keep, head.http10),
        set_cookie,
    );
    let client_timeout = req.f.timeouts.body;
    match p.src {
        Some(framing) => {
            let sent = copy_body(
                Source {
                    stream: &mut b,
                    buf: &mut x.bbuf,
                    framing,
                    timeout: req.backend.cfg.timeouts.body,
                    limit: None,
                },
                Sink {
                    stream: &mut c.stream,
                    out: &mut x.out,
                    encode: p.encode,
                    timeout: client_timeout,
                },
            )
            .await
            .map_err(|failure| match failure {
                BodyFailure {
                    error: BodyError::DstIo(k),
                    ..
                } => ProxyError::ClientIo(k),
                // Nothing reached the client yet (the head was still staged with the first body
                // bytes): a clean 502 is still possible.
                BodyFailure { wrote: false, .. } => {
                    ProxyError::BadGateway("invalid response body from backend")
                }
                BodyFailure { wrote: true, .. } => ProxyError::Aborted("backend failed mid-body"),
            })?;
            c.record.bytes_out += sent;
        }
        None => flush(&mut c.stream, &mut x.out, client_timeout)
            .await
            .map_err(|e| ProxyError::ClientIo(e.kind()))?,
    }
    // Reuse only a connection whose response ended exactly where its framing said (no stray bytes).
    if resp.keep_alive && x.bbuf.is_empty() {
        req.backend.release(server, b);
    } else {
        x.bbuf.clear();
    }
    Ok(keep)
}

/// After a 101 to an upgrade request: relay the head, then pipe bytes both ways until both sides
/// close or the tunnel idles out (RFC 9110 §7.8). The client connection ends with the tunnel.
pub(super) async fn upgrade<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    req: &Req<'_>,
    resp: &ResponseHead,
    mut b: TcpStream,
) -> Result<bool, ProxyError> {
    if req.head.upgrade.is_none() {
        return Err(ProxyError::BadGateway("101 without an upgrade request"));
    }
    stage_head(
        c,
        x,
        resp,
        ClientFraming::None,
        ConnectionField::Upgrade,
        b"",
    );
    flush(&mut c.stream, &mut x.out, req.f.timeouts.body)
        .await
        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
    let _ = tunnel(
        &mut c.stream,
        &mut c.cbuf,
        &mut b,
        &mut x.bbuf,
        req.f.timeouts.keepalive,
    )
    .await;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpLimits;
    use crate::http::request::parse_request_head;
    use crate::http::response::parse_response_head_into;
    use std::num::NonZeroUsize;

    fn req(text: &str) -> RequestHead {
        let limits = HttpLimits {
            max_request_line: NonZeroUsize::new(1024).unwrap(),
            max_header_bytes: NonZeroUsize::new(4096).unwrap(),
            max_headers: NonZeroUsize::new(32).unwrap(),
            max_body: None,
        };
        parse_request_head(text.as_bytes(), &limits)
            .unwrap()
            .unwrap()
    }

    fn resp(text: &str, head: bool) -> ResponseHead {
        parse_response_head_into(text.as_bytes(), head, &mut Vec::new())
            .unwrap()
            .unwrap()
    }

    const GET11: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const GET10: &str = "GET / HTTP/1.0\r\n\r\n";

    #[test]
    fn length_passes_through() {
        let p = plan(
            &req(GET11),
            &resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        );
        assert_eq!(p.client, ClientFraming::Length(5));
        assert_eq!(p.src, Some(SrcFraming::Length(5)));
        assert_eq!((p.encode, p.must_close), (Encode::Raw, false));
    }

    #[test]
    fn chunked_and_close_delimited_are_rechunked_for_http11() {
        for r in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        ] {
            let p = plan(&req(GET11), &resp(r, false));
            assert_eq!(p.client, ClientFraming::Chunked, "{r}");
            assert_eq!((p.encode, p.must_close), (Encode::Chunked, false), "{r}");
        }
    }

    #[test]
    fn http10_clients_never_get_chunked() {
        for (r, src) in [
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                SrcFraming::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                SrcFraming::Eof,
            ),
        ] {
            let p = plan(&req(GET10), &resp(r, false));
            assert_eq!(p.client, ClientFraming::None, "{r}");
            assert_eq!(p.src, Some(src));
            assert_eq!((p.encode, p.must_close), (Encode::Raw, true), "{r}");
        }
    }

    #[test]
    fn head_and_304_keep_content_length_as_metadata() {
        let head = req("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let p = plan(
            &head,
            &resp("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true),
        );
        assert_eq!((p.client, p.src), (ClientFraming::Metadata(Some(7)), None));
        let p = plan(
            &req(GET11),
            &resp(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
            ),
        );
        assert_eq!((p.client, p.src), (ClientFraming::Metadata(Some(9)), None));
        let p = plan(&req(GET11), &resp("HTTP/1.1 204 No Content\r\n\r\n", false));
        assert_eq!((p.client, p.src), (ClientFraming::None, None));
    }

    #[test]
    fn connection_field_for_each_version() {
        assert_eq!(connection_field(false, false), ConnectionField::Close);
        assert_eq!(connection_field(false, true), ConnectionField::Close);
        assert_eq!(connection_field(true, true), ConnectionField::KeepAlive);
        assert_eq!(connection_field(true, false), ConnectionField::None);
    }
}

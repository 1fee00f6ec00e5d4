//! The upstream phases: prepare the request for the server (serialize its head, take a body that is
//! already here along), get a connection (pooled or new, with `Failover`), send the request, and read
//! the response head, relaying 1xx interim responses. A request is sent again (once, on a fresh
//! connection) only when it is idempotent and was sent whole in one write, and the reused connection
//! failed before any response byte: a non-idempotent request is never sent twice (RFC 9110 §9.2.2).

use std::io;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::buf::{flush, write_all, Exchange};
use crate::error::{ProxyError, CONTINUE_100};
use crate::http::request::{BodyFraming, Method};
use crate::http::response::{parse_response_head_into, ResponseHead};
use crate::http::write::{
    write_request_head, write_response_head, ClientFraming, ConnectionField, Forwarding,
};
use crate::limits::MAX_INTERIM_RESPONSES;
use crate::proxy::body::{copy_body, request_body, BodyError, Sink, Source};
use crate::proxy::route::Req;
use crate::proxy::ClientConn;
use crate::stream::Stream;
use crate::upstream::Failover;

/// The request as prepared for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outgoing {
    /// The whole request (head and any body) is in `x.out`: one write, and it can be sent again.
    pub whole: bool,
    /// It may be sent again after a reused connection failed before any response byte.
    pub retryable: bool,
    /// The client sent `Expect: 100-continue` with a body: corelb answers 100 itself.
    pub expect: bool,
}

/// Serializes the request head into `x.out` (once: a retry sends it again as is) and consumes it from
/// the client buffer. A body already fully received goes out in the same write as the head (the
/// common small POST: one syscall, and the request stays retryable as a whole).
pub(super) fn prepare<S>(c: &mut ClientConn<S>, x: &mut Exchange, req: &Req<'_>) -> Outgoing {
    let head = req.head;
    let expect = head.expect_continue && head.framing != BodyFraming::None;
    x.out.clear();
    let fwd = Forwarding {
        client_ip: &c.ip_text[..c.ip_len],
        trusted: c.trusted,
        // For HTTP/1.0 requests without Host, like nginx's default `Host: $proxy_host`: the backend's name.
        default_host: req.backend.cfg.name.as_bytes(),
        strip_cookie: req.backend.cfg.cookie.as_ref().map(|ck| ck.name.as_bytes()),
    };
    write_request_head(&mut x.out, c.cbuf.filled(), head, &c.req_fields, &fwd);
    c.cbuf.consume(head.head_len);
    let whole = match head.framing {
        BodyFraming::None => true,
        BodyFraming::Length(n)
            if !expect
                && c.cbuf.len() as u64 >= n
                && x.out.len() as u64 + n <= x.out.capacity() as u64 =>
        {
            let n = n as usize;
            x.out.extend_from_slice(&c.cbuf.filled()[..n]);
            c.cbuf.consume(n);
            c.record.bytes_in += n as u64;
            true
        }
        _ => false,
    };
    Outgoing {
        whole,
        retryable: head.method.is_idempotent() && whole && head.upgrade.is_none(),
        expect,
    }
}

/// Connects (with failover), sends the request and reads the final response head. Bounded: at most
/// `MAX_CONNECT_TRIES` connect failures (in `Failover`) and one stale-connection retry.
pub(super) async fn forward<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    req: &Req<'_>,
    out: Outgoing,
    failover: &mut Failover<'_>,
) -> Result<(TcpStream, ResponseHead), ProxyError> {
    let ctx = c.ctx.clone();
    let backend = req.backend;
    let mut fresh_only = false;
    let mut stale_retry_used = false;
    loop {
        let server = failover.server();
        c.record.server = u16::try_from(server).unwrap_or(crate::record::NONE_INDEX);
        let (mut b, reused) = match backend.connection(server, fresh_only).await {
            Ok(conn) => conn,
            Err(e) => {
                ctx.log_error(format_args!(
                    "backend={} server={} connect failed: {e}",
                    backend.cfg.name, backend.cfg.servers[server].name
                ));
                let next = failover.connect_failed(&ctx.board);
                c.record.connect_failures = failover.failures() as u8;
                next.map_err(|n| ProxyError::ServiceUnavailable(n.reason()))?;
                fresh_only = false;
                continue;
            }
        };
        c.record.reused = reused;
        // A pooled connection costs no connect (0, like HAProxy's Tc on reuse) and no clock read.
        c.record.connect_us = if reused {
            0
        } else {
            c.record.since_start(Instant::now())
        };
        let retry = reused && out.retryable && !stale_retry_used;
        match send(c, x, req, out, &mut b).await {
            Ok(()) => {}
            Err(SendFailure::Stale) if retry => {
                stale_retry_used = true;
                c.record.retries = 1;
                fresh_only = true;
                continue;
            }
            Err(SendFailure::Stale) => {
                return Err(ProxyError::BadGateway("could not send the request"))
            }
            Err(SendFailure::Other(e)) => return Err(e),
        }
        x.bbuf.clear();
        match read_response_head(c, x, req, &mut b).await {
            Ok(resp) => {
                c.record.response_us = c.record.since_start(Instant::now());
                return Ok((b, resp));
            }
            Err(HeadFailure {
                before_any_byte: true,
                error: ProxyError::BadGateway(_),
            }) if retry => {
                // The keep-alive close race: the server closed the reused connection as we sent.
                stale_retry_used = true;
                c.record.retries = 1;
                fresh_only = true;
                continue;
            }
            Err(h) => {
                if h.error.side() == crate::error::Side::Backend {
                    backend.server_failed(server, &ctx.board);
                    ctx.log_error(format_args!(
                        "backend={} server={} {}",
                        backend.cfg.name, backend.cfg.servers[server].name, h.error
                    ));
                }
                return Err(h.error);
            }
        }
    }
}

enum SendFailure {
    /// Writing the whole request failed: the connection may have been a stale pooled one.
    Stale,
    Other(ProxyError),
}

/// Sends the request: in one write when it is whole, else the head with the body streamed after it
/// (answering `100 Continue` first when the client expects it, RFC 9110 §10.1.1).
async fn send<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    req: &Req<'_>,
    out: Outgoing,
    b: &mut TcpStream,
) -> Result<(), SendFailure> {
    let bt = &req.backend.cfg.timeouts;
    if out.whole {
        return write_all(b, &x.out, bt.body)
            .await
            .map_err(|_| SendFailure::Stale);
    }
    let client_timeout = req.f.timeouts.body;
    if out.expect {
        write_all(&mut c.stream, CONTINUE_100, client_timeout)
            .await
            .map_err(|e| SendFailure::Other(ProxyError::ClientIo(e.kind())))?;
    }
    let (framing, encode) = request_body(req.head.framing);
    let sent = copy_body(
        Source {
            stream: &mut c.stream,
            buf: &mut c.cbuf,
            framing,
            timeout: client_timeout,
            limit: req.f.limits.max_body,
        },
        Sink {
            stream: b,
            out: &mut x.out,
            encode,
            timeout: bt.body,
        },
    )
    .await
    .map_err(|f| {
        SendFailure::Other(match f.error {
            BodyError::SrcIo(k) => ProxyError::ClientIo(k),
            BodyError::SrcEof => ProxyError::ClientIo(io::ErrorKind::UnexpectedEof),
            BodyError::Chunk(_) => ProxyError::BadRequest("invalid chunked body"),
            BodyError::TooLarge => ProxyError::PayloadTooLarge,
            BodyError::DstIo(_) => ProxyError::BadGateway("could not send the request body"),
        })
    })?;
    c.record.bytes_in += sent;
    Ok(())
}

/// Why reading a response head failed, and whether the request may be sent again.
pub(super) struct HeadFailure {
    pub error: ProxyError,
    /// The connection failed before any response byte: safe to retry an idempotent request.
    pub before_any_byte: bool,
}

/// Reads the final response head into `x.bbuf`, relaying 1xx interim responses to HTTP/1.1 clients
/// (RFC 9110 §15.2). 101 is returned like a final response.
pub(super) async fn read_response_head<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    req: &Req<'_>,
    b: &mut TcpStream,
) -> Result<ResponseHead, HeadFailure> {
    let t = &req.backend.cfg.timeouts;
    let head = req.head;
    let mut interim = 0usize;
    let mut any_byte = false;
    // The response timeout bounds the whole head; the clock is read only if it arrives in pieces.
    let mut deadline: Option<Instant> = None;
    let fail = |error, any: bool| HeadFailure {
        error,
        before_any_byte: !any,
    };
    // Bounded: each round reads at least one byte or returns; at most MAX_INTERIM_RESPONSES 1xx.
    loop {
        if !x.bbuf.is_empty() {
            let parsed = parse_response_head_into(
                x.bbuf.filled(),
                head.method == Method::Head,
                &mut x.resp_fields,
            )
            .map_err(|e| fail(e, true))?;
            if let Some(resp) = parsed {
                if resp.status >= 200 || resp.status == 101 {
                    return Ok(resp);
                }
                interim += 1;
                if interim > MAX_INTERIM_RESPONSES {
                    return Err(fail(
                        ProxyError::BadGateway("too many interim responses"),
                        true,
                    ));
                }
                if !head.http10 {
                    x.out.clear();
                    write_response_head(
                        &mut x.out,
                        x.bbuf.filled(),
                        &resp,
                        &x.resp_fields,
                        ClientFraming::None,
                        ConnectionField::None,
                        b"",
                    );
                    c.record.bytes_out += x.out.len() as u64;
                    flush(&mut c.stream, &mut x.out, req.f.timeouts.body)
                        .await
                        .map_err(|e| fail(ProxyError::ClientIo(e.kind()), true))?;
                }
                x.bbuf.consume(resp.head_len);
                continue;
            }
        }
        let left = if x.bbuf.is_empty() && !any_byte {
            t.response
        } else {
            let now = Instant::now();
            let left = deadline
                .get_or_insert(now + t.response)
                .saturating_duration_since(now);
            if left.is_zero() {
                return Err(fail(ProxyError::GatewayTimeout, any_byte));
            }
            left
        };
        match x.bbuf.read_from(b, left).await {
            Ok(0) => {
                return Err(fail(
                    ProxyError::BadGateway("backend closed before a complete response head"),
                    any_byte,
                ))
            }
            Ok(_) => any_byte = true,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(fail(ProxyError::GatewayTimeout, true))
            }
            Err(_) => {
                return Err(fail(
                    ProxyError::BadGateway("backend connection failed"),
                    any_byte,
                ))
            }
        }
    }
}

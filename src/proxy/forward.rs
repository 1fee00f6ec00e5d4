//! One exchange with a backend: route, pick a server, reuse or open a connection (bounded failover),
//! send the request, relay interim responses, relay the final response, and decide what can be reused.

use std::io;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::balance::{hash_bytes, hash_ip};
use crate::buf::{flush, write_all, Exchange};
use crate::config::{Algorithm, Frontend, HashKey, HostMatch};
use crate::error::{ProxyError, CONTINUE_100};
use crate::http::request::{BodyFraming, Method, RequestHead};
use crate::http::response::{parse_response_head_into, RespFraming, ResponseHead};
use crate::http::write::{
    write_request_head, write_response_head, ClientFraming, ConnectionField, Forwarding,
};
use crate::http::{cookie, path};
use crate::limits::{MAX_CONNECT_TRIES, MAX_INTERIM_RESPONSES};
use crate::pool::looks_alive;
use crate::proxy::body::{copy_body, BodyError, BodyFailure, Encode, SrcFraming, Timeouts};
use crate::proxy::tunnel::tunnel;
use crate::proxy::ClientConn;
use crate::worker::{Assigned, BackendCtx};

/// Picks the backend: routes in order, first match wins, else the default (host compared
/// case-insensitively, RFC 9110 §4.2.3; path prefixes against the normalized path, see
/// `http::path`, with `scratch` holding it when it differs from the raw one).
fn route(f: &Frontend, buf: &[u8], head: &RequestHead, scratch: &mut Vec<u8>) -> usize {
    if f.routes.is_empty() {
        return f.default_backend;
    }
    let host = head.host_name.get(buf);
    // `example.com.` is the same name as `example.com` (RFC 1034 §3.1): route it the same.
    let host = host.strip_suffix(b".").unwrap_or(host);
    let path = path::for_routing(head.path.get(buf), scratch);
    for r in &f.routes {
        if let Some(h) = &r.host {
            let ok = match h {
                HostMatch::Exact(e) => e.as_bytes().eq_ignore_ascii_case(host),
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
                }
            };
            if !ok {
                continue;
            }
        }
        if let Some(p) = &r.path_prefix {
            if !path.starts_with(p.as_bytes()) {
                continue;
            }
        }
        return r.backend;
    }
    f.default_backend
}

async fn get_conn(
    b: &BackendCtx,
    server: usize,
    fresh_only: bool,
) -> io::Result<(TcpStream, bool)> {
    if !fresh_only {
        let now = Instant::now();
        // Bounded by the pool's size per server.
        loop {
            let pooled = b.pool.borrow_mut().checkout(server, now);
            let Some(s) = pooled else { break };
            // A pooled connection must be silent: bytes that arrived while it sat idle (a late body, a
            // second response) would be read as the next client's response, and an EOF means the server
            // closed it. The read-readiness poll glommio left armed after the last short read tells us
            // for free (as HAProxy's poller does); without one, a non-blocking peek does.
            let silent = match s.readable_since_last_read() {
                Some(readable) => !readable,
                None => looks_alive(&s),
            };
            if silent {
                return Ok((s, true));
            }
        }
    }
    let addr = b.cfg.servers[server].addr;
    let s = TcpStream::connect_timeout(addr, b.cfg.timeouts.connect).await?;
    s.set_nodelay(true)?;
    Ok((s, false))
}

/// Why reading a response head failed, and whether the request may be sent again.
struct HeadFailure {
    error: ProxyError,
    /// The connection failed before any response byte: safe to retry an idempotent request.
    before_any_byte: bool,
}

/// Reads the final response head into `x.bbuf`, relaying 1xx interim responses to HTTP/1.1 clients
/// (RFC 9110 §15.2). 101 is returned like a final response.
async fn read_response_head(
    c: &mut ClientConn,
    x: &mut Exchange,
    b: &mut TcpStream,
    head: &RequestHead,
    f: &Frontend,
    backend: &BackendCtx,
) -> Result<ResponseHead, HeadFailure> {
    let t = &backend.cfg.timeouts;
    let mut interim = 0usize;
    let mut any_byte = false;
    // The response timeout bounds the whole head; the clock is read only if it arrives in pieces.
    let mut deadline: Option<Instant> = None;
    let fail = |error, any: bool| HeadFailure {
        error,
        before_any_byte: !any,
    };
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
                    flush(&mut c.stream, &mut x.out, f.timeouts.body)
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

/// Forwards one request and its response. Ok(true): keep the client connection open.
///
/// A request is retried (once, on a fresh connection) only when it is idempotent and was sent whole in
/// one write, and the reused connection failed before any response byte: a non-idempotent request is
/// never sent twice (RFC 9110 §9.2.2).
pub(super) async fn forward(
    c: &mut ClientConn,
    x: &mut Exchange,
    f: &Frontend,
    head: RequestHead,
) -> Result<bool, ProxyError> {
    let ctx = c.ctx.clone();
    let backend = &ctx.backends[route(f, c.cbuf.filled(), &head, &mut c.route_path)];
    let bt = backend.cfg.timeouts;
    // Persistence and hash keys are read before the head leaves the buffer.
    let sticky = backend.cfg.cookie.as_ref().and_then(|ck| {
        let v = cookie::find(c.cbuf.filled(), &c.req_fields, ck.name.as_bytes())?;
        backend.sticky_server(v)
    });
    let key = match &backend.cfg.algorithm {
        Algorithm::Hash(k) if sticky.is_none() => hash_key(c, k, &head),
        _ => None,
    };
    if let (BodyFraming::Length(n), Some(max)) = (head.framing, f.limits.max_body) {
        if n > max {
            return Err(ProxyError::PayloadTooLarge);
        }
    }
    let expect = head.expect_continue && head.framing != BodyFraming::None;

    // The head is serialized once; it is sent again as is if the request is retried.
    x.out.clear();
    let fwd = Forwarding {
        client_ip: &c.ip_text[..c.ip_len],
        trusted: c.trusted,
        // For HTTP/1.0 requests without Host, like nginx's default `Host: $proxy_host`: the backend's name.
        default_host: backend.cfg.name.as_bytes(),
        strip_cookie: backend.cfg.cookie.as_ref().map(|ck| ck.name.as_bytes()),
    };
    write_request_head(&mut x.out, c.cbuf.filled(), &head, &c.req_fields, &fwd);
    c.cbuf.consume(head.head_len);

    // A body already fully received goes out in the same write as the head (the common small POST: one
    // syscall, and the request stays retryable as a whole).
    let body_with_head = match head.framing {
        BodyFraming::None => true,
        BodyFraming::Length(n)
            if !expect
                && c.cbuf.len() as u64 >= n
                && x.out.len() as u64 + n <= x.out.capacity() as u64 =>
        {
            let n = n as usize;
            x.out.extend_from_slice(&c.cbuf.filled()[..n]);
            c.cbuf.consume(n);
            true
        }
        _ => false,
    };
    let retryable = head.method.is_idempotent() && body_with_head && head.upgrade.is_none();

    let n_servers = backend.cfg.servers.len();
    let max_tries = MAX_CONNECT_TRIES.min(n_servers).max(1);
    let mut tried = [0usize; MAX_CONNECT_TRIES];
    let mut n_tried = 0usize;
    let mut fresh_only = false;
    let mut stale_retry_used = false;
    let first = sticky.or_else(|| backend.balancer.borrow_mut().pick(key, &[]));
    // All servers down (or draining, or in maintenance): answer at once, no connect timeout to wait.
    let Some(mut server) = first else {
        return Err(ProxyError::ServiceUnavailable("no server is up"));
    };
    let mut assigned = Assigned::new(&backend.balancer, server);
    // Bounded: at most max_tries connect failures, one stale-connection retry, and one liveness redo.
    let (mut b, resp) = loop {
        let (mut b, reused) = match get_conn(backend, server, fresh_only).await {
            Ok(x) => x,
            Err(e) => {
                ctx.log_error(format_args!(
                    "backend={} server={} connect failed: {e}",
                    backend.cfg.name, backend.cfg.servers[server].name
                ));
                backend.server_failed(server, &ctx.board);
                tried[n_tried] = server;
                n_tried += 1;
                let next = if n_tried >= max_tries {
                    None
                } else {
                    backend.balancer.borrow_mut().pick(key, &tried[..n_tried])
                };
                let Some(next) = next else {
                    return Err(ProxyError::ServiceUnavailable(
                        "no server accepted the connection",
                    ));
                };
                server = next;
                drop(assigned);
                assigned = Assigned::new(&backend.balancer, server);
                fresh_only = false;
                continue;
            }
        };
        if body_with_head {
            if write_all(&mut b, &x.out, bt.body).await.is_err() {
                if reused && retryable && !stale_retry_used {
                    stale_retry_used = true;
                    fresh_only = true;
                    continue;
                }
                return Err(ProxyError::BadGateway("could not send the request"));
            }
        } else {
            if expect {
                // RFC 9110 §10.1.1: we answer 100 ourselves once a server is connected, then stream the body.
                write_all(&mut c.stream, CONTINUE_100, f.timeouts.body)
                    .await
                    .map_err(|e| ProxyError::ClientIo(e.kind()))?;
            }
            let (framing, encode) = match head.framing {
                BodyFraming::Chunked => (SrcFraming::Chunked, Encode::Chunked),
                BodyFraming::Length(n) => (SrcFraming::Length(n), Encode::Raw),
                BodyFraming::None => (SrcFraming::Length(0), Encode::Raw),
            };
            let t = Timeouts {
                read: f.timeouts.body,
                write: bt.body,
            };
            copy_body(
                &mut c.stream,
                &mut c.cbuf,
                &mut b,
                &mut x.out,
                framing,
                encode,
                &t,
                f.limits.max_body,
            )
            .await
            .map_err(|f| match f.error {
                BodyError::SrcIo(k) => ProxyError::ClientIo(k),
                BodyError::SrcEof => ProxyError::ClientIo(io::ErrorKind::UnexpectedEof),
                BodyError::Chunk(_) => ProxyError::BadRequest("invalid chunked body"),
                BodyError::TooLarge => ProxyError::PayloadTooLarge,
                BodyError::DstIo(_) => ProxyError::BadGateway("could not send the request body"),
            })?;
        }
        x.bbuf.clear();
        match read_response_head(c, x, &mut b, &head, f, backend).await {
            Ok(resp) => break (b, resp),
            Err(HeadFailure {
                before_any_byte: true,
                error: ProxyError::BadGateway(_),
            }) if reused && retryable && !stale_retry_used => {
                // The keep-alive close race: the server closed the reused connection as we sent.
                stale_retry_used = true;
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
    };
    x.out.clear();
    // Passive health counts what HAProxy's `observe layer7` counts: 5xx but 501 and 505 (those say
    // "not supported", not "broken").
    if resp.status >= 500 && resp.status != 501 && resp.status != 505 {
        backend.server_failed(server, &ctx.board);
    } else {
        backend.health.on_success(server);
    }
    // Persistence: name the server in a cookie unless the client already sent the right one.
    let set_cookie: &[u8] = if sticky == Some(server) {
        b""
    } else {
        &backend.set_cookie[server]
    };

    if resp.status == 101 {
        if head.upgrade.is_none() {
            return Err(ProxyError::BadGateway("101 without an upgrade request"));
        }
        write_response_head(
            &mut x.out,
            x.bbuf.filled(),
            &resp,
            &x.resp_fields,
            ClientFraming::None,
            ConnectionField::Upgrade,
            b"",
        );
        x.bbuf.consume(resp.head_len);
        flush(&mut c.stream, &mut x.out, f.timeouts.body)
            .await
            .map_err(|e| ProxyError::ClientIo(e.kind()))?;
        let _ = tunnel(
            &mut c.stream,
            &mut c.cbuf,
            &mut b,
            &mut x.bbuf,
            f.timeouts.keepalive,
        )
        .await;
        return Ok(false);
    }

    // Frame the body for this client: HTTP/1.0 clients never get chunked (RFC 9112 §7).
    let (client_framing, src, encode, must_close) = match resp.framing {
        RespFraming::NoBody => {
            let meta = head.method == Method::Head || resp.status == 304;
            (
                if meta {
                    ClientFraming::Metadata(resp.content_length)
                } else {
                    ClientFraming::None
                },
                None,
                Encode::Raw,
                false,
            )
        }
        RespFraming::Length(n) => (
            ClientFraming::Length(n),
            Some(SrcFraming::Length(n)),
            Encode::Raw,
            false,
        ),
        RespFraming::Chunked if head.http10 => (
            ClientFraming::None,
            Some(SrcFraming::Chunked),
            Encode::Raw,
            true,
        ),
        RespFraming::Chunked => (
            ClientFraming::Chunked,
            Some(SrcFraming::Chunked),
            Encode::Chunked,
            false,
        ),
        RespFraming::Close if head.http10 => (
            ClientFraming::None,
            Some(SrcFraming::Eof),
            Encode::Raw,
            true,
        ),
        RespFraming::Close => (
            ClientFraming::Chunked,
            Some(SrcFraming::Eof),
            Encode::Chunked,
            false,
        ),
    };
    let keep = head.keep_alive && !must_close && !ctx.draining.get();
    let connection = match (keep, head.http10) {
        (false, _) => ConnectionField::Close,
        (true, true) => ConnectionField::KeepAlive,
        (true, false) => ConnectionField::None,
    };
    write_response_head(
        &mut x.out,
        x.bbuf.filled(),
        &resp,
        &x.resp_fields,
        client_framing,
        connection,
        set_cookie,
    );
    x.bbuf.consume(resp.head_len);
    match src {
        Some(src) => {
            let t = Timeouts {
                read: bt.body,
                write: f.timeouts.body,
            };
            copy_body(
                &mut b,
                &mut x.bbuf,
                &mut c.stream,
                &mut x.out,
                src,
                encode,
                &t,
                None,
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
        }
        None => flush(&mut c.stream, &mut x.out, f.timeouts.body)
            .await
            .map_err(|e| ProxyError::ClientIo(e.kind()))?,
    }

    // Reuse only a connection whose response ended exactly where its framing said (no stray bytes).
    if resp.keep_alive && x.bbuf.is_empty() {
        backend.pool.borrow_mut().checkin(server, b, Instant::now());
    } else {
        x.bbuf.clear();
    }
    drop(assigned);
    Ok(keep)
}

/// The key of `algorithm = "hash"`; `None` when the request lacks it (then the balancer falls back to
/// round robin, like HAProxy).
fn hash_key(c: &ClientConn, k: &HashKey, head: &RequestHead) -> Option<u64> {
    let buf = c.cbuf.filled();
    match k {
        HashKey::Source => Some(hash_ip(c.ip)),
        HashKey::Uri => {
            let path = head.path.get(buf);
            let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
            Some(hash_bytes(&path[..end]))
        }
        HashKey::Header(name) => c
            .req_fields
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| hash_bytes(f.value.get(buf))),
        HashKey::Cookie(name) => cookie::find(buf, &c.req_fields, name.as_bytes()).map(hash_bytes),
    }
}

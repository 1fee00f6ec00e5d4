//! One HTTP exchange as named phases, in the spirit of pingora's proxy phases. The connection loop
//! (`super::ClientConn::run`) reads the request head before and runs the log phase after; this driver
//! runs everything between:
//!
//! 1. `request_filter`: refuse what the frontend does not take (access rules and rate limits plug in here)
//! 2. `route` and `pick_input` (`route.rs`): the backend, and the persistence or hash key for its balancer
//! 3. `send::prepare`: the request head serialized for the server (and a body already here taken along)
//! 4. `Failover::start` + `send::forward`: pick and connect, send, read the response head (retries bounded)
//! 5. `response_filter`: passive health, persistence cookie (header rules plug in here)
//! 6. `respond::respond` (or `respond::upgrade` after a 101): response head, body streamed, connection reused
//!
//! Every phase records what it did in the connection's `ExchangeRecord`, so the log phase sees it
//! whatever way the exchange ends.

use crate::buf::Exchange;
use crate::config::Frontend;
use crate::error::ProxyError;
use crate::http::request::{BodyFraming, RequestHead};
use crate::http::response::ResponseHead;
use crate::proxy::route::{pick_input, route, Req};
use crate::proxy::{respond, send, ClientConn};
use crate::stream::Stream;
use crate::upstream::{BackendCtx, Failover};
use crate::worker::WorkerCtx;

/// Runs one exchange after its head was read. Ok(true): keep the client connection open.
pub(super) async fn run<S: Stream>(
    c: &mut ClientConn<S>,
    x: &mut Exchange,
    f: &Frontend,
    head: RequestHead,
) -> Result<bool, ProxyError> {
    request_filter(f, &head)?;
    let ctx = c.ctx.clone();
    let bi = route(f, c.cbuf.filled(), &head, &mut c.route_path);
    c.record.backend = u16::try_from(bi).unwrap_or(crate::record::NONE_INDEX);
    let req = Req {
        f,
        backend: &ctx.backends[bi],
        head: &head,
    };
    let pick = pick_input(req.backend, c.cbuf.filled(), &c.req_fields, c.ip, &head);
    let out = send::prepare(c, x, &req);
    let mut failover = Failover::start(req.backend, pick.key, pick.sticky)
        .map_err(|n| ProxyError::ServiceUnavailable(n.reason()))?;
    let (conn, resp) = send::forward(c, x, &req, out, &mut failover).await?;
    let server = failover.server();
    let set_cookie = response_filter(&ctx, req.backend, server, &resp, pick.sticky);
    if resp.status == 101 {
        return respond::upgrade(c, x, &req, &resp, conn).await;
    }
    respond::respond(c, x, &req, &resp, set_cookie, conn, server).await
    // `failover` (the server's in-flight count) is released here, after the response.
}

/// Refuses a request before any backend work. Today: a declared body larger than `max_body` (413).
pub(super) fn request_filter(f: &Frontend, head: &RequestHead) -> Result<(), ProxyError> {
    if let (BodyFraming::Length(n), Some(max)) = (head.framing, f.limits.max_body) {
        if n > max {
            return Err(ProxyError::PayloadTooLarge);
        }
    }
    Ok(())
}

/// After the response head: passive health counts the status, and persistence names the server in a
/// cookie unless the client already sent the right one. Returns the lines to add to the head.
pub(super) fn response_filter<'b>(
    ctx: &WorkerCtx,
    backend: &'b BackendCtx,
    server: usize,
    resp: &ResponseHead,
    sticky: Option<usize>,
) -> &'b [u8] {
    backend.observe_status(server, resp.status, &ctx.board);
    if sticky == Some(server) {
        b""
    } else {
        &backend.set_cookie[server]
    }
}

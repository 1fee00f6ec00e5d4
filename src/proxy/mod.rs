//! One client connection: read a request head, route it, forward it, relay the response, repeat while
//! keep-alive holds. Requests on a connection are handled strictly one after another, so pipelined
//! requests are answered in order (RFC 9112 §9.3).

mod body;
mod forward;
mod tcp;
mod tunnel;

pub use tcp::serve_tcp;

use std::io::Write as _;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::buf::Buf;
use crate::config::Frontend;
use crate::error::ProxyError;
use crate::http::request::{check_partial_limits, parse_request_head_into, RequestHead};
use crate::http::HeaderField;
use crate::limits::{BODY_BUF, LINGER_DRAIN_BYTES};
use crate::worker::{InFlight, WorkerCtx};

/// Longest IP address text (IPv6 full form).
const IP_TEXT_MAX: usize = 45;
/// Room for the longest canned answer with its Date header.
const CANNED_MAX: usize = 512;
/// How long a closing connection lingers to drain the client's unread bytes after an error answer.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct ClientConn {
    ctx: Rc<WorkerCtx>,
    fe: usize,
    stream: TcpStream,
    /// The client's address (IPv4-mapped IPv6 shown as IPv4), for `hash_key = "source"`.
    ip: IpAddr,
    ip_text: [u8; IP_TEXT_MAX],
    ip_len: usize,
    trusted: bool,
    /// Bytes from the client: request heads and request bodies. The buffers for the backend side are
    /// borrowed from the worker per exchange (`crate::buf::Exchange`).
    cbuf: Buf,
    req_fields: Vec<HeaderField>,
    /// The normalized request path, when routing needs it to differ from the raw one (grows once to
    /// the longest such path, bounded by the request line limit).
    route_path: Vec<u8>,
    /// The largest request head this frontend accepts (sizes the exchange buffers).
    head_max: usize,
}

/// Serves one accepted client connection until it closes. Never panics on input; errors end the
/// connection after the right answer, if any answer is still possible.
pub async fn serve(ctx: Rc<WorkerCtx>, fe: usize, mut stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let cfg = ctx.cfg.clone();
    let f: &Frontend = &cfg.frontends[fe];
    let head_max = f.limits.max_request_line.get() + f.limits.max_header_bytes.get() + 4;
    let mut cbuf = Buf::new(head_max.max(BODY_BUF));
    // Behind an L4 proxy speaking the PROXY protocol, the client is the one its header names.
    let client = if f.accept_proxy {
        let local = stream.local_addr().unwrap_or(peer);
        match tcp::read_proxy_header(&mut stream, &mut cbuf, f, peer, local).await {
            Ok((src, _)) => src,
            Err(why) => {
                ctx.log_error(format_args!("fe={} peer={} {why}", f.name, peer.ip()));
                return;
            }
        }
    } else {
        peer
    };
    let ip = tcp::unmapped(client.ip());
    let mut ip_text = [0u8; IP_TEXT_MAX];
    let ip_len = {
        let mut cur = &mut ip_text[..];
        let before = cur.len();
        let _ = write!(cur, "{ip}");
        before - cur.len()
    };
    let mut conn = ClientConn {
        trusted: f.trusted_proxies.iter().any(|n| n.contains(ip)),
        ctx,
        fe,
        stream,
        ip,
        ip_text,
        ip_len,
        cbuf,
        req_fields: Vec::with_capacity(f.limits.max_headers.get()),
        route_path: Vec::new(),
        head_max,
    };
    loop {
        match conn.one_request(f).await {
            Ok(true) => continue,
            Ok(false) => {
                if !conn.cbuf.is_empty() {
                    // Pipelined bytes we will not serve: close gracefully so the last answer is not lost
                    // to a reset (RFC 9112 §9.6).
                    conn.linger().await;
                }
                break;
            }
            Err(e) => {
                conn.fail(e).await;
                break;
            }
        }
    }
}

impl ClientConn {
    /// Ok(true): the connection stays open for another request.
    async fn one_request(&mut self, f: &Frontend) -> Result<bool, ProxyError> {
        let Some(head) = self.read_head(f).await? else {
            return Ok(false);
        };
        let ctx = self.ctx.clone();
        let _in_flight = InFlight::new(&ctx.in_flight);
        let mut x = ctx.exchanges.take(self.head_max);
        let r = forward::forward(self, &mut x, f, head).await;
        ctx.exchanges.give_back(x);
        r
    }

    /// Waits for a complete request head. Ok(None): the client closed or stayed idle past keep-alive.
    async fn read_head(&mut self, f: &Frontend) -> Result<Option<RequestHead>, ProxyError> {
        let t = &f.timeouts;
        // The header timeout starts with the first byte of the request (HAProxy's `timeout http-request`);
        // before that, the keep-alive idle timeout applies. The clock is read only once a head arrives
        // in pieces: the common whole-head-in-one-read path costs no clock read.
        let mut header_deadline: Option<Instant> = None;
        // How much of the buffer the last parse attempt saw. A head can only complete on a LF, so we
        // parse again only when new bytes brought one: a client sending a byte at a time costs a parse
        // per line, not per byte (no quadratic work for slowloris-style clients).
        let mut parsed_upto: Option<usize> = None;
        // Bounded: each iteration reads at least one byte or returns; the buffer is finite.
        loop {
            let timeout = if self.cbuf.is_empty() {
                if self.ctx.draining.get() {
                    return Ok(None);
                }
                t.keepalive
            } else {
                let filled = self.cbuf.filled();
                let new_lf = match parsed_upto {
                    None => true,
                    Some(n) => filled.get(n..).is_some_and(|new| new.contains(&b'\n')),
                };
                if new_lf {
                    parsed_upto = Some(filled.len());
                    if let Some(h) =
                        parse_request_head_into(filled, &f.limits, &mut self.req_fields)?
                    {
                        return Ok(Some(h));
                    }
                } else {
                    check_partial_limits(filled, &f.limits)?;
                }
                if self.cbuf.is_full() {
                    return Err(ProxyError::HeadersTooLarge);
                }
                let now = Instant::now();
                let deadline = *header_deadline.get_or_insert(now + t.header);
                let left = deadline.saturating_duration_since(now);
                if left.is_zero() {
                    return Err(ProxyError::RequestTimeout);
                }
                left
            };
            match self.cbuf.read_from(&mut self.stream, timeout).await {
                Ok(0) if self.cbuf.is_empty() => return Ok(None),
                Ok(0) => return Err(ProxyError::ClientIo(std::io::ErrorKind::UnexpectedEof)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return if self.cbuf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ProxyError::RequestTimeout)
                    };
                }
                Err(e) => return Err(ProxyError::ClientIo(e.kind())),
            }
        }
    }

    fn ip(&self) -> &[u8] {
        &self.ip_text[..self.ip_len]
    }

    /// Answers a local error (if the client can still be answered) and closes gracefully: the write side
    /// is shut down, then a bounded amount of unread input is drained so the client reads our answer
    /// instead of a reset (RFC 9112 §9.6).
    async fn fail(&mut self, e: ProxyError) {
        if !matches!(e, ProxyError::ClientIo(_)) {
            self.ctx.log_error(format_args!(
                "fe={} client={} {e}",
                self.fe,
                String::from_utf8_lossy(self.ip())
            ));
        }
        let Some(canned) = e.canned() else { return };
        let date = self.ctx.date.get();
        // Canned answers are ~200 bytes: assembled on the stack, no buffer borrowed on the error path.
        let mut msg = [0u8; CANNED_MAX];
        let mut len = 0;
        for part in [canned.status_line, b"date: ", &date, b"\r\n", canned.rest] {
            let Some(dst) = msg.get_mut(len..len + part.len()) else {
                return;
            };
            dst.copy_from_slice(part);
            len += part.len();
        }
        let body_timeout = self.ctx.cfg.frontends[self.fe].timeouts.body;
        if crate::buf::write_all(&mut self.stream, &msg[..len], body_timeout)
            .await
            .is_err()
        {
            return;
        }
        self.linger().await;
    }

    /// Half-closes, then reads and discards a bounded amount for a bounded time.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
        let mut drained = 0usize;
        let until = Instant::now() + LINGER_TIMEOUT;
        while drained < LINGER_DRAIN_BYTES {
            self.cbuf.clear();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.cbuf.read_from(&mut self.stream, left).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

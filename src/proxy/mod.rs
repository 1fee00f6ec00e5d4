//! One client connection: read a request head, route it, forward it, relay the response, repeat while
//! keep-alive holds. Requests on a connection are handled strictly one after another, so pipelined
//! requests are answered in order (RFC 9112 §9.3).

mod body;
mod buf;
mod forward;
mod tunnel;

use std::io::Write as _;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::config::Frontend;
use crate::error::ProxyError;
use crate::http::request::{parse_request_head_into, RequestHead};
use crate::http::HeaderField;
use crate::limits::{BODY_BUF, LINGER_DRAIN_BYTES, MAX_RESPONSE_HEADERS};
use crate::worker::{InFlight, WorkerCtx};

pub use buf::Buf;

/// Longest IP address text (IPv6 full form).
const IP_TEXT_MAX: usize = 45;
/// Room for fields corelb adds to a request head (X-Forwarded-*, framing, Host) beyond what it removes.
const ADDED_HEAD_BYTES: usize = 1024;
/// How long a closing connection lingers to drain the client's unread bytes after an error answer.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct ClientConn {
    ctx: Rc<WorkerCtx>,
    fe: usize,
    stream: TcpStream,
    ip_text: [u8; IP_TEXT_MAX],
    ip_len: usize,
    trusted: bool,
    /// Bytes from the client: request heads and request bodies.
    cbuf: Buf,
    /// Bytes from the backend: response heads and bodies.
    bbuf: Buf,
    /// Bytes being written: a serialized head, then body bytes (bounded by its initial capacity).
    out: Vec<u8>,
    req_fields: Vec<HeaderField>,
    resp_fields: Vec<HeaderField>,
}

/// Serves one accepted client connection until it closes. Never panics on input; errors end the
/// connection after the right answer, if any answer is still possible.
pub async fn serve(ctx: Rc<WorkerCtx>, fe: usize, stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let cfg = ctx.cfg.clone();
    let f: &Frontend = &cfg.frontends[fe];
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let mut ip_text = [0u8; IP_TEXT_MAX];
    let ip_len = {
        let mut cur = &mut ip_text[..];
        let before = cur.len();
        let _ = write!(cur, "{ip}");
        before - cur.len()
    };
    let head_max = f.limits.max_request_line.get() + f.limits.max_header_bytes.get() + 4;
    let mut conn = ClientConn {
        trusted: f.trusted_proxies.iter().any(|n| n.contains(ip)),
        ctx,
        fe,
        stream,
        ip_text,
        ip_len,
        cbuf: Buf::new(head_max.max(BODY_BUF)),
        bbuf: Buf::new(BODY_BUF.max(crate::limits::MAX_RESPONSE_HEAD)),
        // A head (request or response) plus one body buffer's worth, so small bodies leave in the same
        // write as their head.
        out: Vec::with_capacity(
            head_max.max(crate::limits::MAX_RESPONSE_HEAD) + ADDED_HEAD_BYTES + BODY_BUF,
        ),
        req_fields: Vec::with_capacity(f.limits.max_headers.get()),
        resp_fields: Vec::with_capacity(MAX_RESPONSE_HEADERS),
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
        forward::forward(self, f, head).await
    }

    /// Waits for a complete request head. Ok(None): the client closed or stayed idle past keep-alive.
    async fn read_head(&mut self, f: &Frontend) -> Result<Option<RequestHead>, ProxyError> {
        let t = &f.timeouts;
        let start = Instant::now();
        let idle_deadline = start + t.keepalive;
        // The header timeout starts with the first byte of the request (HAProxy's `timeout http-request`);
        // before that, the keep-alive idle timeout applies.
        let mut header_deadline = (!self.cbuf.is_empty()).then(|| start + t.header);
        // Bounded: each iteration reads at least one byte or returns; the buffer is finite.
        loop {
            if !self.cbuf.is_empty() {
                if let Some(h) =
                    parse_request_head_into(self.cbuf.filled(), &f.limits, &mut self.req_fields)?
                {
                    return Ok(Some(h));
                }
                if self.cbuf.is_full() {
                    return Err(ProxyError::HeadersTooLarge);
                }
                header_deadline.get_or_insert_with(|| Instant::now() + t.header);
            }
            if self.ctx.draining.get() && self.cbuf.is_empty() {
                return Ok(None);
            }
            let deadline = header_deadline.unwrap_or(idle_deadline);
            let left = deadline.saturating_duration_since(Instant::now());
            let res = if left.is_zero() {
                Err(std::io::ErrorKind::TimedOut.into())
            } else {
                self.cbuf.read_from(&mut self.stream, left).await
            };
            match res {
                Ok(0) if self.cbuf.is_empty() => return Ok(None),
                Ok(0) => return Err(ProxyError::ClientIo(std::io::ErrorKind::UnexpectedEof)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return if header_deadline.is_some() {
                        Err(ProxyError::RequestTimeout)
                    } else {
                        Ok(None)
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
        self.out.clear();
        self.out.extend_from_slice(canned.status_line);
        self.out.extend_from_slice(b"date: ");
        self.out.extend_from_slice(&date);
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(canned.rest);
        let f = &self.ctx.cfg.frontends[self.fe];
        let body_timeout = f.timeouts.body;
        if buf::write_all(&mut self.stream, &self.out, body_timeout)
            .await
            .is_err()
        {
            return;
        }
        self.out.clear();
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

//! One client connection: accept it (peer address, PROXY header), then read a request head, run the
//! exchange, log it, and repeat while keep-alive holds. Requests on a connection are handled strictly
//! one after another, so pipelined requests are answered in order (RFC 9112 §9.3).
//!
//! The exchange's phases (`exchange.rs`) are generic over the client's [`Stream`]: plain TCP today, TLS
//! once the handshake has run at accept.

mod body;
mod exchange;
mod respond;
mod route;
mod send;
mod tcp;
#[cfg(test)]
mod tests;
mod tunnel;

pub use tcp::serve_tcp;

use std::io::Write as _;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::buf::{Buf, Exchange};
use crate::config::Frontend;
use crate::error::ProxyError;
use crate::http::request::{check_partial_limits, parse_request_head_into, RequestHead};
use crate::http::HeaderField;
use crate::limits::{BODY_BUF, LINGER_DRAIN_BYTES, LINGER_TIMEOUT, LOG_REQUEST_LINE_MAX};
use crate::record::ExchangeRecord;
use crate::stream::Stream;
use crate::worker::{InFlight, WorkerCtx};

/// Longest IP address text (IPv6 full form).
const IP_TEXT_MAX: usize = 45;
/// Room for the longest canned answer with its Date header.
const CANNED_MAX: usize = 512;

pub(crate) struct ClientConn<S> {
    ctx: Rc<WorkerCtx>,
    fe: usize,
    stream: S,
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
    /// The current exchange's record, filled by the phases and handed to the log phase.
    record: ExchangeRecord,
    /// When the current head's first byte was seen, if it came in pieces (for the record).
    head_first_byte: Option<Instant>,
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
    // A TLS frontend would run its handshake here and hand the TLS stream on instead.
    ClientConn::new(ctx, fe, stream, client.ip(), cbuf, head_max)
        .run(f)
        .await;
}

impl<S: Stream> ClientConn<S> {
    fn new(
        ctx: Rc<WorkerCtx>,
        fe: usize,
        stream: S,
        client: IpAddr,
        cbuf: Buf,
        head_max: usize,
    ) -> Self {
        let f = &ctx.cfg.frontends[fe];
        let ip = tcp::unmapped(client);
        let mut ip_text = [0u8; IP_TEXT_MAX];
        let ip_len = {
            let mut cur = &mut ip_text[..];
            let before = cur.len();
            let _ = write!(cur, "{ip}");
            before - cur.len()
        };
        ClientConn {
            trusted: f.trusted_proxies.iter().any(|n| n.contains(ip)),
            req_fields: Vec::with_capacity(f.limits.max_headers.get()),
            record: ExchangeRecord::new(fe, Instant::now()),
            ctx,
            fe,
            stream,
            ip,
            ip_text,
            ip_len,
            cbuf,
            route_path: Vec::new(),
            head_max,
            head_first_byte: None,
        }
    }

    /// The connection's loop: one exchange after another. Bounded by the client: each round reads a
    /// new request head or ends the connection.
    async fn run(mut self, f: &Frontend) {
        loop {
            let head = match self.read_head(f).await {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if !self.cbuf.is_empty() {
                        // Pipelined bytes we will not serve: close gracefully so the last answer is
                        // not lost to a reset (RFC 9112 §9.6).
                        self.linger().await;
                    }
                    return;
                }
                Err(e) => {
                    // A head that broke a rule: an exchange with a local answer and no request line.
                    self.begin_record(None);
                    let answered = self.answer(e).await;
                    self.log(b"");
                    if answered {
                        self.linger().await;
                    }
                    return;
                }
            };
            let ctx = self.ctx.clone();
            let in_flight = InFlight::new(&ctx.in_flight);
            let mut x = ctx.exchanges.take(self.head_max);
            self.begin_record(Some((&head, &mut x)));
            let (keep, answered) = match exchange::run(&mut self, &mut x, f, head).await {
                Ok(keep) => (keep, false),
                Err(e) => (false, self.answer(e).await),
            };
            self.record.keep_alive = keep;
            self.log(&x.request_line);
            ctx.exchanges.give_back(x);
            drop(in_flight);
            if !keep {
                // After a local answer, or with pipelined bytes we will not serve (RFC 9112 §9.6):
                // close gracefully.
                let unserved = self.record.error.is_none() && !self.cbuf.is_empty();
                if answered || unserved {
                    self.linger().await;
                }
                return;
            }
        }
    }

    /// Starts the record of an exchange: the clock origin is now, the head is complete (or refused).
    fn begin_record(&mut self, head: Option<(&RequestHead, &mut Exchange)>) {
        let now = Instant::now();
        self.record = ExchangeRecord::new(self.fe, now);
        if let Some(first) = self.head_first_byte.take() {
            self.record.head_us = crate::record::micros(now.saturating_duration_since(first));
        }
        let Some((head, x)) = head else { return };
        self.record.method = head.method;
        self.record.http10 = head.http10;
        self.record.bytes_in = head.head_len as u64;
        let buf = self.cbuf.filled();
        let line_end = buf[..head.head_len]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(0);
        x.request_line.clear();
        x.request_line
            .extend_from_slice(&buf[..line_end.min(LOG_REQUEST_LINE_MAX)]);
    }

    /// The log phase: the record is complete. Today its sink is the worker's totals (logged at
    /// shutdown); the access log and the metrics plug in here.
    fn log(&mut self, _request_line: &[u8]) {
        self.record.total_us = self.record.since_start(Instant::now());
        self.ctx.totals.add(&self.record);
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
                let deadline = *header_deadline.get_or_insert_with(|| {
                    self.head_first_byte = Some(now);
                    now + t.header
                });
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

    fn frontend(&self) -> &Frontend {
        &self.ctx.cfg.frontends[self.fe]
    }

    /// Answers a local error if the client can still be answered. `true`: an answer was sent, so the
    /// connection must linger (`linger`) before it closes.
    async fn answer(&mut self, e: ProxyError) -> bool {
        self.record.error = Some(e);
        if !matches!(e, ProxyError::ClientIo(_)) {
            self.ctx.log_error(format_args!(
                "fe={} client={} {e}",
                self.frontend().name,
                String::from_utf8_lossy(self.ip())
            ));
        }
        let Some(canned) = e.canned() else {
            return false;
        };
        let date = self.ctx.date.get();
        // Canned answers are ~200 bytes: assembled on the stack, no buffer borrowed on the error path.
        let mut msg = [0u8; CANNED_MAX];
        let mut len = 0;
        for part in [canned.status_line, b"date: ", &date, b"\r\n", canned.rest] {
            let Some(dst) = msg.get_mut(len..len + part.len()) else {
                return false;
            };
            dst.copy_from_slice(part);
            len += part.len();
        }
        let body_timeout = self.frontend().timeouts.body;
        if crate::buf::write_all(&mut self.stream, &msg[..len], body_timeout)
            .await
            .is_err()
        {
            return false;
        }
        self.record.status = canned.status;
        self.record.local = true;
        self.record.bytes_out += len as u64;
        true
    }

    /// Closes gracefully: the write side is shut down, then a bounded amount of unread input is
    /// drained for a bounded time, so the client reads our answer instead of a reset (RFC 9112 §9.6).
    async fn linger(&mut self) {
        use futures_lite::AsyncWriteExt;
        let _ = self.stream.close().await;
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

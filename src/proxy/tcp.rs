//! TCP mode: each client connection is piped to one server of the frontend's default backend, picked
//! by the same balancers and health states as HTTP mode, with bounded connect failover, an optional
//! PROXY protocol header toward the server, half-close relayed and an idle timeout. Also the reading of
//! a PROXY header from trusted peers (`accept_proxy`), shared with HTTP mode.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::balance::hash_ip;
use crate::buf::{write_all, Buf};
use crate::config::{Algorithm, Frontend, HashKey};
use crate::proxy::tunnel::tunnel;
use crate::proxy_protocol;
use crate::upstream::{connect, BackendCtx, Failover, NoServer};
use crate::worker::{InFlight, WorkerCtx};

/// Shows an IPv4-mapped IPv6 address as IPv4, as everywhere else in corelb.
pub(super) fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// For `accept_proxy` frontends: refuses peers outside `trusted_proxies`, then reads the PROXY header
/// (v1 or v2) into `buf` and consumes it. Returns the client and destination addresses it names (the
/// connection's own when the header says UNKNOWN/LOCAL). Bytes after the header stay in `buf`.
pub(super) async fn read_proxy_header(
    stream: &mut TcpStream,
    buf: &mut Buf,
    f: &Frontend,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<(SocketAddr, SocketAddr), &'static str> {
    let ip = unmapped(peer.ip());
    if !f.trusted_proxies.iter().any(|n| n.contains(ip)) {
        return Err("PROXY protocol peer not in trusted_proxies");
    }
    let deadline = Instant::now() + f.timeouts.header;
    // Bounded: each round reads at least one byte, and the header is at most MAX_HEADER bytes.
    loop {
        match proxy_protocol::parse(buf.filled()) {
            Ok(Some(h)) => {
                buf.consume(h.len);
                return Ok((h.src.unwrap_or(peer), h.dst.unwrap_or(local)));
            }
            Ok(None) => {}
            Err(proxy_protocol::HeaderError::Missing) => return Err("no PROXY protocol header"),
            Err(proxy_protocol::HeaderError::Invalid(why)) => return Err(why),
        }
        if buf.len() >= proxy_protocol::MAX_HEADER || buf.is_full() {
            return Err("PROXY protocol header too long");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("PROXY protocol header not received in time");
        }
        match buf.read_from(stream, left).await {
            Ok(0) => return Err("closed before the PROXY protocol header"),
            Ok(_) => {}
            Err(_) => return Err("PROXY protocol header not received"),
        }
    }
}

/// Serves one TCP-mode connection until both sides have closed, it idles out, or it fails.
pub async fn serve_tcp(ctx: Rc<WorkerCtx>, fe: usize, mut client: TcpStream) {
    let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let cfg = ctx.cfg.clone();
    let f = &cfg.frontends[fe];
    let mut cbuf = ctx.tcp_bufs.take();
    let (src, dst) = if f.accept_proxy {
        match read_proxy_header(&mut client, &mut cbuf, f, peer, local).await {
            Ok(addrs) => addrs,
            Err(why) => {
                ctx.log_error(format_args!("fe={} peer={} {why}", f.name, peer.ip()));
                ctx.tcp_bufs.give_back(cbuf);
                return;
            }
        }
    } else {
        (peer, local)
    };
    let _in_flight = InFlight::new(&ctx.in_flight);
    let backend = &ctx.backends[f.default_backend];
    let key = match &backend.cfg.algorithm {
        Algorithm::Hash(HashKey::Source) => Some(hash_ip(src.ip())),
        _ => None,
    };
    // `failover` counts the connection against its server for as long as the session lives.
    let (mut server_stream, failover) = match connect_with_failover(&ctx, backend, key).await {
        Ok(connected) => connected,
        Err(why) => {
            ctx.log_error(format_args!(
                "fe={} client={} backend={} {}",
                f.name,
                src.ip(),
                backend.cfg.name,
                why.reason()
            ));
            ctx.tcp_bufs.give_back(cbuf);
            return;
        }
    };
    let server = failover.server();
    backend.health.on_success(server);

    if let Some(version) = backend.cfg.servers[server].send_proxy {
        let mut header = [0u8; proxy_protocol::WRITE_MAX];
        let n = proxy_protocol::write(&mut header, version, src, dst);
        if write_all(&mut server_stream, &header[..n], backend.cfg.timeouts.body)
            .await
            .is_err()
        {
            ctx.tcp_bufs.give_back(cbuf);
            return;
        }
    }
    let mut sbuf = ctx.tcp_bufs.take();
    // Ends when both sides have closed, at the idle timeout, or on a reset from either side: in TCP
    // mode there is nothing to answer in any of these cases.
    let _ = tunnel(
        &mut client,
        &mut cbuf,
        &mut server_stream,
        &mut sbuf,
        f.timeouts.idle,
    )
    .await;
    ctx.tcp_bufs.give_back(sbuf);
    ctx.tcp_bufs.give_back(cbuf);
}

/// Picks a server and connects, failing over to another one on a connect failure (bounded by
/// `Failover`).
async fn connect_with_failover<'a>(
    ctx: &WorkerCtx,
    backend: &'a BackendCtx,
    key: Option<u64>,
) -> Result<(TcpStream, Failover<'a>), NoServer> {
    let mut failover = Failover::start(backend, key, None)?;
    // Bounded: each failure moves `failover` toward its MAX_CONNECT_TRIES bound.
    loop {
        let srv = &backend.cfg.servers[failover.server()];
        match connect(srv.addr, backend.cfg.timeouts.connect).await {
            Ok(stream) => return Ok((stream, failover)),
            Err(e) => {
                ctx.log_error(format_args!(
                    "backend={} server={} connect failed: {e}",
                    backend.cfg.name, srv.name
                ));
                failover.connect_failed(&ctx.board)?;
            }
        }
    }
}

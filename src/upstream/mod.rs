//! Upstream state, per core: for each backend its balancer, its pool of idle connections and its
//! health view ([`BackendCtx`]); which server a request or TCP session counts against ([`Assigned`]);
//! and the bounded connect failover both modes share ([`Failover`]). Owned by one worker thread: no
//! lock, no atomic on the request path.

mod failover;
pub mod pool;

pub use failover::{Failover, NoServer};

use std::cell::RefCell;
use std::io;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::balance::{hash_bytes, Balancer, Policy, ServerSpec};
use crate::config::{Algorithm, Backend};
use crate::health::board::Board;
use crate::health::view::{BackendHealth, Passed};
use pool::{looks_alive, Pool};

pub struct BackendCtx {
    pub cfg: Backend,
    pub balancer: RefCell<Balancer>,
    pub pool: RefCell<Pool>,
    pub health: BackendHealth,
    /// Per server: the `set-cookie` and `cache-control` lines inserted for persistence, built once.
    pub set_cookie: Box<[Box<[u8]>]>,
    /// Scratch for effective weights (control plane; kept to avoid reallocating).
    weights: RefCell<Vec<u32>>,
}

impl BackendCtx {
    pub fn new(
        cfg: &Backend,
        index: usize,
        worker: usize,
        workers: usize,
        board: &Board,
    ) -> BackendCtx {
        let policy = match cfg.algorithm {
            Algorithm::RoundRobin => Policy::RoundRobin,
            Algorithm::LeastConn => Policy::LeastConn,
            Algorithm::Random => Policy::Random,
            Algorithm::First => Policy::First,
            Algorithm::Hash(_) => Policy::Hash,
        };
        let specs: Vec<ServerSpec> = cfg
            .servers
            .iter()
            .map(|s| ServerSpec {
                weight: s.weight.get(),
                backup: s.backup,
                // Each worker gets its share of the server's maxconn (rounded up).
                maxconn: s
                    .maxconn
                    .map(|m| m.get().div_ceil(workers.max(1) as u32).max(1)),
                id_hash: hash_bytes(format!("{}/{}", cfg.name, s.name).as_bytes()),
            })
            .collect();
        let set_cookie = cfg
            .servers
            .iter()
            .map(|s| match &cfg.cookie {
                Some(c) => format!(
                    "set-cookie: {}={}; Path=/; HttpOnly\r\ncache-control: private\r\n",
                    c.name, s.cookie
                )
                .into_bytes()
                .into_boxed_slice(),
                None => Box::default(),
            })
            .collect();
        let b = BackendCtx {
            cfg: cfg.clone(),
            // Workers start at different servers so N workers do not all hit server 0 first.
            balancer: RefCell::new(Balancer::new(policy, &specs, cfg.allbackups, worker as u64)),
            pool: RefCell::new(Pool::new(
                cfg.servers.len(),
                cfg.pool.max_idle_per_server,
                cfg.pool.idle_timeout,
            )),
            health: BackendHealth::new(cfg, index, board),
            set_cookie,
            weights: RefCell::new(Vec::with_capacity(cfg.servers.len())),
        };
        b.rebuild(Instant::now());
        b
    }

    /// Recomputes effective weights and the balancer's active set (control plane, or the error path).
    pub fn rebuild(&self, now: Instant) {
        let mut w = self.weights.borrow_mut();
        self.health.effective(now, &mut w);
        self.balancer.borrow_mut().rebuild(&w);
    }

    /// The server a persistence cookie value names, if it may still take its sticky sessions.
    pub fn sticky_server(&self, value: &[u8]) -> Option<usize> {
        let s = self
            .cfg
            .servers
            .iter()
            .position(|s| s.cookie.as_bytes() == value)?;
        self.health.servers[s].takes_sticky().then_some(s)
    }

    /// Passive health: a connect failure, 5xx or timeout from server `s` (error path only).
    pub fn server_failed(&self, s: usize, board: &Board) {
        let now = Instant::now();
        if self.health.on_error(s, now) == Passed::Ejected {
            self.rebuild(now);
            board.report(self.health.servers[s].index);
        }
    }

    /// Passive health after a response from server `s`: what HAProxy's `observe layer7` counts as a
    /// failure is a 5xx but 501 and 505 (those say "not supported", not "broken").
    pub fn observe_status(&self, s: usize, status: u16, board: &Board) {
        if is_server_failure(status) {
            self.server_failed(s, board);
        } else {
            self.health.on_success(s);
        }
    }

    /// A connection to `server`: the most recent silent pooled one unless `fresh_only`, else a new one.
    /// Ok((stream, reused)).
    pub async fn connection(
        &self,
        server: usize,
        fresh_only: bool,
    ) -> io::Result<(TcpStream, bool)> {
        if !fresh_only {
            let now = Instant::now();
            // Bounded by the pool's size per server.
            loop {
                let pooled = self.pool.borrow_mut().checkout(server, now);
                let Some(s) = pooled else { break };
                // A pooled connection must be silent: bytes that arrived while it sat idle (a late
                // body, a second response) would be read as the next client's response, and an EOF
                // means the server closed it. The read-readiness poll glommio left armed after the
                // last short read tells us for free (as HAProxy's poller does); without one, a
                // non-blocking peek does.
                let silent = match s.readable_since_last_read() {
                    Some(readable) => !readable,
                    None => looks_alive(&s),
                };
                if silent {
                    return Ok((s, true));
                }
            }
        }
        let s = connect(self.cfg.servers[server].addr, self.cfg.timeouts.connect).await?;
        Ok((s, false))
    }

    /// Gives back a connection whose response ended exactly at its framing.
    pub fn release(&self, server: usize, stream: TcpStream) {
        self.pool
            .borrow_mut()
            .checkin(server, stream, Instant::now());
    }
}

/// What passive health counts as a server failure among response statuses.
pub fn is_server_failure(status: u16) -> bool {
    status >= 500 && status != 501 && status != 505
}

/// A new connection with Nagle off (requests and responses are written whole).
pub async fn connect(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, timeout).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Counts a request (or a TCP connection) as in flight on its server, for leastconn, random and first,
/// for as long as it lives.
pub struct Assigned<'a> {
    balancer: &'a RefCell<Balancer>,
    server: usize,
}

impl<'a> Assigned<'a> {
    pub fn new(balancer: &'a RefCell<Balancer>, server: usize) -> Self {
        balancer.borrow_mut().started(server);
        Assigned { balancer, server }
    }

    pub fn server(&self) -> usize {
        self.server
    }
}

impl Drop for Assigned<'_> {
    fn drop(&mut self) {
        self.balancer.borrow_mut().finished(self.server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_health_counts_5xx_but_501_and_505() {
        for s in [500, 502, 503, 504, 599] {
            assert!(is_server_failure(s), "{s}");
        }
        for s in [200, 204, 301, 404, 499, 501, 505] {
            assert!(!is_server_failure(s), "{s}");
        }
    }
}

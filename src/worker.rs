//! Per-core state: everything the request path touches lives here, owned by one executor thread
//! (`Rc`/`Cell`/`RefCell`, no lock, no atomic).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;

use std::time::Instant;

use crate::balance::{hash_bytes, Balancer, Policy, ServerSpec};
use crate::buf::{BufPool, ExchangePool};
use crate::config::{Algorithm, Backend, Config};
use crate::health::board::Board;
use crate::health::view::{BackendHealth, Passed};
use crate::http::date::DateCache;
use crate::log::RateLimited;
use crate::pool::Pool;

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
    fn new(
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
}

pub struct WorkerCtx {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub backends: Vec<BackendCtx>,
    /// Requests between head parsed and response finished; shutdown waits for this to reach 0.
    pub in_flight: Cell<usize>,
    /// Set on SIGTERM/SIGINT: finish the current exchange, then close.
    pub draining: Cell<bool>,
    /// Closed (never signalled) on shutdown: every waiter wakes at once with an error.
    pub stop: Rc<Semaphore>,
    pub date: DateCache,
    pub errors: RateLimited,
    pub exchanges: ExchangePool,
    pub tcp_bufs: BufPool,
    /// Health shared across workers; read by the control task (`sync_health`), not the request path.
    pub board: Arc<Board>,
    board_generation: Cell<u64>,
    /// Health changes this worker applied, and the slowest propagation seen (logged at shutdown).
    pub health_applied: Cell<u64>,
    pub health_max_lag: Cell<std::time::Duration>,
}

impl WorkerCtx {
    pub fn new(id: usize, workers: usize, cfg: Arc<Config>, board: Arc<Board>) -> WorkerCtx {
        let backends = cfg
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| BackendCtx::new(b, i, id, workers, &board))
            .collect();
        WorkerCtx {
            id,
            cfg,
            backends,
            in_flight: Cell::new(0),
            draining: Cell::new(false),
            stop: Rc::new(Semaphore::new(0)),
            date: DateCache::default(),
            errors: RateLimited::default(),
            exchanges: ExchangePool::default(),
            tcp_bufs: BufPool::default(),
            board_generation: Cell::new(board.generation()),
            health_applied: Cell::new(0),
            health_max_lag: Cell::new(std::time::Duration::ZERO),
            board,
        }
    }

    /// Control tick: applies health changes published by owners, ends expired ejections and steps slow
    /// starts. One atomic load when nothing changed.
    pub fn sync_health(&self, now: Instant) {
        let generation = self.board.generation();
        let moved = generation != self.board_generation.get();
        self.board_generation.set(generation);
        if moved {
            self.health_applied.set(self.health_applied.get() + 1);
            let lag = self.board.since_change(now);
            if lag > self.health_max_lag.get() {
                self.health_max_lag.set(lag);
            }
        }
        for b in &self.backends {
            let changed = moved && b.health.pull(&self.board);
            if changed || b.health.due(now) {
                b.rebuild(now);
            }
        }
    }

    /// Resolves when shutdown begins.
    pub async fn stopped(&self) {
        // A closed semaphore fails every acquire at once; it is never signalled otherwise.
        let _ = self.stop.acquire(1).await;
    }

    pub fn log_error(&self, what: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.errors.allow() {
            if suppressed > 0 {
                crate::log_info!(
                    "worker={} {} ({} similar lines suppressed)",
                    self.id,
                    what,
                    suppressed
                );
            } else {
                crate::log_info!("worker={} {}", self.id, what);
            }
        }
    }
}

/// Counts a request as in flight for as long as it lives.
pub struct InFlight<'a>(&'a Cell<usize>);

impl<'a> InFlight<'a> {
    pub fn new(c: &'a Cell<usize>) -> Self {
        c.set(c.get() + 1);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
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
}

impl Drop for Assigned<'_> {
    fn drop(&mut self) {
        self.balancer.borrow_mut().finished(self.server);
    }
}

//! Per-core state: everything the request path touches lives here, owned by one executor thread
//! (`Rc`/`Cell`/`RefCell`, no lock, no atomic).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::sync::Semaphore;

use crate::buf::{BufPool, ExchangePool};
use crate::config::Config;
use crate::health::board::Board;
use crate::http::date::DateCache;
use crate::log::RateLimited;
use crate::record::Totals;
use crate::upstream::BackendCtx;

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
    /// What the log phase saw of every exchange this core finished (logged at shutdown).
    pub totals: Totals,
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
            totals: Totals::default(),
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

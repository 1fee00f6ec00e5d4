//! Per-core state: everything the request path touches lives here, owned by one executor thread
//! (`Rc`/`Cell`/`RefCell`, no lock, no atomic).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;

use crate::balance::RoundRobin;
use crate::buf::ExchangePool;
use crate::config::{Backend, Config};
use crate::http::date::DateCache;
use crate::log::RateLimited;
use crate::pool::Pool;

pub struct BackendCtx {
    pub cfg: Backend,
    pub balancer: RefCell<RoundRobin>,
    pub pool: RefCell<Pool>,
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
}

impl WorkerCtx {
    pub fn new(id: usize, cfg: Arc<Config>) -> WorkerCtx {
        let backends = cfg
            .backends
            .iter()
            .map(|b| {
                let weights: Vec<u32> = b.servers.iter().map(|s| s.weight.get()).collect();
                BackendCtx {
                    cfg: b.clone(),
                    // Workers start at different servers so N workers do not all hit server 0 first.
                    balancer: RefCell::new(RoundRobin::new(&weights, id)),
                    pool: RefCell::new(Pool::new(
                        b.servers.len(),
                        b.pool.max_idle_per_server,
                        b.pool.idle_timeout,
                    )),
                }
            })
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

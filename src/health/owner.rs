//! The owner side of health: each server is owned by one worker (flat index modulo workers), which runs
//! its active checks and turns passive reports into ejections, in a low-priority task queue so checks
//! never delay requests. Results go to the [`Board`]; every worker picks them up on its next control
//! tick. Control plane only.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};

use super::board::Board;
use super::machine::{jittered, Health, Machine, Transition};
use super::probe::{http_request, probe};
use crate::config::{AdminState, Backend, CheckKind, Config};
use crate::log_info;

/// Share of the CPU the health task queue gets under contention, against the default queue's 1000:
/// checks are few and cheap, and must never compete with requests.
const HEALTH_SHARES: usize = 10;
/// How often an owner looks for passive reports of a server it owns (same as the control tick, so an
/// ejection reaches every worker within two ticks).
const REPORT_POLL: Duration = Duration::from_millis(50);
/// Most doublings of the passive ejection time (2^10 x eject is far above any sane max_eject).
const MAX_EJECT_DOUBLINGS: u32 = 10;

/// Starts the health tasks of the servers this worker owns. Returns how many it started.
pub fn spawn_owned(
    worker: usize,
    workers: usize,
    cfg: &Arc<Config>,
    board: &Arc<Board>,
    stopping: Rc<dyn Fn() -> bool>,
) -> usize {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(HEALTH_SHARES),
        Latency::NotImportant,
        "health",
    );
    let mut started = 0;
    for (bi, b) in cfg.backends.iter().enumerate() {
        if b.check.is_none() && b.passive.is_none() {
            continue;
        }
        for si in 0..b.servers.len() {
            let index = board.index(bi, si);
            if index % workers.max(1) != worker || b.servers[si].admin == AdminState::Maint {
                continue;
            }
            let task = ServerTask {
                cfg: cfg.clone(),
                board: board.clone(),
                backend: bi,
                server: si,
                index,
                stopping: stopping.clone(),
            };
            match glommio::spawn_local_into(task.run(), tq) {
                Ok(t) => {
                    t.detach();
                    started += 1;
                }
                Err(e) => log_info!(
                    "worker={worker} cannot start the health task of {}/{}: {e}",
                    b.name,
                    b.servers[si].name
                ),
            }
        }
    }
    started
}

struct ServerTask {
    cfg: Arc<Config>,
    board: Arc<Board>,
    backend: usize,
    server: usize,
    index: usize,
    stopping: Rc<dyn Fn() -> bool>,
}

/// xorshift64*: jitter only, no quality needed beyond "not in lockstep".
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl ServerTask {
    fn backend(&self) -> &Backend {
        &self.cfg.backends[self.backend]
    }

    fn name(&self) -> String {
        let b = self.backend();
        format!("{}/{}", b.name, b.servers[self.server].name)
    }

    /// Servers of this backend that the board says are up (for the log line).
    fn up_count(&self) -> usize {
        (0..self.backend().servers.len())
            .filter(|&s| self.board.get(self.board.index(self.backend, s)).up)
            .count()
    }

    fn publish(&self, up: bool, drain: bool, why: &str) {
        let now = Instant::now();
        self.board.set(self.index, up, drain, now);
        let state = match (up, drain) {
            (false, _) => "DOWN",
            (true, true) => "DRAIN",
            (true, false) => "UP",
        };
        log_info!(
            "server {} is {state}: {why}; {} of {} servers of the backend up",
            self.name(),
            self.up_count(),
            self.backend().servers.len()
        );
    }

    async fn run(self) {
        let b = self.backend().clone();
        let srv = &b.servers[self.server];
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        let mut rng = ((self.index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ clock) | 1;
        let (request, mut machine) = match &b.check {
            Some(c) => (
                match &c.kind {
                    CheckKind::Http(h) => http_request(h, srv.addr),
                    CheckKind::Tcp | CheckKind::Mysql(_) => Vec::new(),
                },
                Some(if c.start_down {
                    Machine::new_down(c.rise.get(), c.fall.get())
                } else {
                    Machine::new(c.rise.get(), c.fall.get())
                }),
            ),
            None => (Vec::new(), None),
        };
        let mut scratch = Vec::new();
        let mut seen_reports = self.board.reports(self.index);
        // Passive ejection state: held down until, how many back-to-back ejections, last return.
        let mut held_until: Option<Instant> = None;
        let mut ejections = 0u32;
        let mut last_return: Option<Instant> = None;
        // The first check comes soon after start, spread so that all servers are not checked at once.
        let mut next_check = b
            .check
            .as_ref()
            .map(|c| Instant::now() + jittered(c.fastinter, 100, next_rand(&mut rng)));

        loop {
            let now = Instant::now();
            let mut wake = now + REPORT_POLL;
            if let Some(t) = next_check {
                wake = wake.min(t);
            }
            if b.passive.is_none() {
                // No reports to look for: sleep until the check is due.
                wake = next_check.unwrap_or(now + REPORT_POLL);
            }
            glommio::timer::sleep(wake.saturating_duration_since(now)).await;
            if (self.stopping)() {
                return;
            }
            let now = Instant::now();

            // Passive reports from any worker.
            if let Some(p) = &b.passive {
                let r = self.board.reports(self.index);
                if r != seen_reports {
                    seen_reports = r;
                    let down = machine.as_ref().is_some_and(|m| m.health() == Health::Down);
                    if held_until.is_none() && !down {
                        // Back to back: a server ejected again within max_eject of its return.
                        let recent =
                            last_return.is_some_and(|t| now.duration_since(t) < p.max_eject);
                        ejections = if recent {
                            (ejections + 1).min(MAX_EJECT_DOUBLINGS)
                        } else {
                            1
                        };
                        let hold = p
                            .eject
                            .saturating_mul(1 << (ejections - 1))
                            .min(p.max_eject);
                        held_until = Some(now + hold);
                        if let Some(m) = machine.as_mut() {
                            m.force_down();
                        }
                        self.publish(
                            false,
                            false,
                            &format!(
                                "passive: {} consecutive errors on a worker, ejected for {} ms",
                                p.error_limit,
                                hold.as_millis()
                            ),
                        );
                        if let Some(c) = &b.check {
                            // Checks resume when the ejection ends; `rise` passes bring it back.
                            next_check = Some(now + hold.max(c.fastinter));
                        }
                    }
                }
            }
            if let Some(until) = held_until {
                if now < until {
                    continue;
                }
                held_until = None;
                if machine.is_none() {
                    last_return = Some(now);
                    self.publish(true, false, "passive ejection ended (no active check)");
                }
            }

            let (Some(c), Some(m), Some(due)) = (&b.check, machine.as_mut(), next_check) else {
                continue;
            };
            if now < due {
                continue;
            }
            let outcome = probe(
                &c.kind,
                &request,
                srv.addr,
                c.timeout,
                srv.backup,
                &mut scratch,
            )
            .await;
            let was_up = m.health() == Health::Up;
            if let Some(t) = m.on_verdict(outcome.verdict) {
                let why = format!(
                    "check {} ({} ms)",
                    outcome.detail,
                    outcome.elapsed.as_millis()
                );
                if t == Transition::WentUp && !was_up {
                    last_return = Some(Instant::now());
                }
                self.publish(m.health() == Health::Up, m.draining(), &why);
            }
            let base = if m.transitioning() {
                c.fastinter
            } else {
                c.interval
            };
            next_check =
                Some(Instant::now() + jittered(base, c.jitter_percent, next_rand(&mut rng)));
        }
    }
}

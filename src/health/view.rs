//! One worker's view of one backend's server health: copied from the [`Board`] by the control task,
//! plus this worker's own passive-error counts and ejections. The request path reads it through `Cell`s
//! (no lock, no atomic) and touches it only on errors (counting) and sticky lookups.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::board::Board;
use crate::config::{AdminState, Algorithm, Backend, Passive};

/// Effective weights are the configured weight times this, so slow start can ramp a weight-1 server in
/// 16 steps (HAProxy scales weights by 16 for the same reason).
pub const WEIGHT_SCALE: u32 = 16;
/// While a server ramps up, its weight is recomputed at most this often (one control tick).
pub const RAMP_STEP: Duration = Duration::from_millis(50);

pub struct ServerHealth {
    pub admin: AdminState,
    pub weight: u32,
    /// Flat index in the board.
    pub index: usize,
    up: Cell<bool>,
    drain: Cell<bool>,
    up_since: Cell<Option<Instant>>,
    /// Consecutive passive errors seen by this worker.
    errors: Cell<u32>,
    ejected_until: Cell<Option<Instant>>,
}

impl ServerHealth {
    /// May take new sessions (before weights): healthy, not draining, not in maintenance, not ejected.
    pub fn takes_new(&self) -> bool {
        self.admin == AdminState::Up
            && self.up.get()
            && !self.drain.get()
            && self.ejected_until.get().is_none()
    }

    /// May keep sessions that are stuck to it by cookie: healthy and not in maintenance (drain is fine).
    pub fn takes_sticky(&self) -> bool {
        self.admin != AdminState::Maint && self.up.get() && self.ejected_until.get().is_none()
    }

    pub fn is_up(&self) -> bool {
        self.up.get()
    }
}

pub struct BackendHealth {
    pub servers: Box<[ServerHealth]>,
    slowstart: Option<Duration>,
    passive: Option<Passive>,
    /// Hash backends keep full weights: a ramp would rebuild the Maglev table every tick for little gain
    /// (HAProxy also ignores slowstart with static algorithms).
    ramp: bool,
    /// The next instant at which weights change with no board change (an ejection ends, a ramp step).
    next_change: Cell<Option<Instant>>,
}

/// What a passive error did.
#[derive(Debug, PartialEq, Eq)]
pub enum Passed {
    Counted,
    /// The error limit was reached: the server is now ejected on this worker; rebuild and report it.
    Ejected,
}

impl BackendHealth {
    pub fn new(cfg: &Backend, backend_index: usize, board: &Board) -> BackendHealth {
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(s, srv)| ServerHealth {
                admin: srv.admin,
                weight: srv.weight.get(),
                index: board.index(backend_index, s),
                up: Cell::new(true),
                drain: Cell::new(false),
                up_since: Cell::new(None),
                errors: Cell::new(0),
                ejected_until: Cell::new(None),
            })
            .collect();
        let h = BackendHealth {
            servers,
            slowstart: cfg.slowstart,
            passive: cfg.passive,
            ramp: !matches!(cfg.algorithm, Algorithm::Hash(_)),
            next_change: Cell::new(None),
        };
        // Servers that start down (`start_down`) are already marked on the board.
        h.pull(board);
        h
    }

    /// Copies this backend's states from the board; true when anything changed.
    pub fn pull(&self, board: &Board) -> bool {
        let mut changed = false;
        for s in self.servers.iter() {
            let snap = board.get(s.index);
            if snap.up != s.up.get() || snap.drain != s.drain.get() {
                changed = true;
            }
            s.up.set(snap.up);
            s.drain.set(snap.drain);
            if snap.up_since != s.up_since.get() {
                s.up_since.set(snap.up_since);
                changed = true;
            }
        }
        changed
    }

    /// True when weights must be recomputed at `now` without a board change.
    pub fn due(&self, now: Instant) -> bool {
        self.next_change.get().is_some_and(|t| now >= t)
    }

    /// Fills `out` with each server's effective weight for new sessions (0 = not eligible), ends
    /// ejections that expired, and remembers when the weights will next change on their own.
    pub fn effective(&self, now: Instant, out: &mut Vec<u32>) {
        out.clear();
        let mut next: Option<Instant> = None;
        let mut soon = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for s in self.servers.iter() {
            if let Some(until) = s.ejected_until.get() {
                if now >= until {
                    s.ejected_until.set(None);
                    s.errors.set(0);
                } else {
                    soon(until);
                }
            }
            let mut w = if s.takes_new() {
                s.weight * WEIGHT_SCALE
            } else {
                0
            };
            if let (true, Some(period), Some(since)) = (self.ramp, self.slowstart, s.up_since.get())
            {
                let elapsed = now.saturating_duration_since(since);
                if w > 0 && elapsed < period {
                    let full = u128::from(w);
                    let part = full * elapsed.as_millis() / period.as_millis().max(1);
                    w = (part as u32).max(1);
                    soon(now + RAMP_STEP);
                }
            }
            out.push(w);
        }
        self.next_change.set(next);
    }

    /// Request path, after a connect failure, a 5xx or a timeout from server `s`.
    pub fn on_error(&self, s: usize, now: Instant) -> Passed {
        let Some(p) = self.passive else {
            return Passed::Counted;
        };
        let srv = &self.servers[s];
        let n = srv.errors.get().saturating_add(1);
        srv.errors.set(n);
        if n >= p.error_limit.get() && srv.ejected_until.get().is_none() {
            // The owner decides the real ejection time (with back-off) and publishes it; this local
            // ejection only covers the time until this worker sees that (one control tick).
            srv.ejected_until.set(Some(now + p.eject));
            return Passed::Ejected;
        }
        Passed::Counted
    }

    /// Request path, after a good response: the errors must be consecutive.
    #[inline]
    pub fn on_success(&self, s: usize) {
        let e = &self.servers[s].errors;
        if e.get() != 0 {
            e.set(0);
        }
    }

    pub fn has_passive(&self) -> bool {
        self.passive.is_some()
    }

    /// How many servers take new sessions (for logs).
    pub fn up_count(&self) -> usize {
        self.servers.iter().filter(|s| s.takes_new()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;

    fn backend(extra: &str, server_extra: &str) -> Backend {
        let text = format!(
            "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:1\"]\ndefault_backend = \"b\"\n\
             [[backend]]\nname = \"b\"\n{extra}\n\
             [[backend.server]]\naddress = \"127.0.0.1:2\"\nweight = 2\n{server_extra}\n\
             [[backend.server]]\naddress = \"127.0.0.1:3\"\n"
        );
        from_toml(&text).unwrap().backends.remove(0)
    }

    #[test]
    fn board_states_and_admin_states_give_weights() {
        let board = Board::new(&[2]);
        let h = BackendHealth::new(&backend("", ""), 0, &board);
        let now = Instant::now();
        let mut w = Vec::new();
        h.effective(now, &mut w);
        assert_eq!(w, [2 * WEIGHT_SCALE, WEIGHT_SCALE]);
        board.set(1, false, false, now);
        assert!(h.pull(&board));
        assert!(!h.pull(&board), "nothing new");
        h.effective(now, &mut w);
        assert_eq!(w, [2 * WEIGHT_SCALE, 0]);
        board.set(0, true, true, now);
        h.pull(&board);
        h.effective(now, &mut w);
        assert_eq!(w, [0, 0], "draining takes no new sessions");
        assert!(h.servers[0].takes_sticky(), "but keeps sticky ones");
        assert!(!h.servers[1].takes_sticky());

        let maint = BackendHealth::new(&backend("", "state = \"maint\""), 0, &Board::new(&[2]));
        maint.effective(now, &mut w);
        assert_eq!(w, [0, WEIGHT_SCALE]);
        assert!(!maint.servers[0].takes_sticky());
    }

    #[test]
    fn passive_ejection_is_consecutive_and_expires() {
        let board = Board::new(&[2]);
        let h = BackendHealth::new(
            &backend("[backend.passive]\nerror_limit = 3\neject = \"1s\"", ""),
            0,
            &board,
        );
        let t0 = Instant::now();
        assert_eq!(h.on_error(0, t0), Passed::Counted);
        assert_eq!(h.on_error(0, t0), Passed::Counted);
        h.on_success(0);
        assert_eq!(h.on_error(0, t0), Passed::Counted, "the count restarted");
        assert_eq!(h.on_error(0, t0), Passed::Counted);
        assert_eq!(h.on_error(0, t0), Passed::Ejected);
        assert_eq!(h.on_error(0, t0), Passed::Counted, "ejected once");
        let mut w = Vec::new();
        h.effective(t0, &mut w);
        assert_eq!(w, [0, WEIGHT_SCALE]);
        assert!(!h.due(t0 + Duration::from_millis(999)));
        assert!(h.due(t0 + Duration::from_secs(1)));
        h.effective(t0 + Duration::from_secs(1), &mut w);
        assert_eq!(w, [2 * WEIGHT_SCALE, WEIGHT_SCALE], "back after eject");

        let off = BackendHealth::new(&backend("", ""), 0, &board);
        for _ in 0..100 {
            assert_eq!(off.on_error(0, t0), Passed::Counted, "passive off");
        }
    }

    #[test]
    fn slow_start_ramps_weights() {
        let board = Board::new(&[2]);
        let h = BackendHealth::new(&backend("slowstart = \"10s\"", ""), 0, &board);
        let t0 = Instant::now();
        board.set(0, false, false, t0);
        board.set(0, true, false, t0);
        h.pull(&board);
        let mut w = Vec::new();
        let since = board.get(0).up_since.unwrap();
        h.effective(since + Duration::from_secs(1), &mut w);
        assert!(w[0] >= 2 && w[0] <= 4, "10 % of 32: {w:?}");
        assert!(h.due(since + Duration::from_secs(1) + RAMP_STEP));
        h.effective(since + Duration::from_secs(5), &mut w);
        assert_eq!(w[0], WEIGHT_SCALE, "half of 2 x 16");
        h.effective(since + Duration::from_secs(10), &mut w);
        assert_eq!(w, [2 * WEIGHT_SCALE, WEIGHT_SCALE]);
        assert!(!h.due(since + Duration::from_secs(60)), "ramp over");

        let hashed = BackendHealth::new(
            &backend(
                "slowstart = \"10s\"\nalgorithm = \"hash\"\nhash_key = \"uri\"",
                "",
            ),
            0,
            &board,
        );
        hashed.pull(&board);
        hashed.effective(since + Duration::from_secs(1), &mut w);
        assert_eq!(w[0], 2 * WEIGHT_SCALE, "no ramp for hash backends");
    }
}

//! Round robin, per core: no lock, no atomic. With one worker, requests alternate exactly; with N
//! workers each keeps its own counter (HAProxy's `nbthread` round robin is also per-thread-group).
//!
//! `Rotation` is the state `Balancer` uses for `Policy::RoundRobin` (and for `Policy::Hash` without a
//! key) over the active set. `RoundRobin` is the older fixed-set type, kept (API unchanged) for
//! callers not yet switched to `Balancer`.

use super::{is_tried, Active};

/// On an active-set change, weighted rotation is pre-advanced by `seed % n` picks so cores start at
/// different phases; capped because each step is O(n) and rebuild should stay cheap with 1024 servers.
/// 64 phases are enough to spread the cores of one machine.
const SWRR_START_STEPS_MAX: u64 = 64;

/// Round robin over the active set. Equal effective weights: a plain rotation; different weights:
/// nginx's smooth weighted round robin (same algorithm as `RoundRobin::Smooth`, plus tried-exclusion
/// as nginx does it: a tried server neither gains weight nor counts in the total for that pick).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rotation {
    /// Next position in the active set (plain rotation).
    next: usize,
    /// All active servers have the same effective weight.
    equal: bool,
    /// Smooth weighted round robin's current weight per active slot.
    current: Vec<i64>,
}

impl Rotation {
    pub(crate) fn new(seed: u64, capacity: usize) -> Rotation {
        Rotation {
            // Truncation on 32-bit targets only changes which offset a core starts at.
            next: seed as usize,
            equal: true,
            current: Vec::with_capacity(capacity),
        }
    }

    /// Control plane. Keeps the smooth weights when only weights changed (slow start ramps weights up
    /// many times: resetting each time would restart the sequence); resets them when membership changed.
    pub(crate) fn rebuild(&mut self, active: &[Active], membership_changed: bool, seed: u64) {
        let n = active.len();
        self.equal = active.windows(2).all(|w| w[0].weight == w[1].weight);
        if n == 0 {
            self.current.clear();
            self.next = 0;
            return;
        }
        self.next %= n;
        if membership_changed || self.current.len() != n {
            self.current.clear();
            self.current.resize(n, 0);
            if !self.equal {
                for _ in 0..(seed % n as u64).min(SWRR_START_STEPS_MAX) {
                    self.smooth(active, &[]);
                }
            }
        }
    }

    /// Request path: a server index not in `tried`, or None if every active server was tried.
    #[inline]
    pub(crate) fn pick(&mut self, active: &[Active], tried: &[usize]) -> Option<usize> {
        if self.equal {
            self.plain(active, tried)
        } else {
            self.smooth(active, tried)
                .map(|slot| active[slot].server as usize)
        }
    }

    #[inline]
    fn plain(&mut self, active: &[Active], tried: &[usize]) -> Option<usize> {
        let n = active.len();
        let mut pos = self.next;
        // Bounded: each active server is looked at once.
        for _ in 0..n {
            let server = active[pos].server;
            pos = if pos + 1 == n { 0 } else { pos + 1 };
            if !is_tried(server, tried) {
                self.next = pos;
                return Some(server as usize);
            }
        }
        None
    }

    /// nginx's smooth weighted round robin; returns the active slot.
    #[inline]
    fn smooth(&mut self, active: &[Active], tried: &[usize]) -> Option<usize> {
        if active.is_empty() {
            return None;
        }
        if tried.is_empty() {
            // The common case (no failover): a tight loop without the tried check.
            let (mut total, mut best, mut best_current) = (0i64, 0usize, i64::MIN);
            for (i, (a, cur)) in active.iter().zip(self.current.iter_mut()).enumerate() {
                let w = i64::from(a.weight);
                *cur += w;
                total += w;
                if *cur > best_current {
                    best_current = *cur;
                    best = i;
                }
            }
            self.current[best] -= total;
            return Some(best);
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        let current = &mut self.current[..active.len()];
        for (i, a) in active.iter().enumerate() {
            if is_tried(a.server, tried) {
                continue;
            }
            let w = i64::from(a.weight);
            current[i] += w;
            total += w;
            // Strictly greater: the first maximum wins, as in nginx and `RoundRobin::Smooth`.
            match best {
                Some(b) if current[i] <= current[b] => {}
                _ => best = Some(i),
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// Round robin over a backend's servers. Equal weights use a plain counter; different weights use
/// nginx's smooth weighted round robin, which interleaves (a,a,b -> a,b,a) instead of bursting.
#[derive(Debug, Clone)]
pub enum RoundRobin {
    Plain {
        next: usize,
        n: usize,
    },
    Smooth {
        weight: Vec<i64>,
        current: Vec<i64>,
        total: i64,
    },
}

impl RoundRobin {
    /// `weights` has one entry per server, each >= 1; `start` offsets the first pick (spreads workers).
    pub fn new(weights: &[u32], start: usize) -> RoundRobin {
        assert!(
            !weights.is_empty(),
            "a backend has at least one server (config validation)"
        );
        if weights.iter().all(|&w| w == weights[0]) {
            RoundRobin::Plain {
                next: start % weights.len(),
                n: weights.len(),
            }
        } else {
            let weight: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
            let total = weight.iter().sum();
            RoundRobin::Smooth {
                current: vec![0; weight.len()],
                weight,
                total,
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RoundRobin::Plain { n, .. } => *n,
            RoundRobin::Smooth { weight, .. } => weight.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn pick(&mut self) -> usize {
        match self {
            RoundRobin::Plain { next, n } => {
                let i = *next;
                *next = if i + 1 == *n { 0 } else { i + 1 };
                i
            }
            RoundRobin::Smooth {
                weight,
                current,
                total,
            } => {
                let mut best = 0;
                for i in 0..weight.len() {
                    current[i] += weight[i];
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= *total;
                best
            }
        }
    }

    /// Picks a server not in `tried`, for failover after a connect failure. Bounded: after `len()`
    /// picks every server has been offered once; then any pick is returned.
    pub fn pick_excluding(&mut self, tried: &[usize]) -> usize {
        let mut s = self.pick();
        for _ in 0..self.len() {
            if !tried.contains(&s) {
                break;
            }
            s = self.pick();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_alternates() {
        let mut rr = RoundRobin::new(&[1, 1], 0);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn smooth_honours_weights_and_interleaves() {
        let mut rr = RoundRobin::new(&[5, 1, 1], 0);
        let picks: Vec<usize> = (0..7).map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0], "nginx's documented sequence");
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[rr.pick()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn excluding_skips_tried() {
        let mut rr = RoundRobin::new(&[1, 1, 1], 0);
        assert_eq!(rr.pick_excluding(&[0]), 1);
        assert_eq!(rr.pick_excluding(&[2, 0]), 1);
        let mut one = RoundRobin::new(&[1], 0);
        assert_eq!(
            one.pick_excluding(&[0]),
            0,
            "bounded even when all were tried"
        );
    }
}

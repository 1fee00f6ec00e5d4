//! The one place server health crosses cores. Each server's owner worker writes its state here after a
//! check changes it; any worker reports passive ejections here; every worker's control task copies the
//! states into its own per-core view when `generation` moves (polled every control tick, 50 ms). The
//! request path never reads this: it reads the per-core view ([`super::view`]).
//!
//! Atomics with Release/Acquire on `generation`: a worker that sees a new generation sees every state
//! word written before it was bumped. A state word may be newer than the generation a worker read; it
//! then applies it one tick early, which is harmless.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bits of a server's state word.
const DOWN: u32 = 1;
/// Drain requested by the server itself (an HTTP check answered 404 with `disable_on_404`).
const DRAIN: u32 = 2;
/// Down since startup (`start_down`): its first coming up is not a return, so no slow start.
const INIT: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub up: bool,
    pub drain: bool,
    /// When it last came up after being down (for slow start); `None`: up since startup or down.
    pub up_since: Option<Instant>,
}

struct Slot {
    state: AtomicU32,
    /// Milliseconds since `Board::epoch` + 1 of the last down -> up transition; 0 = never.
    up_since_ms: AtomicU64,
    /// Passive ejection reports from workers (a counter: the owner compares with what it has seen).
    reports: AtomicU32,
}

pub struct Board {
    generation: AtomicU64,
    /// Milliseconds since `epoch` of the latest state change (to measure propagation).
    changed_ms: AtomicU64,
    slots: Box<[Slot]>,
    /// First slot of each backend: servers are flattened in config order.
    offsets: Box<[usize]>,
    epoch: Instant,
}

impl Board {
    /// `servers_per_backend[b]` = number of servers of backend b. Every server starts up.
    pub fn new(servers_per_backend: &[usize]) -> Board {
        let mut offsets = Vec::with_capacity(servers_per_backend.len());
        let mut total = 0usize;
        for &n in servers_per_backend {
            offsets.push(total);
            total += n;
        }
        Board {
            generation: AtomicU64::new(0),
            changed_ms: AtomicU64::new(0),
            slots: (0..total)
                .map(|_| Slot {
                    state: AtomicU32::new(0),
                    up_since_ms: AtomicU64::new(0),
                    reports: AtomicU32::new(0),
                })
                .collect(),
            offsets: offsets.into_boxed_slice(),
            epoch: Instant::now(),
        }
    }

    /// The flat index of a server, also used to pick its owner worker.
    pub fn index(&self, backend: usize, server: usize) -> usize {
        self.offsets[backend] + server
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// At startup, before any worker reads the board: the server starts down (`start_down`).
    pub fn init_down(&self, index: usize) {
        self.slots[index]
            .state
            .store(DOWN | INIT, Ordering::Relaxed);
    }

    /// Owner side: publishes a server's state. `came_up` stamps the slow-start clock.
    pub fn set(&self, index: usize, up: bool, drain: bool, now: Instant) {
        let slot = &self.slots[index];
        let word = if up { 0 } else { DOWN } | if drain { DRAIN } else { 0 };
        let old = slot.state.swap(word, Ordering::Relaxed);
        if old & DOWN != 0 && old & INIT == 0 && up {
            let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
            slot.up_since_ms
                .store(ms.saturating_add(1), Ordering::Relaxed);
        }
        if old != word {
            let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
            self.changed_ms.store(ms, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    pub fn get(&self, index: usize) -> Snapshot {
        let slot = &self.slots[index];
        let word = slot.state.load(Ordering::Relaxed);
        let ms = slot.up_since_ms.load(Ordering::Relaxed);
        let up = word & DOWN == 0;
        Snapshot {
            up,
            drain: word & DRAIN != 0,
            up_since: (up && ms > 0)
                .then(|| self.epoch + Duration::from_millis(ms.saturating_sub(1))),
        }
    }

    /// How long ago the latest state change was published (a worker that just applied it measures the
    /// propagation delay with this).
    pub fn since_change(&self, now: Instant) -> Duration {
        let at = self.epoch + Duration::from_millis(self.changed_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(at)
    }

    /// Worker side, on the error path only: a passive ejection of this server on some worker.
    pub fn report(&self, index: usize) {
        self.slots[index].reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Owner side: the report counter (compare with the last value seen).
    pub fn reports(&self, index: usize) -> u32 {
        self.slots[index].reports.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_generation() {
        let b = Board::new(&[2, 3]);
        assert_eq!(b.len(), 5);
        assert_eq!(b.index(1, 2), 4);
        let g0 = b.generation();
        let now = Instant::now();
        assert!(b.get(4).up && b.get(4).up_since.is_none());
        b.set(4, true, false, now);
        assert_eq!(b.generation(), g0, "no change, no new generation");
        b.set(4, false, false, now);
        assert!(!b.get(4).up);
        assert_eq!(b.generation(), g0 + 1);
        let later = now + Duration::from_millis(1500);
        b.set(4, true, true, later);
        let s = b.get(4);
        assert!(s.up && s.drain);
        let since = s.up_since.unwrap();
        assert!(since <= later && later - since < Duration::from_millis(2));
        assert!(b.get(3).up, "other servers untouched");
        b.report(3);
        b.report(3);
        assert_eq!(b.reports(3), 2);
    }

    #[test]
    fn start_down_is_not_a_return() {
        let b = Board::new(&[2]);
        b.init_down(0);
        let g = b.generation();
        assert!(!b.get(0).up);
        let now = Instant::now();
        b.set(0, true, false, now);
        assert!(b.generation() > g);
        assert_eq!(
            b.get(0).up_since,
            None,
            "first up after start_down: no slow start"
        );
        b.set(0, false, false, now);
        b.set(0, true, false, now);
        assert!(b.get(0).up_since.is_some(), "a later return ramps");
    }
}

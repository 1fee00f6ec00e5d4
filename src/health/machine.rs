//! The hysteresis of active health checks (HAProxy `rise`/`fall`), as a pure state machine: no I/O and
//! no clock reads, so every transition is unit-tested without sockets or sleeps. The caller (the check
//! task) feeds it one [`Verdict`] per check and logs/publishes the [`Transition`]s it returns.

use std::time::Duration;

// Re-exported: the machine consumes what the probe produces.
pub use super::check_io::Verdict;

/// Whether a server may take traffic as far as health checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

/// A change the caller must act on (log it, publish it to the workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentDown,
    /// Read [`Machine::draining`] after this one: a server whose last check said "drain" comes up
    /// draining (as HAProxy brings a server up in NOLB after a 404 with `disable-on-404`).
    WentUp,
    EnteredDrain,
    LeftDrain,
}

/// Rise/fall hysteresis of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    rise: u32,
    fall: u32,
    health: Health,
    /// Meaningful while up; while down it silently follows the last alive verdict so the server comes
    /// up in the right drain state.
    draining: bool,
    /// Consecutive Fail verdicts while up (always < `fall`).
    fails: u32,
    /// Consecutive Pass/Drain verdicts while down (always < `rise`).
    passes: u32,
}

impl Machine {
    /// Starts up (like HAProxy: a server is assumed healthy until checks say otherwise), not draining.
    /// A zero `rise` or `fall` is treated as 1 (the config layer already rejects it).
    /// A machine for a server that starts down (`start_down`): `rise` passes bring it up.
    pub fn new_down(rise: u32, fall: u32) -> Machine {
        let mut m = Machine::new(rise, fall);
        m.health = Health::Down;
        m
    }

    pub fn new(rise: u32, fall: u32) -> Machine {
        Machine {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Up,
            draining: false,
            fails: 0,
            passes: 0,
        }
    }

    /// Feeds one check verdict; returns the transition it causes, if any.
    ///
    /// Up -> Down after `fall` consecutive Fail; Down -> Up after `rise` consecutive Pass or Drain (a
    /// Drain verdict means the server is alive). While up, Drain enters drain at once and Pass leaves it
    /// at once. Any alive verdict resets the failure count, a Fail resets the success count.
    pub fn on_verdict(&mut self, v: Verdict) -> Option<Transition> {
        match (self.health, v) {
            (Health::Up, Verdict::Fail) => {
                self.fails = self.fails.saturating_add(1);
                if self.fails >= self.fall {
                    self.go_down();
                    return Some(Transition::WentDown);
                }
                None
            }
            (Health::Up, alive) => {
                self.fails = 0;
                let drain = alive == Verdict::Drain;
                if drain == self.draining {
                    return None;
                }
                self.draining = drain;
                Some(if drain {
                    Transition::EnteredDrain
                } else {
                    Transition::LeftDrain
                })
            }
            (Health::Down, Verdict::Fail) => {
                self.passes = 0;
                None
            }
            (Health::Down, alive) => {
                self.draining = alive == Verdict::Drain;
                self.passes = self.passes.saturating_add(1);
                if self.passes >= self.rise {
                    self.health = Health::Up;
                    self.passes = 0;
                    self.fails = 0;
                    return Some(Transition::WentUp);
                }
                None
            }
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// True while up and the last check asked for drain (no new sessions, sticky ones continue).
    pub fn draining(&self) -> bool {
        self.health == Health::Up && self.draining
    }

    /// True while some but not all of the consecutive results needed for a change have been seen: the
    /// caller then checks at `fastinter` instead of `interval`, to confirm or clear the change quickly.
    pub fn transitioning(&self) -> bool {
        match self.health {
            Health::Up => self.fails > 0,
            Health::Down => self.passes > 0,
        }
    }

    /// Passive ejection reported by a worker: down at once (WentDown if it was up), counts reset, so
    /// `rise` consecutive alive checks are needed to bring it back.
    pub fn force_down(&mut self) -> Option<Transition> {
        let was_up = self.health == Health::Up;
        self.go_down();
        was_up.then_some(Transition::WentDown)
    }

    fn go_down(&mut self) {
        self.health = Health::Down;
        self.draining = false;
        self.fails = 0;
        self.passes = 0;
    }
}

/// Largest accepted jitter: 100 % could shorten a delay to zero.
const MAX_JITTER_PERCENT: u8 = 100;
/// Floor of a jittered delay, so a check task never spins even with 100 % jitter or a zero base.
pub const MIN_CHECK_DELAY: Duration = Duration::from_millis(1);

/// Next check delay: `base` (interval or fastinter) shortened by a random part of up to
/// `jitter_percent` percent of it, so checks of many servers spread out instead of firing in lockstep
/// (HAProxy `spread-checks`). `rnd` is a caller-supplied random number, which keeps this function pure.
/// The result is in `[base - base*jitter_percent/100, base]`, and never below [`MIN_CHECK_DELAY`].
pub fn jittered(base: Duration, jitter_percent: u8, rnd: u64) -> Duration {
    let percent = u128::from(jitter_percent.min(MAX_JITTER_PERCENT));
    let base_ns = base.as_nanos();
    let max_cut = base_ns.saturating_mul(percent) / 100;
    // max_cut + 1 >= 1, so no division by zero; cut <= max_cut <= base_ns.
    let cut = u128::from(rnd) % max_cut.saturating_add(1);
    let ns = base_ns.saturating_sub(cut);
    // Durations built from u64 seconds fit u64 nanoseconds for ~584 years; saturate past that.
    let d = Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX));
    d.max(MIN_CHECK_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::*;
    use Verdict::*;

    fn feed(m: &mut Machine, vs: &[Verdict]) -> Vec<Option<Transition>> {
        vs.iter().map(|&v| m.on_verdict(v)).collect()
    }

    #[test]
    fn starts_up_not_draining_not_transitioning() {
        let m = Machine::new(2, 3);
        assert_eq!(m.health(), Health::Up);
        assert!(!m.draining());
        assert!(!m.transitioning());
    }

    #[test]
    fn goes_down_after_fall_consecutive_failures() {
        let mut m = Machine::new(2, 3);
        assert_eq!(feed(&mut m, &[Fail, Fail]), vec![None, None]);
        assert_eq!(m.health(), Health::Up);
        assert!(m.transitioning());
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
        assert_eq!(m.health(), Health::Down);
        assert!(!m.transitioning());
        // Further failures change nothing.
        assert_eq!(feed(&mut m, &[Fail, Fail, Fail]), vec![None, None, None]);
        assert!(!m.transitioning());
    }

    #[test]
    fn pass_resets_failure_count() {
        let mut m = Machine::new(2, 3);
        feed(&mut m, &[Fail, Fail]);
        assert_eq!(m.on_verdict(Pass), None);
        assert!(!m.transitioning());
        // Needs three fresh failures again.
        assert_eq!(feed(&mut m, &[Fail, Fail]), vec![None, None]);
        assert_eq!(m.health(), Health::Up);
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
    }

    #[test]
    fn drain_resets_failure_count_too() {
        let mut m = Machine::new(2, 2);
        m.on_verdict(Fail);
        assert_eq!(m.on_verdict(Drain), Some(EnteredDrain));
        assert!(!m.transitioning());
        assert_eq!(m.on_verdict(Fail), None);
        assert_eq!(m.health(), Health::Up);
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
    }

    #[test]
    fn comes_up_after_rise_consecutive_passes_and_fail_resets_count() {
        let mut m = Machine::new(3, 1);
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
        assert_eq!(feed(&mut m, &[Pass, Pass]), vec![None, None]);
        assert!(m.transitioning());
        assert_eq!(m.on_verdict(Fail), None);
        assert!(!m.transitioning());
        assert_eq!(m.health(), Health::Down);
        assert_eq!(feed(&mut m, &[Pass, Pass]), vec![None, None]);
        assert_eq!(m.on_verdict(Pass), Some(WentUp));
        assert_eq!(m.health(), Health::Up);
        assert!(!m.draining());
        assert!(!m.transitioning());
        assert_eq!(m.on_verdict(Pass), None);
    }

    #[test]
    fn drain_counts_as_alive_while_down_and_comes_up_draining() {
        let mut m = Machine::new(2, 1);
        m.on_verdict(Fail);
        assert_eq!(m.on_verdict(Drain), None);
        assert!(!m.draining(), "a down server is not reported as draining");
        assert_eq!(m.on_verdict(Drain), Some(WentUp));
        assert!(m.draining());
        assert_eq!(m.on_verdict(Pass), Some(LeftDrain));
        assert!(!m.draining());
    }

    #[test]
    fn comes_up_not_draining_when_last_alive_verdict_is_pass() {
        let mut m = Machine::new(2, 1);
        m.on_verdict(Fail);
        assert_eq!(feed(&mut m, &[Drain, Pass]), vec![None, Some(WentUp)]);
        assert!(!m.draining());
    }

    #[test]
    fn drain_and_undrain_at_once_while_up() {
        let mut m = Machine::new(5, 5);
        assert_eq!(m.on_verdict(Drain), Some(EnteredDrain));
        assert!(m.draining());
        assert_eq!(m.on_verdict(Drain), None);
        assert_eq!(m.on_verdict(Pass), Some(LeftDrain));
        assert!(!m.draining());
        assert_eq!(m.on_verdict(Pass), None);
    }

    #[test]
    fn failures_while_draining_take_it_down_and_clear_drain() {
        let mut m = Machine::new(1, 2);
        m.on_verdict(Drain);
        assert_eq!(m.on_verdict(Fail), None);
        assert!(m.draining(), "one failure below fall keeps the drain state");
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
        assert!(!m.draining());
        assert_eq!(m.on_verdict(Pass), Some(WentUp));
        assert!(!m.draining());
    }

    #[test]
    fn rise_and_fall_of_one_act_at_once() {
        let mut m = Machine::new(1, 1);
        assert_eq!(m.on_verdict(Fail), Some(WentDown));
        assert!(!m.transitioning());
        assert_eq!(m.on_verdict(Pass), Some(WentUp));
        assert!(!m.transitioning());
        // Zero is treated as one.
        let mut z = Machine::new(0, 0);
        assert_eq!(z.on_verdict(Fail), Some(WentDown));
        assert_eq!(z.on_verdict(Drain), Some(WentUp));
    }

    #[test]
    fn force_down_from_up_resets_counts() {
        let mut m = Machine::new(2, 3);
        m.on_verdict(Drain);
        m.on_verdict(Fail);
        assert!(m.transitioning());
        assert_eq!(m.force_down(), Some(WentDown));
        assert_eq!(m.health(), Health::Down);
        assert!(!m.draining());
        assert!(!m.transitioning());
        assert_eq!(m.on_verdict(Pass), None);
        assert_eq!(m.on_verdict(Pass), Some(WentUp));
    }

    #[test]
    fn force_down_while_down_restarts_rise() {
        let mut m = Machine::new(3, 1);
        m.on_verdict(Fail);
        feed(&mut m, &[Pass, Pass]);
        assert!(m.transitioning());
        assert_eq!(m.force_down(), None);
        assert!(!m.transitioning());
        assert_eq!(feed(&mut m, &[Pass, Pass]), vec![None, None]);
        assert_eq!(m.health(), Health::Down);
        assert_eq!(m.on_verdict(Pass), Some(WentUp));
    }

    #[test]
    fn jitter_without_percent_is_base() {
        let base = Duration::from_secs(2);
        for rnd in [0, 1, 12_345, u64::MAX] {
            assert_eq!(jittered(base, 0, rnd), base);
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let base = Duration::from_millis(1000);
        let low = Duration::from_millis(800);
        let mut seen_min = base;
        let mut seen_max = Duration::ZERO;
        // A cheap deterministic spread of rnd values (splitmix64 steps).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let d = jittered(base, 20, z);
            assert!(d >= low && d <= base, "{d:?} out of [{low:?}, {base:?}]");
            seen_min = seen_min.min(d);
            seen_max = seen_max.max(d);
        }
        // The spread is used, not collapsed to one end.
        assert!(seen_min < Duration::from_millis(820), "min {seen_min:?}");
        assert!(seen_max > Duration::from_millis(980), "max {seen_max:?}");
        // The extremes are reachable exactly.
        assert_eq!(jittered(base, 20, 0), base);
        assert_eq!(jittered(base, 20, 200_000_000), low);
    }

    #[test]
    fn jitter_never_reaches_zero_or_exceeds_full_percent() {
        let base = Duration::from_millis(100);
        // Percentages above 100 are clamped; the cut of the whole base is floored.
        assert_eq!(jittered(base, 255, 100_000_000), MIN_CHECK_DELAY);
        assert_eq!(jittered(Duration::ZERO, 50, 7), MIN_CHECK_DELAY);
        assert!(jittered(base, 255, 42) <= base);
        // Huge bases do not overflow.
        let huge = Duration::from_secs(u64::MAX);
        assert!(jittered(huge, 10, u64::MAX) <= huge);
    }
}

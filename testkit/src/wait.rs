//! Waiting for a state: poll a condition with a short pause until it holds or a deadline passes,
//! and fail with a message naming what did not happen. The only sleeps of a wait are here.

use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

/// Pause between two looks at a condition: short against every bound in the tests (the shortest are
/// a few hundred ms), long enough that polling does not load the 2-core machine.
pub const POLL: Duration = Duration::from_millis(10);

/// Call `probe` every `pause` until it returns Some or `within` has passed; the value, or None at the
/// deadline. The probe always runs at least once, and once more at the deadline.
pub fn poll_for<T>(
    within: Duration,
    pause: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // The one sleep of a wait: a pause between looks, cut short at the deadline.
        std::thread::sleep(pause.min(deadline - now));
    }
}

/// Poll `cond` every POLL until it is true or `within` passes; whether it became true.
pub fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_for(within, POLL, || cond().then_some(())).is_some()
}

/// Poll `cond` every POLL until it is true; panics naming `what` if it is not within `within`.
/// Returns how long it took.
pub fn wait_until(
    within: Duration,
    what: impl Display,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    poll_until(within, POLL, what, || {
        if cond() {
            Ok(())
        } else {
            Err("false")
        }
    });
    start.elapsed()
}

/// Call `probe` every `pause` until it returns Ok; panics naming `what` and the last Err if that
/// does not happen within `within`. For probes that are costly (a database login, a child process)
/// pass a longer pause than POLL.
pub fn poll_until<T, E: Debug>(
    within: Duration,
    pause: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let mut last = None;
    let got = poll_for(within, pause, || match probe() {
        Ok(v) => Some(v),
        Err(e) => {
            last = Some(e);
            None
        }
    });
    got.unwrap_or_else(|| panic!("{what}: not within {within:?}; last: {last:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn poll_for_returns_the_first_value() {
        let n = Cell::new(0);
        let got = poll_for(Duration::from_secs(5), Duration::ZERO, || {
            n.set(n.get() + 1);
            (n.get() == 3).then_some(n.get())
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn poll_for_gives_up_at_the_deadline() {
        let start = Instant::now();
        let looks = Cell::new(0);
        let got: Option<()> = poll_for(Duration::from_millis(100), POLL, || {
            looks.set(looks.get() + 1);
            None
        });
        let took = start.elapsed();
        assert_eq!(got, None);
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(looks.get() >= 2, "looked {} times", looks.get());
    }

    #[test]
    fn wait_until_returns_once_true() {
        let t = Instant::now() + Duration::from_millis(30);
        let took = wait_until(Duration::from_secs(5), "time to pass", || {
            Instant::now() >= t
        });
        assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(5));
    }

    #[test]
    #[should_panic(expected = "the answer: not within 50ms; last: Some(41)")]
    fn poll_until_names_what_and_the_last_value() {
        poll_until(Duration::from_millis(50), POLL, "the answer", || {
            Err::<(), _>(41)
        });
    }
}

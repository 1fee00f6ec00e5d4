//! Logging to stderr, one line per event. Error paths are rate-limited per worker so a backend outage
//! does not turn into a log flood (and a CPU sink) on the request path.

use std::cell::Cell;
use std::time::Instant;

use crate::limits::LOG_ERRORS_PER_SEC;

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { eprintln!("corelb: {}", format_args!($($arg)*)) };
}

/// Allows `LOG_ERRORS_PER_SEC` lines per second; counts the rest and reports how many were suppressed.
#[derive(Debug)]
pub struct RateLimited {
    epoch: Instant,
    window: Cell<u64>,
    count: Cell<u32>,
    suppressed: Cell<u64>,
}

impl Default for RateLimited {
    fn default() -> Self {
        RateLimited {
            epoch: Instant::now(),
            window: Cell::new(0),
            count: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }
}

impl RateLimited {
    /// Some(n suppressed since the last allowed line) when this line may be written.
    pub fn allow(&self) -> Option<u64> {
        let sec = self.epoch.elapsed().as_secs();
        if sec != self.window.get() {
            self.window.set(sec);
            self.count.set(0);
        }
        if self.count.get() < LOG_ERRORS_PER_SEC {
            self.count.set(self.count.get() + 1);
            Some(self.suppressed.replace(0))
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_second() {
        let r = RateLimited::default();
        let allowed = (0..100).filter(|_| r.allow().is_some()).count();
        assert!(
            allowed as u32 <= LOG_ERRORS_PER_SEC * 2,
            "at most one window boundary crossed"
        );
    }
}

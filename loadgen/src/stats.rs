//! Measurements: per-kind HdrHistograms (corrected and uncorrected), status and error counts, the
//! X-Served-By distribution, and per-second samples. Each executor thread owns its own and they are
//! merged once at the end (per-second samples as each second closes).

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

/// Histogram range: 1 µs .. 60 s at 3 significant digits (0.1 % resolution).
pub const HIST_LOW_US: u64 = 1;
pub const HIST_HIGH_US: u64 = 60_000_000;
pub const HIST_SIGFIG: u8 = 3;
/// Per-second histograms only feed the progress line and the timeseries: 2 digits keep them small
/// (~20 KiB each) since one exists per thread per second.
pub const SECOND_SIGFIG: u8 = 2;
/// Distinct X-Served-By values counted by name; the rest go to "other" (a misbehaving server must not
/// grow the map without bound).
pub const MAX_BACKENDS: usize = 64;
pub const OTHER_BACKEND: &str = "other";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    Connect,
    Timeout,
    Read,
    Write,
    Parse,
    #[serde(rename = "http_4xx")]
    Http4xx,
    #[serde(rename = "http_5xx")]
    Http5xx,
}

pub const ERROR_CLASSES: [ErrorClass; 7] = [
    ErrorClass::Connect,
    ErrorClass::Timeout,
    ErrorClass::Read,
    ErrorClass::Write,
    ErrorClass::Parse,
    ErrorClass::Http4xx,
    ErrorClass::Http5xx,
];

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Read => "read",
            ErrorClass::Write => "write",
            ErrorClass::Parse => "parse",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

pub fn new_hist() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
        .unwrap_or_else(|_| unreachable!())
}

pub fn new_second_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, SECOND_SIGFIG)
        .unwrap_or_else(|_| unreachable!())
}

#[derive(Debug, Clone)]
pub struct KindStats {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    /// Bounded: httparse accepts only 3-digit status codes (at most 900 keys).
    pub statuses: BTreeMap<u16, u64>,
    pub errors: [u64; 7],
    /// Requests sent in the measured window (responses or not).
    pub sent: u64,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats {
            corrected: new_hist(),
            uncorrected: new_hist(),
            statuses: BTreeMap::new(),
            errors: [0; 7],
            sent: 0,
        }
    }
}

impl KindStats {
    pub fn merge(&mut self, o: &KindStats) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.corrected.add(&o.corrected);
        let _ = self.uncorrected.add(&o.uncorrected);
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        self.sent += o.sent;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
    pub fn add_error(&mut self, c: ErrorClass) {
        self.errors[c.index()] += 1;
    }
    pub fn error(&self, c: ErrorClass) -> u64 {
        self.errors[c.index()]
    }
}

/// X-Served-By counts with at most MAX_BACKENDS names.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    pub by_name: HashMap<String, u64>,
    pub other: u64,
    /// Responses without the header.
    pub none: u64,
}

impl Backends {
    pub fn add(&mut self, name: Option<&str>, n: u64) {
        let Some(name) = name else {
            self.none += n;
            return;
        };
        if let Some(c) = self.by_name.get_mut(name) {
            *c += n;
        } else if self.by_name.len() < MAX_BACKENDS {
            self.by_name.insert(name.to_string(), n);
        } else {
            self.other += n;
        }
    }
    pub fn merge(&mut self, o: &Backends) {
        for (k, v) in &o.by_name {
            self.add(Some(k), *v);
        }
        self.other += o.other;
        self.none += o.none;
    }
}

/// One second of one thread (or, merged, of all threads).
#[derive(Debug, Clone)]
pub struct Second {
    pub index: u64,
    pub requests: u64,
    pub errors: u64,
    pub hist: Histogram<u64>,
}

impl Second {
    pub fn new(index: u64) -> Second {
        Second {
            index,
            requests: 0,
            errors: 0,
            hist: new_second_hist(),
        }
    }
    pub fn merge(&mut self, o: &Second) {
        self.requests += o.requests;
        self.errors += o.errors;
        let _ = self.hist.add(&o.hist);
    }
}

/// Everything one executor thread measured.
#[derive(Debug, Clone)]
pub struct ThreadResult {
    pub kinds: Vec<KindStats>,
    pub backends: Backends,
    /// Open loop: measured sends that left more than LATE_THRESHOLD after their intended time.
    pub late_sends: u64,
    /// Largest send lag seen, µs.
    pub max_lag_us: u64,
    /// Open loop: scheduled requests never sent because the run hit its hard end.
    pub unsent: u64,
    /// Connections opened (including replacements).
    pub connects: u64,
    /// When the last measured response arrived, µs after the measurement start.
    pub last_done_us: u64,
    /// The earliest intended send time and the last actual send of the measured requests, µs after
    /// the measurement start (first > last: none). The achieved rate is taken between them: from the
    /// schedule's start, so that a run that began behind and caught up does not look faster than
    /// its schedule, to when the last request really left.
    pub first_intended_us: u64,
    pub last_sent_us: u64,
}

impl ThreadResult {
    pub fn new(kinds: usize) -> ThreadResult {
        ThreadResult {
            kinds: (0..kinds).map(|_| KindStats::default()).collect(),
            backends: Backends::default(),
            late_sends: 0,
            max_lag_us: 0,
            unsent: 0,
            connects: 0,
            last_done_us: 0,
            first_intended_us: u64::MAX,
            last_sent_us: 0,
        }
    }

    pub fn merge(&mut self, o: &ThreadResult) {
        for (a, b) in self.kinds.iter_mut().zip(&o.kinds) {
            a.merge(b);
        }
        self.backends.merge(&o.backends);
        self.late_sends += o.late_sends;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        self.unsent += o.unsent;
        self.connects += o.connects;
        self.last_done_us = self.last_done_us.max(o.last_done_us);
        self.first_intended_us = self.first_intended_us.min(o.first_intended_us);
        self.last_sent_us = self.last_sent_us.max(o.last_sent_us);
    }

    /// Measured sends per second from the first intended send to the last actual send: below the
    /// target rate when the generator fell behind its schedule, however many requests it sent in
    /// the end. None: fewer than two sends.
    pub fn achieved_send_rate(&self) -> Option<f64> {
        let sent: u64 = self.kinds.iter().map(|k| k.sent).sum();
        let span_us = self.last_sent_us.checked_sub(self.first_intended_us)?;
        if sent < 2 || span_us == 0 {
            return None;
        }
        Some((sent - 1) as f64 * 1e6 / span_us as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn achieved_rate_spans_the_actual_sends_of_all_threads() {
        let thread = |sent: u64, first: u64, last: u64| {
            let mut t = ThreadResult::new(1);
            t.kinds[0].sent = sent;
            t.first_intended_us = first;
            t.last_sent_us = last;
            t
        };
        let mut all = ThreadResult::new(1);
        assert_eq!(all.achieved_send_rate(), None, "no sends");
        // Two threads of 1000 req/s each over 1 s, interleaved, on time: 2000 sends in 0.9995 s.
        all.merge(&thread(1000, 500, 999_500));
        all.merge(&thread(1000, 0, 999_000));
        let r = all.achieved_send_rate().unwrap();
        assert!((r - 1999.0 / 0.9995).abs() < 1e-6, "{r}");
        // The same sends, the last one 1 s late: the rate offered was lower.
        all.merge(&thread(0, u64::MAX, 1_999_500));
        assert!((all.achieved_send_rate().unwrap() - 1999.0 / 1.9995).abs() < 1e-6);
        assert_eq!(thread(1, 5, 5).achieved_send_rate(), None, "one send");
    }

    #[test]
    fn backends_are_bounded() {
        let mut b = Backends::default();
        for i in 0..200 {
            b.add(Some(&format!("n{i}")), 1);
        }
        b.add(Some("n0"), 1);
        b.add(None, 2);
        assert_eq!(b.by_name.len(), MAX_BACKENDS);
        assert_eq!(b.by_name["n0"], 2);
        assert_eq!(b.other, 200 - MAX_BACKENDS as u64);
        assert_eq!(b.none, 2);
    }
}

//! Turning a run's measurements into the report: text on stdout, JSON, the HdrHistogram percentile
//! distribution (.hgrm), the per-second CSV timeseries and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::{RunOutput, LATE_THRESHOLD};
use crate::stats::{ErrorClass, KindStats, ERROR_CLASSES, OTHER_BACKEND};

/// Above this share of its cores busy, the generator is likely the bottleneck.
pub const SATURATION: f64 = 0.9;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            p9999_ms: q(0.9999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub name: String,
    pub responses: u64,
    pub sent: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub statuses: BTreeMap<String, u64>,
    pub latency_corrected: Latency,
    pub latency_uncorrected: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondRow {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// CPU seconds per wall second: how many cores the generator kept busy.
    pub cores_used: f64,
    pub threads: usize,
    pub pinned: bool,
    /// cores_used > 90 % of the threads: the generator may be the bottleneck.
    pub saturated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub threads: usize,
    pub connections: usize,
    pub window_seconds: f64,
    pub responses: u64,
    pub sent: u64,
    pub throughput_rps: f64,
    pub sent_rate_rps: f64,
    /// Sends per second from the first intended to the last actual send (null: fewer than two): in
    /// the open loop, the rate really offered, below the target when the generator fell behind.
    pub achieved_send_rps: Option<f64>,
    pub errors_total: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub late_sends: u64,
    pub late_threshold_ms: f64,
    pub max_send_lag_ms: f64,
    pub unsent: u64,
    pub connects: u64,
    pub latency_corrected: Latency,
    pub latency_uncorrected: Latency,
    pub kinds: Vec<KindReport>,
    pub backends: BTreeMap<String, u64>,
    pub cpu: Cpu,
    pub timeseries: Vec<SecondRow>,
}

fn errors_of(k: &KindStats) -> BTreeMap<&'static str, u64> {
    ERROR_CLASSES
        .iter()
        .map(|c| (c.name(), k.error(*c)))
        .collect()
}

impl Report {
    pub fn new(target: &str, o: &RunOutput) -> (Report, Histogram<u64>) {
        let mut all = KindStats::default();
        for k in &o.result.kinds {
            all.merge(k);
        }
        let kinds = o
            .kind_names
            .iter()
            .zip(&o.result.kinds)
            .map(|(name, k)| KindReport {
                name: name.clone(),
                responses: k.corrected.len(),
                sent: k.sent,
                errors: errors_of(k),
                statuses: k
                    .statuses
                    .iter()
                    .map(|(s, n)| (s.to_string(), *n))
                    .collect(),
                latency_corrected: Latency::of(&k.corrected),
                latency_uncorrected: Latency::of(&k.uncorrected),
            })
            .collect();
        let mut backends: BTreeMap<String, u64> = o
            .result
            .backends
            .by_name
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if o.result.backends.other > 0 {
            *backends.entry(OTHER_BACKEND.into()).or_default() += o.result.backends.other;
        }
        if !backends.is_empty() && o.result.backends.none > 0 {
            backends.insert("(no header)".into(), o.result.backends.none);
        }
        let window = o.window.as_secs_f64().max(1e-9);
        let wall = o.wall.as_secs_f64().max(1e-9);
        let cores_used = o.cpu.as_secs_f64() / wall;
        let responses = all.corrected.len();
        let timeseries = o
            .seconds
            .iter()
            .map(|s| SecondRow {
                second: s.index,
                requests: s.requests,
                errors: s.errors,
                p50_ms: s.hist.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: s.hist.value_at_quantile(0.99) as f64 / 1000.0,
            })
            .collect();
        let r = Report {
            target: target.to_string(),
            mode: if o.rate.is_some() { "open" } else { "closed" },
            target_rate: o.rate,
            threads: o.threads,
            connections: o.connections,
            window_seconds: window,
            responses,
            sent: all.sent,
            throughput_rps: responses as f64 / window,
            sent_rate_rps: all.sent as f64 / window,
            achieved_send_rps: o.result.achieved_send_rate(),
            errors_total: all.error_total(),
            errors: errors_of(&all),
            late_sends: o.result.late_sends,
            late_threshold_ms: LATE_THRESHOLD.as_secs_f64() * 1000.0,
            max_send_lag_ms: o.result.max_lag_us as f64 / 1000.0,
            unsent: o.result.unsent,
            connects: o.result.connects,
            latency_corrected: Latency::of(&all.corrected),
            latency_uncorrected: Latency::of(&all.uncorrected),
            kinds,
            backends,
            cpu: Cpu {
                cpu_seconds: o.cpu.as_secs_f64(),
                wall_seconds: wall,
                cores_used,
                threads: o.threads,
                pinned: o.pinned,
                saturated: cores_used > SATURATION * o.threads as f64,
            },
            timeseries,
        };
        (r, all.corrected)
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadgen {}: {} loop{}, {}{}, {}, {:.2} s measured",
            self.target,
            self.mode,
            self.target_rate
                .map(|r| format!(" at {r:.0} req/s"))
                .unwrap_or_default(),
            count(self.threads, "thread"),
            if self.cpu.pinned { " (pinned)" } else { "" },
            count(self.connections, "connection"),
            self.window_seconds
        );
        let _ = writeln!(
            s,
            "  requests     {} responses, {} sent; throughput {:.1} req/s (sent {:.1} req/s)",
            self.responses, self.sent, self.throughput_rps, self.sent_rate_rps
        );
        let _ = writeln!(
            s,
            "  errors       {} ({})",
            self.errors_total,
            list(&self.errors)
        );
        if self.mode == "open" {
            let pct = 100.0 * self.late_sends as f64 / (self.sent.max(1)) as f64;
            let _ = writeln!(
                s,
                "  schedule     achieved {} req/s (first intended to last actual send); {} late sends (> {} ms behind schedule, {pct:.2} %), max lag {:.3} ms, {} never sent",
                self.achieved_send_rps
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.1}")),
                self.late_sends, self.late_threshold_ms, self.max_send_lag_ms, self.unsent
            );
        }
        latency_table(
            &mut s,
            "  ",
            &self.latency_corrected,
            &self.latency_uncorrected,
            self.mode,
        );
        if self.kinds.len() > 1 {
            for k in &self.kinds {
                let errs: u64 = k.errors.values().sum();
                let _ = writeln!(
                    s,
                    "  kind {}: {} responses ({:.1} %), statuses {}, errors {}",
                    k.name,
                    k.responses,
                    100.0 * k.responses as f64 / self.responses.max(1) as f64,
                    list(&k.statuses),
                    errs
                );
                latency_table(
                    &mut s,
                    "    ",
                    &k.latency_corrected,
                    &k.latency_uncorrected,
                    self.mode,
                );
            }
        } else if let Some(k) = self.kinds.first() {
            let _ = writeln!(s, "  statuses     {}", list(&k.statuses));
        }
        if !self.backends.is_empty() {
            let total: u64 = self.backends.values().sum();
            let parts: Vec<String> = self
                .backends
                .iter()
                .map(|(k, v)| format!("{k} {v} ({:.1} %)", 100.0 * *v as f64 / total.max(1) as f64))
                .collect();
            let _ = writeln!(s, "  backends     {}", parts.join(", "));
        }
        let _ = writeln!(
            s,
            "  generator    {:.2} CPU s over {:.2} s wall = {:.2} cores busy of {}",
            self.cpu.cpu_seconds,
            self.cpu.wall_seconds,
            self.cpu.cores_used,
            count(self.cpu.threads, "thread")
        );
        if self.cpu.saturated {
            let _ = writeln!(
                s,
                "  WARNING: the generator kept {:.0} % of its cores busy: it may be the bottleneck, and these numbers measure it",
                100.0 * self.cpu.cores_used / self.cpu.threads.max(1) as f64
            );
        }
        s
    }

    /// Responses with a status below 400.
    pub fn successes(&self) -> u64 {
        self.responses
            .saturating_sub(self.error_count(ErrorClass::Http4xx))
            .saturating_sub(self.error_count(ErrorClass::Http5xx))
    }

    /// Requests that ended in the measured window, with a response or with an error before one.
    pub fn completed(&self) -> u64 {
        let http = self.error_count(ErrorClass::Http4xx) + self.error_count(ErrorClass::Http5xx);
        self.responses + self.errors_total.saturating_sub(http)
    }

    fn error_count(&self, c: ErrorClass) -> u64 {
        self.errors.get(c.name()).copied().unwrap_or(0)
    }

    /// Errors (4xx and 5xx responses included) per completed request; 1 when none completed.
    pub fn error_rate(&self) -> f64 {
        match self.completed() {
            0 => 1.0,
            n => self.errors_total as f64 / n as f64,
        }
    }

    /// Why the run does not count as a measurement, if so: no request succeeded, or the error rate is
    /// above `max_error_rate` (a fraction). The caller exits non-zero with this message, after writing
    /// the report, so that a script cannot take a run against a dead target for a result.
    pub fn failure(&self, max_error_rate: Option<f64>) -> Option<String> {
        if self.successes() == 0 {
            return Some(format!(
                "no request succeeded: {} responses, {} errors ({})",
                self.responses,
                self.errors_total,
                list(&self.errors)
            ));
        }
        let rate = self.error_rate();
        match max_error_rate {
            Some(max) if rate > max => Some(format!(
                "error rate {:.3} % ({} errors in {} requests) is above --max-error-rate {:.3} %",
                100.0 * rate,
                self.errors_total,
                self.completed(),
                100.0 * max
            )),
            _ => None,
        }
    }

    pub fn csv(&self) -> String {
        let mut s = String::from("second,requests,errors,p50_ms,p99_ms\n");
        for r in &self.timeseries {
            let _ = writeln!(
                s,
                "{},{},{},{:.3},{:.3}",
                r.second, r.requests, r.errors, r.p50_ms, r.p99_ms
            );
        }
        s
    }
}

/// "1 thread", "2 threads": a count with its noun in the right number.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn list<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn latency_table(s: &mut String, ind: &str, c: &Latency, u: &Latency, mode: &str) {
    let _ = writeln!(
        s,
        "{ind}latency ms   {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
    );
    let row = |s: &mut String, name: &str, l: &Latency| {
        let _ = writeln!(
            s,
            "{ind}{name:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms, l.mean_ms
        );
    };
    if mode == "open" {
        row(s, "corrected", c);
        row(s, "uncorrected", u);
    } else {
        // Closed loop: requests are sent when the connection is free, so both clocks agree.
        row(s, "response", u);
    }
}

/// The HdrHistogram percentile distribution in the text format of HdrHistogram's
/// outputPercentileDistribution (and wrk2), values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let ms = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{ms:>12.3} {q:>14.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{ms:>12.3} {q:>14.12} {total:>10}");
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    s
}

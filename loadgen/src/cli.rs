//! The `loadgen run` command: options, the live progress line, and writing the outputs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use crate::engine::{self, RunConfig};
use crate::report::{hgrm, Report};
use crate::scenario::{default_kind, parse_scenario, Target};
use crate::stats::Second;
use crate::svg;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target URL, http://host:port/path (the Host header and, without a scenario, the request).
    pub url: String,
    /// Connections in total: the closed loop's concurrency, or the open loop's pool.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Open loop at this many requests per second in total (default: closed loop).
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,
    /// Measured duration (e.g. 30s, 500ms, 2m).
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Measured request count (instead of, or as well as, a duration).
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Load run before the measurement and left out of every result.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Per-request timeout, from the send to the end of the response.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Executor threads, each pinned to an allowed CPU (default: one per allowed CPU).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Send `Connection: close`: one request per connection.
    #[arg(long)]
    pub close: bool,
    /// Requests in flight per connection (closed loop only).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Request mix file (TOML [[kind]] tables).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the corrected latency distribution in HdrHistogram's .hgrm text format.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write the per-second timeseries (second, requests, errors, p50, p99) as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write SVG plots: PREFIX-latency.svg (spectrum) and PREFIX-timeseries.svg.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Open loop: round wake-ups up to multiples of this (e.g. 200us) so that sends due close together
    /// share one executor wake-up: less generator CPU at high rates, at the cost of up to this much
    /// extra (measured) latency. 0: exact per-request timers.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub pace_quantum: Duration,
    /// Open loop: wake this long before each send and spin until its time (e.g. 150us): removes the
    /// ~0.1 ms timer lateness from the corrected latency, at the cost of generator CPU. 0: no spin.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub spin: Duration,
    /// Do not pin the executor threads to CPUs (for a machine shared with other work).
    #[arg(long)]
    pub no_pin: bool,
    /// PRNG seed for the request mix and placeholders (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Exit non-zero when more than this share of the requests failed (errors, 4xx and 5xx
    /// included): a fraction (0.01) or a percentage (1%). Without it, only a run in which no request
    /// succeeded exits non-zero.
    #[arg(long, value_parser = parse_rate)]
    pub max_error_rate: Option<f64>,
}

/// Parses "0.05" (a fraction, 0..=1) or "5%" (a percentage, 0..=100) into a fraction.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale, max) = match t.strip_suffix('%') {
        Some(p) => (p.trim_end(), 100.0, 100.0),
        None => (t, 1.0, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad rate {s:?}"))?;
    if !(0.0..=max).contains(&v) {
        return Err(if scale == 1.0 {
            format!("rate {s:?} is not a fraction in 0..1 (for a percentage, add %)")
        } else {
            format!("rate {s:?} is not a percentage in 0..100")
        });
    }
    Ok(v / scale)
}

/// Parses "1.5s", "250ms", "2m", "1h", "100us" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("bad duration unit {u:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}"))
}

fn progress(s: &Second) {
    let p99 = s.hist.value_at_quantile(0.99) as f64 / 1000.0;
    let mut e = std::io::stderr().lock();
    // \r and "erase line": one line, rewritten each second.
    let _ = write!(
        e,
        "\r\x1b[2K[{:>4}s] {:>9} req/s  {:>6} errors  p99 {:>9.3} ms",
        s.index + 1,
        s.requests,
        s.errors,
        p99
    );
    let _ = e.flush();
}

pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let kinds = match &a.scenario {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse_scenario(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => vec![default_kind(&target)],
    };
    let seed = a.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let cfg = RunConfig {
        target,
        kinds,
        threads: a.threads,
        connections: a.connections,
        rate: a.rate,
        duration: a.duration,
        count: a.count,
        warmup: a.warmup,
        timeout: a.timeout,
        close: a.close,
        pipeline: a.pipeline,
        seed,
        pin: !a.no_pin,
        pace_quantum: a.pace_quantum,
        spin: a.spin,
    };
    let tty = std::io::stderr().is_terminal();
    let out = engine::run(&cfg, |s| {
        if tty {
            progress(s);
        }
    })?;
    if tty {
        eprintln!();
    }
    let (report, corrected) = Report::new(&a.url, &out);
    print!("{}", report.text());
    if let Some(p) = &a.json {
        let j = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, j).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.hgrm {
        std::fs::write(p, hgrm(&corrected)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.csv {
        std::fs::write(p, report.csv()).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(prefix) = &a.svg {
        let mut uncorrected = crate::stats::new_hist();
        for k in &out.result.kinds {
            let _ = uncorrected.add(&k.uncorrected);
        }
        let title = format!("{} ({} loop)", a.url, report.mode);
        let curves: Vec<(&str, &str, &hdrhistogram::Histogram<u64>)> = if report.mode == "open" {
            vec![
                ("corrected (from intended send)", "#1f77b4", &corrected),
                ("uncorrected (from actual send)", "#ff7f0e", &uncorrected),
            ]
        } else {
            vec![("response time", "#1f77b4", &uncorrected)]
        };
        let lat = with_suffix(prefix, "-latency.svg");
        std::fs::write(&lat, svg::spectrum(&title, &curves))
            .with_context(|| format!("writing {}", lat.display()))?;
        let ts = with_suffix(prefix, "-timeseries.svg");
        std::fs::write(&ts, svg::timeseries(&title, &report.timeseries))
            .with_context(|| format!("writing {}", ts.display()))?;
    }
    match report.failure(a.max_error_rate) {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

fn with_suffix(prefix: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_rate};
    use std::time::Duration;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert_eq!(parse_rate("5%"), Ok(0.05));
        assert_eq!(parse_rate(" 0.5 % "), Ok(0.005));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("100%"), Ok(1.0));
        for bad in ["5", "-1%", "101%", "x", "", "%", "NaN", "inf%"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

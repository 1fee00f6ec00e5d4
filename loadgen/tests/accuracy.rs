//! Accuracy of the generator against servers with a known latency model: the open loop's corrected
//! percentiles match the analytic truth, the uncorrected ones show coordinated omission, the rate is
//! held, and glommio's timers are precise enough to pace it.

mod run_config;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corelb_testkit::latency::{attempts, check, close, quantile, serial, Model, TestServer};
use loadgen::report::Report;
use run_config::config;

/// Share of sends allowed to leave more than 1 ms late when the server keeps up. The generator's
/// pacing itself is under that (timer_precision_is_well_under_a_millisecond), but these VMs delay
/// wake-ups by an amount that varies from day to day: 2.7-7.8 % of 600 sends at 200 req/s were late
/// in CI on 2026-12-01; on 2026-12-04, with glommio's timer overshoot at 0.3-0.4 ms median and up to
/// 2 ms at p90 on a quiet machine, 22-61 % were, with the old code and the new alike. A generator
/// that falls behind its schedule fails the achieved-rate checks, and its late sends would be all of
/// them: this bound only catches that; how late sends are is reported and corrected for.
const MAX_LATE_SHARE: f64 = 0.75;

/// Fixed-delay server (100 ms): the corrected p50 is the delay within 5 %, and the corrected p99 is
/// within 5 % of the p99 of what the server actually applied (its own clock, request read to response
/// written). The p99 truth comes from the server because this machine is 2 shared cores: the OS wakes
/// the server's threads up to several ms late under load, which is real latency the generator must
/// report, not an error of the generator. The rate is held within 1 %.
#[test]
fn open_loop_fixed_delay_matches_truth_and_rate() {
    let _g = serial();
    attempts("fixed delay", || {
        let srv = TestServer::start(Model::fixed(Duration::from_millis(100)));
        let mut cfg = config(&srv.url());
        cfg.rate = Some(200.0);
        cfg.connections = 64;
        cfg.warmup = Duration::from_millis(500);
        cfg.duration = Some(Duration::from_secs(3));
        let out = loadgen::run(&cfg, |_| {}).unwrap();
        let (r, _) = Report::new("t", &out);
        eprintln!("{}", r.text());
        // Structural facts hold whatever the machine's load.
        assert_eq!(r.errors_total, 0);
        assert_eq!(r.unsent, 0);
        assert_eq!(r.timeseries.len(), 3, "{:?}", r.timeseries);
        // Achieved rate: what the server received (warm-up included) and what the report says.
        let received = srv.total.load(Ordering::SeqCst) as f64;
        assert!(
            (received / (200.0 * 3.5) - 1.0).abs() <= 0.01,
            "server received {received}, expected 700"
        );
        assert!(
            (r.throughput_rps / 200.0 - 1.0).abs() <= 0.01,
            "throughput {}",
            r.throughput_rps
        );
        // The rate really offered: between the first and the last actual send (a generator that
        // fell behind and caught up would still have sent every request).
        let achieved = r.achieved_send_rps.unwrap_or(0.0);
        check((achieved / 200.0 - 1.0).abs() <= 0.01, || {
            format!("achieved send rate {achieved}")
        })?;
        let mut applied = srv.applied_us.lock().unwrap().clone();
        let truth_p99 = quantile(&mut applied, 0.99) as f64 / 1000.0;
        let truth_p50 = quantile(&mut applied, 0.5) as f64 / 1000.0;
        close("server-applied p50", truth_p50, 100.0, 0.05)?;
        close("corrected p50", r.latency_corrected.p50_ms, 100.0, 0.05)?;
        close("uncorrected p50", r.latency_uncorrected.p50_ms, 100.0, 0.05)?;
        close("corrected p99", r.latency_corrected.p99_ms, truth_p99, 0.05)?;
        check(
            r.late_sends as f64 <= MAX_LATE_SHARE * r.sent as f64,
            || format!("{} late sends of {}", r.late_sends, r.sent),
        )
    });
}

/// A server that answers instantly except that it stalls every response for 1 s every 5 s. With
/// requests at fixed intervals over two whole periods, 20 % arrive in a stall and wait uniformly
/// (0, 1] s until it ends; the rest are instant. So the corrected quantile q >= 0.8 is
/// 1 s - (1 - q) / 0.2 s: p90 = 500 ms, p99 = 950 ms, p99.9 = 995 ms. A small pool (8 connections
/// at 100 req/s) means most stalled requests wait in the generator: measured from their actual send
/// they look instant, which is exactly what coordinated omission hides.
#[test]
fn open_loop_stalling_server_corrected_matches_truth() {
    let _g = serial();
    attempts("stalling server", || {
        let srv = TestServer::start(Model {
            delay: Duration::ZERO,
            stall: Some((Duration::from_secs(5), Duration::from_secs(1))),
        });
        let mut cfg = config(&srv.url());
        cfg.rate = Some(100.0);
        cfg.connections = 8;
        cfg.duration = Some(Duration::from_secs(10));
        let out = loadgen::run(&cfg, |_| {}).unwrap();
        let (r, _) = Report::new("t", &out);
        eprintln!("{}", r.text());
        assert_eq!(r.errors_total, 0);
        assert_eq!(r.responses, 1000);
        let c = &r.latency_corrected;
        let u = &r.latency_uncorrected;
        // Coordinated omission: measured from the actual send, the stall all but disappears.
        assert!(
            u.p90_ms < c.p90_ms / 10.0,
            "uncorrected p90 {} ms should hide the stall (corrected {} ms)",
            u.p90_ms,
            c.p90_ms
        );
        // About 92 of the 100 stalled requests per stall were sent late; the report says so.
        assert!(r.late_sends >= 150, "late sends {}", r.late_sends);
        close("corrected p90", c.p90_ms, 500.0, 0.05)?;
        close("corrected p99", c.p99_ms, 950.0, 0.05)?;
        close("corrected p99.9", c.p999_ms, 995.0, 0.05)?;
        check(c.p50_ms < 5.0, || {
            format!("corrected p50 {} ms (truth ~0)", c.p50_ms)
        })
    });
}

/// A higher rate over two threads: everything scheduled arrives (within 1 %), nothing is dropped.
#[test]
fn open_loop_rate_is_held_across_threads() {
    let _g = serial();
    let srv = TestServer::start(Model::fixed(Duration::ZERO));
    let mut cfg = config(&srv.url());
    cfg.threads = Some(2);
    cfg.rate = Some(3000.0);
    cfg.connections = 32;
    cfg.duration = Some(Duration::from_secs(2));
    let out = loadgen::run(&cfg, |_| {}).unwrap();
    let (r, _) = Report::new("t", &out);
    eprintln!("{}", r.text());
    let received = srv.total.load(Ordering::SeqCst) as f64;
    assert!(
        (received / 6000.0 - 1.0).abs() <= 0.01,
        "server received {received}, expected 6000"
    );
    assert_eq!(r.errors_total, 0);
    assert!(
        (r.throughput_rps / 3000.0 - 1.0).abs() <= 0.01,
        "throughput {}",
        r.throughput_rps
    );
    // The counts above hold even for a generator that fell seconds behind and caught up; the send
    // times do not.
    let achieved = r.achieved_send_rps.unwrap_or(0.0);
    assert!(
        (achieved / 3000.0 - 1.0).abs() <= 0.01,
        "achieved send rate {achieved} (first intended to last actual send)"
    );
    assert!(
        r.late_sends as f64 <= MAX_LATE_SHARE * r.sent as f64,
        "{} late sends of {}",
        r.late_sends,
        r.sent
    );
}

/// glommio timer precision, which paces the open loop: how late do sleeps of 0.1..3 ms wake up?
#[test]
fn timer_precision_is_well_under_a_millisecond() {
    let _g = serial();
    let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(|| async {
            let mut late = Vec::new();
            for i in 0..300u64 {
                let d = Duration::from_micros(100 + (i * 9973) % 2900);
                let t0 = Instant::now();
                glommio::timer::sleep(d).await;
                late.push(t0.elapsed().saturating_sub(d));
            }
            late.sort();
            late
        })
        .unwrap();
    let late = h.join().unwrap();
    let p50 = late[late.len() / 2];
    let p90 = late[late.len() * 9 / 10];
    let p99 = late[late.len() * 99 / 100];
    let max = late[late.len() - 1];
    eprintln!("timer overshoot: p50 {p50:?}, p90 {p90:?}, p99 {p99:?}, max {max:?}");
    // glommio wakes 0.1-0.17 ms late at the median on this kind of VM on 2026-12-01, 0.31-0.40 ms on
    // 2026-12-04 (old and new code alike, machine quiet; a plain nanosleep 0.15 ms): the host's timer
    // behaviour varies from day to day. The tail depends on the machine's load (2 shared cores: p90
    // 0.2-2.1 ms, p99 up to 10 ms on an otherwise idle VM), so only the bulk is asserted, against
    // what a broken sleep path would show (late by a preemption period, 100 ms, or never waking).
    // Late sends are counted and corrected for by the generator in any case; the figures themselves
    // belong to the benchmarks (docs/benchmarks.md, "The load generator").
    assert!(p50 < Duration::from_millis(1), "p50 overshoot {p50:?}");
    assert!(p90 < Duration::from_millis(5), "p90 overshoot {p90:?}");
}

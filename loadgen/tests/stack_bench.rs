//! The benchmark command itself, end to end and short: loadgen/stack/bench.sh (what `loadgen bench`
//! and scripts/bench.sh run) with corelb and HAProxy in the balancer's seat, one round of 1 s runs.
//! It brings up a private MariaDB pair, the database-tier corelb, two app nodes and both balancers on
//! free ports, runs the closed loop and the open loop at 50 % and 80 % of it for each balancer, and
//! writes its results directory. Checked: every run's report files (text, JSON, .hgrm, CSV, both
//! SVGs), no errors and both app nodes serving in every run, the open-loop rates derived from the
//! closed loop, the report's tables (per run, side by side) and its replication check, and that
//! nothing the script started is left running.
//!
//! Uses the debug binaries (CORELB_BIN, LOADGEN_BIN, APPNODE_BIN), so its figures mean nothing; the
//! test is about the script working. Needs mariadb-server, haproxy and jq (Debian): without them it
//! says SKIPPED and passes, except under CI (CI=true), where that is a failure.

use corelb_testkit::mariadb::{SCRIPT, SCRIPT_TIMEOUT};
use corelb_testkit::process::corelb_binary;
use corelb_testkit::tools::processes_mentioning;
use corelb_testkit::{free_port, require_or_skip, run_bounded};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BENCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/bench.sh");
const APPNODE: &str = env!("CARGO_BIN_EXE_appnode");
const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
/// Bound on the whole script: the pair's start (1-5 s here), 6 runs of 1 s warm-up + 1 s measured
/// each with a 1 s quiet-machine sample before it, the replication wait and the shutdown; debug
/// binaries on 2 shared cores.
const BENCH_TIMEOUT: Duration = Duration::from_secs(300);
const BALANCERS: [&str; 2] = ["corelb", "haproxy"];
const RUNS: [&str; 3] = ["closed", "open50", "open80"];
/// Report files per run, after its `<balancer>-<run>-r1` prefix.
const RUN_FILES: [&str; 6] = [
    ".txt",
    ".json",
    ".hgrm",
    ".csv",
    "-latency.svg",
    "-timeseries.svg",
];

/// Whatever happens, the pair's state is purged and the results directory removed (the script
/// itself stops what it started, by PID, on every exit path).
struct Cleanup {
    stack_dir: PathBuf,
    results: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("bash")
                .arg(SCRIPT)
                .arg("purge")
                .env("CORELB_STACK_DIR", &self.stack_dir),
            SCRIPT_TIMEOUT,
        );
        let _ = std::fs::remove_dir_all(&self.results);
    }
}

fn json_of(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn num(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn bench_script_measures_corelb_and_haproxy_side_by_side() {
    if !require_or_skip(
        "bench_script_measures_corelb_and_haproxy_side_by_side",
        &["mariadbd", "mariadb", "haproxy", "jq"],
    ) {
        return;
    }
    let pid = std::process::id();
    // Short (unix socket paths are limited to 107 bytes), distinct from the other stack tests' dirs.
    let guard = Cleanup {
        stack_dir: PathBuf::from(format!("/tmp/corelb-b{pid}")),
        results: std::env::temp_dir().join(format!("loadgen-stack-bench-{pid}")),
    };
    let ports = [
        "CORELB_PRIMARY_PORT",
        "CORELB_REPLICA_PORT",
        "APP1_PORT",
        "APP2_PORT",
        "CORELB_PORT",
        "HAPROXY_PORT",
        "NGINX_PORT",
        "DB_WRITER_PORT",
        "DB_READER_PORT",
    ]
    .map(|name| (name, free_port()));
    let mut cmd = Command::new("bash");
    cmd.arg(BENCH)
        .args(["--balancer", &BALANCERS.join(",")])
        .env("DURATION", "1")
        .env("WARMUP", "1")
        .env("ROUNDS", "1")
        .env("QUIET_WAIT", "0")
        .env("MAX_REDO", "0")
        .env("CORELB_STACK_DIR", &guard.stack_dir)
        .env("RESULTS_DIR", &guard.results)
        .env("CORELB_BIN", corelb_binary())
        .env("LOADGEN_BIN", LOADGEN)
        .env("APPNODE_BIN", APPNODE);
    for (name, port) in ports {
        cmd.env(name, port.to_string());
    }
    let out = run_bounded(&mut cmd, BENCH_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench.sh failed: {:?}", out.status);

    let report = std::fs::read_to_string(guard.results.join("report.md")).expect("report.md");
    assert!(stdout.contains(&report), "the report is printed");
    assert!(
        report.contains("Replication: OK"),
        "every row written reached the replica"
    );
    assert!(report.contains("Side by side"), "side-by-side table");
    assert!(
        report.contains("| app nodes CPU us/req |"),
        "app tier CPU column"
    );
    for b in BALANCERS {
        let closed = json_of(&guard.results.join(format!("{b}-closed-r1.json")));
        let max = num(&closed["throughput_rps"], "closed throughput");
        assert!(max > 0.0, "{b}: no closed-loop throughput");
        for run in RUNS {
            let prefix = format!("{b}-{run}-r1");
            for ext in RUN_FILES {
                let f = guard.results.join(format!("{prefix}{ext}"));
                let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                assert!(len > 0, "{} missing or empty", f.display());
            }
            let r = json_of(&guard.results.join(format!("{prefix}.json")));
            assert_eq!(r["errors_total"], 0, "{prefix}: {}", r["errors"]);
            for node in ["app1", "app2"] {
                assert!(
                    r["backends"][node].as_u64().unwrap_or(0) > 0,
                    "{prefix}: {node} served nothing: {}",
                    r["backends"]
                );
            }
            if let Some(pct) = run.strip_prefix("open") {
                let pct: f64 = pct.parse().expect("load percentage");
                assert_eq!(r["mode"], "open", "{prefix}");
                // bench.sh: rate = int(median closed throughput, rounded to 0.1 req/s, x pct / 100).
                let rate = num(&r["target_rate"], "target_rate");
                assert!(
                    (rate - max * pct / 100.0).abs() <= 1.0,
                    "{prefix}: rate {rate} is not {pct} % of {max}"
                );
            }
            // One row per run in the report's table, with a balancer CPU and an app tier CPU figure
            // (tick-sampled: a light 1 s run may round to 0).
            let row = report
                .lines()
                .find(|l| l.starts_with(&format!("| {b} | {run} |")))
                .unwrap_or_else(|| panic!("no row for {b} {run} in:\n{report}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for (i, what) in [(10, "balancer CPU"), (11, "app nodes CPU")] {
                let cell = cells.get(i).copied().unwrap_or("");
                assert!(
                    cell.parse::<f64>().is_ok_and(|v| v >= 0.0),
                    "{b} {run}: {what} {cell:?} in {row}"
                );
            }
        }
    }

    // The script stopped everything it started: app nodes, balancers, the database tier, MariaDB.
    let dirs = [&guard.stack_dir, &guard.results].map(|d| d.display().to_string());
    for needle in dirs.iter().cloned().chain(
        ports
            .iter()
            .filter(|(name, _)| name.starts_with("APP"))
            .map(|(_, port)| format!("127.0.0.1:{port}")),
    ) {
        let left = processes_mentioning(&needle);
        assert!(
            left.is_empty(),
            "processes left mentioning {needle}: {left:?}"
        );
    }
}

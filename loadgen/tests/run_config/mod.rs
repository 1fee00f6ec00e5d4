//! The one part of the load generator's test support that needs loadgen's own types (so it cannot
//! live in corelb-testkit, which depends on neither crate under test).

use std::time::Duration;

use loadgen::scenario::{default_kind, Target};
use loadgen::RunConfig;

/// A run configuration for `url` with the tests' defaults: one thread, closed loop.
pub fn config(url: &str) -> RunConfig {
    let target = Target::parse(url).unwrap();
    RunConfig {
        kinds: vec![default_kind(&target)],
        target,
        threads: Some(1),
        connections: 4,
        rate: None,
        duration: None,
        count: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        close: false,
        pipeline: 1,
        seed: 42,
        // The machine is shared: let the OS move the generator off a busy core.
        pin: false,
        pace_quantum: Duration::ZERO,
        spin: Duration::ZERO,
    }
}

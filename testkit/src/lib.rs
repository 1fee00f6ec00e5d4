//! Test support for corelb's and loadgen's tests (a dev-dependency of both; it depends on neither).
//!
//! - [`wire`]: a strict head parser, a buffered reader with deadlines, the large-body `Pattern`.
//! - [`backends`], [`controlled`]: mock backends, well-behaved and misbehaving (slow, stalled,
//!   reset or closed mid-body, garbage), and one that really dies and comes back.
//! - [`client`]: a raw HTTP/1.1 client and assertions on corelb's answers.
//! - [`process`]: a corelb process on port 0 (and the config it runs); [`cluster`]: multi-server configs.
//! - [`mariadb`]: a real MariaDB primary/replica pair; [`tools`]: the CI gate, bounded commands.
//! - [`latency`]: an HTTP server with a known latency model, for the load generator's tests.
//! - [`wait`]: waiting for a state with a deadline (`wait_until`, `poll_until`), never a bare sleep.
//!
//! Every blocking operation has a timeout and every loop a bound, so a broken proxy makes a test fail
//! with a message instead of hanging the suite.

pub mod backends;
pub mod client;
pub mod cluster;
pub mod controlled;
pub mod latency;
pub mod mariadb;
pub mod process;
pub mod tools;
pub mod wait;
pub mod wire;

pub use client::{assert_aborted, assert_local_error, expect_rejected};
pub use tools::{free_port, refused_addr, require_or_skip, run_bounded};
pub use wait::{poll_for, poll_until, wait_for, wait_until, POLL};
pub use wire::{find, write_chunked_pattern, write_pattern, Head, Pattern, Wire};

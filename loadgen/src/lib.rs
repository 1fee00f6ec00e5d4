//! loadgen: corelb's thread-per-core, coordinated-omission-correct HTTP/1.1 load generator.
//!
//! `engine` runs the load (one pinned glommio executor per thread), `stats` holds the measurements,
//! `report` and `svg` turn them into the outputs, `scenario` builds the request mix and `cli` is the
//! `loadgen run` command.

pub mod cli;
pub mod engine;
mod http;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod svg;
mod watchdog;

pub use engine::{run, RunConfig, RunError, RunOutput};

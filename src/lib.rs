//! corelb: a thread-per-core io_uring HTTP/1.1 load balancer.
//!
//! Module layout follows the data flow: accept (`server`) -> parse (`http`) -> the exchange's phases
//! (`proxy`: route, pick and connect, send, respond) -> upstream state per core (`upstream`: balancers
//! from `balance`, the connection pool, failover) -> the exchange's record (`record`). Client streams are
//! abstracted by `stream`. Leaves (`limits`, `error`, `config`, `http`, `record`) depend on nothing
//! above them; per-core wiring lives in `worker`. See docs/ARCHITECTURE.md.

pub mod balance;
pub mod buf;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod limits;
pub mod log;
pub mod proxy;
pub mod proxy_protocol;
pub mod record;
pub mod server;
pub mod stream;
pub mod upstream;
pub mod worker;

//! corelb: a thread-per-core io_uring HTTP/1.1 load balancer.
//!
//! Module layout follows the data flow: accept (`server`) -> parse (`http`) -> route, select a server
//! (`balance`) -> pool (`pool`) -> forward and respond (`proxy`). Leaves (`limits`, `error`, `config`,
//! `http`) depend on nothing above them; per-core state lives in `worker`.

pub mod balance;
pub mod buf;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod limits;
pub mod log;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod server;
pub mod worker;

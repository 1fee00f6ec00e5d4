//! Server health: active checks ([`probe`]; MySQL/MariaDB in [`mysql`]; the socket helpers both use
//! in `check_io`; the up/down [`machine`]) run by each server's owner worker ([`owner`]), published
//! across cores through the [`board`], and copied into each worker's [`view`], which the request path
//! reads without locks or atomics.

pub mod board;
mod check_io;
pub mod machine;
pub mod mysql;
pub mod owner;
pub mod probe;
pub mod view;

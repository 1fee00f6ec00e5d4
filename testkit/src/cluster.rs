//! Helpers for tests of multi-server backends (balancing, persistence): a config with frontend "fe" ->
//! backend "be", echo backends whose /health answer a test controls, and waiting for log lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backends::{echo, Backend, Next};
use crate::client::Response;
use crate::process::Corelb;
use crate::wait::wait_for;

/// A corelb config with frontend "fe" -> backend "be". `keys` are backend keys (algorithm...),
/// `tables` backend subtables ([backend.check]...), each server gets its own extra lines.
pub fn config(keys: &[&str], tables: &str, servers: &[(&str, SocketAddr, &str)]) -> String {
    let mut s = String::from(
        "[global]\ngrace = \"1s\"\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\n\
         default_backend = \"be\"\n\n[[backend]]\nname = \"be\"\n",
    );
    for k in keys {
        s += k;
        s += "\n";
    }
    s += tables;
    for (name, addr, extra) in servers {
        s += &format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n{extra}\n");
    }
    s
}

/// The server that answered (the mocks' X-Served-By); panics on anything but a 200 from a mock.
pub fn served_by(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.head.raw_str());
    r.header("x-served-by")
        .unwrap_or_else(|| panic!("no X-Served-By in {}", r.head.raw_str()))
        .to_string()
}

/// Echo backend whose /health answers the status held in the returned cell (200 initially).
pub fn checked(name: &str) -> (Backend, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let s = status.clone();
    let b = Backend::start(
        name,
        None,
        Arc::new(move |req, w, st| {
            if req.target() == "/health" {
                let code = s.load(Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 {code} Check\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::Write::write_all(&mut w.stream, resp.as_bytes());
                Next::Close
            } else {
                echo(req, w, st, false, Duration::ZERO)
            }
        }),
    );
    (b, status)
}

/// Wait for a log line containing `needle`; panics with the log otherwise.
pub fn wait_log(lb: &Corelb, needle: &str, timeout: Duration) {
    assert!(
        wait_for(timeout, || lb.logs().contains(needle)),
        "no log line containing {needle:?} within {timeout:?}; stderr:\n{}",
        lb.logs()
    );
}

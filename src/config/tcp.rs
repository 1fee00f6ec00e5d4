//! Validation of TCP mode and PROXY protocol options: a frontend's `mode`, `accept_proxy` and
//! `timeouts.idle`, a server's `send_proxy`. Called by [`super::validate`] (same `Checker`).

use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::file::{FrontendFile, ServerFile};
use super::runtime::{Algorithm, Backend, HashKey, Mode};
use crate::proxy_protocol::Version;

/// Default idle timeout of a TCP-mode connection. Database clients keep pooled connections idle for
/// long stretches (MariaDB's own `wait_timeout` is 8 h); an hour keeps them while still reclaiming
/// connections whose peer vanished without a FIN.                     HAProxy: timeout client/server
pub const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(3600);

/// What a frontend's mode options validate to.
pub(super) struct FrontendMode {
    pub mode: Mode,
    pub accept_proxy: bool,
    pub idle: Duration,
}

pub(super) fn frontend_mode(
    c: &mut Checker,
    label: &str,
    f: &FrontendFile,
    backends: &[Backend],
    default_backend: usize,
) -> FrontendMode {
    let mode = match f.mode.as_deref() {
        None | Some("http") => Mode::Http,
        Some("tcp") => Mode::Tcp,
        Some(other) => {
            c.push(ConfigError::UnknownMode {
                field: format!("{label}.mode"),
                value: other.to_owned(),
            });
            Mode::Http
        }
    };
    let idle = c.duration(
        format!("{label}.timeouts.idle"),
        f.timeouts.idle.as_deref(),
        DEFAULT_TCP_IDLE,
    );
    let accept_proxy = f.accept_proxy.unwrap_or(false);
    if accept_proxy && f.trusted_proxies.is_empty() {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.accept_proxy"),
            reason: "accept_proxy without trusted_proxies would let any client claim any address",
            hint: "list the proxies that connect here in trusted_proxies (\"10.0.0.0/8\", ...)",
        });
    }
    if mode == Mode::Http {
        if f.timeouts.idle.is_some() {
            c.push(ConfigError::Inconsistent {
                field: format!("{label}.timeouts.idle"),
                reason: "`idle` applies to TCP mode; HTTP frontends use client_keepalive and client_body",
                hint: "set mode = \"tcp\" or remove idle",
            });
        }
        return FrontendMode {
            mode,
            accept_proxy,
            idle,
        };
    }

    // TCP mode: nothing of HTTP applies.
    let http_only = [
        ("route", !f.route.is_empty()),
        ("limits", {
            let l = &f.limits;
            l.max_request_line.is_some()
                || l.max_header_bytes.is_some()
                || l.max_headers.is_some()
                || l.max_body.is_some()
        }),
        ("timeouts.client_header", f.timeouts.client_header.is_some()),
        (
            "timeouts.client_keepalive",
            f.timeouts.client_keepalive.is_some(),
        ),
        ("timeouts.client_body", f.timeouts.client_body.is_some()),
    ];
    if let Some((name, _)) = http_only.iter().find(|(_, set)| *set) {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.{name}"),
            reason: "this option belongs to HTTP frontends, and mode = \"tcp\"",
            hint: "remove it (a TCP frontend sends every connection to default_backend)",
        });
    }
    if let Some(b) = backends.get(default_backend) {
        let http_only_backend = match &b.algorithm {
            Algorithm::Hash(HashKey::Uri | HashKey::Header(_) | HashKey::Cookie(_)) => {
                Some("hash_key")
            }
            _ if b.cookie.is_some() => Some("cookie"),
            _ => None,
        };
        if let Some(what) = http_only_backend {
            c.push(ConfigError::Inconsistent {
                field: format!("{label}.default_backend"),
                reason: if what == "cookie" {
                    "a TCP frontend cannot use a backend with cookie persistence (there is no HTTP)"
                } else {
                    "a TCP frontend cannot use a backend that hashes the URI, a header or a cookie"
                },
                hint: "use another backend, or hash_key = \"source\" for client affinity",
            });
        }
    }
    FrontendMode {
        mode,
        accept_proxy,
        idle,
    }
}

pub(super) fn send_proxy(c: &mut Checker, label: &str, s: &ServerFile) -> Option<Version> {
    match s.send_proxy.as_deref()? {
        "v1" => Some(Version::V1),
        "v2" => Some(Version::V2),
        other => {
            c.push(ConfigError::UnknownProxyVersion {
                field: format!("{label}.send_proxy"),
                value: other.to_owned(),
            });
            None
        }
    }
}

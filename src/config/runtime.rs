//! The validated runtime configuration. Built only by [`super::validate`]; every value here is already
//! checked, so the data plane never re-validates.

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub frontends: Vec<Frontend>,
    /// Backends, referenced from frontends by index.
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Number of workers; `None` means one per CPU the process may run on.
    pub workers: Option<NonZeroUsize>,
    /// How long in-flight requests may run after SIGTERM/SIGINT before the process exits.
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub binds: Vec<SocketAddr>,
    pub backlog: NonZeroU32,
    /// Connection limit for the whole frontend (split across workers).
    pub maxconn: NonZeroUsize,
    /// Index into `Config::backends`.
    pub default_backend: usize,
    /// Evaluated in order; the first match wins; no match goes to `default_backend`.
    pub routes: Vec<Route>,
    /// Peers whose X-Forwarded-* headers are kept (appended to) instead of replaced.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: HttpLimits,
    pub timeouts: ClientTimeouts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub host: Option<HostMatch>,
    /// Starts with '/'.
    pub path_prefix: Option<String>,
    /// Index into `Config::backends`.
    pub backend: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HostMatch {
    /// Lower-case host without port, e.g. "www.foobar.com".
    Exact(String),
    /// From "*.foobar.com": stored as ".foobar.com" (lower case); matches any host ending in it.
    Suffix(String),
}

impl HostMatch {
    /// `host` must already be lower case and without a port.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostMatch::Exact(h) => h.as_bytes() == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_bytes()),
        }
    }
}

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may show up as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    pub max_request_line: NonZeroUsize,
    pub max_header_bytes: NonZeroUsize,
    pub max_headers: NonZeroUsize,
    /// Largest accepted request body; `None` means unlimited (413 above the limit).
    pub max_body: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientTimeouts {
    /// Time to receive a complete request head once its first byte arrived (408).
    pub header: Duration,
    /// Time an idle keep-alive client connection is kept open waiting for its next request.
    pub keepalive: Duration,
    /// Longest pause while reading a request body from, or writing a response to, the client.
    pub body: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub algorithm: Algorithm,
    pub servers: Vec<Server>,
    pub timeouts: BackendTimeouts,
    pub pool: PoolSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Per-worker counters; smooth weighted round robin when weights differ.
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: NonZeroU32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendTimeouts {
    pub connect: Duration,
    /// Time from the end of the request to the first byte of the response head (504).
    pub response: Duration,
    /// Longest pause while reading a response body from, or writing a request body to, the server.
    pub body: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSettings {
    /// Idle connections kept per server per worker (0 disables reuse).
    pub max_idle_per_server: usize,
    /// Idle connections older than this are closed, not reused: keep it below the servers' own
    /// keep-alive timeout so corelb never reuses a connection the server is about to close.
    pub idle_timeout: Duration,
}

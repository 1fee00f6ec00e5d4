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
    /// HTTP (parse, route, rewrite) or TCP (a byte stream to one server per connection).
    pub mode: Mode,
    /// Every connection starts with a PROXY protocol header (v1 or v2), and only peers in
    /// `trusted_proxies` may connect (HAProxy `accept-proxy`).
    pub accept_proxy: bool,
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
    /// TCP mode: a connection with no byte in either direction for this long is closed.
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub algorithm: Algorithm,
    pub servers: Vec<Server>,
    pub timeouts: BackendTimeouts,
    pub pool: PoolSettings,
    /// Use every backup server at once when no normal server is up (else only the first backup).
    pub allbackups: bool,
    /// A server coming back up ramps its weight from ~0 to full over this period (HAProxy `slowstart`).
    pub slowstart: Option<Duration>,
    /// Active health checks; `None`: servers are up unless passively ejected.
    pub check: Option<Check>,
    /// Passive health (ejection on real-traffic errors); `None`: off, as in HAProxy without `observe`.
    pub passive: Option<Passive>,
    /// Session persistence by an inserted cookie (HAProxy `cookie NAME insert indirect nocache`).
    pub cookie: Option<StickyCookie>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    /// Per-worker counters; smooth weighted round robin when weights differ.
    RoundRobin,
    /// Fewest in-flight requests relative to weight (counted per worker).
    LeastConn,
    /// Power of two random choices, weighted, on in-flight requests.
    Random,
    /// The first server (in config order) with room below its `maxconn`.
    First,
    /// Consistent (Maglev) hash of a request property.
    Hash(HashKey),
}

/// What `algorithm = "hash"` hashes. A request without the header or cookie falls back to round robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (HAProxy `balance source`).
    Source,
    /// The path of the request target, without the query (HAProxy `balance uri`).
    Uri,
    /// A header's value; the name is stored lower case.
    Header(String),
    /// A cookie's value (by exact, case-sensitive name, RFC 6265 §5.4).
    Cookie(String),
}

/// The administrative state of a server, set in the config (HAProxy `disabled`/`drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes traffic when healthy.
    Up,
    /// No new sessions; clients stuck to it by cookie keep it while it is healthy.
    Drain,
    /// Out of service: no traffic at all, and not checked.
    Maint,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: NonZeroU32,
    /// Takes traffic only when no normal server is up (active-passive).
    pub backup: bool,
    pub admin: AdminState,
    /// Concurrent requests this server should get (split across workers); used by `algorithm = "first"`.
    pub maxconn: Option<NonZeroU32>,
    /// Persistence cookie value naming this server: opaque, never the address.
    pub cookie: String,
    /// Send a PROXY protocol header first on every connection to this server (HAProxy `send-proxy`).
    pub send_proxy: Option<crate::proxy_protocol::Version>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    /// Time between checks of a server in a stable state.
    pub interval: Duration,
    /// Time between checks while a server is transitioning (some but not all of rise/fall seen).
    pub fastinter: Duration,
    /// Each interval is shortened by a random amount up to this percentage, so checks of many servers
    /// do not fire in lockstep (HAProxy `spread-checks`).
    pub jitter_percent: u8,
    /// Longest time one check may take, connect included.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up.
    pub rise: NonZeroU32,
    /// Consecutive failures that take an up server down.
    pub fall: NonZeroU32,
    /// Servers start down and take traffic only after `rise` passing checks (HAProxy `init-state
    /// down`); the default starts them up, trusted until `fall` checks fail.
    pub start_down: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A TCP connect that succeeds within the timeout.
    Tcp,
    Http(HttpCheck),
    Mysql(MysqlCheck),
}

/// A MySQL/MariaDB check: level 1 reads the server greeting; level 2 (with `login`) logs in and reads
/// `@@read_only` and, on replicas, the replication status.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlCheck {
    pub login: Option<MysqlLogin>,
    pub role: MysqlRole,
}

#[derive(Clone, PartialEq, Eq)]
pub struct MysqlLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for MysqlLogin {
    // The password never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlLogin")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What a server must be to pass a MySQL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlRole {
    /// Alive (and, with a login, accepting it).
    Any,
    /// Writable: `@@read_only = 0`, so a replica is never written to.
    Writer,
    /// A replica whose IO and SQL threads run and whose lag is at most `max_lag`. A `backup` server of
    /// the backend (the primary) passes when it is alive, so it takes reads when no replica qualifies.
    Reader { max_lag: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// A request method token, upper case, e.g. "GET", "HEAD", "OPTIONS".
    pub method: String,
    /// The request target, starting with '/'.
    pub path: String,
    /// The Host header; `None`: the server's address.
    pub host: Option<String>,
    /// Inclusive range of statuses that count as a success.
    pub expect_status: (u16, u16),
    /// A substring the response body must contain (searched in the first `MAX_CHECK_BODY` bytes).
    pub expect_body: Option<String>,
    /// A 404 puts the server in drain instead of down (HAProxy `http-check disable-on-404`).
    pub disable_on_404: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Passive {
    /// Consecutive connect failures or 5xx responses on one worker that eject the server.
    pub error_limit: NonZeroU32,
    /// First ejection time; doubles on each ejection that follows a short recovery, up to `max_eject`.
    pub eject: Duration,
    pub max_eject: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    /// The cookie's name, an RFC 6265 token, e.g. "SERVERID".
    pub name: String,
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

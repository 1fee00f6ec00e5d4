//! File shape ([`super::file`]) -> runtime types ([`super::runtime`]).
//!
//! Every check runs even after an earlier one failed, so one run reports every mistake it can (a value
//! that fails is replaced by its default so that checks of later fields still run; nothing is returned
//! unless there were no errors). Field paths use the entry's name when it is valid and unique
//! (`backend["app"]`), its index otherwise (`backend[1]`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::checker::Checker;
use super::error::{ConfigError, ConfigErrors};
use super::file::{BackendFile, FileConfig, FrontendFile, RouteFile, ServerFile};
use super::parse::{
    check_path_prefix, check_server_address, parse_address, parse_cidr, parse_host_pattern,
};
use super::policy;
use super::runtime::{
    AdminState, Algorithm, Backend, BackendTimeouts, ClientTimeouts, Config, Frontend, Global,
    HttpLimits, Mode, PoolSettings, Route, Server,
};
use super::tcp;
use crate::limits::{
    self, MAX_BACKLOG, MAX_WEIGHT, MAX_WORKERS, MIN_DURATION, MIN_HEADER_BYTES, MIN_REQUEST_LINE,
};

/// Default shutdown grace period (HAProxy's `hard-stop-after`, nginx's `worker_shutdown_timeout`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default time to receive a request head (HAProxy `timeout http-request`, nginx `client_header_timeout`).
pub const DEFAULT_CLIENT_HEADER: Duration = Duration::from_secs(10);
/// Default idle time between keep-alive requests (HAProxy `timeout http-keep-alive`, nginx
/// `keepalive_timeout`).
pub const DEFAULT_CLIENT_KEEPALIVE: Duration = Duration::from_secs(60);
/// Default longest pause in client I/O (HAProxy `timeout client`, nginx `client_body_timeout`/`send_timeout`).
pub const DEFAULT_CLIENT_BODY: Duration = Duration::from_secs(30);
/// Default connect timeout (HAProxy `timeout connect`, nginx `proxy_connect_timeout`).
pub const DEFAULT_CONNECT: Duration = Duration::from_secs(3);
/// Default wait for a response head (HAProxy `timeout server`, nginx `proxy_read_timeout`).
pub const DEFAULT_RESPONSE: Duration = Duration::from_secs(30);
/// Default longest pause in server I/O (HAProxy `timeout server`, nginx `proxy_read/send_timeout`).
pub const DEFAULT_BACKEND_BODY: Duration = Duration::from_secs(30);
/// Default age at which idle pooled connections are closed: below the 5 s keep-alive of Node.js and
/// Apache, so corelb does not reuse a connection the server is closing at the same moment.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// A `NonZeroUsize` from a constant. Only called to build the `const` items below, so a zero default
/// fails the build; nothing here runs at run time.
const fn nz(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(v) => v,
        None => panic!("a NonZeroUsize default is zero"),
    }
}

const fn nz32(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => panic!("a NonZeroU32 default is zero"),
    }
}

pub const DEFAULT_MAXCONN: NonZeroUsize = nz(limits::DEFAULT_MAXCONN);
pub const DEFAULT_BACKLOG: NonZeroU32 = nz32(limits::DEFAULT_BACKLOG);
pub const DEFAULT_WEIGHT: NonZeroU32 = nz32(1);

pub const DEFAULT_LIMITS: HttpLimits = HttpLimits {
    max_request_line: nz(limits::DEFAULT_MAX_REQUEST_LINE),
    max_header_bytes: nz(limits::DEFAULT_MAX_HEADER_BYTES),
    max_headers: nz(limits::DEFAULT_MAX_HEADERS),
    max_body: None,
};

pub const DEFAULT_CLIENT_TIMEOUTS: ClientTimeouts = ClientTimeouts {
    header: DEFAULT_CLIENT_HEADER,
    keepalive: DEFAULT_CLIENT_KEEPALIVE,
    body: DEFAULT_CLIENT_BODY,
    idle: tcp::DEFAULT_TCP_IDLE,
};

pub const DEFAULT_BACKEND_TIMEOUTS: BackendTimeouts = BackendTimeouts {
    connect: DEFAULT_CONNECT,
    response: DEFAULT_RESPONSE,
    body: DEFAULT_BACKEND_BODY,
};

pub const DEFAULT_POOL: PoolSettings = PoolSettings {
    max_idle_per_server: limits::DEFAULT_POOL_MAX_IDLE,
    idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
};

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn nz_usize(n: i64) -> Option<NonZeroUsize> {
    usize::try_from(n).ok().and_then(NonZeroUsize::new)
}

fn nz_u32(n: i64) -> Option<NonZeroU32> {
    u32::try_from(n).ok().and_then(NonZeroU32::new)
}

/// Backend names, for resolving `default_backend` and `route.backend`.
struct BackendNames {
    /// First index of each name, valid or not (a reference to a badly named backend is not reported
    /// twice).
    index: HashMap<String, usize>,
    /// Distinct names in file order, for the hint.
    ordered: Vec<String>,
}

impl BackendNames {
    fn new(backends: &[BackendFile]) -> Self {
        let mut index = HashMap::new();
        let mut ordered = Vec::new();
        for (i, b) in backends.iter().enumerate() {
            if !index.contains_key(&b.name) {
                index.insert(b.name.clone(), i);
                ordered.push(b.name.clone());
            }
        }
        BackendNames { index, ordered }
    }

    fn resolve(&self, c: &mut Checker, field: String, name: &str) -> usize {
        match self.index.get(name) {
            Some(&i) => i,
            // With no backend at all, NoBackends already says what to do.
            None if self.ordered.is_empty() => 0,
            None => {
                c.push(ConfigError::UnknownBackend {
                    field,
                    name: name.to_owned(),
                    defined: self.ordered.clone(),
                });
                0
            }
        }
    }
}

/// Two listening addresses clash when the same socket, or a wildcard and an address of the same family,
/// would be bound on the same port. Port 0 asks the kernel for a fresh port, so it never clashes.
/// `0.0.0.0:P` and `[::]:P` do not clash: the listener sets IPV6_V6ONLY on IPv6 sockets.
fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Every address bound so far, with the field path where it was bound.
#[derive(Default)]
struct Binds {
    seen: Vec<(SocketAddr, String)>,
}

impl Binds {
    /// `label` is how later clashes refer to this entry.
    fn add(&mut self, c: &mut Checker, field: String, label: String, addr: SocketAddr) {
        if let Some((other, first)) = self.seen.iter().find(|(o, _)| binds_clash(addr, *o)) {
            c.push(ConfigError::DuplicateBind {
                field,
                addr,
                other: *other,
                first: first.clone(),
            });
            return;
        }
        self.seen.push((addr, label));
    }
}

/// Validates a parsed file into the runtime configuration, reporting every error found.
pub fn validate(file: &FileConfig) -> Result<Config, ConfigErrors> {
    let mut c = Checker::default();

    let workers = c
        .int("global.workers".into(), file.global.workers, 1, MAX_WORKERS)
        .and_then(nz_usize);
    let grace = c.duration(
        "global.grace".into(),
        file.global.grace.as_deref(),
        DEFAULT_GRACE,
    );
    let global = Global { workers, grace };

    if file.backend.is_empty() {
        c.push(ConfigError::NoBackends);
    }
    let mut seen = HashMap::new();
    let backends: Vec<Backend> = file
        .backend
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let label = c.entry_label("backend", i, &b.name, &mut seen, "backend");
            backend(&mut c, &label, b)
        })
        .collect();

    if file.frontend.is_empty() {
        c.push(ConfigError::NoFrontends);
    }
    let names = BackendNames::new(&file.backend);
    let mut seen = HashMap::new();
    let mut binds = Binds::default();
    let frontends: Vec<Frontend> = file
        .frontend
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let label = c.entry_label("frontend", i, &f.name, &mut seen, "frontend");
            frontend(&mut c, &label, f, &names, &mut binds, &backends)
        })
        .collect();

    c.into_result(Config {
        global,
        frontends,
        backends,
    })
}

fn frontend(
    c: &mut Checker,
    label: &str,
    f: &FrontendFile,
    names: &BackendNames,
    all_binds: &mut Binds,
    backends: &[Backend],
) -> Frontend {
    let bind_field = format!("{label}.bind");
    if f.bind.is_empty() {
        c.push(ConfigError::NoBinds {
            field: bind_field.clone(),
        });
    }
    c.too_many(
        bind_field.clone(),
        "bind addresses",
        f.bind.len(),
        limits::MAX_BINDS_PER_FRONTEND,
    );
    let mut binds = Vec::with_capacity(f.bind.len());
    for (k, text) in f.bind.iter().enumerate() {
        let field = format!("{bind_field}[{k}]");
        match parse_address(text) {
            Ok(addr) => {
                all_binds.add(c, field.clone(), field, addr);
                binds.push(addr);
            }
            Err(reason) => c.push(ConfigError::InvalidAddress {
                field,
                value: text.clone(),
                reason,
            }),
        }
    }

    let default_backend = names.resolve(c, format!("{label}.default_backend"), &f.default_backend);
    let mode = tcp::frontend_mode(c, label, f, backends, default_backend);
    let maxconn = c
        .int(format!("{label}.maxconn"), f.maxconn, 1, as_i64(usize::MAX))
        .and_then(nz_usize)
        .unwrap_or(DEFAULT_MAXCONN);
    let backlog = c
        .int(format!("{label}.backlog"), f.backlog, 1, MAX_BACKLOG)
        .and_then(nz_u32)
        .unwrap_or(DEFAULT_BACKLOG);

    let tp_field = format!("{label}.trusted_proxies");
    c.too_many(
        tp_field.clone(),
        "trusted proxies",
        f.trusted_proxies.len(),
        limits::MAX_TRUSTED_PROXIES,
    );
    let mut trusted_proxies = Vec::with_capacity(f.trusted_proxies.len());
    for (k, text) in f.trusted_proxies.iter().enumerate() {
        match parse_cidr(text) {
            Ok(net) => trusted_proxies.push(net),
            Err(reason) => c.push(ConfigError::InvalidCidr {
                field: format!("{tp_field}[{k}]"),
                value: text.clone(),
                reason,
            }),
        }
    }

    let l = &f.limits;
    let d = DEFAULT_LIMITS;
    let limits = HttpLimits {
        max_request_line: c
            .int(
                format!("{label}.limits.max_request_line"),
                l.max_request_line,
                MIN_REQUEST_LINE,
                as_i64(limits::CEILING_REQUEST_LINE),
            )
            .and_then(nz_usize)
            .unwrap_or(d.max_request_line),
        max_header_bytes: c
            .int(
                format!("{label}.limits.max_header_bytes"),
                l.max_header_bytes,
                MIN_HEADER_BYTES,
                as_i64(limits::CEILING_HEADER_BYTES),
            )
            .and_then(nz_usize)
            .unwrap_or(d.max_header_bytes),
        max_headers: c
            .int(
                format!("{label}.limits.max_headers"),
                l.max_headers,
                1,
                as_i64(limits::CEILING_HEADERS),
            )
            .and_then(nz_usize)
            .unwrap_or(d.max_headers),
        max_body: c
            .int(format!("{label}.limits.max_body"), l.max_body, 1, i64::MAX)
            .and_then(|n| u64::try_from(n).ok()),
    };

    let t = &f.timeouts;
    let timeouts = ClientTimeouts {
        header: c.duration(
            format!("{label}.timeouts.client_header"),
            t.client_header.as_deref(),
            DEFAULT_CLIENT_HEADER,
        ),
        keepalive: c.duration(
            format!("{label}.timeouts.client_keepalive"),
            t.client_keepalive.as_deref(),
            DEFAULT_CLIENT_KEEPALIVE,
        ),
        body: c.duration(
            format!("{label}.timeouts.client_body"),
            t.client_body.as_deref(),
            DEFAULT_CLIENT_BODY,
        ),
        idle: mode.idle,
    };

    c.too_many(
        format!("{label}.route"),
        "routes",
        f.route.len(),
        limits::MAX_ROUTES_PER_FRONTEND,
    );
    let routes = f
        .route
        .iter()
        .enumerate()
        .map(|(k, r)| route(c, &format!("{label}.route[{k}]"), r, names))
        .collect();

    Frontend {
        name: f.name.clone(),
        mode: mode.mode,
        accept_proxy: mode.accept_proxy,
        binds,
        backlog,
        maxconn,
        default_backend,
        routes,
        trusted_proxies,
        limits,
        timeouts,
    }
}

fn route(c: &mut Checker, label: &str, r: &RouteFile, names: &BackendNames) -> Route {
    if r.host.is_none() && r.path_prefix.is_none() {
        c.push(ConfigError::EmptyRoute {
            field: label.to_owned(),
        });
    }
    let host = r
        .host
        .as_ref()
        .and_then(|text| match parse_host_pattern(text) {
            Ok(h) => Some(h),
            Err(reason) => {
                c.push(ConfigError::InvalidHostPattern {
                    field: format!("{label}.host"),
                    value: text.clone(),
                    reason,
                });
                None
            }
        });
    if let Some(text) = &r.path_prefix {
        if let Err(reason) = check_path_prefix(text) {
            c.push(ConfigError::InvalidPathPrefix {
                field: format!("{label}.path_prefix"),
                value: text.clone(),
                reason,
            });
        }
    }
    let backend = names.resolve(c, format!("{label}.backend"), &r.backend);
    Route {
        host,
        path_prefix: r.path_prefix.clone(),
        backend,
    }
}

fn backend(c: &mut Checker, label: &str, b: &BackendFile) -> Backend {
    let algorithm = policy::algorithm(c, label, b);
    let check = policy::check(c, label, b.check.as_ref());
    let passive = policy::passive(c, label, b.passive.as_ref());
    let cookie = policy::cookie(c, label, b.cookie.as_ref());
    let slowstart = b
        .slowstart
        .as_deref()
        .map(|t| c.duration(format!("{label}.slowstart"), Some(t), MIN_DURATION));

    let t = &b.timeouts;
    let timeouts = BackendTimeouts {
        connect: c.duration(
            format!("{label}.timeouts.connect"),
            t.connect.as_deref(),
            DEFAULT_CONNECT,
        ),
        response: c.duration(
            format!("{label}.timeouts.response"),
            t.response.as_deref(),
            DEFAULT_RESPONSE,
        ),
        body: c.duration(
            format!("{label}.timeouts.body"),
            t.body.as_deref(),
            DEFAULT_BACKEND_BODY,
        ),
    };

    let p = &b.pool;
    let pool = PoolSettings {
        max_idle_per_server: c
            .int(
                format!("{label}.pool.max_idle_per_server"),
                p.max_idle_per_server,
                0,
                as_i64(limits::CEILING_POOL_MAX_IDLE),
            )
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_POOL.max_idle_per_server),
        idle_timeout: c.duration(
            format!("{label}.pool.idle_timeout"),
            p.idle_timeout.as_deref(),
            DEFAULT_POOL_IDLE_TIMEOUT,
        ),
    };

    let server_field = format!("{label}.server");
    if b.server.is_empty() {
        c.push(ConfigError::NoServers {
            field: server_field.clone(),
        });
    }
    c.too_many(
        server_field.clone(),
        "servers",
        b.server.len(),
        limits::MAX_SERVERS_PER_BACKEND,
    );
    let mut seen = HashMap::new();
    let mut cookies = Vec::new();
    let servers = b
        .server
        .iter()
        .enumerate()
        .filter_map(|(j, s)| server(c, &server_field, &b.name, j, s, &mut seen, &mut cookies))
        .collect();
    if cookie.is_some() {
        policy::check_cookie_values(c, &cookies);
    }

    Backend {
        name: b.name.clone(),
        algorithm,
        servers,
        timeouts,
        pool,
        allbackups: b.allbackups.unwrap_or(false),
        slowstart,
        check,
        passive,
        cookie,
    }
}

fn server(
    c: &mut Checker,
    section: &str,
    backend: &str,
    j: usize,
    s: &ServerFile,
    seen: &mut HashMap<String, String>,
    cookies: &mut Vec<(String, String)>,
) -> Option<Server> {
    let (name, label) = match &s.name {
        Some(name) => {
            let label = c.entry_label(section, j, name, seen, "server of this backend");
            (name.clone(), label)
        }
        None => {
            // Positional default "s1", "s2"...; an explicit name may still collide with it.
            let name = format!("s{}", j.saturating_add(1));
            let label = format!("{section}[{j}]");
            seen.entry(name.clone()).or_insert_with(|| label.clone());
            (name, label)
        }
    };
    let addr = match parse_address(&s.address).and_then(|a| check_server_address(a).map(|()| a)) {
        Ok(a) => Some(a),
        Err(reason) => {
            c.push(ConfigError::InvalidAddress {
                field: format!("{label}.address"),
                value: s.address.clone(),
                reason,
            });
            None
        }
    };
    let weight = c
        .int(
            format!("{label}.weight"),
            s.weight,
            1,
            i64::from(MAX_WEIGHT),
        )
        .and_then(nz_u32)
        .unwrap_or(DEFAULT_WEIGHT);
    let extras = policy::server_extras(c, &label, backend, &name, s);
    let send_proxy = tcp::send_proxy(c, &label, s);
    cookies.push((label, extras.cookie.clone()));
    Some(Server {
        name,
        addr: addr?,
        weight,
        backup: extras.backup,
        admin: extras.admin,
        maxconn: extras.maxconn,
        cookie: extras.cookie,
        send_proxy,
    })
}

/// The configuration of `corelb --listen A --backend B --backend C`: see [`super::quick`].
pub fn quick(listen: &[SocketAddr], backends: &[SocketAddr]) -> Result<Config, ConfigErrors> {
    let mut c = Checker::default();
    if listen.is_empty() {
        c.push(ConfigError::NoBinds {
            field: "--listen".into(),
        });
    }
    c.too_many(
        "--listen".into(),
        "listen addresses",
        listen.len(),
        limits::MAX_BINDS_PER_FRONTEND,
    );
    let mut binds = Binds::default();
    for &addr in listen {
        binds.add(&mut c, "--listen".into(), format!("--listen {addr}"), addr);
    }
    if backends.is_empty() {
        c.push(ConfigError::NoServers {
            field: "--backend".into(),
        });
    }
    c.too_many(
        "--backend".into(),
        "backend servers",
        backends.len(),
        limits::MAX_SERVERS_PER_BACKEND,
    );
    for &addr in backends {
        if let Err(reason) = check_server_address(addr) {
            c.push(ConfigError::InvalidAddress {
                field: "--backend".into(),
                value: addr.to_string(),
                reason,
            });
        }
    }
    let servers = backends
        .iter()
        .enumerate()
        .map(|(j, &addr)| {
            let name = format!("s{}", j.saturating_add(1));
            Server {
                cookie: policy::default_cookie("quick", &name),
                name,
                addr,
                weight: DEFAULT_WEIGHT,
                backup: false,
                admin: AdminState::Up,
                maxconn: None,
                send_proxy: None,
            }
        })
        .collect();
    c.into_result(Config {
        global: Global {
            workers: None,
            grace: DEFAULT_GRACE,
        },
        frontends: vec![Frontend {
            name: "quick".into(),
            mode: Mode::Http,
            accept_proxy: false,
            binds: listen.to_vec(),
            backlog: DEFAULT_BACKLOG,
            maxconn: DEFAULT_MAXCONN,
            default_backend: 0,
            routes: Vec::new(),
            trusted_proxies: Vec::new(),
            limits: DEFAULT_LIMITS,
            timeouts: DEFAULT_CLIENT_TIMEOUTS,
        }],
        backends: vec![Backend {
            name: "quick".into(),
            algorithm: Algorithm::RoundRobin,
            servers,
            timeouts: DEFAULT_BACKEND_TIMEOUTS,
            pool: DEFAULT_POOL,
            allbackups: false,
            slowstart: None,
            check: None,
            passive: None,
            cookie: None,
        }],
    })
}

//! Every hard limit of corelb, named, with the reason it exists: the sizes, counts and timeouts of the
//! data plane, and (section "Config bounds") the range the config layer accepts for each value.
//!
//! Configurable limits have their *default* here and their *ceiling* here: the config layer rejects
//! values above the ceiling, so no buffer can be sized from untrusted or absurd input. The defaults of
//! durations (timeouts, check intervals) and check settings are named with their validation in
//! `config/validate.rs`, `config/policy.rs` and `config/tcp.rs`; their range is here. The health checks (control plane,
//! never on the request path) name their own bounds next to the protocol they bound:
//! `health/check_io.rs` (read sizes, the smallest socket timeout), `health/mysql/` (packets, rows,
//! login rounds), `health/owner.rs` and `health/machine.rs` (scheduling).

use std::time::Duration;

/// Default longest request line (RFC 9112 §3: servers SHOULD support at least 8000 octets). 414 above.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// Default largest request header block (after the request line). 431 above.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default most header fields in one request; 431 above. Also the size of httparse's stack array.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Ceiling for `max_request_line`: the head buffer is line + headers, allocated per connection.
pub const CEILING_REQUEST_LINE: usize = 64 * 1024;
/// Ceiling for `max_header_bytes`, same reason.
pub const CEILING_HEADER_BYTES: usize = 64 * 1024;
/// Ceiling for `max_headers`: httparse's header array lives on the stack of the parsing function.
pub const CEILING_HEADERS: usize = 256;

/// Backend response heads are bounded like request heads; a larger one is a 502 (HAProxy does the same
/// with its `tune.bufsize`).
pub const MAX_RESPONSE_HEAD: usize = 24 * 1024;
/// Most header fields in a backend response (stack array for httparse).
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// Most 1xx interim responses relayed before the final one; a backend sending more is broken.
pub const MAX_INTERIM_RESPONSES: usize = 8;

/// Spare exchange buffer sets (~90 KiB each) a worker keeps for reuse; more concurrent exchanges than
/// this allocate on demand and free afterwards. Bounds idle memory per worker to ~23 MiB.
pub const MAX_SPARE_EXCHANGES: usize = 256;

/// Size of the buffer used to move body bytes in each direction. Bodies stream through it: memory per
/// connection is constant whatever the body size (a 1 GiB upload uses this much, not 1 GiB).
pub const BODY_BUF: usize = 32 * 1024;

/// Buffer per direction of a TCP-mode connection (two per connection, allocated at accept): as large
/// as the body buffer, so bulk transfers move 32 KiB per syscall like HTTP bodies.
pub const TCP_BUF: usize = BODY_BUF;
/// Spare TCP-mode buffers a worker keeps for reuse: 512 x 32 KiB = 16 MiB of idle memory per worker at
/// most; more concurrent TCP connections allocate on demand and free afterwards.
pub const MAX_SPARE_TCP_BUFS: usize = 512;

/// Longest chunk-size line including extensions (RFC 9112 §7.1.1 puts no bound; we must).
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most hex digits in a chunk size: 16 digits fill a u64; more is an overflow attempt.
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;
/// Largest trailer section, in bytes, and most trailer fields (trailers are validated, then dropped).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
pub const MAX_TRAILER_FIELDS: usize = 100;

/// Default listen backlog (like HAProxy's default for `backlog` on Linux with a high maxconn).
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Default connection limit per frontend, split evenly across workers.
pub const DEFAULT_MAXCONN: usize = 10_000;

/// Default idle backend connections kept per server per worker. Below the number of concurrent client
/// connections, every burst closes and reopens backend connections (seen: 0.2 connects per request with
/// 64 idle and 256 clients); HAProxy does not cap idle reuse by default.
pub const DEFAULT_POOL_MAX_IDLE: usize = 256;
/// Ceiling for the pool size per server per worker (each idle connection holds an fd and a buffer).
pub const CEILING_POOL_MAX_IDLE: usize = 4096;

/// How many servers one request may try to connect to before answering 503 (bounded failover).
pub const MAX_CONNECT_TRIES: usize = 3;
/// Most servers in one backend (the balancer's per-core state is an array of this bound).
pub const MAX_SERVERS_PER_BACKEND: usize = 1024;
/// Most routing rules in one frontend: routes are matched linearly on every request.
pub const MAX_ROUTES_PER_FRONTEND: usize = 256;
/// Most bind addresses per frontend.
pub const MAX_BINDS_PER_FRONTEND: usize = 64;
/// Most trusted-proxy networks per frontend (matched linearly per request that carries X-Forwarded-*).
pub const MAX_TRUSTED_PROXIES: usize = 64;

/// After a local error answer, how much of the client's unread request body we drain before closing,
/// so the client sees our response instead of a reset (RFC 9112 §9.6 lingering close).
pub const LINGER_DRAIN_BYTES: usize = 64 * 1024;
/// How long a closing connection lingers to drain the client's unread bytes after an error answer.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest per-operation I/O timeout: glommio rejects a zero timeout, so a deadline already passed is
/// treated as this much time left (the operation then fails with TimedOut almost at once).
pub const MIN_IO_TIMEOUT: Duration = Duration::from_millis(1);

/// When accept() fails with EMFILE/ENFILE/ENOBUFS, wait this long before trying again: existing
/// connections keep being served and the accept loop never spins.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Error log lines of one kind per second per worker, beyond which they are counted and summarised.
pub const LOG_ERRORS_PER_SEC: u32 = 5;

/// How long startup waits for every worker to report its listeners bound (or failed): binding is
/// immediate, so a worker silent this long is stuck, and startup fails instead of hanging.
pub const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each worker's control task looks for a shutdown request and applies health changes
/// (control plane only): the delay of a shutdown or a health change reaching the request path.
pub const CONTROL_TICK: Duration = Duration::from_millis(50);
/// How often idle pooled connections are checked against the pool's `idle_timeout`: a connection
/// lives at most this much past its timeout.
pub const POOL_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often a draining worker looks whether its last connection has closed: short enough that
/// shutdown ends soon after the last exchange, long enough to cost nothing.
pub const DRAIN_POLL: Duration = Duration::from_millis(10);

// ---- Config bounds: the range of each configurable value (the config layer rejects the rest). ----

/// Largest config file read: a real one is a few KiB; the bound keeps a wrong path (a log file, a
/// device) from being read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Shortest accepted duration: zero would mean "expire at once" (or "never" to some readers).
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Longest accepted duration: above a day is a typo ("10h" for "10s"), never a useful timeout.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Most workers: far above any core count corelb runs on; more is a typo.
pub const MAX_WORKERS: i64 = 1024;
/// Largest listen backlog: the kernel silently caps it at `net.core.somaxconn`; larger is a typo.
pub const MAX_BACKLOG: i64 = 65_535;
/// Smallest `max_request_line`: a request line shorter than this cannot carry a real URL.
pub const MIN_REQUEST_LINE: i64 = 256;
/// Smallest `max_header_bytes`: a typical browser request alone carries close to 1 KiB of headers.
pub const MIN_HEADER_BYTES: i64 = 1024;
/// Highest server weight (HAProxy's range is 0..256 too); keeps the weighted round robin sums small.
/// The balancer relies on it (`balance::MAX_WEIGHT`).
pub const MAX_WEIGHT: u32 = 256;
/// Longest frontend/backend/server name: names appear in logs and metrics labels, keep them short.
pub const MAX_NAME_LEN: usize = 64;
/// Longest host name (RFC 1035 §2.3.4: 255 octets on the wire, 253 characters in text form).
pub const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name (RFC 1035 §2.3.4).
pub const MAX_HOST_LABEL_LEN: usize = 63;
/// Longest path prefix: a prefix longer than the longest accepted request line can never match.
pub const MAX_PATH_PREFIX_LEN: usize = CEILING_REQUEST_LINE;
/// Largest check jitter, in percent of the interval: above half, "every 2 s" stops meaning anything.
pub const MAX_JITTER_PERCENT: i64 = 50;
/// Ceiling for a check's rise/fall: beyond this a server never changes state in any useful time.
pub const MAX_RISE_FALL: i64 = 100;
/// Ceiling for passive checks' `error_limit`: a typo guard (the count is per server per worker).
pub const MAX_ERROR_LIMIT: i64 = 10_000;
/// Longest MySQL check user: MariaDB user names are at most 80 characters (MySQL: 32).
pub const MAX_MYSQL_USER: usize = 80;
/// Longest check password accepted (it is hashed per check; longer is a typo).
pub const MAX_MYSQL_PASSWORD: usize = 256;
/// Largest per-server `maxconn`: a typo guard.
pub const MAX_SERVER_MAXCONN: i64 = 1_000_000;
/// Longest health-check path or expected body text (they are sent/searched on every check).
pub const MAX_CHECK_TEXT: usize = 1024;
/// Longest HTTP method token accepted for checks.
pub const MAX_METHOD_LEN: usize = 32;

/// Longest request line kept in an exchange's log record (HAProxy's default `tune.http.logurilen`):
/// longer ones are truncated in the record, never on the wire. Lives in the per-exchange buffers, so
/// an idle connection does not carry it.
pub const LOG_REQUEST_LINE_MAX: usize = 1024;

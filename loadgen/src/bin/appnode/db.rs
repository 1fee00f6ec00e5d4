//! The database side of the app node: one bounded `mysql::Pool` for the primary (writes) and one
//! for the replica (reads), with reads falling back to the primary while the replica is unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn};

/// Time to establish a TCP connection to a database. Loopback answers in microseconds; a refused
/// port fails at once. The bound only matters for a host that drops packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Socket read/write timeout on database connections: a hung server cannot hold a worker forever.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free pooled connection before it is answered 503.
const POOL_WAIT: Duration = Duration::from_secs(2);
/// After the replica refused a new connection, reads go straight to the primary for this long
/// before the replica is tried again: without it every read would first pay a failed connect.
const REPLICA_RETRY: Duration = Duration::from_secs(1);

const SELECT_ITEM: &str = "SELECT id, name, CAST(created AS CHAR) FROM items WHERE id = ?";
const INSERT_ITEM: &str = "INSERT INTO items (name) VALUES (?)";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{server}: no free connection within {POOL_WAIT:?}")]
    Busy { server: &'static str },
    #[error("{server}: {source}")]
    Mysql {
        server: &'static str,
        source: mysql::Error,
    },
}

/// Counters shown at `GET /stats`. Relaxed: they are independent tallies, read only for display.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub reads_replica: AtomicU64,
    /// Reads served by the primary because the replica was unreachable or failed.
    pub read_fallbacks: AtomicU64,
    pub writes: AtomicU64,
    pub db_errors: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": get(&self.requests),
            "reads_replica": get(&self.reads_replica),
            "read_fallbacks": get(&self.read_fallbacks),
            "writes": get(&self.writes),
            "db_errors": get(&self.db_errors),
        })
    }
}

pub struct Item {
    pub id: i64,
    pub name: Option<String>,
    pub created: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Replica,
    Primary,
}

pub struct DbConfig<'a> {
    pub primary: (&'a str, u16),
    pub replica: (&'a str, u16),
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
    pub pool_size: usize,
}

pub struct Db {
    primary: Pool,
    replica: Pool,
    start: Instant,
    /// Milliseconds since `start` before which the replica is not tried (see `REPLICA_RETRY`).
    replica_retry_at_ms: AtomicU64,
    pub stats: Stats,
}

impl Db {
    /// Creates both pools without connecting: the node starts (and answers /healthz with 503) even
    /// while the databases are still coming up.
    pub fn new(cfg: &DbConfig<'_>) -> Result<Db, DbError> {
        Ok(Db {
            primary: pool(cfg, cfg.primary, true).map_err(|source| DbError::Mysql {
                server: "primary",
                source,
            })?,
            replica: pool(cfg, cfg.replica, false).map_err(|source| DbError::Mysql {
                server: "replica",
                source,
            })?,
            start: Instant::now(),
            replica_retry_at_ms: AtomicU64::new(0),
            stats: Stats::default(),
        })
    }

    /// Reads one item from the replica, or from the primary while the replica is unreachable.
    pub fn get_item(&self, id: i64) -> Result<(Option<Item>, ReadFrom), DbError> {
        if self.now_ms() >= self.replica_retry_at_ms.load(Ordering::Relaxed) {
            match self.replica.try_get_conn(POOL_WAIT) {
                Ok(mut conn) => match select_item(&mut conn, id) {
                    Ok(item) => {
                        Stats::bump(&self.stats.reads_replica);
                        return Ok((item, ReadFrom::Replica));
                    }
                    // A query failure (e.g. a pooled connection the replica closed when it
                    // restarted) costs only this read: the connection is dropped, and the read is
                    // retried on the primary. The replica is not put on hold for it.
                    Err(_) => discard(conn),
                },
                Err(mysql::Error::DriverError(mysql::DriverError::Timeout)) => {}
                // No connection could be made: skip the replica for a while.
                Err(_) => {
                    let retry_at = self
                        .now_ms()
                        .saturating_add(REPLICA_RETRY.as_millis() as u64);
                    self.replica_retry_at_ms.store(retry_at, Ordering::Relaxed);
                }
            }
        }
        Stats::bump(&self.stats.read_fallbacks);
        let mut conn = get(&self.primary, "primary")?;
        match select_item(&mut conn, id) {
            Ok(item) => Ok((item, ReadFrom::Primary)),
            Err(source) => {
                discard(conn);
                Err(DbError::Mysql {
                    server: "primary",
                    source,
                })
            }
        }
    }

    /// Inserts an item on the primary and returns its id. Never retried: an INSERT whose outcome
    /// is unknown must not be sent twice.
    pub fn insert_item(&self, name: &str) -> Result<u64, DbError> {
        let mut conn = get(&self.primary, "primary")?;
        match conn.exec_drop(INSERT_ITEM, (name,)) {
            Ok(()) => {
                Stats::bump(&self.stats.writes);
                Ok(conn.last_insert_id())
            }
            Err(source) => {
                discard(conn);
                Err(DbError::Mysql {
                    server: "primary",
                    source,
                })
            }
        }
    }

    /// `SELECT 1` on each pool: (primary, replica).
    pub fn health(&self) -> (Result<(), DbError>, Result<(), DbError>) {
        (
            select_one(&self.primary, "primary"),
            select_one(&self.replica, "replica"),
        )
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn pool(cfg: &DbConfig<'_>, (host, port): (&str, u16), check_health: bool) -> mysql::Result<Pool> {
    // min 0: no connection is opened before the first request needs one.
    let constraints =
        PoolConstraints::new(0, cfg.pool_size.max(1)).unwrap_or(PoolConstraints::DEFAULT);
    let pool_opts = PoolOpts::default()
        .with_constraints(constraints)
        // No COM_RESET_CONNECTION per checkout: it would cost a round trip and drop the
        // prepared-statement cache. The node never changes session state.
        .with_reset_connection(false)
        // The primary pings a pooled connection before handing it out, so that an INSERT is not
        // sent on a connection the server already closed (it could not be retried). Reads are
        // retried on the primary instead, so the replica pool skips that round trip.
        .with_check_health(check_health);
    let opts = OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some(cfg.user))
        .pass(Some(cfg.password))
        .db_name(Some(cfg.database))
        // Stay on TCP: the crate would otherwise switch loopback connections to the server's unix
        // socket, and the stack is meant to talk to the ports it names.
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
        .read_timeout(Some(IO_TIMEOUT))
        .write_timeout(Some(IO_TIMEOUT))
        .pool_opts(pool_opts);
    Pool::new(opts)
}

fn get(pool: &Pool, server: &'static str) -> Result<PooledConn, DbError> {
    pool.try_get_conn(POOL_WAIT).map_err(|e| match e {
        mysql::Error::DriverError(mysql::DriverError::Timeout) => DbError::Busy { server },
        source => DbError::Mysql { server, source },
    })
}

/// Returns a connection that failed to the pool in a way that gets it checked: on return the pool
/// then resets it (COM_RESET_CONNECTION) and forgets it if that fails, so a dead connection is not
/// handed out again. (`PooledConn::unwrap` would leak a slot of the pool's bounded count.)
fn discard(mut conn: PooledConn) {
    conn.reset_connection(true);
    drop(conn);
}

fn select_item(conn: &mut PooledConn, id: i64) -> mysql::Result<Option<Item>> {
    let row: Option<(i64, Option<String>, Option<String>)> = conn.exec_first(SELECT_ITEM, (id,))?;
    Ok(row.map(|(id, name, created)| Item { id, name, created }))
}

fn select_one(pool: &Pool, server: &'static str) -> Result<(), DbError> {
    let mut conn = get(pool, server)?;
    match conn.query_drop("SELECT 1") {
        Ok(()) => Ok(()),
        Err(source) => {
            discard(conn);
            Err(DbError::Mysql { server, source })
        }
    }
}

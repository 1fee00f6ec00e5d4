//! appnode: the benchmark stack's app server. An HTTP/1.1 server on a bounded pool of blocking
//! worker threads; `GET /items/{id}` reads from the MariaDB replica (falling back to the primary while
//! the replica is unreachable), `POST /items` writes to the primary, `GET /healthz` checks both,
//! `GET /static` never touches the database and `GET /stats` shows the counters. Every response
//! carries `X-Served-By: <name>`.

mod db;
mod http;
mod routes;

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{io::Write, process::ExitCode, thread};

use anyhow::{bail, Context};
use clap::Parser;

use db::{Db, DbConfig};
use http::{Conn, Method, Response};

/// Most worker threads: each serves one connection at a time (keep-alive included), so this is
/// also the most connections open at once.
const MAX_THREADS: usize = 4096;
/// Most connections per database pool (MariaDB's max_connections in the stack is 512, shared by
/// two nodes and two pools each).
const MAX_DB_POOL: usize = 256;
/// A connection with no complete request for this long is closed: an idle keep-alive connection
/// must not hold a worker thread forever (the thread pool is the concurrency bound).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on writing one response to a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Workers do little more than wait on sockets; the default 2 MiB stack is not needed.
const WORKER_STACK: usize = 256 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Parser, Debug)]
#[command(
    name = "appnode",
    about = "The corelb benchmark stack's app server (HTTP/1.1 + MariaDB)"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Node name sent in every response's X-Served-By header ([A-Za-z0-9._-], at most 64).
    #[arg(long, default_value = "app1")]
    name: String,
    /// MariaDB primary (writes), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:13306")]
    primary: String,
    /// MariaDB replica (reads), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:13307")]
    replica: String,
    /// Database user (the stack's app user has no SUPER).
    #[arg(long, default_value = "corelb")]
    user: String,
    /// Database password.
    #[arg(long, default_value = "corelb")]
    password: String,
    /// Database (schema) name.
    #[arg(long, default_value = "corelb")]
    database: String,
    /// Most connections in each of the two database pools.
    #[arg(long, default_value_t = 16)]
    db_pool: usize,
    /// Worker threads, i.e. client connections open at once (idle keep-alive ones included); one
    /// more is answered 503 and closed. Keep it above the connections the load balancer opens to
    /// this node: database concurrency is bounded separately by --db-pool.
    #[arg(long, default_value_t = 512)]
    threads: usize,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appnode: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let name_ok = !args.name.is_empty()
        && args.name.len() <= 64
        && args
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !name_ok {
        bail!("--name must be 1-64 characters of [A-Za-z0-9._-] (it goes into a header)");
    }
    if !(1..=MAX_THREADS).contains(&args.threads) {
        bail!("--threads must be 1..={MAX_THREADS}");
    }
    if !(1..=MAX_DB_POOL).contains(&args.db_pool) {
        bail!("--db-pool must be 1..={MAX_DB_POOL}");
    }
    let primary = host_port(&args.primary).context("--primary")?;
    let replica = host_port(&args.replica).context("--replica")?;
    let db = Db::new(&DbConfig {
        primary,
        replica,
        user: &args.user,
        password: &args.password,
        database: &args.database,
        pool_size: args.db_pool,
    })?;

    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let ctx = Arc::new(Ctx {
        db,
        name: args.name,
        open_conns: AtomicUsize::new(0),
    });

    let (tx, rx): (SyncSender<TcpStream>, Receiver<TcpStream>) = mpsc::sync_channel(args.threads);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..args.threads {
        let rx = Arc::clone(&rx);
        let ctx = Arc::clone(&ctx);
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker(&rx, &ctx))
            .context("cannot start a worker thread")?;
    }

    // The line scripts and tests wait for: the node is ready once it is printed.
    let mut out = std::io::stdout().lock();
    writeln!(out, "appnode {} listening on {local}", ctx.name)?;
    out.flush()?;
    drop(out);

    loop {
        match listener.accept() {
            // A connection is queued only when a worker is free for it: one that waited behind
            // busy keep-alive connections could wait until a client goes idle, which under a
            // steady load is never. Overload is answered at once instead.
            Ok((stream, _)) if ctx.open_conns.load(Ordering::Acquire) >= args.threads => {
                refuse(stream, &ctx.name)
            }
            Ok((stream, _)) => {
                ctx.open_conns.fetch_add(1, Ordering::AcqRel);
                match tx.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(stream)) => {
                        ctx.open_conns.fetch_sub(1, Ordering::AcqRel);
                        refuse(stream, &ctx.name);
                    }
                    Err(TrySendError::Disconnected(_)) => bail!("all worker threads are gone"),
                }
            }
            Err(e) => {
                eprintln!("appnode: accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

struct Ctx {
    db: Db,
    name: String,
    /// Connections handed to workers and not yet closed (queued or being served).
    open_conns: AtomicUsize,
}

/// "host:port" or "[v6]:port".
fn host_port(s: &str) -> anyhow::Result<(&str, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("'{s}' is not HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // Plain digits only: `u16::from_str` would also take "+5".
    let port: u16 = Some(port)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .filter(|p| *p != 0)
        .with_context(|| format!("'{s}' has no valid port"))?;
    if host.is_empty() {
        bail!("'{s}' has no host");
    }
    Ok((host, port))
}

fn worker(rx: &Mutex<Receiver<TcpStream>>, ctx: &Ctx) {
    loop {
        // The guard is dropped at the end of the statement: only the wait is serialised.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(stream) => {
                serve(stream, ctx);
                ctx.open_conns.fetch_sub(1, Ordering::AcqRel);
            }
            Err(_) => return,
        }
    }
}

/// Serves one connection until the client closes, asks to close, idles out, or breaks the framing.
fn serve(stream: TcpStream, ctx: &Ctx) {
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        match conn.read_request() {
            Ok(Some(req)) => {
                let resp = routes::handle(&req, &ctx.db);
                let head_only = req.method == Method::Head;
                let written = conn.write_response(&resp, &ctx.name, req.keep_alive, head_only);
                if written.is_err() || !req.keep_alive {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                // After a framing error nothing more on this connection can be trusted: answer
                // (when there is someone to answer) and close.
                if let Some(status) = e.status() {
                    let resp = Response::error(status, &e.to_string());
                    let _ = conn.write_response(&resp, &ctx.name, false, false);
                }
                return;
            }
        }
    }
}

/// Answers a connection that found every worker busy, then closes it.
fn refuse(mut stream: TcpStream, name: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let body = b"{\"error\":\"overloaded\"}";
    let _ = write!(
        stream,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Served-By: {name}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("127.0.0.1:13306").unwrap(), ("127.0.0.1", 13306));
        assert_eq!(host_port("[::1]:13307").unwrap(), ("::1", 13307));
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:+5",
            ":13306",
            "h:70000",
        ] {
            assert!(host_port(bad).is_err(), "{bad:?} must be refused");
        }
    }
}

//! Raw TCP load tool for benches/tcp_compare.sh: an echo server and two clients, with std threads and
//! blocking sockets (a load tool, not the proxy: simplicity beats efficiency here). Every run is bounded
//! in time and counts and stops by itself; results are printed as `key=value` lines on stdout.
//!
//! ```text
//! tcpbench serve    --listen ADDR [--seconds S] [--max-conns N]
//! tcpbench bulk     --target ADDR --conns N --seconds S --size B
//! tcpbench connrate --target ADDR --threads N --seconds S
//! ```
//!
//! - `serve`: echoes every byte back, one thread per connection, half-closes when the client does.
//! - `bulk`: per connection, one thread streams B-byte writes for S seconds while another reads the echo
//!   back; then the writer half-closes and the reader drains to EOF. `bytes` is what came back (bytes
//!   moved one way through a proxy; it moved as many the other way).
//! - `connrate`: per thread, loop: connect, write 64 B, read the 64 B echo, close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Longest run any subcommand accepts (a typo must not start an hours-long load).
const MAX_RUN_SECONDS: u64 = 600;
/// Default lifetime of `serve`: it outlives any bench run, and still ends if its caller forgets it.
const DEFAULT_SERVE_SECONDS: u64 = 3600;
/// Longest lifetime of `serve`.
const MAX_SERVE_SECONDS: u64 = 24 * 3600;
/// Connections the echo server serves at once by default; more are closed at once (bounds threads).
const DEFAULT_MAX_CONNS: usize = 4096;
/// Most client connections or threads a client run opens (each is one or two OS threads).
const MAX_CLIENT_CONNS: usize = 1024;
/// Largest write size of `bulk` (a buffer per connection of this size).
const MAX_WRITE_SIZE: usize = 4 << 20;
/// Echo server read buffer: large enough that bulk echo costs few syscalls.
const ECHO_BUF: usize = 64 * 1024;
/// Bulk reader buffer, same reason.
const READ_BUF: usize = 64 * 1024;
/// Socket timeout of every blocking op: a stuck peer (proxy down, lost FIN) ends a thread, not the run.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `serve` waits on an idle connection before closing it (clients here never idle).
const SERVE_IDLE: Duration = Duration::from_secs(60);
/// Connect timeout of the clients.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of fds...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Stack of each echo thread: it needs only its buffer (on the heap); thread-per-connection stays cheap.
const THREAD_STACK: usize = 128 * 1024;
/// Pause of a `connrate` thread after a failed exchange.
const ERROR_BACKOFF: Duration = Duration::from_millis(1);
/// Payload of one `connrate` exchange.
const PING: usize = 64;
/// Upper bound on `connrate` iterations per thread (beyond any real rate x MAX_RUN_SECONDS is fine
/// too: the deadline ends the loop first; this only makes the loop bounded by construction).
const MAX_CONNS_PER_THREAD: u64 = 100_000_000;
/// After a run, how long the client waits for its threads (drain to EOF included) before reporting.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Raw TCP load tool: echo server, bulk throughput, connection rate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo server, one thread per connection.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = DEFAULT_SERVE_SECONDS)]
        seconds: u64,
        /// Connections served at once; further ones are closed on accept.
        #[arg(long, default_value_t = DEFAULT_MAX_CONNS)]
        max_conns: usize,
    },
    /// N connections streaming B-byte writes and reading the echo back, for S seconds.
    Bulk {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 65536)]
        size: usize,
    },
    /// N threads looping connect / 64 B out / 64 B back / close, for S seconds.
    Connrate {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Serve {
            listen,
            seconds,
            max_conns,
        } => serve(listen, seconds, max_conns),
        Cmd::Bulk {
            target,
            conns,
            seconds,
            size,
        } => bulk(target, conns, seconds, size),
        Cmd::Connrate {
            target,
            threads,
            seconds,
        } => connrate(target, threads, seconds),
    };
    if let Err(e) = res {
        eprintln!("tcpbench: {e}");
        std::process::exit(1);
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_range(name: &str, v: u64, lo: u64, hi: u64) -> io::Result<()> {
    if v < lo || v > hi {
        return Err(bad(format!("--{name} must be {lo}..={hi}, got {v}")));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// serve

fn serve(listen: SocketAddr, seconds: u64, max_conns: usize) -> io::Result<()> {
    check_range("seconds", seconds, 1, MAX_SERVE_SECONDS)?;
    check_range("max-conns", max_conns as u64, 1, 1 << 16)?;
    let l = TcpListener::bind(listen)?;
    println!("listen={}", l.local_addr()?);
    io::stdout().flush()?;
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    // The lifetime bound: a watchdog ends the process, so accept() can block (a polled nonblocking
    // accept would add its poll interval to every short connection's latency).
    let (a, r) = (accepted.clone(), refused.clone());
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(seconds));
        println!("accepted={}", a.load(Ordering::Relaxed));
        println!("refused={}", r.load(Ordering::Relaxed));
        let _ = io::stdout().flush();
        std::process::exit(0);
    });
    let live = Arc::new(AtomicUsize::new(0));
    // Ends when the watchdog exits the process.
    for s in l.incoming() {
        // EMFILE, ECONNABORTED...: transient; keep serving.
        let Ok(s) = s else {
            thread::sleep(ACCEPT_BACKOFF);
            continue;
        };
        if live.load(Ordering::Relaxed) >= max_conns {
            refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropped: closed
        }
        accepted.fetch_add(1, Ordering::Relaxed);
        live.fetch_add(1, Ordering::Relaxed);
        let live2 = live.clone();
        let spawned = thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _ = echo(s);
                live2.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::Relaxed);
            refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Echoes until the client half-closes (then half-closes too), an error, or SERVE_IDLE of silence.
fn echo(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(SERVE_IDLE))?;
    s.set_write_timeout(Some(SERVE_IDLE))?;
    let mut buf = vec![0u8; ECHO_BUF];
    // Bounded: each round moves at least one byte or ends; idle peers time out.
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        s.write_all(&buf[..n])?;
    }
}

// ------------------------------------------------------------------------------------------------
// bulk

fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn bulk(target: SocketAddr, conns: usize, seconds: u64, size: usize) -> io::Result<()> {
    check_range("conns", conns as u64, 1, MAX_CLIENT_CONNS as u64)?;
    check_range("seconds", seconds, 1, MAX_RUN_SECONDS)?;
    check_range("size", size as u64, 1, MAX_WRITE_SIZE as u64)?;
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut readers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let s = match connect(target) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tcpbench: connect {target}: {e}");
                errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let r = s.try_clone()?;
        let (sent2, errors2) = (sent.clone(), errors.clone());
        thread::spawn(move || {
            if write_until(s, size, deadline, &sent2).is_err() {
                errors2.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (received2, errors2, done2) = (received.clone(), errors.clone(), done.clone());
        readers.push(thread::spawn(move || {
            if read_to_eof(r, &received2).is_err() {
                errors2.fetch_add(1, Ordering::Relaxed);
            }
            done2.fetch_add(1, Ordering::Relaxed);
        }));
    }
    // Wait for the readers (EOF after the drain), bounded: a stuck one is reported, not waited for.
    let give_up = deadline + DRAIN_GRACE;
    let n = readers.len();
    while done.load(Ordering::Relaxed) < n && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let unfinished = n - done.load(Ordering::Relaxed).min(n);
    let bytes = received.load(Ordering::Relaxed);
    println!("mode=bulk");
    println!("target={target}");
    println!("conns={conns}");
    println!("size={size}");
    println!("elapsed_s={elapsed:.3}");
    println!("bytes_sent={}", sent.load(Ordering::Relaxed));
    println!("bytes={bytes}");
    println!("mb_per_s={:.1}", bytes as f64 / 1e6 / elapsed);
    println!(
        "errors={}",
        errors.load(Ordering::Relaxed) + unfinished as u64
    );
    if bytes == 0 {
        return Err(io::Error::other("no byte came back"));
    }
    Ok(())
}

/// Writes `size`-byte chunks until `deadline`, then half-closes so the echo drains to EOF.
fn write_until(
    mut s: TcpStream,
    size: usize,
    deadline: Instant,
    sent: &AtomicU64,
) -> io::Result<()> {
    let buf = vec![b'x'; size];
    // Bounded by the deadline (each write_all ends within IO_TIMEOUT or fails).
    while Instant::now() < deadline {
        s.write_all(&buf)?;
        sent.fetch_add(size as u64, Ordering::Relaxed);
    }
    s.shutdown(Shutdown::Write)
}

fn read_to_eof(mut s: TcpStream, received: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    // Bounded: every round reads at least one byte or ends; a silent peer times out (IO_TIMEOUT).
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------------------------------
// connrate

fn connrate(target: SocketAddr, threads: usize, seconds: u64) -> io::Result<()> {
    check_range("threads", threads as u64, 1, MAX_CLIENT_CONNS as u64)?;
    check_range("seconds", seconds, 1, MAX_RUN_SECONDS)?;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (ok2, errors2) = (ok.clone(), errors.clone());
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline && n < MAX_CONNS_PER_THREAD {
                n += 1;
                match ping(target) {
                    Ok(()) => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors2.fetch_add(1, Ordering::Relaxed);
                        // A refusing target must not turn the loop into a busy spin.
                        thread::sleep(ERROR_BACKOFF);
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let conns = ok.load(Ordering::Relaxed);
    println!("mode=connrate");
    println!("target={target}");
    println!("threads={threads}");
    println!("elapsed_s={elapsed:.3}");
    println!("conns={conns}");
    println!("conns_per_s={:.1}", conns as f64 / elapsed);
    println!("errors={}", errors.load(Ordering::Relaxed));
    if conns == 0 {
        return Err(io::Error::other("no connection completed"));
    }
    Ok(())
}

/// One short connection: connect, 64 B out, the same 64 B back, close.
fn ping(target: SocketAddr) -> io::Result<()> {
    let mut s = connect(target)?;
    let out = [b'p'; PING];
    s.write_all(&out)?;
    let mut back = [0u8; PING];
    s.read_exact(&mut back)?;
    if back != out {
        return Err(io::Error::other("echo differs"));
    }
    Ok(())
}

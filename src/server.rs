//! Startup and lifecycle: listeners (socket2, SO_REUSEPORT, one per worker per bind), one pinned glommio
//! executor per worker, the accept loops with their connection limit, and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use futures_lite::future;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, Mode};
use crate::health::{self, board::Board};
use crate::limits::{
    ACCEPT_BACKOFF, CONTROL_TICK, DRAIN_POLL, POOL_SWEEP_EVERY, WORKER_READY_TIMEOUT,
};
use crate::log_info;
use crate::worker::WorkerCtx;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // `cause`, not `source`: the message already names it, and a source would print it again (`{:#}`).
    #[error("frontend {frontend:?}: cannot listen on {addr}: {cause} (is another process using it? `ss -ltnp`)")]
    Bind {
        frontend: String,
        addr: SocketAddr,
        cause: io::Error,
    },
    #[error("cannot determine the CPUs this process may run on")]
    NoCpus,
    #[error("cannot start worker {worker}: {reason}")]
    Worker { worker: usize, reason: String },
}

/// Set from the signal handler; read by each worker's control task (never by the request path).
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SHUTDOWN.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `on_signal` is async-signal-safe (a single atomic store) and has the C ABI `signal`
        // expects; installing a handler has no other preconditions.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Raises the open-file soft limit to the hard limit: every client and backend connection is an fd.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the `rlimit` struct we pass by valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn listen_socket(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    // Each worker has its own socket in the same SO_REUSEPORT group: the kernel spreads connections,
    // no accept lock, no thundering herd.
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // So `[::]:80` and `0.0.0.0:80` can both be bound, as in HAProxy and nginx configs.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

/// One worker's share of the listeners: (frontend index, socket).
type Listeners = Vec<(usize, Socket)>;

/// Binds every frontend address once per worker. Port 0 is resolved by the first socket, and the others
/// join it, so tests can bind port 0 with several workers.
fn bind_all(cfg: &Config, workers: usize) -> Result<Vec<Listeners>, StartError> {
    let mut per_worker: Vec<Listeners> = (0..workers).map(|_| Vec::new()).collect();
    for (fi, fe) in cfg.frontends.iter().enumerate() {
        for &addr in &fe.binds {
            let mut actual = addr;
            for (w, slot) in per_worker.iter_mut().enumerate() {
                let err = |cause| StartError::Bind {
                    frontend: fe.name.clone(),
                    addr,
                    cause,
                };
                let s = listen_socket(actual, fe.backlog.get()).map_err(err)?;
                if w == 0 {
                    actual = s
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                        .ok_or_else(|| err(io::Error::other("no local address")))?;
                }
                slot.push((fi, s));
            }
            log_info!("listening frontend={} addr={}", fe.name, actual);
        }
    }
    Ok(per_worker)
}

/// Runs corelb until SIGTERM/SIGINT and the grace period end. `workers`: None = one per allowed CPU.
pub fn run(cfg: Config, workers: Option<usize>) -> Result<(), StartError> {
    let cpus = core_affinity::get_core_ids()
        .filter(|c| !c.is_empty())
        .ok_or(StartError::NoCpus)?;
    let workers = workers
        .or(cfg.global.workers.map(|w| w.get()))
        .unwrap_or(cpus.len())
        .max(1);
    if workers > cpus.len() {
        log_info!(
            "warning: {workers} workers on {} allowed CPUs: some CPUs run two workers",
            cpus.len()
        );
    }
    raise_nofile_limit();
    install_signal_handlers();
    let cfg = Arc::new(cfg);
    let board = Arc::new(Board::new(
        &cfg.backends
            .iter()
            .map(|b| b.servers.len())
            .collect::<Vec<_>>(),
    ));
    for (bi, b) in cfg.backends.iter().enumerate() {
        if b.check.as_ref().is_some_and(|c| c.start_down) {
            for si in 0..b.servers.len() {
                board.init_down(board.index(bi, si));
            }
        }
    }
    let listeners = bind_all(&cfg, workers)?;
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let mut handles = Vec::with_capacity(workers);
    for (id, socks) in listeners.into_iter().enumerate() {
        let cpu = cpus[id % cpus.len()];
        let cfg = cfg.clone();
        let board = board.clone();
        let ready = ready_tx.clone();
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("corelb-w{id}"))
            // corelb does no file I/O: the DMA buffer area stays small (the default 10 MiB exceeds common
            // RLIMIT_MEMLOCK values).
            .io_memory(1 << 20)
            .spawn(move || async move {
                // Pin inside the executor thread, to a CPU out of the process's allowed set (taskset, cpuset).
                core_affinity::set_for_current(cpu);
                worker_main(id, workers, cfg, board, socks, ready).await
            })
            .map_err(|e| StartError::Worker {
                worker: id,
                reason: e.to_string(),
            })?;
        handles.push(h);
    }
    drop(ready_tx);
    let mut started = 0;
    while started < workers {
        match ready_rx.recv_timeout(WORKER_READY_TIMEOUT) {
            Ok(_) => started += 1,
            Err(_) => {
                return Err(StartError::Worker {
                    worker: started,
                    reason: format!("did not start within {} s", WORKER_READY_TIMEOUT.as_secs()),
                })
            }
        }
    }
    log_info!("ready workers={workers}");
    for (id, h) in handles.into_iter().enumerate() {
        if let Err(e) = h.join() {
            log_info!("worker {id} ended with an error: {e}");
        }
    }
    log_info!("stopped");
    Ok(())
}

async fn worker_main(
    id: usize,
    workers: usize,
    cfg: Arc<Config>,
    board: Arc<Board>,
    socks: Listeners,
    ready: mpsc::Sender<usize>,
) {
    let ctx = Rc::new(WorkerCtx::new(id, workers, cfg.clone(), board.clone()));
    health::owner::spawn_owned(
        id,
        workers,
        &cfg,
        &board,
        Rc::new(|| SHUTDOWN.load(Ordering::Relaxed)),
    );
    let mut accept_tasks = Vec::new();
    for (fi, sock) in socks {
        let fe = &cfg.frontends[fi];
        // maxconn is per frontend; each worker gets its share (rounded up).
        let per_worker = fe.maxconn.get().div_ceil(workers).max(1);
        // SAFETY: `into_raw_fd` gives up ownership of a valid, bound, listening socket; the glommio
        // listener takes that ownership and closes it on drop.
        let listener = unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) };
        let limit = Rc::new(Semaphore::new(per_worker as u64));
        accept_tasks.push(glommio::spawn_local(accept_loop(
            ctx.clone(),
            fi,
            listener,
            limit,
        )));
    }
    let _ = ready.send(id);

    let mut last_sweep = Instant::now();
    while !SHUTDOWN.load(Ordering::Relaxed) {
        glommio::timer::sleep(CONTROL_TICK).await;
        let now = Instant::now();
        ctx.sync_health(now);
        if now.duration_since(last_sweep) >= POOL_SWEEP_EVERY {
            last_sweep = now;
            for b in &ctx.backends {
                b.pool.borrow_mut().sweep(now);
            }
        }
    }
    if ctx.health_applied.get() > 0 {
        log_info!(
            "worker={id} applied {} health changes, slowest propagation {} ms",
            ctx.health_applied.get(),
            ctx.health_max_lag.get().as_millis()
        );
    }
    // Graceful shutdown: stop accepting (closing the listeners), let in-flight requests finish.
    ctx.draining.set(true);
    ctx.stop.close();
    for t in accept_tasks {
        t.await;
    }
    let deadline = Instant::now() + cfg.global.grace;
    while ctx.in_flight.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    if ctx.in_flight.get() > 0 {
        log_info!(
            "worker={id} grace period over with {} requests in flight",
            ctx.in_flight.get()
        );
    }
    // The log phase's totals: what this core served (until the metrics exporter exists).
    if ctx.totals.exchanges.get() > 0 {
        log_info!("worker={id} {}", ctx.totals.summary());
    }
    // Returning ends the executor; idle keep-alive connections are closed with their tasks.
}

async fn accept_loop(ctx: Rc<WorkerCtx>, fi: usize, listener: TcpListener, limit: Rc<Semaphore>) {
    loop {
        // At the connection limit, stop accepting: connections wait in the kernel backlog rather than
        // being accepted and dropped (HAProxy's maxconn behaviour).
        let permit = future::or(async { limit.acquire_static_permit(1).await.ok() }, async {
            ctx.stopped().await;
            None
        })
        .await;
        let Some(permit) = permit else { return };
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            ctx.stopped().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    match ctx.cfg.frontends[fi].mode {
                        Mode::Http => crate::proxy::serve(ctx, fi, stream).await,
                        Mode::Tcp => crate::proxy::serve_tcp(ctx, fi, stream).await,
                    }
                    drop(permit);
                })
                .detach();
            }
            Some(Err(e)) => {
                let io_err: io::Error = e.into();
                let out_of_resources = matches!(
                    io_err.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                ctx.log_error(format_args!(
                    "fe={} accept failed: {io_err}",
                    ctx.cfg.frontends[fi].name
                ));
                if out_of_resources {
                    // Keep serving existing connections; try again later instead of spinning.
                    glommio::timer::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

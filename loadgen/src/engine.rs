//! The generator's engine: one pinned glommio executor per thread, each with its own connections,
//! request bytes, PRNG and statistics.
//!
//! Closed loop: each connection keeps `pipeline` requests in flight, sending the next as soon as a
//! response arrives. Open loop: each thread has one schedule, intended send times
//! `start + phase + i / rate_per_thread`, served by a pool of connections: an idle connection claims the
//! next slot and sleeps until its time; when every connection is busy the slot waits and is sent late,
//! and its latency still counts from the intended time (coordinated-omission correction, as in wrk2,
//! but one schedule per thread rather than per connection, so a slow connection cannot hide load).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};

use crate::http::{ExchError, Reader, Response, Source};
use crate::scenario::{Kind, KindSpec, Mix, Rng, ScenarioError, Target};
use crate::stats::{ErrorClass, Second, ThreadResult};
use crate::watchdog;

/// A send that leaves this much after its intended time is counted as late (the schedule slipped).
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);
/// Pause after a failed connect in the closed loop, so a refused port does not become a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// How long threads wait for each other to finish pre-connecting before starting anyway.
const START_GATE_WAIT: Duration = Duration::from_secs(30);
/// Gap between the start decision and the first intended send, so every thread sees it in the future.
const START_DELAY: Duration = Duration::from_millis(5);
/// The ticker's sleep slice: bounds how long the run lingers after the last response.
const TICK_SLICE: Duration = Duration::from_millis(20);
/// Upper bounds on the knobs, so a typo cannot ask for absurd memory.
pub const MAX_CONNECTIONS: usize = 100_000;
pub const MAX_PIPELINE: usize = 1024;
pub const MAX_THREADS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("invalid options: {0}")]
    Options(String),
    #[error("executor thread {0}: {1}")]
    Executor(usize, String),
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub kinds: Vec<KindSpec>,
    /// None: one per allowed CPU.
    pub threads: Option<usize>,
    /// Closed loop: connections; open loop: the pool size (total over threads).
    pub connections: usize,
    /// Some: open loop at this many requests/s in total.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub close: bool,
    pub pipeline: usize,
    pub seed: u64,
    /// Pin each executor thread to its own allowed CPU. Off on a machine shared with other work, where
    /// a pinned thread cannot move away from a busy core.
    pub pin: bool,
    /// Open loop: wake-ups are rounded up to multiples of this (zero: exact). Connections whose slots
    /// fall in one quantum then wake together, so the executor parks once per quantum rather than once
    /// per request (each park costs tens of µs of CPU in glommio). The extra wait is counted in the
    /// corrected latency, never hidden.
    pub pace_quantum: Duration,
    /// Open loop: wake this much before a slot and yield (spin) until its time. glommio wakes ~0.1 ms
    /// late, which the corrected latency includes; spinning removes that at the cost of CPU.
    pub spin: Duration,
}

/// The merged outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub kind_names: Vec<String>,
    pub result: ThreadResult,
    pub seconds: Vec<Second>,
    /// The measured window: the configured duration, or (with -n) until the last response.
    pub window: Duration,
    pub threads: usize,
    pub connections: usize,
    pub rate: Option<f64>,
    /// Process CPU time (user + system) over the run, and its wall time.
    pub cpu: Duration,
    pub wall: Duration,
    pub pinned: bool,
}

struct Gate {
    n: usize,
    arrived: Mutex<usize>,
    cv: Condvar,
    start: OnceLock<Instant>,
}

impl Gate {
    /// Blocks (the executor has nothing else to run yet) until every thread arrived, then returns the
    /// common start instant.
    fn arrive(&self) -> Instant {
        let mut a = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        *a += 1;
        self.cv.notify_all();
        let deadline = Instant::now() + START_GATE_WAIT;
        while *a < self.n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            a = self
                .cv
                .wait_timeout(a, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *self.start.get_or_init(|| Instant::now() + START_DELAY)
    }
}

struct ThreadParams {
    id: usize,
    addr: std::net::SocketAddr,
    kinds: Vec<Kind>,
    conns: usize,
    /// Open loop: (period, phase) in ns.
    open: Option<(f64, f64)>,
    duration: Option<Duration>,
    count: Option<u64>,
    warmup: Duration,
    timeout: Duration,
    depth: usize,
    seed: u64,
    pace_quantum: Duration,
    spin: Duration,
    gate: Arc<Gate>,
    tx: mpsc::Sender<Second>,
}

struct Slot {
    intended: Instant,
    measured: bool,
}

struct InFlight {
    kind: usize,
    intended: Instant,
    sent: Instant,
    measured: bool,
}

struct Ctx {
    addr: std::net::SocketAddr,
    kinds: Vec<Kind>,
    mix: Mix,
    rng: RefCell<Rng>,
    open: Option<(f64, f64)>,
    next: Cell<u64>,
    start: Instant,
    measure_start: Instant,
    end: Option<Instant>,
    /// Open loop: no slot is claimed after this (a server that never catches up must not keep the run
    /// going for ever); the rest are reported as unsent.
    hard_end: Option<Instant>,
    remaining: Cell<Option<u64>>,
    timeout: Duration,
    depth: usize,
    pace_quantum: Duration,
    spin: Duration,
    res: RefCell<ThreadResult>,
    sec: RefCell<Second>,
    done: Cell<bool>,
}

impl Ctx {
    fn slot_time(&self, i: u64) -> Instant {
        let (period, phase) = self.open.unwrap_or((0.0, 0.0));
        // f64 holds 2^53 ns (~104 days) exactly enough; the cast saturates.
        self.start + Duration::from_nanos((phase + i as f64 * period) as u64)
    }

    /// When to wake for a slot: its intended time, rounded up to the pacing quantum.
    fn wake_time(&self, intended: Instant) -> Instant {
        let q = self.pace_quantum.as_nanos();
        if q == 0 {
            return intended;
        }
        let since = intended.saturating_duration_since(self.start).as_nanos();
        let rounded = since.div_ceil(q).saturating_mul(q);
        self.start + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
    }

    /// The next request's slot, or None when the run is over. `now`: a recent clock reading (the
    /// closed loop's intended send time).
    fn claim(&self, now: Instant) -> Option<Slot> {
        let intended = if self.open.is_some() {
            if self.hard_end.is_some_and(|h| now >= h) {
                return None;
            }
            let i = self.next.get();
            let t = self.slot_time(i);
            if self.end.is_some_and(|e| t >= e) {
                return None;
            }
            self.next.set(i + 1);
            t
        } else {
            if self.end.is_some_and(|e| now >= e) {
                return None;
            }
            now
        };
        let measured = intended >= self.measure_start;
        if measured {
            if let Some(r) = self.remaining.get() {
                if r == 0 {
                    return None;
                }
                self.remaining.set(Some(r - 1));
            }
        }
        Some(Slot { intended, measured })
    }

    fn error(&self, kind: usize, measured: bool, class: ErrorClass) {
        if !measured {
            return;
        }
        if let Some(k) = self.res.borrow_mut().kinds.get_mut(kind) {
            k.add_error(class);
        }
        self.sec.borrow_mut().errors += 1;
    }

    fn sent(&self, f: &InFlight) {
        if !f.measured {
            return;
        }
        let mut r = self.res.borrow_mut();
        if let Some(k) = r.kinds.get_mut(f.kind) {
            k.sent += 1;
        }
        let since = |t: Instant| as_us(t.saturating_duration_since(self.measure_start));
        r.first_intended_us = r.first_intended_us.min(since(f.intended));
        r.last_sent_us = r.last_sent_us.max(since(f.sent));
        if self.open.is_some() {
            let lag = f.sent.saturating_duration_since(f.intended);
            if lag > LATE_THRESHOLD {
                r.late_sends += 1;
            }
            r.max_lag_us = r.max_lag_us.max(as_us(lag));
        }
    }

    fn response(&self, f: &InFlight, resp: &Response, now: Instant) {
        if !f.measured {
            return;
        }
        let corrected = as_us(now.saturating_duration_since(f.intended)).max(1);
        let uncorrected = as_us(now.saturating_duration_since(f.sent)).max(1);
        let mut r = self.res.borrow_mut();
        let is_err = resp.status >= 400;
        if let Some(k) = r.kinds.get_mut(f.kind) {
            k.corrected.saturating_record(corrected);
            k.uncorrected.saturating_record(uncorrected);
            *k.statuses.entry(resp.status).or_default() += 1;
            if (400..500).contains(&resp.status) {
                k.add_error(ErrorClass::Http4xx);
            } else if resp.status >= 500 {
                k.add_error(ErrorClass::Http5xx);
            }
        }
        r.backends
            .add(resp.served_by.as_ref().map(|s| s.as_str()), 1);
        r.last_done_us = r
            .last_done_us
            .max(as_us(now.saturating_duration_since(self.measure_start)));
        drop(r);
        let mut s = self.sec.borrow_mut();
        s.requests += 1;
        if is_err {
            s.errors += 1;
        }
        s.hist.saturating_record(corrected);
    }

    async fn connect(&self) -> Result<TcpStream, ErrorClass> {
        self.res.borrow_mut().connects += 1;
        let s = TcpStream::connect_timeout(self.addr, self.timeout)
            .await
            .map_err(|e| {
                let e = io::Error::from(e);
                if e.kind() == io::ErrorKind::TimedOut {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Connect
                }
            })?;
        // Requests are written whole; Nagle would only delay them (and pipelined batches).
        let _ = s.set_nodelay(true);
        let _ = s.set_write_timeout(Some(self.timeout));
        Ok(s)
    }
}

fn as_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        glommio::timer::sleep(t - now).await;
    }
}

impl Source for TcpStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf).await
    }
}

/// A failed exchange's class: a timeout when the watchdog shut the socket down under it.
fn exch_class(e: ExchError, watch: &watchdog::Slot) -> ErrorClass {
    if watch.take_fired() {
        return ErrorClass::Timeout;
    }
    match e {
        ExchError::Read => ErrorClass::Read,
        ExchError::Parse => ErrorClass::Parse,
    }
}

/// One connection's loop (closed loop: keeps `depth` requests in flight; open loop: depth 1, paced by
/// the thread's schedule). A failed exchange fails every request in flight on it and replaces the
/// connection. `watch` is the connection's watchdog slot (its per-request timeout).
async fn conn_task(
    ctx: Rc<Ctx>,
    mut stream: Option<TcpStream>,
    watch: Rc<[watchdog::Slot]>,
    i: usize,
) {
    let Some(watch) = watch.get(i) else { return };
    watch.set_fd(stream.as_ref().map_or(-1, |s| s.as_raw_fd()));
    let mut reader = Reader::default();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(ctx.depth);
    // A clock reading with nothing awaited since (the last response's arrival): the closed loop sends
    // the next request within a few hundred ns of it, so it serves as that request's send time and
    // saves two clock reads per request.
    let mut fresh: Option<Instant> = None;
    loop {
        let mut new = 0;
        while inflight.len() < ctx.depth {
            let now = *fresh.get_or_insert_with(Instant::now);
            let Some(slot) = ctx.claim(now) else { break };
            if ctx.open.is_some() {
                fresh = None;
                let wake = ctx.wake_time(slot.intended);
                sleep_until(wake.checked_sub(ctx.spin).unwrap_or(wake)).await;
                if !ctx.spin.is_zero() {
                    // Bounded by `spin` plus one scheduling round: the loop ends at `wake`.
                    while Instant::now() < wake {
                        futures_lite::future::yield_now().await;
                    }
                }
            }
            let kind = ctx.mix.pick(&mut ctx.rng.borrow_mut());
            if stream.is_none() {
                fresh = None;
                match ctx.connect().await {
                    Ok(s) => {
                        watch.set_fd(s.as_raw_fd());
                        stream = Some(s);
                    }
                    Err(class) => {
                        ctx.error(kind, slot.measured, class);
                        if ctx.open.is_none() {
                            glommio::timer::sleep(CONNECT_BACKOFF).await;
                        }
                        continue;
                    }
                }
            }
            if let Some(k) = ctx.kinds.get(kind) {
                k.write(&mut out, &mut ctx.rng.borrow_mut());
            }
            inflight.push_back(InFlight {
                kind,
                intended: slot.intended,
                sent: slot.intended,
                measured: slot.measured,
            });
            new += 1;
        }
        let Some(s) = stream.as_mut() else {
            // No connection means nothing is in flight (a failure clears both): the schedule ended.
            break;
        };
        if inflight.is_empty() {
            break;
        }
        if new > 0 {
            let sent = fresh.take().unwrap_or_else(Instant::now);
            let first_new = inflight.len() - new;
            for f in inflight.iter_mut().skip(first_new) {
                f.sent = sent;
                ctx.sent(f);
            }
            if let Err(e) = s.write_all(&out).await {
                let class = if e.kind() == io::ErrorKind::TimedOut {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Write
                };
                for f in inflight.drain(..) {
                    ctx.error(f.kind, f.measured, class);
                }
                watch.set_fd(-1);
                stream = None;
                reader.clear();
                out.clear();
                continue;
            }
            out.clear();
        }
        fresh = None;
        let Some(front) = inflight.front() else { break };
        let head = ctx.kinds.get(front.kind).is_some_and(|k| k.head);
        watch.arm(front.sent + ctx.timeout);
        let got = reader.read_response(s, head).await;
        watch.disarm();
        match got {
            // A response completed after the watchdog shut the socket down: past its deadline, and
            // the connection is gone, so it fails like the rest.
            Ok(_) if watch.take_fired() => {
                for f in inflight.drain(..) {
                    ctx.error(f.kind, f.measured, ErrorClass::Timeout);
                }
                watch.set_fd(-1);
                stream = None;
                reader.clear();
            }
            Ok(resp) => {
                let now = Instant::now();
                fresh = Some(now);
                if let Some(f) = inflight.pop_front() {
                    ctx.response(&f, &resp, now);
                }
                if !resp.keep_alive {
                    // The server ends the connection: pipelined requests behind this one are lost.
                    for f in inflight.drain(..) {
                        ctx.error(f.kind, f.measured, ErrorClass::Read);
                    }
                    watch.set_fd(-1);
                    stream = None;
                    reader.clear();
                }
            }
            Err(e) => {
                let class = exch_class(e, watch);
                for f in inflight.drain(..) {
                    ctx.error(f.kind, f.measured, class);
                }
                watch.set_fd(-1);
                stream = None;
                reader.clear();
            }
        }
    }
    watch.set_fd(-1);
}

/// Closes per-second samples on the thread's clock and sends them to the main thread.
async fn ticker(ctx: Rc<Ctx>, tx: mpsc::Sender<Second>) {
    let mut k = 0u64;
    loop {
        let at = ctx.measure_start + Duration::from_secs(k + 1);
        while !ctx.done.get() && Instant::now() < at {
            let left = at.saturating_duration_since(Instant::now());
            glommio::timer::sleep(left.min(TICK_SLICE)).await;
        }
        let done = ctx.done.get();
        if Instant::now() >= ctx.measure_start {
            let s = std::mem::replace(&mut *ctx.sec.borrow_mut(), Second::new(k + 1));
            // The receiver is gone only if the main thread gave up: nothing to do then.
            let _ = tx.send(s);
            k += 1;
        }
        if done {
            break;
        }
    }
}

async fn thread_main(p: ThreadParams) -> ThreadResult {
    let mut res = ThreadResult::new(p.kinds.len());
    let mut streams = Vec::with_capacity(p.conns);
    for _ in 0..p.conns {
        res.connects += 1;
        let s = TcpStream::connect_timeout(p.addr, p.timeout).await.ok();
        if let Some(s) = &s {
            let _ = s.set_nodelay(true);
            let _ = s.set_write_timeout(Some(p.timeout));
        }
        streams.push(s);
    }
    let start = p.gate.arrive();
    // The closed loop sends at once: it must not begin before the common start (or its first requests
    // would count as warm-up).
    sleep_until(start).await;
    let measure_start = start + p.warmup;
    let end = p.duration.map(|d| measure_start + d);
    let hard_end = match (p.open, end) {
        (Some(_), Some(e)) => Some(e + p.timeout),
        _ => None,
    };
    let ctx = Rc::new(Ctx {
        addr: p.addr,
        mix: Mix::new(&p.kinds),
        kinds: p.kinds,
        rng: RefCell::new(Rng::new(
            p.seed ^ (p.id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )),
        open: p.open,
        next: Cell::new(0),
        start,
        measure_start,
        end,
        hard_end,
        remaining: Cell::new(p.count),
        timeout: p.timeout,
        depth: p.depth,
        pace_quantum: p.pace_quantum,
        spin: p.spin,
        res: RefCell::new(res),
        sec: RefCell::new(Second::new(0)),
        done: Cell::new(false),
    });
    let tick = glommio::spawn_local(ticker(ctx.clone(), p.tx));
    let watch = watchdog::slots(streams.len());
    let dog = {
        let ctx = ctx.clone();
        let watch = watch.clone();
        glommio::spawn_local(async move {
            watchdog::run(watch, watchdog::tick_for(ctx.timeout), || ctx.done.get()).await
        })
    };
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| glommio::spawn_local(conn_task(ctx.clone(), s, watch.clone(), i)))
        .collect();
    for t in tasks {
        t.await;
    }
    ctx.done.set(true);
    tick.await;
    dog.await;
    // Slots of the schedule that were never claimed (the run hit its hard end, or -n was not reached).
    let mut unsent = ctx.remaining.get().unwrap_or(0);
    if ctx.open.is_some() && ctx.remaining.get().is_none() {
        if let Some(e) = ctx.end {
            let mut i = ctx.next.get();
            loop {
                let t = ctx.slot_time(i);
                if t >= e {
                    break;
                }
                if t >= ctx.measure_start {
                    unsent += 1;
                }
                i += 1;
            }
        }
    }
    let mut res = ctx.res.replace(ThreadResult::new(0));
    res.unsent = unsent;
    res
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes only into the struct we pass by valid pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

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

/// `n` split over `parts`: part `i` gets its share, the remainder going to the first ones.
fn share(n: u64, parts: usize, i: usize) -> u64 {
    let parts = parts.max(1) as u64;
    n / parts + u64::from((i as u64) < n % parts)
}

/// Runs the load and returns the merged measurements. `on_second` sees each second (all threads
/// merged) as it closes.
pub fn run(cfg: &RunConfig, mut on_second: impl FnMut(&Second)) -> Result<RunOutput, RunError> {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let threads = cfg.threads.unwrap_or(cpus.len()).max(1);
    if threads > MAX_THREADS {
        return Err(RunError::Options(format!("at most {MAX_THREADS} threads")));
    }
    if cfg.connections == 0 || cfg.connections > MAX_CONNECTIONS {
        return Err(RunError::Options(format!(
            "connections must be 1..={MAX_CONNECTIONS}"
        )));
    }
    // Every thread needs at least one connection.
    let threads = threads.min(cfg.connections);
    if cfg.pipeline == 0 || cfg.pipeline > MAX_PIPELINE {
        return Err(RunError::Options(format!(
            "pipeline must be 1..={MAX_PIPELINE}"
        )));
    }
    if cfg.pipeline > 1 && (cfg.rate.is_some() || cfg.close) {
        return Err(RunError::Options(
            "--pipeline needs the closed loop with keep-alive (no -R, no --close)".into(),
        ));
    }
    if cfg.duration.is_none() && cfg.count.is_none() {
        return Err(RunError::Options("give -d DURATION or -n COUNT".into()));
    }
    if cfg.timeout.is_zero() {
        return Err(RunError::Options("timeout must be > 0".into()));
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(RunError::Options("rate must be > 0".into()));
        }
    }
    let kinds = cfg
        .kinds
        .iter()
        .map(|k| Kind::build(k, &cfg.target.host, cfg.close))
        .collect::<Result<Vec<_>, _>>()?;
    raise_nofile_limit();
    let gate = Arc::new(Gate {
        n: threads,
        arrived: Mutex::new(0),
        cv: Condvar::new(),
        start: OnceLock::new(),
    });
    let (tx, rx) = mpsc::channel::<Second>();
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    let pinned = cfg.pin && !cpus.is_empty();
    for t in 0..threads {
        let open = cfg.rate.map(|r| {
            let per_thread = r / threads as f64;
            // Threads interleave their schedules: thread t starts t/r seconds in.
            (1e9 / per_thread, t as f64 * 1e9 / r)
        });
        let p = ThreadParams {
            id: t,
            addr: cfg.target.addr,
            kinds: kinds.clone(),
            conns: share(cfg.connections as u64, threads, t) as usize,
            open,
            duration: cfg.duration,
            count: cfg.count.map(|n| share(n, threads, t)),
            warmup: cfg.warmup,
            timeout: cfg.timeout,
            depth: cfg.pipeline,
            seed: cfg.seed,
            pace_quantum: cfg.pace_quantum,
            spin: cfg.spin,
            gate: gate.clone(),
            tx: tx.clone(),
        };
        let cpu = cpus.get(t % cpus.len().max(1)).copied().filter(|_| pinned);
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("loadgen-{t}"))
            // No file I/O: keep the DMA buffer area small (the default 10 MiB exceeds common
            // RLIMIT_MEMLOCK values).
            .io_memory(1 << 20)
            .spawn(move || async move {
                if let Some(c) = cpu {
                    core_affinity::set_for_current(c);
                }
                thread_main(p).await
            })
            .map_err(|e| RunError::Executor(t, e.to_string()));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                // Threads already started see the gate time out and run; wait for them, then fail.
                drop(tx);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    drop(tx);
    // With -d, the sample after the window (responses still in flight at its end) would read as a drop
    // in rate; its requests are in the totals.
    let last = cfg
        .duration
        .map_or(u64::MAX, |d| d.as_secs_f64().ceil() as u64);
    let mut pending: BTreeMap<u64, (usize, Second)> = BTreeMap::new();
    let mut seconds = Vec::new();
    while let Ok(s) = rx.recv() {
        if s.index >= last {
            continue;
        }
        let e = pending
            .entry(s.index)
            .or_insert_with(|| (0, Second::new(s.index)));
        e.0 += 1;
        e.1.merge(&s);
        if e.0 == threads {
            if let Some((_, done)) = pending.remove(&s.index) {
                on_second(&done);
                seconds.push(done);
            }
        }
    }
    let mut result = ThreadResult::new(kinds.len());
    for (t, h) in handles.into_iter().enumerate() {
        let r = h.join().map_err(|e| RunError::Executor(t, e.to_string()))?;
        result.merge(&r);
    }
    // Seconds some thread did not reach (it finished early): still part of the run.
    for (_, (_, s)) in pending {
        seconds.push(s);
    }
    seconds.sort_by_key(|s| s.index);
    let window = match cfg.duration {
        Some(d) => d,
        None => Duration::from_micros(result.last_done_us.max(1)),
    };
    Ok(RunOutput {
        kind_names: kinds.iter().map(|k| k.name.clone()).collect(),
        result,
        seconds,
        window,
        threads,
        connections: cfg.connections,
        rate: cfg.rate,
        cpu: cpu_time().saturating_sub(cpu0),
        wall: wall0.elapsed(),
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for n in [0u64, 1, 7, 100, 101] {
            for parts in 1..5 {
                let s: u64 = (0..parts).map(|i| share(n, parts, i)).sum();
                assert_eq!(s, n);
            }
        }
    }
}

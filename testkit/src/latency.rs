//! A test HTTP/1.1 server on 127.0.0.1 (std threads, one per connection) with a known latency
//! model, and helpers to judge timing measurements against it (the load generator's tests).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tests measure timing: run them one at a time (the machine has few cores).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// Every response leaves this long after its request arrived...
    pub delay: Duration,
    /// ...unless that falls in a stall, (period, length): the server answers nothing during the last
    /// `length` of every `period` (counted from its start), then releases everything at once.
    pub stall: Option<(Duration, Duration)>,
}

impl Model {
    pub fn fixed(delay: Duration) -> Model {
        Model { delay, stall: None }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub start: Instant,
    stop: Arc<AtomicBool>,
    pub total: Arc<AtomicU64>,
    pub paths: Arc<Mutex<HashMap<String, u64>>>,
    /// What the server actually applied per request, µs from reading the request to writing the
    /// response: the ground truth including the OS's wake-up noise.
    pub applied_us: Arc<Mutex<Vec<u64>>>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(model: Model) -> TestServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let paths = Arc::new(Mutex::new(HashMap::new()));
        let applied_us = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let (s2, t2, p2, a2) = (
            stop.clone(),
            total.clone(),
            paths.clone(),
            applied_us.clone(),
        );
        let accept = std::thread::spawn(move || {
            let mut id = 0u64;
            for c in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                id += 1;
                let (s3, t3, p3, a3) = (s2.clone(), t2.clone(), p2.clone(), a2.clone());
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || serve(c, id, model, start, &s3, &t3, &p3, &a3))
                    .unwrap();
            }
        });
        TestServer {
            addr,
            start,
            stop,
            total,
            paths,
            applied_us,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Sleeps until `t`: the latency model makes time pass on purpose (the OS overshoots by tens of µs: far below the tests' 5 % tolerances, and a spin
/// loop would steal CPU from the generator on this small machine).
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn release_time(model: &Model, start: Instant, arrived: Instant) -> Instant {
    let r = arrived + model.delay;
    if let Some((period, len)) = model.stall {
        let since = r.duration_since(start);
        let k = since.as_nanos() / period.as_nanos();
        let phase = since.as_nanos() % period.as_nanos();
        if phase >= (period - len).as_nanos() {
            return start + Duration::from_nanos(((k + 1) * period.as_nanos()) as u64);
        }
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn serve(
    mut c: TcpStream,
    id: u64,
    model: Model,
    start: Instant,
    stop: &AtomicBool,
    total: &AtomicU64,
    paths: &Mutex<HashMap<String, u64>>,
    applied_us: &Mutex<Vec<u64>>,
) {
    let _ = c.set_nodelay(true);
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        // Serve every complete request in the buffer (pipelining), in order.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let arrived = Instant::now();
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let clen: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() < end + 4 + clen {
                break;
            }
            buf.drain(..end + 4 + clen);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            total.fetch_add(1, Ordering::SeqCst);
            *paths.lock().unwrap().entry(path.clone()).or_default() += 1;
            let close = head.to_ascii_lowercase().contains("connection: close");
            let resp: Vec<u8> = if path.starts_with("/hang") {
                // Never answer: the client times out and closes.
                continue;
            } else if path.starts_with("/chunked") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n".to_vec()
            } else if path.starts_with("/e503") {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".to_vec()
            } else if path.starts_with("/e404") {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else if path.starts_with("/garbage") {
                b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n".to_vec()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Served-By: node{}\r\n{}\r\nok",
                    id % 2,
                    if close { "Connection: close\r\n" } else { "" }
                )
                .into_bytes()
            };
            sleep_until(release_time(&model, start, arrived));
            let ok = c.write_all(&resp).is_ok();
            applied_us
                .lock()
                .unwrap()
                .push(arrived.elapsed().as_micros() as u64);
            if !ok || close {
                return;
            }
        }
        match c.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The q-quantile of `v` (sorted in place).
pub fn quantile(v: &mut [u64], q: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied().unwrap_or(0)
}

/// Timing tests on a small shared machine: up to `ATTEMPTS` runs, passing when one passes (a
/// systematic error fails them all); the failures are reported.
pub const ATTEMPTS: usize = 3;

pub fn attempts(name: &str, mut f: impl FnMut() -> Result<(), String>) {
    let mut errs = Vec::new();
    for i in 0..ATTEMPTS {
        match f() {
            Ok(()) => return,
            Err(e) => {
                eprintln!("{name}: attempt {} failed: {e}", i + 1);
                errs.push(e);
            }
        }
    }
    panic!("{name}: all {ATTEMPTS} attempts failed: {errs:#?}");
}

/// Err when |measured / truth - 1| > tol.
pub fn close(what: &str, measured_ms: f64, truth_ms: f64, tol: f64) -> Result<(), String> {
    let rel = (measured_ms / truth_ms - 1.0).abs();
    if rel <= tol {
        Ok(())
    } else {
        Err(format!(
            "{what}: measured {measured_ms:.3} ms, truth {truth_ms:.3} ms ({:.1} % off, tolerance {:.1} %)",
            rel * 100.0,
            tol * 100.0
        ))
    }
}

pub fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

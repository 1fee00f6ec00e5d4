//! `Controlled`: a backend that can die for real (listener closed, connections closed) and come back
//! on the same port, with a switchable health status and a slow path, for health tests.

use crate::backends::{
    read_request, Request, ACCEPT_RETRY, IO_TIMEOUT, MAX_CONNS, MAX_RECORDED, MAX_REQS_PER_CONN,
    WAKE_TIMEOUT,
};
use crate::wait::poll_until;
use crate::wire::Wire;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The path `Controlled` answers with its switchable health status.
pub const HEALTH_PATH: &str = "/health";
/// Prefix of paths `Controlled` answers only after a delay: `/slow/<ms>`. The delay is cut short
/// when the backend is killed (the connection is closed under the handler).
pub const SLOW_PREFIX: &str = "/slow/";
/// Longest delay `/slow/<ms>` honours (longer than any response timeout in the tests).
const MAX_SLOW: Duration = Duration::from_secs(20);
/// How long `restart` retries binding the old port (a socket of another test may hold it briefly).
const REBIND_DEADLINE: Duration = Duration::from_secs(5);
/// Poll period of slow handlers checking for a kill, and of `restart` retrying its bind.
const CTL_POLL: Duration = Duration::from_millis(2);

#[derive(Default)]
pub struct CtlState {
    pub name: String,
    /// Status of `GET /health`: 200, 503, 404...
    health_status: std::sync::atomic::AtomicU16,
    /// Status of every other request (200: an echo; anything else: that status, empty body).
    status: std::sync::atomic::AtomicU16,
    pub conns: AtomicUsize,
    /// Requests to HEALTH_PATH.
    pub health_reqs: AtomicUsize,
    /// Every other request.
    pub reqs: AtomicUsize,
    pub log: Mutex<Vec<Request>>,
    /// For every non-health request (up to MAX_RECORDED): when it arrived and how many health
    /// requests had arrived before it (so a test can tell whether traffic came before or after checks).
    pub arrivals: Mutex<Vec<(Instant, usize)>>,
    /// Set while the backend is dead (and while it is being killed); the accept loop and slow handlers
    /// watch it.
    dead: AtomicBool,
    /// Open connections by id, so a kill can close them under their handlers.
    open: Mutex<std::collections::HashMap<usize, TcpStream>>,
}

/// A backend that answers like `Backend::echo` (X-Served-By: name) on every path but HEALTH_PATH,
/// whose health status and normal status can be switched at run time, and which can be killed for
/// real (listener closed, every open connection closed: connects are refused) and restarted on the
/// same port.
pub struct Controlled {
    pub addr: SocketAddr,
    pub state: Arc<CtlState>,
    accept: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Controlled {
    pub fn start(name: &str) -> Controlled {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind controlled backend");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(CtlState {
            name: name.to_string(),
            ..Default::default()
        });
        state.health_status.store(200, Ordering::SeqCst);
        state.status.store(200, Ordering::SeqCst);
        let c = Controlled {
            addr,
            state,
            accept: Mutex::new(None),
        };
        c.run(listener);
        c
    }

    fn run(&self, listener: TcpListener) {
        self.state.dead.store(false, Ordering::SeqCst);
        let st = self.state.clone();
        *self.accept.lock().unwrap() = Some(thread::spawn(move || ctl_accept_loop(listener, st)));
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }
    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }
    /// Status for every non-health request (200 = echo).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
    pub fn health_reqs(&self) -> usize {
        self.state.health_reqs.load(Ordering::SeqCst)
    }
    pub fn reqs(&self) -> usize {
        self.state.reqs.load(Ordering::SeqCst)
    }
    pub fn conns(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }
    /// Non-health requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }
    /// (arrival time, health requests seen before it) of every non-health request so far.
    pub fn arrivals(&self) -> Vec<(Instant, usize)> {
        self.state.arrivals.lock().unwrap().clone()
    }
    pub fn alive(&self) -> bool {
        self.accept.lock().unwrap().is_some()
    }

    /// Close the listener (new connects are refused) and every open connection (FIN to the peer).
    /// Returns when all of that has happened. No-op if already dead.
    pub fn kill(&self) {
        let Some(h) = self.accept.lock().unwrap().take() else {
            return;
        };
        self.state.dead.store(true, Ordering::SeqCst);
        // Wake the accept loop, blocked in accept(2): it sees `dead` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, WAKE_TIMEOUT);
        // The accept loop drops the listener when it returns; a connection it accepted before
        // seeing `dead` is registered in `open` before that, so the sweep below closes it.
        let _ = h.join();
        let open: Vec<TcpStream> = self
            .state
            .open
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in open {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listen again on the same port (SO_REUSEADDR: std sets it on Unix). No-op if alive.
    pub fn restart(&self) {
        if self.alive() {
            return;
        }
        let listener = poll_until(
            REBIND_DEADLINE,
            CTL_POLL,
            format_args!("restart {}: rebind {}", self.name(), self.addr),
            || TcpListener::bind(self.addr),
        );
        self.run(listener);
    }
}

impl Drop for Controlled {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Blocking accepts until `dead` (`kill` sets it and then connects to wake the loop).
fn ctl_accept_loop(listener: TcpListener, st: Arc<CtlState>) {
    let mut accepted = 0usize;
    while accepted < MAX_CONNS {
        match listener.accept() {
            Ok(_) if st.dead.load(Ordering::SeqCst) => return,
            Ok((stream, _)) => {
                accepted += 1;
                let id = st.conns.fetch_add(1, Ordering::SeqCst) + 1;
                match stream.try_clone() {
                    Ok(c) => {
                        st.open.lock().unwrap().insert(id, c);
                    }
                    Err(_) => continue,
                }
                let st = st.clone();
                thread::spawn(move || ctl_serve(stream, id, st));
            }
            Err(_) if st.dead.load(Ordering::SeqCst) => return,
            // EMFILE and the like only clear as time passes (another thread closes a socket).
            Err(_) => thread::sleep(ACCEPT_RETRY),
        }
    }
}

fn ctl_serve(stream: TcpStream, id: usize, st: Arc<CtlState>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut w = Wire::new(stream, IO_TIMEOUT);
    for _ in 0..MAX_REQS_PER_CONN {
        if st.dead.load(Ordering::SeqCst) {
            break;
        }
        let req = match read_request(&mut w, id) {
            Ok(Some(r)) => r,
            _ => break,
        };
        if !ctl_answer(&req, &mut w, &st) || req.head.list_contains("connection", "close") {
            break;
        }
    }
    // The kill sweep may hold a clone of this socket: shut it down explicitly so the peer sees the
    // close now, not when the last clone goes.
    let _ = w.stream.shutdown(std::net::Shutdown::Both);
    st.open.lock().unwrap().remove(&id);
}

/// Answer one request; false if the connection is to be closed.
fn ctl_answer(req: &Request, w: &mut Wire, st: &CtlState) -> bool {
    let target = req.target();
    let path = target.split('?').next().unwrap_or("");
    if path == HEALTH_PATH {
        st.health_reqs.fetch_add(1, Ordering::SeqCst);
        let code = st.health_status.load(Ordering::SeqCst);
        let body = format!("{} health {code}", st.name);
        let resp = format!(
            "HTTP/1.1 {code} Health\r\nX-Served-By: {}\r\nContent-Length: {}\r\n\r\n{body}",
            st.name,
            body.len()
        );
        return w.stream.write_all(resp.as_bytes()).is_ok();
    }
    st.reqs.fetch_add(1, Ordering::SeqCst);
    {
        let mut log = st.log.lock().unwrap();
        if log.len() < MAX_RECORDED {
            log.push(req.clone());
        }
        let mut arr = st.arrivals.lock().unwrap();
        if arr.len() < MAX_RECORDED {
            arr.push((Instant::now(), st.health_reqs.load(Ordering::SeqCst)));
        }
    }
    if let Some(ms) = path.strip_prefix(SLOW_PREFIX) {
        let delay = Duration::from_millis(ms.parse().unwrap_or(0)).min(MAX_SLOW);
        // A slow answer on purpose, in short steps so that a kill cuts it short.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if st.dead.load(Ordering::SeqCst) {
                return false;
            }
            thread::sleep(CTL_POLL);
        }
    }
    let code = st.status.load(Ordering::SeqCst);
    if code != 200 {
        let resp = format!(
            "HTTP/1.1 {code} Status\r\nX-Served-By: {}\r\nContent-Length: 0\r\n\r\n",
            st.name
        );
        return w.stream.write_all(resp.as_bytes()).is_ok();
    }
    let body = if req.body_len > 0 {
        req.body.clone()
    } else {
        format!("{} {} {}", st.name, req.method(), target).into_bytes()
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nX-Served-By: {}\r\nContent-Length: {}\r\n\r\n",
        st.name,
        body.len()
    )
    .into_bytes();
    if req.method() != "HEAD" {
        out.extend_from_slice(&body);
    }
    w.stream.write_all(&out).is_ok()
}

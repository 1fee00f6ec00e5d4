//! Mock backends: well-behaved (echo, sink, source) and misbehaving (garbage, stall, reset mid-body,
//! idle close, bytes after the end...). Thread per connection; every socket op has a timeout and every
//! loop a bound. Each backend counts connections and requests and records what it received.

use crate::wire::{
    find, single_content_length, write_chunked_pattern, write_pattern, Head, Pattern, Wire,
    MAX_HEAD,
};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Timeout of every blocking socket op in a mock (generous: CI is noisy).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may sit idle between requests before the mock closes it (unless the
/// backend is configured to close earlier).
const DEFAULT_IDLE: Duration = Duration::from_secs(30);
/// Request body bytes kept per recorded request; the rest is counted and checked against the pattern.
pub const RECORD_BODY_LIMIT: usize = 1 << 20;
/// Most requests kept in the log (later ones are still counted).
pub(crate) const MAX_RECORDED: usize = 20_000;
/// Most requests served on one connection, most connections accepted: bounds for every loop.
pub(crate) const MAX_REQS_PER_CONN: usize = 100_000;
pub(crate) const MAX_CONNS: usize = 100_000;
/// Largest request body a mock reads (the 1 GiB tests stay well below).
const MAX_BODY: u64 = 4 << 30;
/// Bound on the connect that wakes a mock's accept loop when it is dropped.
pub(crate) const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before accepting again after an accept error (EMFILE...), which only time clears.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How long a stalled handler holds its connection (longer than any backend timeout in the tests).
const STALL_FOR: Duration = Duration::from_secs(20);
/// How often a stalled handler looks whether its mock was dropped.
const STALL_STEP: Duration = Duration::from_millis(20);

/// What `Backend::garbage` answers: no status line, a NUL, no CRLFCRLF.
pub const GARBAGE: &[u8] = b"\x00garbage, not HTTP\n";

/// Sent through an upgraded tunnel, makes `upgrade_echo` close its side after echoing it.
pub const TUNNEL_CLOSE: &[u8] = b"\x00CLOSE\x00";

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: Head,
    /// The first RECORD_BODY_LIMIT decoded body bytes.
    pub body: Vec<u8>,
    /// Total decoded body length.
    pub body_len: u64,
    /// Whether the whole body equals `Pattern` from offset 0.
    pub body_is_pattern: bool,
    /// Whether the body came chunked, and its raw trailer section (empty if none).
    pub chunked: bool,
    pub trailers: Vec<u8>,
    /// Which accepted connection (1-based, in accept order) carried it.
    pub conn_id: usize,
}

impl Request {
    pub fn method(&self) -> &str {
        &self.head.line.0
    }
    pub fn target(&self) -> &str {
        &self.head.line.1
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.head.has(name)
    }
    fn wants_upgrade(&self) -> bool {
        self.head.has("upgrade") && self.head.list_contains("connection", "upgrade")
    }
}

/// What the connection loop does after a handler ran.
pub enum Next {
    KeepAlive,
    Close,
    /// Close with SO_LINGER 0: the peer sees a TCP reset.
    Reset,
}

pub type Handler = Arc<dyn Fn(&Request, &mut Wire, &BackendState) -> Next + Send + Sync>;

/// Counters and logs, shared between the test and the mock's threads.
#[derive(Default)]
pub struct BackendState {
    pub name: String,
    pub conns: AtomicUsize,
    pub reqs: AtomicUsize,
    pub log: Mutex<Vec<Request>>,
    /// Raw bytes that arrived on a connection the mock was closing for idleness (a request that raced
    /// the close). The mock does not answer them; tests treat them as "may have been processed".
    pub late_bytes: Mutex<Vec<Vec<u8>>>,
    /// Errors the mock hit while reading requests (malformed framing from the proxy, etc.).
    pub errors: Mutex<Vec<String>>,
    /// Close an idle keep-alive connection after this long (None: DEFAULT_IDLE).
    pub idle_close: Option<Duration>,
    stop: AtomicBool,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, blocked in accept(2): it sees `stop` and closes the listener.
        let _ = TcpStream::connect_timeout(&self.addr, WAKE_TIMEOUT);
    }
}

impl Backend {
    /// Start a mock whose every request is answered by `handler`.
    pub fn start(name: &str, idle_close: Option<Duration>, handler: Handler) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock backend");
        let addr = listener.local_addr().expect("mock addr");
        let state = Arc::new(BackendState {
            name: name.to_string(),
            idle_close,
            ..Default::default()
        });
        let st = state.clone();
        thread::spawn(move || accept_loop(listener, st, handler));
        Backend { addr, state }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }
    pub fn conns(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }
    pub fn reqs(&self) -> usize {
        self.state.reqs.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }
    /// The last request received, panicking if there was none.
    pub fn last(&self) -> Request {
        self.requests()
            .pop()
            .unwrap_or_else(|| panic!("backend {} received no request", self.name()))
    }
    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }
    pub fn late_bytes(&self) -> Vec<Vec<u8>> {
        self.state.late_bytes.lock().unwrap().clone()
    }

    // ---- ready-made kinds ----

    /// 200 with `X-Served-By: <name>`; body = the request body, or `"<name> <method> <target>"` when
    /// the request had none. Content-Length framing, or chunked if `chunked`.
    pub fn echo_with(name: &str, chunked: bool) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(move |req, w, st| echo(req, w, st, chunked, Duration::ZERO)),
        )
    }
    pub fn echo(name: &str) -> Backend {
        Self::echo_with(name, false)
    }
    /// Echo, answering only after `delay`.
    pub fn delayed(name: &str, delay: Duration) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(move |req, w, st| echo(req, w, st, false, delay)),
        )
    }
    /// Echo, but close a keep-alive connection after `idle` without a request.
    pub fn idle_close(name: &str, idle: Duration) -> Backend {
        Backend::start(
            name,
            Some(idle),
            Arc::new(|req, w, st| echo(req, w, st, false, Duration::ZERO)),
        )
    }
    /// Send exactly `bytes` for every request, then keep the connection or close it.
    pub fn fixed(name: &str, bytes: &[u8], close: bool) -> Backend {
        let bytes = bytes.to_vec();
        Backend::start(
            name,
            None,
            Arc::new(move |_, w, _| {
                if w.stream.write_all(&bytes).is_err() {
                    return Next::Close;
                }
                if close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }),
        )
    }
    /// Read the request, never answer (the connection is held for STALL_FOR).
    pub fn stall(name: &str) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(|_, _, st| {
                // Time passes on purpose (the stall), in short steps so a dropped mock lets go.
                let until = Instant::now() + STALL_FOR;
                while Instant::now() < until && !st.stop.load(Ordering::SeqCst) {
                    thread::sleep(STALL_STEP);
                }
                Next::Close
            }),
        )
    }
    /// Head with Content-Length: 100000, then 1000 body bytes, then a clean close (FIN): the body
    /// ends early without an error on the socket.
    pub fn close_mid_body(name: &str) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(|_, w, _| {
                let _ = w.stream.write_all(&partial_response());
                Next::Close
            }),
        )
    }
    /// Answers every request with bytes that are not HTTP, then closes.
    pub fn garbage(name: &str) -> Backend {
        Self::fixed(name, GARBAGE, true)
    }
    /// Head with Content-Length: 100000, then 1000 body bytes, then a TCP reset.
    pub fn reset_mid_body(name: &str) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(|_, w, _| {
                let _ = w.stream.write_all(&partial_response());
                let _ = w.stream.flush();
                // Let the bytes leave before the reset, so the proxy really is mid-body: nothing
                // observable says they have, so time passes on purpose.
                thread::sleep(Duration::from_millis(100));
                Next::Reset
            }),
        )
    }
    /// Requests with `Upgrade` + `Connection: upgrade` get 101 and then every byte is echoed back
    /// until EOF (or until TUNNEL_CLOSE arrives in one read: echoed, then the mock closes); other
    /// requests get a normal echo.
    pub fn upgrade_echo(name: &str) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(|req, w, st| {
                if !req.wants_upgrade() {
                    return echo(req, w, st, false, Duration::ZERO);
                }
                let proto = req.header("upgrade").unwrap_or("").to_string();
                let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\n\r\n");
                if w.stream.write_all(resp.as_bytes()).is_err() {
                    return Next::Close;
                }
                let early = w.take_buffered();
                if w.stream.write_all(&early).is_err() {
                    return Next::Close;
                }
                // Echo loop, bounded by the idle timeout of each read and by the byte count.
                let mut moved = 0u64;
                while moved < MAX_BODY {
                    match w.fill() {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let b = w.take_buffered();
                            moved += b.len() as u64;
                            if w.stream.write_all(&b).is_err() || find(&b, TUNNEL_CLOSE).is_some() {
                                break;
                            }
                        }
                    }
                }
                Next::Close
            }),
        )
    }
    /// Reads any body (the connection loop already did) and answers 200 with the body
    /// `"len=<n> pattern=<bool> chunked=<bool>"`.
    pub fn sink(name: &str) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(|req, w, _| {
                let body = format!(
                    "len={} pattern={} chunked={}",
                    req.body_len, req.body_is_pattern, req.chunked
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                match w.stream.write_all(resp.as_bytes()) {
                    Ok(()) => Next::KeepAlive,
                    Err(_) => Next::Close,
                }
            }),
        )
    }
    /// Answers 200 with `len` pattern bytes, Content-Length framed or chunked.
    pub fn source(name: &str, len: u64, chunked: bool) -> Backend {
        Backend::start(
            name,
            None,
            Arc::new(move |_, w, _| {
                let p = Pattern::shared();
                let r = if chunked {
                    w.stream
                        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .and_then(|_| write_chunked_pattern(&mut w.stream, p, len, 256 * 1024, b""))
                } else {
                    w.stream
                        .write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                        )
                        .and_then(|_| write_pattern(&mut w.stream, p, len))
                };
                match r {
                    Ok(()) => Next::KeepAlive,
                    Err(_) => Next::Close,
                }
            }),
        )
    }
}

/// The echo answer (see `Backend::echo_with`).
pub fn echo(
    req: &Request,
    w: &mut Wire,
    st: &BackendState,
    chunked: bool,
    delay: Duration,
) -> Next {
    if !delay.is_zero() {
        // A slow backend on purpose.
        thread::sleep(delay);
    }
    let body = if req.body_len > 0 {
        req.body.clone()
    } else {
        format!("{} {} {}", st.name, req.method(), req.target()).into_bytes()
    };
    let mut out = format!("HTTP/1.1 200 OK\r\nX-Served-By: {}\r\n", st.name).into_bytes();
    if req.method() == "HEAD" {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    } else if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        // Two chunks (when possible) so the client-side framing is really exercised.
        let mid = body.len() / 2;
        for part in [&body[..mid], &body[mid..]] {
            if !part.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
    }
    match w.stream.write_all(&out) {
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Close,
    }
}

/// Blocking accepts until `stop` (the owner's Drop sets it and then connects to wake the loop).
fn accept_loop(listener: TcpListener, st: Arc<BackendState>, handler: Handler) {
    let mut accepted = 0usize;
    while accepted < MAX_CONNS {
        match listener.accept() {
            Ok(_) if st.stop.load(Ordering::SeqCst) => return,
            Ok((stream, _)) => {
                accepted += 1;
                let id = st.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (st, h) = (st.clone(), handler.clone());
                thread::spawn(move || serve_conn(stream, id, st, h));
            }
            Err(_) if st.stop.load(Ordering::SeqCst) => return,
            // EMFILE and the like only clear as time passes (another thread closes a socket).
            Err(_) => thread::sleep(ACCEPT_RETRY),
        }
    }
}

fn serve_conn(stream: TcpStream, id: usize, st: Arc<BackendState>, handler: Handler) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let idle = st.idle_close.unwrap_or(DEFAULT_IDLE);
    let mut w = Wire::new(stream, IO_TIMEOUT);
    for _ in 0..MAX_REQS_PER_CONN {
        if st.stop.load(Ordering::SeqCst) {
            return;
        }
        // Between requests the idle timeout applies to the first byte of the next head.
        if w.buffered().is_empty() {
            w.op_timeout = idle;
            match w.fill() {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    if st.idle_close.is_some() {
                        close_idle(&mut w, &st);
                    }
                    return;
                }
                Err(_) => return,
            }
            w.op_timeout = IO_TIMEOUT;
        }
        let req = match read_request(&mut w, id) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                st.errors.lock().unwrap().push(format!("conn {id}: {e}"));
                return;
            }
        };
        st.reqs.fetch_add(1, Ordering::SeqCst);
        {
            let mut log = st.log.lock().unwrap();
            if log.len() < MAX_RECORDED {
                log.push(req.clone());
            }
        }
        match handler(&req, &mut w, &st) {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Reset => {
                reset(&w.stream);
                return;
            }
        }
    }
}

/// Closing for idleness: anything that arrived in the race window is kept as "late bytes" (a real
/// server might have processed it), then the connection is closed.
fn close_idle(w: &mut Wire, st: &BackendState) {
    let _ = w.stream.set_nonblocking(true);
    let mut late = w.take_buffered();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..64 {
        match io::Read::read(&mut w.stream, &mut buf) {
            Ok(n) if n > 0 => late.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    if !late.is_empty() {
        st.late_bytes.lock().unwrap().push(late);
    }
}

/// Set SO_LINGER {on, 0} so that dropping the socket sends RST instead of FIN.
pub fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `stream`, pointer and length describe a live `linger`.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Read one request: head, then body framed by Transfer-Encoding (chunked last) or Content-Length.
/// Ok(None) on a clean EOF before the head.
pub fn read_request(w: &mut Wire, conn_id: usize) -> Result<Option<Request>, String> {
    let raw = match w.read_head(MAX_HEAD) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("reading head: {e}")),
    };
    let head = Head::parse(&raw)?;
    let pattern = Pattern::shared();
    let mut body = Vec::new();
    let mut body_len = 0u64;
    let mut is_pattern = true;
    let mut sink = |d: &[u8]| {
        if body.len() < RECORD_BODY_LIMIT {
            let room = RECORD_BODY_LIMIT - body.len();
            body.extend_from_slice(&d[..d.len().min(room)]);
        }
        if is_pattern && !pattern.matches(body_len, d) {
            is_pattern = false;
        }
        body_len += d.len() as u64;
    };
    let te = head.headers_named("transfer-encoding").join(",");
    let mut chunked = false;
    let mut trailers = Vec::new();
    if !te.is_empty() {
        let last = te
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if last != "chunked" {
            return Err(format!("request TE without chunked last: {te:?}"));
        }
        if head.has("content-length") {
            return Err("request with both TE and CL reached the backend".into());
        }
        chunked = true;
        trailers = w
            .read_chunked_to(&mut sink)
            .map_err(|e| format!("chunked body: {e}"))?;
    } else if let Some(cl) = single_content_length(&head)? {
        if cl > MAX_BODY {
            return Err(format!("body too large: {cl}"));
        }
        w.read_exact_to(cl, &mut sink)
            .map_err(|e| format!("CL body: {e}"))?;
    }
    Ok(Some(Request {
        head,
        body,
        body_len,
        body_is_pattern: is_pattern && body_len > 0,
        chunked,
        trailers,
        conn_id,
    }))
}

/// The mid-body mocks' answer: a head promising 100 000 body bytes, then only the first 1 000.
fn partial_response() -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    out.extend_from_slice(&Pattern::vec(1000));
    out
}

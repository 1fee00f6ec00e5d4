//! The record of one HTTP exchange, filled by the proxy's phases as they run and handed to the log
//! phase once the exchange is over: what an access log line and the metrics need (who, what, which
//! server, status, bytes, the time each phase took, retries, and how it ended). One lives in each
//! client connection and is reset per exchange: filling it allocates nothing. The request line is not
//! copied here but into the exchange's bounded buffer (`crate::buf::Exchange::request_line`), so an
//! idle connection does not carry it.
//!
//! Local answers and aborted exchanges get a record too; an idle keep-alive connection that closes
//! without a request does not.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::ProxyError;
use crate::http::request::Method;

/// How an exchange ended, derived from its error (HAProxy's termination states, first letter: client
/// side `C`/`c`, server side `S`/`s`, proxy `P`/`R`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The response was relayed whole.
    Done,
    /// The request broke a rule and got a local 4xx/5xx (`PR--`).
    BadRequest,
    /// The client closed or reset its connection mid-exchange (`CD--`).
    ClientAbort,
    /// The client was too slow sending its head or body, or reading the response (`cR--`, `cD--`).
    ClientTimeout,
    /// No server was up, or none accepted the connection: 503 (`SC--`).
    NoServer,
    /// The server's answer was malformed or its connection failed before a response: 502 (`SH--`).
    ServerError,
    /// The server did not answer in time: 504 (`sH--`).
    ServerTimeout,
    /// The server failed after the response was under way: the client connection was cut (`SD--`).
    ServerAbort,
    /// corelb itself failed (`PR--`, 500).
    Internal,
}

impl Termination {
    pub const COUNT: usize = 9;

    pub fn of(error: Option<ProxyError>) -> Termination {
        use ProxyError::*;
        let Some(e) = error else {
            return Termination::Done;
        };
        match e {
            BadRequest(_) | UriTooLong | HeadersTooLarge | PayloadTooLarge
            | MethodNotAllowed(_) | NotImplemented | ExpectationFailed | VersionNotSupported => {
                Termination::BadRequest
            }
            RequestTimeout | ClientIo(std::io::ErrorKind::TimedOut) => Termination::ClientTimeout,
            ClientIo(_) => Termination::ClientAbort,
            ServiceUnavailable(_) => Termination::NoServer,
            BadGateway(_) => Termination::ServerError,
            GatewayTimeout => Termination::ServerTimeout,
            Aborted(_) => Termination::ServerAbort,
            Internal(_) => Termination::Internal,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Termination::Done => "done",
            Termination::BadRequest => "bad_request",
            Termination::ClientAbort => "client_abort",
            Termination::ClientTimeout => "client_timeout",
            Termination::NoServer => "no_server",
            Termination::ServerError => "server_error",
            Termination::ServerTimeout => "server_timeout",
            Termination::ServerAbort => "server_abort",
            Termination::Internal => "internal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Sentinel for "no backend / no server" in the compact index fields.
pub const NONE_INDEX: u16 = u16::MAX;

/// One exchange. Times are microseconds from `start` (the moment the request head was complete),
/// saturating at `u32::MAX` (71 minutes); `NO_TIME` where the phase did not happen.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRecord {
    pub frontend: u16,
    pub backend: u16,
    pub server: u16,
    pub method: Method,
    pub http10: bool,
    /// The status the client got (the server's or a local answer's); 0 when none could be sent.
    pub status: u16,
    /// The answer was corelb's own (a canned 4xx/5xx), not the server's.
    pub local: bool,
    /// The backend connection came from the pool.
    pub reused: bool,
    /// Connects that failed before one succeeded (each a redispatch to another server).
    pub connect_failures: u8,
    /// Requests sent again on a fresh connection after a reused one failed (0 or 1).
    pub retries: u8,
    /// The client connection stays open for another request.
    pub keep_alive: bool,
    /// Request head and body bytes received from the client (body bytes as decoded).
    pub bytes_in: u64,
    /// Response head and body bytes sent toward the client (body bytes as decoded).
    pub bytes_out: u64,
    /// When the head was complete (the exchange's clock origin).
    pub start: Instant,
    /// From the first byte of the head to its end, when it came in pieces (0: one read).
    pub head_us: u32,
    /// To a new backend connection; 0 when a pooled one was used (no connect, as HAProxy's Tc).
    pub connect_us: u32,
    /// To the complete response head (time to first byte).
    pub response_us: u32,
    /// To the end of the exchange.
    pub total_us: u32,
    pub error: Option<ProxyError>,
}

pub const NO_TIME: u32 = u32::MAX;

impl ExchangeRecord {
    pub fn new(frontend: usize, now: Instant) -> ExchangeRecord {
        ExchangeRecord {
            frontend: frontend.min(NONE_INDEX as usize - 1) as u16,
            backend: NONE_INDEX,
            server: NONE_INDEX,
            method: Method::Other,
            http10: false,
            status: 0,
            local: false,
            reused: false,
            connect_failures: 0,
            retries: 0,
            keep_alive: false,
            bytes_in: 0,
            bytes_out: 0,
            start: now,
            head_us: 0,
            connect_us: NO_TIME,
            response_us: NO_TIME,
            total_us: NO_TIME,
            error: None,
        }
    }

    /// Microseconds from `start` to `t`, saturating.
    #[inline]
    pub fn since_start(&self, t: Instant) -> u32 {
        micros(t.saturating_duration_since(self.start))
    }

    pub fn termination(&self) -> Termination {
        Termination::of(self.error)
    }

    pub fn backend(&self) -> Option<usize> {
        (self.backend != NONE_INDEX).then_some(self.backend as usize)
    }

    pub fn server(&self) -> Option<usize> {
        (self.server != NONE_INDEX).then_some(self.server as usize)
    }
}

#[inline]
pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128 - 1) as u32
}

/// Per-worker totals of the exchanges this core finished: the log phase's sink until the metrics
/// exporter exists. Plain `Cell`s: one worker owns them.
#[derive(Default)]
pub struct Totals {
    pub exchanges: Cell<u64>,
    /// By status class: [none, 1xx, 2xx, 3xx, 4xx, 5xx].
    pub by_class: [Cell<u64>; 6],
    pub local_answers: Cell<u64>,
    pub retries: Cell<u64>,
    pub connect_failures: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub terminations: [Cell<u64>; Termination::COUNT],
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl Totals {
    pub fn add(&self, r: &ExchangeRecord) {
        bump(&self.exchanges, 1);
        let class = match r.status {
            100..=599 => (r.status / 100) as usize,
            _ => 0,
        };
        bump(&self.by_class[class], 1);
        bump(&self.local_answers, r.local as u64);
        bump(&self.retries, r.retries as u64);
        bump(&self.connect_failures, r.connect_failures as u64);
        bump(&self.bytes_in, r.bytes_in);
        bump(&self.bytes_out, r.bytes_out);
        bump(&self.terminations[r.termination().index()], 1);
    }

    /// One line for the shutdown log.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let c = |i: usize| self.by_class[i].get();
        let mut s = format!(
            "exchanges={} 1xx={} 2xx={} 3xx={} 4xx={} 5xx={} unanswered={} local={} retries={} \
             connect_failures={} bytes_in={} bytes_out={}",
            self.exchanges.get(),
            c(1),
            c(2),
            c(3),
            c(4),
            c(5),
            c(0),
            self.local_answers.get(),
            self.retries.get(),
            self.connect_failures.get(),
            self.bytes_in.get(),
            self.bytes_out.get()
        );
        for t in ALL_TERMINATIONS {
            let n = self.terminations[t.index()].get();
            if n > 0 && t != Termination::Done {
                let _ = write!(s, " {}={n}", t.name());
            }
        }
        s
    }
}

const ALL_TERMINATIONS: [Termination; Termination::COUNT] = [
    Termination::Done,
    Termination::BadRequest,
    Termination::ClientAbort,
    Termination::ClientTimeout,
    Termination::NoServer,
    Termination::ServerError,
    Termination::ServerTimeout,
    Termination::ServerAbort,
    Termination::Internal,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn every_error_has_one_termination() {
        use ProxyError::*;
        let cases = [
            (None, Termination::Done),
            (Some(BadRequest("x")), Termination::BadRequest),
            (Some(HeadersTooLarge), Termination::BadRequest),
            (Some(RequestTimeout), Termination::ClientTimeout),
            (
                Some(ClientIo(ErrorKind::TimedOut)),
                Termination::ClientTimeout,
            ),
            (
                Some(ClientIo(ErrorKind::ConnectionReset)),
                Termination::ClientAbort,
            ),
            (Some(ServiceUnavailable("x")), Termination::NoServer),
            (Some(BadGateway("x")), Termination::ServerError),
            (Some(GatewayTimeout), Termination::ServerTimeout),
            (Some(Aborted("x")), Termination::ServerAbort),
            (Some(Internal("x")), Termination::Internal),
        ];
        for (e, t) in cases {
            assert_eq!(Termination::of(e), t, "{e:?}");
        }
        for (i, t) in ALL_TERMINATIONS.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }

    #[test]
    fn totals_add_up() {
        let t = Totals::default();
        let now = Instant::now();
        let mut r = ExchangeRecord::new(0, now);
        r.status = 200;
        r.bytes_in = 100;
        r.bytes_out = 1000;
        t.add(&r);
        r.status = 502;
        r.local = true;
        r.error = Some(ProxyError::BadGateway("x"));
        r.connect_failures = 2;
        t.add(&r);
        let mut aborted = ExchangeRecord::new(0, now);
        aborted.error = Some(ProxyError::ClientIo(ErrorKind::ConnectionReset));
        t.add(&aborted);
        assert_eq!(t.exchanges.get(), 3);
        assert_eq!(t.by_class[2].get(), 1);
        assert_eq!(t.by_class[5].get(), 1);
        assert_eq!(t.by_class[0].get(), 1);
        assert_eq!(t.local_answers.get(), 1);
        assert_eq!(t.connect_failures.get(), 2);
        assert_eq!(t.bytes_out.get(), 2000);
        let s = t.summary();
        assert!(s.contains("exchanges=3 "), "{s}");
        assert!(s.contains("server_error=1"), "{s}");
        assert!(s.contains("client_abort=1"), "{s}");
    }

    #[test]
    fn times_saturate() {
        let now = Instant::now();
        let r = ExchangeRecord::new(0, now);
        assert_eq!(r.since_start(now), 0);
        assert_eq!(r.since_start(now + Duration::from_millis(3)), 3000);
        assert_eq!(micros(Duration::from_secs(1 << 40)), u32::MAX - 1);
        assert!(r.backend().is_none() && r.server().is_none());
    }
}

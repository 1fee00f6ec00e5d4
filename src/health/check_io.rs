//! The socket side shared by every active check ([`super::probe`] for TCP and HTTP,
//! [`super::mysql`]): the check's [`Deadline`], its failure type [`CheckError`], the reusable scratch
//! buffer, and connect/read/write bounded by the time left. It depends on no check, so the checks
//! depend on it and not on each other.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// Largest check response head: a health endpoint answers with a few short fields; anything larger is
/// broken (the data plane allows `MAX_RESPONSE_HEAD`, but a check need not).
pub const MAX_CHECK_HEAD: usize = 16 * 1024;
/// How much of a check response body is searched for `expect_body`: health pages are small, and the
/// bound keeps a server streaming an endless body from holding the check until its timeout.
pub const MAX_CHECK_BODY: usize = 64 * 1024;
/// Size of the reusable `scratch` buffer: one head plus the searched part of the body (the MySQL
/// check's largest packet fits too).
pub const SCRATCH_LEN: usize = MAX_CHECK_HEAD + MAX_CHECK_BODY;
/// glommio rejects a zero timeout; an operation started with less time left gets this much.
const MIN_OP_TIMEOUT: Duration = Duration::from_millis(1);

/// The result of one check, as fed to [`super::machine::Machine::on_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Alive but asking for no new sessions (404 with `disable_on_404`).
    Drain,
}

/// The end of a check. `at` is `None` when `start + timeout` overflows (an absurd timeout): no bound.
pub(super) struct Deadline {
    at: Option<Instant>,
    pub(super) timeout: Duration,
}

impl Deadline {
    /// The check started at `start` ends `timeout` later.
    pub(super) fn new(start: Instant, timeout: Duration) -> Self {
        Deadline {
            at: start.checked_add(timeout),
            timeout,
        }
    }

    /// Time left for the next operation, or a timeout failure if none is left.
    pub(super) fn left(&self) -> Result<Duration, CheckError> {
        let Some(at) = self.at else {
            return Ok(self.timeout);
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CheckError::Timeout(self.timeout));
        }
        Ok(left.max(MIN_OP_TIMEOUT))
    }
}

/// Why a check failed; its Display is the outcome's detail.
pub(super) enum CheckError {
    Timeout(Duration),
    Io(&'static str, io::Error),
    Other(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Timeout(t) => write!(f, "timeout after {t:?}"),
            CheckError::Io(step, e) => write!(f, "{step}: {e}"),
            CheckError::Other(s) => f.write_str(s),
        }
    }
}

impl CheckError {
    /// Socket timeouts (ours, glommio's, the kernel's) all read as the check's timeout.
    pub(super) fn io(step: &'static str, e: io::Error, deadline: &Deadline) -> CheckError {
        if e.kind() == io::ErrorKind::TimedOut {
            CheckError::Timeout(deadline.timeout)
        } else {
            CheckError::Io(step, e)
        }
    }
}

/// A check's verdict and its one-line detail, or why it failed.
pub(super) type Checked = Result<(Verdict, String), CheckError>;

/// The first [`SCRATCH_LEN`] bytes of the reusable buffer, growing it on first use (never beyond).
pub(super) fn scratch_window(scratch: &mut Vec<u8>) -> &mut [u8] {
    if scratch.len() < SCRATCH_LEN {
        scratch.resize(SCRATCH_LEN, 0);
    }
    &mut scratch[..SCRATCH_LEN]
}

pub(super) async fn connect(
    addr: SocketAddr,
    deadline: &Deadline,
) -> Result<TcpStream, CheckError> {
    let left = deadline.left()?;
    TcpStream::connect_timeout(addr, left)
        .await
        .map_err(|e| CheckError::io("connect", io::Error::from(e), deadline))
}

/// One read into `buf` with the time left; Ok(0) is EOF.
pub(super) async fn read_some(
    s: &mut TcpStream,
    buf: &mut [u8],
    deadline: &Deadline,
) -> Result<usize, CheckError> {
    let left = deadline.left()?;
    s.set_read_timeout(Some(left))
        .map_err(|e| CheckError::io("read", io::Error::from(e), deadline))?;
    s.read(buf)
        .await
        .map_err(|e| CheckError::io("read", e, deadline))
}

/// Writes all of `bytes` with the time left.
pub(super) async fn write_all(
    s: &mut TcpStream,
    bytes: &[u8],
    deadline: &Deadline,
) -> Result<(), CheckError> {
    let left = deadline.left()?;
    s.set_write_timeout(Some(left))
        .map_err(|e| CheckError::io("write", io::Error::from(e), deadline))?;
    s.write_all(bytes)
        .await
        .map_err(|e| CheckError::io("write", e, deadline))
}

//! The byte streams an exchange reads and writes. The proxy's phases are generic over [`Stream`], so a
//! client connection can be plain TCP today and TLS later without touching them: a TLS stream
//! implements the same trait (reads and writes of plaintext, with the same timeout semantics).

use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A connected, ordered byte stream with per-operation timeouts.
///
/// Timeouts are set before each operation (`crate::buf` does it) and bound the time *without
/// progress*: a read or write that waits longer fails with `io::ErrorKind::TimedOut`. `poll_close`
/// shuts the write side down (a half-close), as glommio's `TcpStream` does.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// No per-operation timeout (a tunnel bounds itself with its own idle timer).
    fn clear_timeouts(&mut self) -> io::Result<()>;
}

use crate::limits::MIN_IO_TIMEOUT as MIN_TIMEOUT;

impl Stream for TcpStream {
    #[inline]
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        Ok(TcpStream::set_read_timeout(
            self,
            Some(timeout.max(MIN_TIMEOUT)),
        )?)
    }

    #[inline]
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        Ok(TcpStream::set_write_timeout(
            self,
            Some(timeout.max(MIN_TIMEOUT)),
        )?)
    }

    fn clear_timeouts(&mut self) -> io::Result<()> {
        TcpStream::set_read_timeout(self, None)?;
        Ok(TcpStream::set_write_timeout(self, None)?)
    }
}

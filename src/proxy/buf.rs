//! A fixed-capacity read buffer with a consumed prefix. Never grows: its size is the connection's
//! memory bound for that direction.

use std::io;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;

pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn new(cap: usize) -> Buf {
        Buf {
            data: vec![0; cap].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    #[inline]
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "consume past the filled part");
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Free space after the filled part, moving the filled part to the front first if that helps.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of `spare()` as filled.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end = (self.end + n).min(self.data.len());
    }

    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }

    /// One read from `stream` into the free space, failing with TimedOut after `timeout` of silence.
    /// Ok(0) is EOF. The buffer must not be full.
    pub async fn read_from(
        &mut self,
        stream: &mut TcpStream,
        timeout: Duration,
    ) -> io::Result<usize> {
        // glommio rejects a zero timeout; a deadline already passed is treated as 1 ms left.
        stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let spare = self.spare();
        if spare.is_empty() {
            return Err(io::Error::other("read buffer full"));
        }
        let n = stream.read(spare).await?;
        self.end += n;
        Ok(n)
    }
}

/// Writes all of `bytes`, failing with TimedOut after `timeout` without progress.
pub async fn write_all(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    use futures_lite::AsyncWriteExt;
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    stream.write_all(bytes).await
}

/// Writes and clears `out`.
pub async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
    if !out.is_empty() {
        write_all(stream, out, timeout).await?;
        out.clear();
    }
    Ok(())
}

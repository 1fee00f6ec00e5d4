//! I/O buffers. A fixed-capacity read buffer with a consumed prefix (never grows: its size is the
//! connection's memory bound for that direction), and the per-exchange buffers that a connection borrows
//! from its worker only while a request is in flight, so an idle keep-alive connection holds one buffer,
//! not three (HAProxy likewise allocates buffers only when a stream needs them).

use std::io;
use std::time::Duration;

use std::cell::RefCell;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::http::HeaderField;
use crate::limits::{
    BODY_BUF, LOG_REQUEST_LINE_MAX, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS, MAX_SPARE_EXCHANGES,
    MAX_SPARE_TCP_BUFS, TCP_BUF,
};
use crate::stream::Stream;

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
    pub async fn read_from<S: Stream>(
        &mut self,
        stream: &mut S,
        timeout: Duration,
    ) -> io::Result<usize> {
        stream.set_read_timeout(timeout)?;
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
pub async fn write_all<S: Stream>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    stream.set_write_timeout(timeout)?;
    stream.write_all(bytes).await
}

/// Writes and clears `out`.
pub async fn flush<S: Stream>(
    stream: &mut S,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<()> {
    if !out.is_empty() {
        write_all(stream, out, timeout).await?;
        out.clear();
    }
    Ok(())
}

/// What one request/response exchange needs beyond the client's read buffer.
pub struct Exchange {
    /// Bytes from the backend: response heads and bodies.
    pub bbuf: Buf,
    /// Bytes being written: a serialized head, then body bytes (bounded by its initial capacity).
    pub out: Vec<u8>,
    pub resp_fields: Vec<HeaderField>,
    /// The request line as received, truncated to `LOG_REQUEST_LINE_MAX`, for the exchange's record.
    pub request_line: Vec<u8>,
}

impl Exchange {
    /// `head_max`: the largest request head the frontend accepts.
    fn new(head_max: usize) -> Exchange {
        Exchange {
            bbuf: Buf::new(BODY_BUF.max(MAX_RESPONSE_HEAD)),
            // A head (request or response) plus one body buffer's worth, so small bodies leave in the
            // same write as their head.
            out: Vec::with_capacity(head_max.max(MAX_RESPONSE_HEAD) + ADDED_HEAD_BYTES + BODY_BUF),
            resp_fields: Vec::with_capacity(MAX_RESPONSE_HEADERS),
            request_line: Vec::with_capacity(LOG_REQUEST_LINE_MAX),
        }
    }
}

/// Room for fields corelb adds to a request head (X-Forwarded-*, framing, Host) beyond what it removes.
pub const ADDED_HEAD_BYTES: usize = 1024;

/// A worker's spare exchanges: reused LIFO, at most `MAX_SPARE_EXCHANGES` kept.
#[derive(Default)]
pub struct ExchangePool {
    spare: RefCell<Vec<Exchange>>,
}

impl ExchangePool {
    pub fn take(&self, head_max: usize) -> Exchange {
        let reused = self.spare.borrow_mut().pop();
        match reused {
            Some(x)
                if x.out.capacity()
                    >= head_max.max(MAX_RESPONSE_HEAD) + ADDED_HEAD_BYTES + BODY_BUF =>
            {
                x
            }
            _ => Exchange::new(head_max),
        }
    }

    pub fn give_back(&self, mut x: Exchange) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE_EXCHANGES {
            x.bbuf.clear();
            x.out.clear();
            x.resp_fields.clear();
            x.request_line.clear();
            spare.push(x);
        }
    }
}

/// A worker's spare TCP-mode buffers (two per connection), reused LIFO so a short connection costs no
/// allocation and no zeroing of 64 KiB; at most `MAX_SPARE_TCP_BUFS` kept.
#[derive(Default)]
pub struct BufPool {
    spare: RefCell<Vec<Buf>>,
}

impl BufPool {
    pub fn take(&self) -> Buf {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Buf::new(TCP_BUF))
    }

    pub fn give_back(&self, mut b: Buf) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE_TCP_BUFS && b.capacity() == TCP_BUF {
            b.clear();
            spare.push(b);
        }
    }
}

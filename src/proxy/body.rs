//! Streams a message body from one socket to the other through bounded buffers, re-framing it as it
//! goes. Memory is constant in the body size; a slow reader slows the writer (we only read again after
//! the previous bytes were written), so backpressure holds both ways.

use std::io;
use std::time::Duration;

use crate::buf::{flush, write_all, Buf};
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::BodyFraming;
use crate::http::write::put_chunk_header;
use crate::stream::Stream;

/// How the source delimits the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcFraming {
    Length(u64),
    Chunked,
    /// Until the source closes (responses only).
    Eof,
}

/// How the body is framed toward the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// Bytes as they are (Content-Length, or close-delimited toward the destination).
    Raw,
    /// Re-chunked: a chunk per run of bytes, then `0\r\n\r\n` (trailers are not forwarded).
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    SrcIo(io::ErrorKind),
    /// The source closed before the body's declared end.
    SrcEof,
    DstIo(io::ErrorKind),
    Chunk(ChunkError),
    /// More than the allowed body size.
    TooLarge,
}

/// A body copy that failed, and whether any byte had reached the destination by then: if none had,
/// the caller can still answer with a clean error instead of cutting the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyFailure {
    pub error: BodyError,
    pub wrote: bool,
}

/// Where a body comes from: a stream, the bytes of it already read (`buf`, which keeps whatever
/// follows the body), how the source frames it, the read timeout, and an optional size limit.
pub struct Source<'a, S> {
    pub stream: &'a mut S,
    pub buf: &'a mut Buf,
    pub framing: SrcFraming,
    pub timeout: Duration,
    pub limit: Option<u64>,
}

/// Where a body goes: a stream, the staging buffer (`out`, which may hold a head that leaves with the
/// first body bytes and never grows past its capacity), how to frame it, and the write timeout.
pub struct Sink<'a, D> {
    pub stream: &'a mut D,
    pub out: &'a mut Vec<u8>,
    pub encode: Encode,
    pub timeout: Duration,
}

/// How a request body is read from the client and framed toward the server: a length is passed on as
/// is, chunked is decoded and re-chunked (RFC 9112 §6, §7).
pub fn request_body(framing: BodyFraming) -> (SrcFraming, Encode) {
    match framing {
        BodyFraming::Chunked => (SrcFraming::Chunked, Encode::Chunked),
        BodyFraming::Length(n) => (SrcFraming::Length(n), Encode::Raw),
        BodyFraming::None => (SrcFraming::Length(0), Encode::Raw),
    }
}

/// Reserve in `out` for a chunk header and its CRLF.
const CHUNK_OVERHEAD: usize = 16 + 2 + 2;

/// Copies one body from `src` (starting with the bytes already in its buffer) to `dst`, re-framed.
/// Returns the number of body bytes (decoded).
pub async fn copy_body<S: Stream, D: Stream>(
    src: Source<'_, S>,
    dst: Sink<'_, D>,
) -> Result<u64, BodyFailure> {
    let Source {
        stream: src,
        buf: sbuf,
        framing,
        timeout: read_timeout,
        limit,
    } = src;
    let Sink {
        stream: dst,
        out,
        encode,
        timeout: write_timeout,
    } = dst;
    let mut wrote = false;
    macro_rules! fail {
        ($e:expr) => {
            BodyFailure { error: $e, wrote }
        };
    }
    let mut total: u64 = 0;
    let mut remaining = match framing {
        SrcFraming::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    let mut done = remaining == 0;
    // Bounded: every iteration either consumes input or reads (which returns 0 only at EOF, ending it).
    while !done {
        // Forward what is buffered.
        while !sbuf.is_empty() && !done {
            let (consumed, data) = match framing {
                SrcFraming::Length(_) => {
                    let take = (sbuf.len() as u64).min(remaining) as usize;
                    remaining -= take as u64;
                    done = remaining == 0;
                    (take, 0..take)
                }
                SrcFraming::Chunked => {
                    let d = decoder
                        .decode(sbuf.filled())
                        .map_err(|e| fail!(BodyError::Chunk(e)))?;
                    done = decoder.is_done();
                    if d.consumed == 0 && !done {
                        break;
                    }
                    (d.consumed, d.data)
                }
                SrcFraming::Eof => (sbuf.len(), 0..sbuf.len()),
            };
            let bytes = &sbuf.filled()[data];
            if !bytes.is_empty() {
                total = total.saturating_add(bytes.len() as u64);
                if limit.is_some_and(|l| total > l) {
                    return Err(fail!(BodyError::TooLarge));
                }
                wrote |= emit(dst, out, bytes, encode, write_timeout)
                    .await
                    .map_err(|e| fail!(BodyError::DstIo(e.kind())))?;
            }
            sbuf.consume(consumed);
        }
        if done {
            break;
        }
        // Before waiting for the source, let the destination have what we hold.
        let pending = !out.is_empty();
        flush(dst, out, write_timeout)
            .await
            .map_err(|e| fail!(BodyError::DstIo(e.kind())))?;
        wrote |= pending;
        match sbuf.read_from(src, read_timeout).await {
            Ok(0) if framing == SrcFraming::Eof => done = true,
            Ok(0) => return Err(fail!(BodyError::SrcEof)),
            Ok(_) => {}
            Err(e) => return Err(fail!(BodyError::SrcIo(e.kind()))),
        }
    }
    if encode == Encode::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(dst, out, write_timeout)
        .await
        .map_err(|e| fail!(BodyError::DstIo(e.kind())))?;
    Ok(total)
}

/// Appends `bytes` to `out` (framed per `encode`), writing when `out` would overflow its capacity;
/// `out` never grows past the capacity it was created with. Ok(true): bytes were written to `dst`.
async fn emit<D: Stream>(
    dst: &mut D,
    out: &mut Vec<u8>,
    bytes: &[u8],
    encode: Encode,
    timeout: Duration,
) -> io::Result<bool> {
    let mut wrote = false;
    let overhead = if encode == Encode::Chunked {
        CHUNK_OVERHEAD
    } else {
        0
    };
    if out.len() + bytes.len() + overhead > out.capacity() {
        wrote |= !out.is_empty();
        flush(dst, out, timeout).await?;
    }
    if encode == Encode::Chunked {
        put_chunk_header(out, bytes.len());
    }
    if bytes.len() + overhead <= out.capacity() - out.len() {
        out.extend_from_slice(bytes);
    } else {
        // Larger than our staging space: send the (framed) prefix, then the bytes from where they are.
        flush(dst, out, timeout).await?;
        write_all(dst, bytes, timeout).await?;
        wrote = true;
    }
    if encode == Encode::Chunked {
        out.extend_from_slice(b"\r\n");
    }
    Ok(wrote)
}

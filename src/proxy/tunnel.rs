//! After a 101 Switching Protocols, corelb is a byte pipe in both directions (RFC 9110 §7.8) until both
//! sides have closed or the tunnel has been idle for the timeout. Half-close is relayed: EOF from one
//! side becomes a write shutdown toward the other.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use glommio::timer::Timer;

use crate::buf::Buf;
use crate::stream::Stream;

/// Reads or writes one direction may do per poll before yielding, so a busy tunnel cannot starve the
/// other tasks of its core.
const OPS_PER_POLL: usize = 16;

struct Dir {
    src_eof: bool,
    shut: bool,
}

/// Moves bytes one way; returns whether anything moved.
fn pump<R: Stream, W: Stream>(
    cx: &mut Context<'_>,
    src: &mut R,
    dst: &mut W,
    buf: &mut Buf,
    d: &mut Dir,
) -> io::Result<bool> {
    let mut progress = false;
    for _ in 0..OPS_PER_POLL {
        if !buf.is_empty() {
            match Pin::new(&mut *dst).poll_write(cx, buf.filled()) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    buf.consume(n);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(progress),
            }
        } else if d.src_eof {
            if !d.shut {
                // Relay the half-close; errors here mean the peer is gone, which ends the tunnel anyway.
                let _ = Pin::new(&mut *dst).poll_close(cx);
                d.shut = true;
            }
            return Ok(progress);
        } else {
            match Pin::new(&mut *src).poll_read(cx, buf.spare()) {
                Poll::Ready(Ok(0)) => {
                    d.src_eof = true;
                    progress = true;
                }
                Poll::Ready(Ok(n)) => {
                    buf.commit(n);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(progress),
            }
        }
    }
    // Still busy: yield to other tasks and come back.
    cx.waker().wake_by_ref();
    Ok(progress)
}

/// Pipes `a` <-> `b`. `abuf` holds bytes already read from `a` (to go to `b`), `bbuf` likewise.
pub async fn tunnel<A: Stream, B: Stream>(
    a: &mut A,
    abuf: &mut Buf,
    b: &mut B,
    bbuf: &mut Buf,
    idle: Duration,
) -> io::Result<()> {
    // The tunnel's own idle timer bounds it; per-operation timeouts would cut a one-way stream.
    a.clear_timeouts()?;
    b.clear_timeouts()?;
    let mut ab = Dir {
        src_eof: false,
        shut: false,
    };
    let mut ba = Dir {
        src_eof: false,
        shut: false,
    };
    let mut timer = Timer::new(idle);
    std::future::poll_fn(|cx| {
        let p1 = pump(cx, a, b, abuf, &mut ab)?;
        let p2 = pump(cx, b, a, bbuf, &mut ba)?;
        if ab.shut && ba.shut {
            return Poll::Ready(Ok(()));
        }
        if p1 || p2 {
            timer.reset(idle);
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

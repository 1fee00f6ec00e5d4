//! Per-worker pool of idle keep-alive backend connections. LIFO per server: the most recently used
//! connection is the least likely to have been closed by the server.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

pub struct Pool {
    per_server: Vec<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(servers: usize, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            per_server: (0..servers)
                .map(|_| VecDeque::with_capacity(max_idle))
                .collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recent idle connection to `server` that has not outlived the idle timeout.
    pub fn checkout(&mut self, server: usize, now: Instant) -> Option<TcpStream> {
        let q = self.per_server.get_mut(server)?;
        // Oldest first in the deque: expired ones are at the front; drop them (bounded by len).
        while let Some(front) = q.front() {
            if now.saturating_duration_since(front.since) >= self.idle_timeout {
                q.pop_front();
            } else {
                break;
            }
        }
        q.pop_back().map(|i| i.stream)
    }

    /// Returns a connection whose last response was consumed exactly to its end.
    pub fn checkin(&mut self, server: usize, stream: TcpStream, now: Instant) {
        let Some(q) = self.per_server.get_mut(server) else {
            return;
        };
        if self.max_idle == 0 {
            return;
        }
        if q.len() >= self.max_idle {
            q.pop_front();
        }
        q.push_back(Idle { stream, since: now });
    }

    /// Closes expired idle connections (run from the worker's control task, not the request path).
    pub fn sweep(&mut self, now: Instant) {
        for q in &mut self.per_server {
            q.retain(|i| now.saturating_duration_since(i.since) < self.idle_timeout);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.per_server.iter().map(VecDeque::len).sum()
    }
}

/// True when a pooled connection shows no sign of having been closed by the server: no EOF and no
/// unexpected bytes waiting. Costs one non-blocking syscall; used before sending a non-idempotent request
/// on a reused connection, to narrow the keep-alive close race where retrying is not allowed.
pub fn looks_alive(stream: &impl AsRawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most 1 byte into `byte`, a valid, exclusively borrowed 1-byte buffer; the fd
    // is owned by `stream` and open for the duration of the call. MSG_PEEK leaves the data in place and
    // MSG_DONTWAIT keeps the call from blocking.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::looks_alive;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn looks_alive_detects_eof_and_stray_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert!(looks_alive(&c), "idle open connection");
        s.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while looks_alive(&c) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!looks_alive(&c), "unexpected bytes");
        let c2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s2, _) = l.accept().unwrap();
        drop(s2);
        while looks_alive(&c2) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!looks_alive(&c2), "closed by peer");
    }
}

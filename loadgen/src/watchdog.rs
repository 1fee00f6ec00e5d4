//! Per-request timeouts, enforced by one watchdog task per executor thread instead of a timer per
//! read.
//!
//! A glommio read timeout arms a reactor timer on every read that has to wait (a clock read, a waker
//! clone, a BTreeMap insert and remove): about 2 % of the generator's CPU per response, at the
//! rate where the generator itself is the bottleneck. Here a connection only stores its deadline in
//! a `Cell` (computed from the send time it already has); the watchdog wakes every `tick`, and
//! shuts down the socket of a connection past its deadline. Its pending read then ends (EOF or an
//! error), and the connection reports the failure as a timeout because its slot says it fired.
//! A request therefore times out between `timeout` and `timeout + tick` after its send.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The watchdog's period is the timeout divided by this, so a timeout fires at most ~6 % late.
const TICKS_PER_TIMEOUT: u32 = 16;
/// Bounds on the period: finer costs wake-ups for nothing; coarser makes short timeouts imprecise.
const MIN_TICK: Duration = Duration::from_millis(1);
const MAX_TICK: Duration = Duration::from_millis(50);

/// A connection's entry: the socket it reads and the deadline of its oldest request in flight.
#[derive(Debug, Default)]
pub struct Slot {
    /// -1: no socket (not connected, or being replaced).
    fd: Cell<RawFd>,
    deadline: Cell<Option<Instant>>,
    fired: Cell<bool>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            fd: Cell::new(-1),
            deadline: Cell::new(None),
            fired: Cell::new(false),
        }
    }

    /// The connection now reads `fd` (or none: -1). Forgets a firing for an earlier socket.
    pub fn set_fd(&self, fd: RawFd) {
        self.fd.set(fd);
        self.deadline.set(None);
        self.fired.set(false);
    }

    /// Arms the slot: the read about to start must end by `deadline`.
    pub fn arm(&self, deadline: Instant) {
        self.deadline.set(Some(deadline));
    }

    /// Nothing is awaited on the socket any more.
    pub fn disarm(&self) {
        self.deadline.set(None);
    }

    /// Whether the watchdog shut the socket down since `set_fd` (the reason a read failed, or a late
    /// response that must count as a timeout). Resets the flag.
    pub fn take_fired(&self) -> bool {
        self.fired.replace(false)
    }
}

/// The watchdog's period for a per-request timeout.
pub fn tick_for(timeout: Duration) -> Duration {
    (timeout / TICKS_PER_TIMEOUT).clamp(MIN_TICK, MAX_TICK)
}

/// One slot per connection of the thread.
pub fn slots(n: usize) -> Rc<[Slot]> {
    (0..n).map(|_| Slot::new()).collect()
}

/// Shuts down the sockets of slots past their deadline at `now`; returns how many.
pub fn sweep(slots: &[Slot], now: Instant) -> usize {
    let mut fired = 0;
    for s in slots {
        let fd = s.fd.get();
        if fd < 0 || s.fired.get() || s.deadline.get().is_none_or(|d| now < d) {
            continue;
        }
        s.fired.set(true);
        s.deadline.set(None);
        // SAFETY: `fd` is the socket the owning connection task still holds open: the task sets -1
        // (set_fd) before it drops or replaces the stream, and this executor runs one task at a
        // time. shutdown(2) only ends the connection; the fd stays owned and open.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
        fired += 1;
    }
    fired
}

/// Sweeps every `tick` until `done` is set.
pub async fn run(slots: Rc<[Slot]>, tick: Duration, done: impl Fn() -> bool) {
    while !done() {
        glommio::timer::sleep(tick).await;
        sweep(&slots, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn ticks_are_bounded() {
        assert_eq!(
            tick_for(Duration::from_millis(160)),
            Duration::from_millis(10)
        );
        assert_eq!(tick_for(Duration::from_micros(100)), MIN_TICK);
        assert_eq!(tick_for(Duration::from_secs(3600)), MAX_TICK);
    }

    #[test]
    fn sweep_fires_only_past_the_deadline_and_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let s = slots(2);
        let t0 = Instant::now();
        s[0].set_fd(c.as_raw_fd());
        s[0].arm(t0 + Duration::from_secs(1));
        // Slot 1 has a deadline but no socket: never touched.
        s[1].arm(t0);
        assert_eq!(sweep(&s, t0), 0);
        assert!(!s[0].take_fired());
        assert_eq!(sweep(&s, t0 + Duration::from_secs(1)), 1);
        assert_eq!(sweep(&s, t0 + Duration::from_secs(2)), 0, "fires once");
        assert!(s[0].take_fired());
        assert!(!s[0].take_fired(), "the flag resets");
        // The socket was shut down: the read ends at once with EOF, and the peer sees EOF too.
        let mut b = [0u8; 8];
        assert_eq!(c.read(&mut b).unwrap(), 0);
        assert_eq!(server.read(&mut b).unwrap(), 0);
        let _ = server.write_all(b"late");
        // Disarmed slots and replaced sockets are left alone.
        s[0].set_fd(c.as_raw_fd());
        s[0].arm(t0);
        s[0].disarm();
        assert_eq!(sweep(&s, t0 + Duration::from_secs(9)), 0);
    }
}

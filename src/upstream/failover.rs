//! Bounded connect failover, shared by HTTP and TCP mode: the first server comes from persistence or
//! the balancer; after a connect failure the server is marked (passive health) and the balancer picks
//! another one not tried yet, at most `MAX_CONNECT_TRIES` connects in all (fewer when the backend has
//! fewer servers). The server being tried is counted as in flight on it (`Assigned`) until the
//! `Failover` is dropped, at the end of the exchange or session.

use crate::health::board::Board;
use crate::limits::MAX_CONNECT_TRIES;

use super::{Assigned, BackendCtx};

/// No server could be had: none was up, or every one tried refused the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// All servers are down, draining or in maintenance: answer at once, no connect timeout to wait.
    NoneUp,
    /// Every server tried (at most `MAX_CONNECT_TRIES`) failed to connect.
    AllFailed,
}

impl NoServer {
    pub fn reason(self) -> &'static str {
        match self {
            NoServer::NoneUp => "no server is up",
            NoServer::AllFailed => "no server accepted the connection",
        }
    }
}

pub struct Failover<'a> {
    backend: &'a BackendCtx,
    /// The balancer's key (`algorithm = "hash"`), kept so a retry hashes the same way.
    key: Option<u64>,
    tried: [usize; MAX_CONNECT_TRIES],
    n_tried: usize,
    max_tries: usize,
    current: Assigned<'a>,
}

impl<'a> Failover<'a> {
    /// Picks the first server: `sticky` if persistence named one that still takes its sessions, else
    /// the balancer's pick.
    pub fn start(
        backend: &'a BackendCtx,
        key: Option<u64>,
        sticky: Option<usize>,
    ) -> Result<Failover<'a>, NoServer> {
        let first = sticky.or_else(|| backend.balancer.borrow_mut().pick(key, &[]));
        let server = first.ok_or(NoServer::NoneUp)?;
        Ok(Failover {
            backend,
            key,
            tried: [0; MAX_CONNECT_TRIES],
            n_tried: 0,
            max_tries: MAX_CONNECT_TRIES.min(backend.cfg.servers.len()).max(1),
            current: Assigned::new(&backend.balancer, server),
        })
    }

    /// The server being tried now.
    #[inline]
    pub fn server(&self) -> usize {
        self.current.server()
    }

    /// How many connects failed so far (0 when the first server took the connection).
    #[inline]
    pub fn failures(&self) -> usize {
        self.n_tried
    }

    /// The current server refused or timed out the connect: passive health counts it, and the next
    /// server not tried yet becomes current. `Err` when the tries are used up or no other server is up.
    pub fn connect_failed(&mut self, board: &Board) -> Result<usize, NoServer> {
        let failed = self.server();
        self.backend.server_failed(failed, board);
        debug_assert!(self.n_tried < self.max_tries, "failover past its bound");
        self.tried[self.n_tried] = failed;
        self.n_tried += 1;
        if self.n_tried >= self.max_tries {
            return Err(NoServer::AllFailed);
        }
        let next = self
            .backend
            .balancer
            .borrow_mut()
            .pick(self.key, &self.tried[..self.n_tried])
            .ok_or(NoServer::AllFailed)?;
        // The new assignment counts before the old one is released: the failed server's count drops.
        self.current = Assigned::new(&self.backend.balancer, next);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::BackendCtx;

    fn backend(servers: usize, algorithm: &str) -> (BackendCtx, Board) {
        let mut toml = format!(
            "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"b\"\n\
             [[backend]]\nname = \"b\"\nalgorithm = \"{algorithm}\"\n"
        );
        for i in 0..servers {
            toml.push_str(&format!(
                "[[backend.server]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\n",
                1000 + i
            ));
        }
        let cfg = crate::config::from_toml(&toml).expect("test config");
        let board = Board::new(&[servers]);
        (BackendCtx::new(&cfg.backends[0], 0, 0, 1, &board), board)
    }

    #[test]
    fn tries_each_server_once_up_to_the_bound() {
        let (b, board) = backend(5, "roundrobin");
        let mut f = Failover::start(&b, None, None).unwrap();
        let mut seen = vec![f.server()];
        for _ in 1..MAX_CONNECT_TRIES {
            seen.push(f.connect_failed(&board).unwrap());
        }
        assert_eq!(f.connect_failed(&board), Err(NoServer::AllFailed));
        assert_eq!(f.failures(), MAX_CONNECT_TRIES);
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "a server was tried twice: {seen:?}"
        );
    }

    #[test]
    fn fewer_servers_than_the_bound_end_sooner() {
        let (b, board) = backend(2, "roundrobin");
        let mut f = Failover::start(&b, None, None).unwrap();
        let first = f.server();
        let second = f.connect_failed(&board).unwrap();
        assert_ne!(first, second);
        assert_eq!(f.connect_failed(&board), Err(NoServer::AllFailed));
    }

    #[test]
    fn sticky_server_goes_first() {
        let (b, _board) = backend(3, "roundrobin");
        for s in 0..3 {
            assert_eq!(Failover::start(&b, None, Some(s)).unwrap().server(), s);
        }
    }

    #[test]
    fn the_server_being_tried_counts_as_in_flight() {
        let (b, board) = backend(3, "leastconn");
        let mut f = Failover::start(&b, None, None).unwrap();
        let first = f.server();
        assert_eq!(b.balancer.borrow().in_flight(first), 1);
        let next = f.connect_failed(&board).unwrap();
        assert_eq!(b.balancer.borrow().in_flight(first), 0);
        assert_eq!(b.balancer.borrow().in_flight(next), 1);
        drop(f);
        assert_eq!(b.balancer.borrow().in_flight(next), 0);
    }
}

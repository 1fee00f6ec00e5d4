//! Server selection, per core: no lock, no atomic, no allocation in `Balancer::pick`.
//!
//! Each core owns one `Balancer` per backend. The control plane (`Balancer::rebuild`, on health,
//! eligibility or slow-start weight changes) computes the active set and the policy's tables; the
//! request path (`Balancer::pick`, `started`, `finished`) only reads them and bumps per-core counters.
//! Policies (HAProxy's `balance` names): round robin (`round_robin`), least connections (`least_conn`),
//! random with power of two choices (`random`), first (`first`), consistent hash (`maglev`).
//!
//! This module is a leaf: it depends on nothing in the crate but `limits`.

mod first;
mod hash;
mod least_conn;
mod maglev;
mod random;
mod round_robin;

pub use hash::{hash_bytes, hash_ip};
pub use round_robin::RoundRobin;

use crate::limits::MAX_SERVERS_PER_BACKEND;
use hash::Rng;
use maglev::Maglev;
use round_robin::Rotation;

/// Highest server weight (HAProxy's range is 0..256; 0 is expressed as "not eligible" in `rebuild`).
/// Weights only enter u64 products with u32 counts, so a larger value would not overflow; the bound is
/// the configuration's, checked by config validation.
pub use crate::limits::MAX_WEIGHT;

// Maglev stores server indices as u16 with u16::MAX as the empty mark.
const _: () = assert!(MAX_SERVERS_PER_BACKEND < u16::MAX as usize);

/// How a backend chooses a server for a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Rotation over the active set; smooth weighted (nginx) when effective weights differ.
    RoundRobin,
    /// Lowest in-flight/weight on this core; ties rotate.
    LeastConn,
    /// Power of two choices among weight-proportional random draws.
    Random,
    /// Lowest-index server below its maxconn.
    First,
    /// Maglev consistent hashing of the request key; round robin when the key is missing.
    Hash,
}

/// One configured server, as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSpec {
    /// Configured weight, 1..=`MAX_WEIGHT` (the effective weight is passed to `rebuild`).
    pub weight: u32,
    /// Used only when no normal server is eligible.
    pub backup: bool,
    /// This core's share of the server's maxconn (used by `Policy::First`); None = unlimited.
    pub maxconn: Option<u32>,
    /// Stable identity of the server (e.g. `hash_bytes` of "backend/server"): seeds its Maglev
    /// permutation so every core and every restart builds the same table, whatever the server's index.
    pub id_hash: u64,
}

/// One member of the active set: a server index and its effective weight (>= 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Active {
    server: u32,
    weight: u32,
}

/// `slot_of` value for a server outside the active set.
const NOT_ACTIVE: u32 = u32::MAX;

#[inline]
fn is_tried(server: u32, tried: &[usize]) -> bool {
    tried.contains(&(server as usize))
}

/// Per-core, per-backend server selection. See the module documentation.
#[derive(Debug, Clone)]
pub struct Balancer {
    policy: Policy,
    specs: Vec<ServerSpec>,
    allbackups: bool,
    seed: u64,
    /// Eligible servers in ascending index, with their effective weights.
    active: Vec<Active>,
    /// Build buffer for `active` (swapped with it, so rebuild reuses both capacities).
    scratch: Vec<Active>,
    /// Position of each configured server in `active`, or `NOT_ACTIVE`.
    slot_of: Vec<u32>,
    /// Requests this core assigned and not yet finished, per configured server.
    in_flight: Vec<u32>,
    /// Round robin (and Hash without a key).
    rotation: Rotation,
    /// Least connections: where the next scan starts (ties rotate).
    lc_next: usize,
    /// Random.
    rng: Rng,
    /// Random: exclusive end of each active slot's range in the weight line.
    cumulative: Vec<u64>,
    /// Hash.
    maglev: Option<Maglev>,
}

impl Balancer {
    /// All servers start eligible with their configured weight. `allbackups`: when every normal server
    /// is out, use all eligible backups instead of only the first. `seed` (e.g. the worker id) sets the
    /// round-robin and least-conn start offsets and the RNG, so cores do not move in lockstep.
    /// Panics if more than `MAX_SERVERS_PER_BACKEND` servers are given (config validation rejects that).
    pub fn new(policy: Policy, servers: &[ServerSpec], allbackups: bool, seed: u64) -> Balancer {
        assert!(
            servers.len() <= MAX_SERVERS_PER_BACKEND,
            "config validation caps the servers per backend"
        );
        let n = servers.len();
        let mut b = Balancer {
            policy,
            specs: servers.to_vec(),
            allbackups,
            seed,
            active: Vec::with_capacity(n),
            scratch: Vec::with_capacity(n),
            slot_of: vec![NOT_ACTIVE; n],
            in_flight: vec![0; n],
            rotation: Rotation::new(seed, n),
            lc_next: seed as usize,
            rng: Rng::new(seed),
            cumulative: Vec::with_capacity(if policy == Policy::Random { n } else { 0 }),
            maglev: (policy == Policy::Hash).then(|| Maglev::new(n)),
        };
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        b.rebuild(&weights);
        b
    }

    /// Control plane (health/eligibility or slow-start weight changes, never per request).
    /// `effective[i]` is server i's weight for NEW sessions now; 0 = not eligible (down, drain, maint,
    /// ejected); missing entries count as 0. The active set is the normal servers with effective > 0;
    /// if there are none, the backups with effective > 0: all of them with `allbackups`, else only the
    /// first by index (HAProxy). Reuses capacity; allocates only if a policy table grows.
    pub fn rebuild(&mut self, effective: &[u32]) {
        debug_assert_eq!(effective.len(), self.specs.len());
        let eff = |i: usize| effective.get(i).copied().unwrap_or(0);
        self.scratch.clear();
        for (i, s) in self.specs.iter().enumerate() {
            if !s.backup && eff(i) > 0 {
                self.scratch.push(Active {
                    server: i as u32,
                    weight: eff(i),
                });
            }
        }
        if self.scratch.is_empty() {
            for (i, s) in self.specs.iter().enumerate() {
                if s.backup && eff(i) > 0 {
                    self.scratch.push(Active {
                        server: i as u32,
                        weight: eff(i),
                    });
                    if !self.allbackups {
                        break;
                    }
                }
            }
        }
        let membership_changed = self.scratch.len() != self.active.len()
            || self
                .scratch
                .iter()
                .zip(&self.active)
                .any(|(a, b)| a.server != b.server);
        std::mem::swap(&mut self.active, &mut self.scratch);

        self.slot_of.fill(NOT_ACTIVE);
        for (slot, a) in self.active.iter().enumerate() {
            self.slot_of[a.server as usize] = slot as u32;
        }
        self.rotation
            .rebuild(&self.active, membership_changed, self.seed);
        if self.policy == Policy::Random {
            self.cumulative.clear();
            let mut sum = 0u64;
            for a in &self.active {
                sum += u64::from(a.weight);
                self.cumulative.push(sum);
            }
        }
        if let Some(maglev) = &mut self.maglev {
            maglev.build(&self.active, &self.specs);
        }
    }

    /// Request path: the server for a new request, never one of `tried` (servers this request already
    /// failed to connect to); None when the active set is empty or all of it was tried. `key` is the
    /// request's hash for `Policy::Hash` (None there: round robin, as HAProxy does when the hashed
    /// header or cookie is missing); other policies ignore it. No allocation; loops bounded by the
    /// active set (O(n) for round robin with weights, least conn and first; O(log n) for random; O(1)
    /// for plain round robin and hash).
    #[inline]
    pub fn pick(&mut self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        if self.active.is_empty() {
            return None;
        }
        match self.policy {
            Policy::RoundRobin => self.rotation.pick(&self.active, tried),
            Policy::LeastConn => {
                least_conn::pick(&self.active, &self.in_flight, &mut self.lc_next, tried)
            }
            Policy::Random => random::pick(
                &self.active,
                &self.cumulative,
                &self.slot_of,
                &self.in_flight,
                &mut self.rng,
                tried,
            ),
            Policy::First => first::pick(&self.active, &self.specs, &self.in_flight, tried),
            Policy::Hash => match (key, &self.maglev) {
                (Some(h), Some(maglev)) => maglev.pick(h, tried).or_else(|| {
                    self.active
                        .iter()
                        .find(|a| !is_tried(a.server, tried))
                        .map(|a| a.server as usize)
                }),
                _ => self.rotation.pick(&self.active, tried),
            },
        }
    }

    /// Number of servers currently eligible for new requests.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// The policy this balancer was built with.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// A request was assigned to `server` on this core (least conn, random and first read this).
    /// Out-of-range indices are ignored; saturating.
    #[inline]
    pub fn started(&mut self, server: usize) {
        if let Some(n) = self.in_flight.get_mut(server) {
            *n = n.saturating_add(1);
        }
    }

    /// A request assigned to `server` on this core completed (or failed). Saturating at zero.
    #[inline]
    pub fn finished(&mut self, server: usize) {
        if let Some(n) = self.in_flight.get_mut(server) {
            *n = n.saturating_sub(1);
        }
    }

    /// Requests this core assigned to `server` and not yet finished (0 for an unknown index).
    pub fn in_flight(&self, server: usize) -> u32 {
        self.in_flight.get(server).copied().unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn normal(weight: u32) -> ServerSpec {
        ServerSpec {
            weight,
            backup: false,
            maxconn: None,
            id_hash: 0,
        }
    }

    /// `n` equal-weight normal servers with distinct identities.
    pub(crate) fn up(n: usize) -> Vec<ServerSpec> {
        (0..n)
            .map(|i| ServerSpec {
                id_hash: hash_bytes(format!("backend/server{i}").as_bytes()),
                ..normal(1)
            })
            .collect()
    }

    const ALL: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::Random,
        Policy::First,
        Policy::Hash,
    ];

    fn key(i: u32) -> Option<u64> {
        Some(hash_bytes(&i.to_le_bytes()))
    }

    #[test]
    fn rotation_exact_with_one_core() {
        let mut b = Balancer::new(Policy::RoundRobin, &up(3), false, 0);
        let picks: Vec<_> = (0..7).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        let mut b = Balancer::new(Policy::RoundRobin, &up(3), false, 4);
        assert_eq!(b.pick(None, &[]), Some(1), "seed offsets the start");
        // Tried exclusion keeps the rotation going after the chosen server.
        let mut b = Balancer::new(Policy::RoundRobin, &up(3), false, 0);
        assert_eq!(b.pick(None, &[0]), Some(1));
        assert_eq!(b.pick(None, &[2]), Some(0));
        assert_eq!(b.pick(None, &[]), Some(1));
    }

    #[test]
    fn smooth_weighted_exact_counts() {
        let specs = [normal(5), normal(1), normal(1)];
        let mut b = Balancer::new(Policy::RoundRobin, &specs, false, 0);
        let picks: Vec<_> = (0..7).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0], "nginx's documented sequence");
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[b.pick(None, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
        // Another core's seed starts at another phase, same counts per cycle.
        let mut c = Balancer::new(Policy::RoundRobin, &specs, false, 2);
        let first: Vec<_> = (0..7).map(|_| c.pick(None, &[]).unwrap()).collect();
        assert_ne!(first, picks);
        assert_eq!(first.iter().filter(|&&s| s == 0).count(), 5);
        // Slow start: effective weights change, counts follow them.
        b.rebuild(&[1, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[b.pick(None, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 200]);
        // With a tried server, the others share its turn by weight.
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.pick(None, &[2]).unwrap()] += 1;
        }
        assert_eq!(counts, [150, 150, 0]);
    }

    #[test]
    fn backups_only_when_no_normal_server() {
        let backup = |w| ServerSpec {
            backup: true,
            ..normal(w)
        };
        let specs = [normal(1), backup(1), normal(1), backup(1), backup(1)];
        for policy in ALL {
            for allbackups in [false, true] {
                let mut b = Balancer::new(policy, &specs, allbackups, 0);
                assert_eq!(b.active_len(), 2);
                for i in 0..100 {
                    let s = b.pick(key(i), &[]).unwrap();
                    assert!(
                        s == 0 || s == 2,
                        "{policy:?}: backup {s} used while normal servers are up"
                    );
                }
                b.rebuild(&[0, 1, 1, 1, 1]);
                for i in 0..100 {
                    assert_eq!(b.pick(key(i), &[]), Some(2), "{policy:?}");
                }
                b.rebuild(&[0, 1, 0, 1, 1]);
                let mut seen = [false; 5];
                for i in 0..100 {
                    let s = b.pick(key(i), &[]).unwrap();
                    seen[s] = true;
                    // Never finished: least conn must then spread over every active backup.
                    b.started(s);
                }
                if allbackups {
                    assert_eq!(b.active_len(), 3, "{policy:?}");
                    assert!(!seen[0] && !seen[2], "{policy:?}");
                    if policy != Policy::First {
                        assert!(seen[1] && seen[3] && seen[4], "{policy:?}: {seen:?}");
                    }
                } else {
                    assert_eq!(b.active_len(), 1, "{policy:?}");
                    assert_eq!(
                        seen,
                        [false, true, false, false, false],
                        "{policy:?}: first backup only"
                    );
                    // The first backup goes down: the next one takes over.
                    b.rebuild(&[0, 0, 0, 1, 1]);
                    assert_eq!(b.active_len(), 1, "{policy:?}");
                    assert_eq!(b.pick(key(0), &[]), Some(3), "{policy:?}");
                }
                b.rebuild(&[1, 1, 0, 1, 1]);
                assert_eq!(b.active_len(), 1, "{policy:?}");
                assert_eq!(
                    b.pick(key(1), &[]),
                    Some(0),
                    "{policy:?}: normal server back"
                );
            }
        }
    }

    #[test]
    fn tried_exclusion_and_none_for_every_policy() {
        let specs = up(5);
        for policy in ALL {
            let mut b = Balancer::new(policy, &specs, false, 7);
            for i in 0..500u32 {
                let tried = [(i % 5) as usize, ((i / 5) % 5) as usize];
                let s = b.pick(key(i), &tried).unwrap();
                assert!(!tried.contains(&s), "{policy:?}");
                b.started(s);
                if i % 2 == 0 {
                    b.finished(s);
                }
            }
            let all: Vec<usize> = (0..5).rev().collect();
            assert_eq!(b.pick(key(1), &all), None, "{policy:?}: all tried");
            assert_eq!(b.pick(None, &all), None, "{policy:?}: all tried");
            assert_eq!(b.pick(key(1), &[0, 1, 2, 3]), Some(4), "{policy:?}");
            assert_eq!(b.pick(None, &[0, 1, 2, 3]), Some(4), "{policy:?}");
            b.rebuild(&[0; 5]);
            assert_eq!(b.active_len(), 0);
            assert_eq!(b.pick(key(1), &[]), None, "{policy:?}: empty");
            assert_eq!(b.pick(None, &[]), None, "{policy:?}: empty");
            let mut empty = Balancer::new(policy, &[], false, 0);
            assert_eq!(empty.pick(key(1), &[]), None, "{policy:?}: no servers");
            // Ineligible or unknown tried indices change nothing.
            b.rebuild(&[1, 0, 0, 0, 0]);
            assert_eq!(b.pick(key(2), &[3, 99]), Some(0), "{policy:?}");
        }
    }

    #[test]
    fn in_flight_saturates_and_ignores_unknown() {
        let mut b = Balancer::new(Policy::LeastConn, &up(2), false, 0);
        b.finished(0);
        assert_eq!(b.in_flight(0), 0);
        b.started(1);
        b.started(1);
        b.finished(1);
        assert_eq!(b.in_flight(1), 1);
        b.started(7);
        b.finished(7);
        assert_eq!(b.in_flight(7), 0);
    }
}

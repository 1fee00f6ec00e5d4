//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, section 3.4), weighted.
//!
//! Each server has a permutation of the table's M slots, (offset + j * skip) mod M with offset and skip
//! derived from its `id_hash`, so it does not depend on the server's index, the core or the process.
//! Servers take turns claiming their next unclaimed preferred slot until the table is full; a server
//! claims in a turn when its credit (weight added per turn) reaches the highest weight, so slot shares
//! follow the effective weights. Removing a server frees its slots to the others and disturbs few
//! other slots (tested: at most 5 % of keys). M is fixed per `Balancer` (from the configured server
//! count), so a key's slot never changes, only the slot's owner.

use super::hash::mix64;
use super::{is_tried, Active, ServerSpec};

/// Table sizes: primes (so every skip in 1..M generates a full permutation), roughly doubling.
const TABLE_PRIMES: [usize; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131_071,
];

/// Slots per configured server at least: the paper's M >= 100 N keeps each server's share within about
/// 1 % of its weight and the disruption on removal small.
const MIN_SLOTS_PER_SERVER: usize = 100;

/// The largest table: 131071 u16 entries = 256 KiB per hash backend per core; that is >= 128 slots per
/// server at `MAX_SERVERS_PER_BACKEND` (1024).
pub(super) const MAX_TABLE_SIZE: usize = TABLE_PRIMES[TABLE_PRIMES.len() - 1];

/// When the key's server was already tried, how many following slots to look at before taking the
/// first untried active server. Each probe hits a tried server with about the tried servers' share,
/// so 16 probes make the fallback rare while bounding the cost of a failover pick.
pub(super) const HASH_PROBES: usize = 16;

/// Marks an unclaimed slot while building (no server has this index: `MAX_SERVERS_PER_BACKEND` < it).
const EMPTY: u16 = u16::MAX;

/// Salts that make offset and skip two independent hashes of the same `id_hash`.
const OFFSET_SALT: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SALT: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// The smallest table size from `TABLE_PRIMES` with at least `MIN_SLOTS_PER_SERVER` slots per server.
pub(super) fn table_size(servers: usize) -> usize {
    let want = servers.saturating_mul(MIN_SLOTS_PER_SERVER);
    TABLE_PRIMES
        .iter()
        .copied()
        .find(|&m| m >= want)
        .unwrap_or(MAX_TABLE_SIZE)
}

#[derive(Debug, Clone)]
pub(super) struct Maglev {
    /// Server index per slot; all `EMPTY` when there is no active server.
    table: Vec<u16>,
    /// Build scratch, per active server: next permutation position, skip, credit. Kept to reuse capacity.
    next: Vec<usize>,
    skip: Vec<usize>,
    credit: Vec<u64>,
}

impl Maglev {
    pub(super) fn new(configured: usize) -> Maglev {
        Maglev {
            table: vec![EMPTY; table_size(configured)],
            next: Vec::with_capacity(configured),
            skip: Vec::with_capacity(configured),
            credit: Vec::with_capacity(configured),
        }
    }

    /// Control plane: fills the table from the active set. O(M log M) typical (coupon collector).
    pub(super) fn build(&mut self, active: &[Active], specs: &[ServerSpec]) {
        let m = self.table.len();
        self.table.fill(EMPTY);
        self.next.clear();
        self.skip.clear();
        self.credit.clear();
        let Some(max_weight) = active.iter().map(|a| u64::from(a.weight)).max() else {
            return;
        };
        for a in active {
            let id = specs[a.server as usize].id_hash;
            self.next
                .push((mix64(id ^ OFFSET_SALT) % m as u64) as usize);
            self.skip
                .push((mix64(id ^ SKIP_SALT) % (m as u64 - 1)) as usize + 1);
            self.credit.push(0);
        }
        let mut filled = 0;
        // Terminates: every turn the heaviest server claims a slot (its credit reaches max_weight), and
        // a claim always succeeds while a slot is free, so each turn fills at least one slot.
        while filled < m {
            for (i, a) in active.iter().enumerate() {
                self.credit[i] += u64::from(a.weight);
                if self.credit[i] < max_weight {
                    continue;
                }
                self.credit[i] -= max_weight;
                // Bounded by M: M is prime and 1 <= skip < M, so M steps visit every slot once.
                for _ in 0..m {
                    let slot = self.next[i];
                    self.next[i] = (slot + self.skip[i]) % m;
                    if self.table[slot] == EMPTY {
                        // Fits: server indices are < MAX_SERVERS_PER_BACKEND < u16::MAX (checked in new).
                        self.table[slot] = a.server as u16;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
    }

    /// Request path: the key's server, or the next untried one within `HASH_PROBES` slots.
    #[inline]
    pub(super) fn pick(&self, key: u64, tried: &[usize]) -> Option<usize> {
        let m = self.table.len();
        let mut slot = (key % m as u64) as usize;
        for _ in 0..=HASH_PROBES {
            let server = self.table[slot];
            if server != EMPTY && !is_tried(u32::from(server), tried) {
                return Some(usize::from(server));
            }
            slot = if slot + 1 == m { 0 } else { slot + 1 };
        }
        None
    }

    #[cfg(test)]
    pub(super) fn slots_of(&self, server: usize) -> usize {
        self.table
            .iter()
            .filter(|&&s| usize::from(s) == server)
            .count()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::up;
    use crate::balance::{hash_bytes, Balancer, Policy, ServerSpec};

    #[test]
    fn table_sizes_are_primes_and_big_enough() {
        for m in TABLE_PRIMES {
            assert!((2..).take_while(|d| d * d <= m).all(|d| m % d != 0), "{m}");
        }
        assert_eq!(table_size(2), 251);
        assert_eq!(table_size(16), 2039);
        assert!(table_size(crate::limits::MAX_SERVERS_PER_BACKEND) >= 1024 * 100);
        assert_eq!(table_size(usize::MAX), MAX_TABLE_SIZE);
    }

    fn keys(n: u32) -> Vec<u64> {
        (0..n).map(|i| hash_bytes(&i.to_le_bytes())).collect()
    }

    #[test]
    fn stable_across_independent_balancers() {
        let specs = up(7);
        let mut a = Balancer::new(Policy::Hash, &specs, false, 0);
        let mut b = Balancer::new(Policy::Hash, &specs, false, 12345);
        for k in keys(10_000) {
            let s = a.pick(Some(k), &[]);
            assert!(s.is_some());
            assert_eq!(s, a.pick(Some(k), &[]), "same key, same server");
            assert_eq!(s, b.pick(Some(k), &[]), "another core or process agrees");
        }
    }

    #[test]
    fn removing_a_server_remaps_only_its_share() {
        let keys = keys(100_000);
        for n in 2..=16usize {
            let specs = up(n);
            let mut before = Balancer::new(Policy::Hash, &specs, false, 0);
            let old: Vec<usize> = keys
                .iter()
                .map(|&k| before.pick(Some(k), &[]).unwrap())
                .collect();
            for removed in 0..n {
                let mut eff = vec![1u32; n];
                eff[removed] = 0;
                let mut after = Balancer::new(Policy::Hash, &specs, false, 0);
                after.rebuild(&eff);
                let (mut moved, mut moved_others) = (0usize, 0usize);
                for (&k, &o) in keys.iter().zip(&old) {
                    let s = after.pick(Some(k), &[]).unwrap();
                    assert_ne!(s, removed);
                    if s != o {
                        moved += 1;
                        if o != removed {
                            moved_others += 1;
                        }
                    }
                }
                let total = keys.len() as f64;
                let bound = 1.0 / n as f64 + 0.05;
                assert!(
                    moved as f64 / total <= bound,
                    "n={n} removed={removed} moved={moved}"
                );
                assert!(
                    moved_others as f64 / total <= 0.05,
                    "n={n} removed={removed}: {moved_others} keys of other servers moved"
                );
            }
        }
    }

    #[test]
    fn weighted_shares_follow_weights() {
        let weights = [1u32, 2, 5, 10, 50, 100, 256];
        let specs: Vec<ServerSpec> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| ServerSpec {
                weight: w,
                backup: false,
                maxconn: None,
                id_hash: hash_bytes(format!("be/s{i}").as_bytes()),
            })
            .collect();
        let mut b = Balancer::new(Policy::Hash, &specs, false, 0);
        let total: u32 = weights.iter().sum();
        let maglev = b.maglev.as_ref().unwrap();
        for (i, &w) in weights.iter().enumerate() {
            let share = maglev.slots_of(i) as f64 / maglev.len() as f64;
            let want = f64::from(w) / f64::from(total);
            assert!(
                (share - want).abs() < 0.01,
                "server {i}: table share {share} vs {want}"
            );
        }
        // Through picks with hashed keys: within a few % of the weights.
        let mut counts = [0u32; 7];
        for k in keys(100_000) {
            counts[b.pick(Some(k), &[]).unwrap()] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let share = f64::from(counts[i]) / 100_000.0;
            let want = f64::from(w) / f64::from(total);
            assert!((share - want).abs() < 0.02, "server {i}: {share} vs {want}");
        }
    }

    #[test]
    fn tried_probes_then_falls_back() {
        let mut b = Balancer::new(Policy::Hash, &up(3), false, 0);
        for k in keys(2000) {
            let first = b.pick(Some(k), &[]).unwrap();
            let second = b.pick(Some(k), &[first]).unwrap();
            assert_ne!(second, first);
            assert_eq!(
                second,
                b.pick(Some(k), &[first]).unwrap(),
                "failover is deterministic too"
            );
            let third = b.pick(Some(k), &[first, second]).unwrap();
            assert!(third != first && third != second);
            assert_eq!(b.pick(Some(k), &[0, 1, 2]), None);
        }
        // One server left untried out of many, far from most keys' slots: the fallback finds it.
        let mut b = Balancer::new(Policy::Hash, &up(40), false, 0);
        let tried: Vec<usize> = (1..40).collect();
        for k in keys(200) {
            assert_eq!(b.pick(Some(k), &tried), Some(0));
        }
    }

    #[test]
    fn missing_key_round_robins() {
        let mut b = Balancer::new(Policy::Hash, &up(3), false, 0);
        let picks: Vec<_> = (0..6).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(b.pick(None, &[0]), Some(1));
    }
}

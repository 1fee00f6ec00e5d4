//! Random with power of two choices: draw two distinct untried candidates with probability
//! proportional to effective weight, keep the one with the lower in_flight/weight (ties: the first
//! draw, so at zero load picks follow the weights exactly). In-flight counts are per core, as for
//! least connections (see `least_conn`).
//!
//! Weighted draws use cumulative weights (built in rebuild) and a binary search: O(log n), no table to
//! rebuild per weight unit. Tried servers are excluded exactly, not by redrawing: the draw is made in
//! the weight line with the tried ranges cut out, then mapped back (see `locate`).

use super::hash::Rng;
use super::{Active, NOT_ACTIVE};

/// Request path.
#[inline]
pub(super) fn pick(
    active: &[Active],
    cumulative: &[u64],
    slot_of: &[u32],
    in_flight: &[u32],
    rng: &mut Rng,
    tried: &[usize],
) -> Option<usize> {
    let n = active.len();
    let total = *cumulative.last()?;
    let mut excluded_weight = 0u64;
    let mut excluded = 0usize;
    for_each_excluded(active, slot_of, tried, None, |slot| {
        excluded_weight += u64::from(active[slot].weight);
        excluded += 1;
    });
    // Active weights are >= 1, so this is zero exactly when every active server was tried.
    let avail = total - excluded_weight;
    if avail == 0 {
        return None;
    }
    let a = locate(rng.below(avail), active, cumulative, slot_of, tried, None);
    if excluded + 1 == n {
        return Some(active[a].server as usize);
    }
    let b = locate(
        rng.below(avail - u64::from(active[a].weight)),
        active,
        cumulative,
        slot_of,
        tried,
        Some(a),
    );
    let load = |slot: usize| u64::from(in_flight[active[slot].server as usize]);
    let (wa, wb) = (u64::from(active[a].weight), u64::from(active[b].weight));
    // Cross-multiplied in u64: no division, no overflow.
    let winner = if load(b) * wa < load(a) * wb { b } else { a };
    Some(active[winner].server as usize)
}

/// Calls `f` once per distinct active slot among `tried` (duplicates and inactive servers skipped), and
/// for `extra`. O(tried^2) with tried <= `MAX_CONNECT_TRIES` in practice.
#[inline]
fn for_each_excluded(
    active: &[Active],
    slot_of: &[u32],
    tried: &[usize],
    extra: Option<usize>,
    mut f: impl FnMut(usize),
) {
    for (i, &t) in tried.iter().enumerate() {
        let slot = slot_of.get(t).copied().unwrap_or(NOT_ACTIVE);
        if slot != NOT_ACTIVE && !tried[..i].contains(&t) {
            f(slot as usize);
        }
    }
    if let Some(slot) = extra {
        debug_assert!(slot < active.len());
        f(slot);
    }
}

/// Maps `r`, a position in the weight line with the excluded ranges cut out, to the active slot that
/// owns it. x = r + (weight of excluded ranges starting at or before x) is solved by iterating from
/// x = r: x only grows, each change takes in at least one more excluded range, so it settles within
/// (excluded + 1) rounds, on the smallest solution, which is the untried slot (tested against brute force).
#[inline]
fn locate(
    r: u64,
    active: &[Active],
    cumulative: &[u64],
    slot_of: &[u32],
    tried: &[usize],
    extra: Option<usize>,
) -> usize {
    let mut x = r;
    for _ in 0..tried.len() + 2 {
        let mut skipped = 0u64;
        for_each_excluded(active, slot_of, tried, extra, |slot| {
            let w = u64::from(active[slot].weight);
            if cumulative[slot] - w <= x {
                skipped += w;
            }
        });
        let next = r + skipped;
        if next == x {
            break;
        }
        x = next;
    }
    // cumulative[i] is the exclusive end of slot i's range.
    cumulative
        .partition_point(|&end| end <= x)
        .min(active.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{normal, up};
    use crate::balance::{Balancer, Policy};

    #[test]
    fn locate_matches_brute_force() {
        let weights = [1u32, 3, 2, 5, 1];
        let active: Vec<Active> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Active {
                server: i as u32,
                weight: w,
            })
            .collect();
        let mut cumulative = Vec::new();
        let mut sum = 0;
        for &w in &weights {
            sum += u64::from(w);
            cumulative.push(sum);
        }
        let slot_of: Vec<u32> = (0..5).collect();
        // Every subset of tried servers (with a duplicate to check dedup) and every extra.
        for mask in 0u32..32 {
            let mut tried: Vec<usize> = (0..5).filter(|i| mask & (1 << i) != 0).collect();
            if let Some(&t) = tried.first() {
                tried.push(t);
            }
            for extra in std::iter::once(None).chain((0..5).map(Some)) {
                if extra.is_some_and(|e| tried.contains(&e)) {
                    continue;
                }
                // The line with the excluded ranges cut out, by expansion.
                let mut line = Vec::new();
                for (slot, &w) in weights.iter().enumerate() {
                    if !tried.contains(&slot) && extra != Some(slot) {
                        line.extend(std::iter::repeat_n(slot, w as usize));
                    }
                }
                for (r, &want) in line.iter().enumerate() {
                    let got = locate(r as u64, &active, &cumulative, &slot_of, &tried, extra);
                    assert_eq!(got, want, "r={r} tried={tried:?} extra={extra:?}");
                }
            }
        }
    }

    #[test]
    fn weights_within_four_sigma() {
        // Nothing in flight: every pick is the first, weight-proportional draw.
        let weights = [1u32, 2, 3, 4, 10];
        let specs: Vec<_> = weights.iter().map(|&w| normal(w)).collect();
        let mut b = Balancer::new(Policy::Random, &specs, false, 42);
        const PICKS: u32 = 100_000;
        let mut counts = [0u32; 5];
        for _ in 0..PICKS {
            counts[b.pick(None, &[]).unwrap()] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let p = f64::from(w) / f64::from(total);
            let expect = f64::from(PICKS) * p;
            let sigma = (expect * (1.0 - p)).sqrt();
            assert!(
                (f64::from(counts[i]) - expect).abs() < 4.0 * sigma,
                "server {i}: {} vs {expect:.0} ({counts:?})",
                counts[i]
            );
        }
    }

    #[test]
    fn prefers_less_loaded_of_two() {
        // Two servers: both are always the candidates, so the less loaded one always wins.
        let mut b = Balancer::new(Policy::Random, &up(2), false, 1);
        b.started(0);
        for _ in 0..100 {
            assert_eq!(b.pick(None, &[]), Some(1));
        }
        // With load following picks, in-flight stays balanced.
        let mut b = Balancer::new(Policy::Random, &up(8), false, 1);
        for _ in 0..800 {
            let s = b.pick(None, &[]).unwrap();
            b.started(s);
        }
        let loads: Vec<u32> = (0..8).map(|s| b.in_flight(s)).collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(
            max - min <= 8,
            "power of two choices keeps loads close: {loads:?}"
        );
    }

    #[test]
    fn tried_excluded_and_single_server() {
        let mut b = Balancer::new(Policy::Random, &up(4), false, 3);
        for _ in 0..1000 {
            let s = b.pick(None, &[2, 0, 2]).unwrap();
            assert!(s == 1 || s == 3);
            assert_eq!(b.pick(None, &[0, 1, 2]), Some(3));
        }
        assert_eq!(b.pick(None, &[3, 2, 1, 0]), None);
        let mut one = Balancer::new(Policy::Random, &up(1), false, 3);
        assert_eq!(one.pick(None, &[]), Some(0));
        assert_eq!(one.pick(None, &[0]), None);
    }
}

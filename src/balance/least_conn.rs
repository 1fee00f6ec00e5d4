//! Least connections: the active server with the lowest in-flight/weight.
//!
//! Per-core approximation: each core counts only the requests it assigned itself (`Balancer::started`
//! and `finished` on that core), never the other cores' load, so with N cores a server may carry up to
//! N times the in-flight count one core sees. With connections spread evenly over cores by the kernel
//! this converges to the global least-connections choice; a core never waits on another to decide.
//! The scan is O(active servers) per pick (HAProxy keeps a tree; with at most
//! `MAX_SERVERS_PER_BACKEND` servers in a contiguous array the scan is simpler and still fast).

use super::{is_tried, Active};

/// Request path. Ties (e.g. every server idle) go to the first tied server from a rotating start, so
/// at zero load traffic still spreads like round robin instead of piling onto server 0.
#[inline]
pub(super) fn pick(
    active: &[Active],
    in_flight: &[u32],
    next: &mut usize,
    tried: &[usize],
) -> Option<usize> {
    let n = active.len();
    if n == 0 {
        return None;
    }
    let start = *next % n;
    let mut best = NO_BEST;
    // Each active server is looked at once: from the rotating start to the end, then the beginning.
    scan(&active[start..], start, in_flight, tried, &mut best);
    scan(&active[..start], 0, in_flight, tried, &mut best);
    if best.0 == NO_BEST.0 {
        return None;
    }
    *next = best.0 + 1;
    Some(active[best.0].server as usize)
}

/// (position, in-flight, weight) of the best server so far. Ratios are compared cross-multiplied in
/// u64, so no division: in-flight < 2^32 and weights < 2^32 keep every product below 2^64. The
/// starting value's ratio 2^32/1 is above any real one (in-flight <= u32::MAX, weight >= 1).
const NO_BEST: (usize, u64, u64) = (usize::MAX, 1 << 32, 1);

#[inline]
fn scan(
    part: &[Active],
    base: usize,
    in_flight: &[u32],
    tried: &[usize],
    best: &mut (usize, u64, u64),
) {
    for (i, a) in part.iter().enumerate() {
        if is_tried(a.server, tried) {
            continue;
        }
        let load = u64::from(in_flight[a.server as usize]);
        let w = u64::from(a.weight);
        // Strictly lower: ties stay with the first from the rotating start.
        if load * best.2 < best.1 * w {
            *best = (base + i, load, w);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::balance::tests::{normal, up};
    use crate::balance::{Balancer, Policy};

    #[test]
    fn picks_fewer_in_flight() {
        let mut b = Balancer::new(
            Policy::LeastConn,
            &[normal(1), normal(1), normal(1)],
            false,
            0,
        );
        b.started(0);
        b.started(0);
        b.started(1);
        assert_eq!(b.pick(None, &[]), Some(2));
        b.started(2);
        b.started(2);
        assert_eq!(
            b.pick(None, &[]),
            Some(1),
            "1 has one in flight, 0 and 2 have two"
        );
        b.finished(0);
        b.finished(0);
        b.finished(0); // saturates at zero
        assert_eq!(b.in_flight(0), 0);
        assert_eq!(b.pick(None, &[]), Some(0));
        assert_eq!(
            b.pick(None, &[0]),
            Some(1),
            "tried excluded even if least loaded"
        );
        assert_eq!(b.pick(None, &[0, 1, 2]), None);
    }

    #[test]
    fn idle_servers_rotate() {
        let mut b = Balancer::new(Policy::LeastConn, &up(4), false, 0);
        let picks: Vec<_> = (0..8).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn respects_weights() {
        // Requests that never finish: the counts must follow the weights 3:1:2.
        let mut b = Balancer::new(
            Policy::LeastConn,
            &[normal(3), normal(1), normal(2)],
            false,
            5,
        );
        for _ in 0..600 {
            let s = b.pick(None, &[]).unwrap();
            b.started(s);
        }
        let c = [b.in_flight(0), b.in_flight(1), b.in_flight(2)];
        assert!(
            c[0].abs_diff(300) <= 3 && c[1].abs_diff(100) <= 1 && c[2].abs_diff(200) <= 2,
            "{c:?}"
        );
        // Steady state with completions: in-flight stays balanced by weight.
        for i in 0..10_000u32 {
            let s = b.pick(None, &[]).unwrap();
            b.started(s);
            b.finished((i % 3) as usize);
        }
        let s = b.pick(None, &[]).unwrap();
        assert!(
            b.pick(None, &[s]).is_some_and(|t| t != s),
            "weighted scan skips tried"
        );
        assert_eq!(b.pick(None, &[2, 1, 0]), None);
        let c = [b.in_flight(0), b.in_flight(1), b.in_flight(2)];
        let (l0, l1, l2) = (c[0] as f64 / 3.0, c[1] as f64, c[2] as f64 / 2.0);
        assert!((l0 - l1).abs() <= 2.0 && (l0 - l2).abs() <= 2.0, "{c:?}");
    }
}

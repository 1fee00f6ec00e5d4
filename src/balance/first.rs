//! First: fill servers in index order up to their `maxconn` (HAProxy's `balance first`), so spare
//! servers stay idle and can be powered down; only when every active server is full does load spread,
//! to the one with the lowest in_flight/maxconn.

use super::{is_tried, Active, ServerSpec};

/// Request path. `active` is in ascending server index.
#[inline]
pub(super) fn pick(
    active: &[Active],
    specs: &[ServerSpec],
    in_flight: &[u32],
    tried: &[usize],
) -> Option<usize> {
    for a in active {
        if is_tried(a.server, tried) {
            continue;
        }
        let s = a.server as usize;
        match specs[s].maxconn {
            None => return Some(s),
            Some(max) if in_flight[s] < max => return Some(s),
            Some(_) => {}
        }
    }
    // All untried servers are full (all have a maxconn, or we would have returned). A per-core share
    // of 0 (maxconn below the number of cores) counts as 1 so the ratio stays defined.
    let mut best: Option<(usize, u64, u64)> = None;
    for a in active {
        if is_tried(a.server, tried) {
            continue;
        }
        let s = a.server as usize;
        let load = u64::from(in_flight[s]);
        let cap = u64::from(specs[s].maxconn.unwrap_or(u32::MAX).max(1));
        match best {
            Some((_, bl, bc)) if load * bc >= bl * cap => {}
            _ => best = Some((s, load, cap)),
        }
    }
    best.map(|(s, _, _)| s)
}

#[cfg(test)]
mod tests {
    use crate::balance::tests::normal;
    use crate::balance::{Balancer, Policy, ServerSpec};

    fn capped(max: u32) -> ServerSpec {
        ServerSpec {
            maxconn: Some(max),
            ..normal(1)
        }
    }

    #[test]
    fn fills_in_order_with_maxconn() {
        let mut b = Balancer::new(Policy::First, &[capped(2), capped(3), capped(1)], false, 9);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let s = b.pick(None, &[]).unwrap();
            b.started(s);
            picks.push(s);
        }
        assert_eq!(picks, [0, 0, 1, 1, 1, 2]);
        // All full (2/2, 3/3, 1/1): lowest in_flight/maxconn; ties to the lowest index.
        assert_eq!(b.pick(None, &[]), Some(0));
        b.started(0); // 3/2
        assert_eq!(b.pick(None, &[]), Some(1), "1 is at 3/3 = 1 < 3/2");
        b.finished(1);
        assert_eq!(b.pick(None, &[]), Some(1), "a slot freed up on 1");
        assert_eq!(
            b.pick(None, &[1]),
            Some(2),
            "tried excluded; 2 at 1/1 is below 0 at 3/2"
        );
        assert_eq!(b.pick(None, &[0, 1, 2]), None);
    }

    #[test]
    fn unlimited_is_always_first_active() {
        let mut b = Balancer::new(Policy::First, &[normal(1), normal(1)], false, 3);
        for _ in 0..10 {
            let s = b.pick(None, &[]).unwrap();
            assert_eq!(s, 0);
            b.started(s);
        }
        b.rebuild(&[0, 1]);
        assert_eq!(b.pick(None, &[]), Some(1), "first ACTIVE server");
        assert_eq!(b.pick(None, &[1]), None);
    }
}

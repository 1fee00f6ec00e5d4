//! Backend selection, per worker: no lock, no atomic. With one worker, requests alternate exactly; with
//! N workers each keeps its own counter (HAProxy's `nbthread` round robin is also per-thread-group).

/// Round robin over a backend's servers. Equal weights use a plain counter; different weights use
/// nginx's smooth weighted round robin, which interleaves (a,a,b -> a,b,a) instead of bursting.
#[derive(Debug, Clone)]
pub enum RoundRobin {
    Plain {
        next: usize,
        n: usize,
    },
    Smooth {
        weight: Vec<i64>,
        current: Vec<i64>,
        total: i64,
    },
}

impl RoundRobin {
    /// `weights` has one entry per server, each >= 1; `start` offsets the first pick (spreads workers).
    pub fn new(weights: &[u32], start: usize) -> RoundRobin {
        assert!(
            !weights.is_empty(),
            "a backend has at least one server (config validation)"
        );
        if weights.iter().all(|&w| w == weights[0]) {
            RoundRobin::Plain {
                next: start % weights.len(),
                n: weights.len(),
            }
        } else {
            let weight: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
            let total = weight.iter().sum();
            RoundRobin::Smooth {
                current: vec![0; weight.len()],
                weight,
                total,
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RoundRobin::Plain { n, .. } => *n,
            RoundRobin::Smooth { weight, .. } => weight.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn pick(&mut self) -> usize {
        match self {
            RoundRobin::Plain { next, n } => {
                let i = *next;
                *next = if i + 1 == *n { 0 } else { i + 1 };
                i
            }
            RoundRobin::Smooth {
                weight,
                current,
                total,
            } => {
                let mut best = 0;
                for i in 0..weight.len() {
                    current[i] += weight[i];
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= *total;
                best
            }
        }
    }

    /// Picks a server not in `tried`, for failover after a connect failure. Bounded: after `len()`
    /// picks every server has been offered once; then any pick is returned.
    pub fn pick_excluding(&mut self, tried: &[usize]) -> usize {
        let mut s = self.pick();
        for _ in 0..self.len() {
            if !tried.contains(&s) {
                break;
            }
            s = self.pick();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_alternates() {
        let mut rr = RoundRobin::new(&[1, 1], 0);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn smooth_honours_weights_and_interleaves() {
        let mut rr = RoundRobin::new(&[5, 1, 1], 0);
        let picks: Vec<usize> = (0..7).map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0], "nginx's documented sequence");
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[rr.pick()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn excluding_skips_tried() {
        let mut rr = RoundRobin::new(&[1, 1, 1], 0);
        assert_eq!(rr.pick_excluding(&[0]), 1);
        assert_eq!(rr.pick_excluding(&[2, 0]), 1);
        let mut one = RoundRobin::new(&[1], 0);
        assert_eq!(
            one.pick_excluding(&[0]),
            0,
            "bounded even when all were tried"
        );
    }
}

//! Nanoseconds per server pick for every balancing policy with 2, 16 and 256 servers. Each iteration is
//! a request's life on one core: pick, `started`, and `finished` for the request picked 64 iterations
//! earlier, so least conn, random and first see realistic, moving in-flight counts (64 concurrent
//! requests per core). Weights vary (1..=4) so round robin runs the smooth weighted path; first has a
//! per-core maxconn of 8 so it fills and spills. The `rebuild` group measures what one health change
//! costs a core. Run: `cargo bench --bench balance`.

use std::hint::black_box;

use corelb::balance::{hash_bytes, Balancer, Policy, ServerSpec};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

/// Requests in flight per core during the measurement.
const IN_FLIGHT: usize = 64;
/// Distinct hash keys cycled through (a working set of clients).
const KEYS: usize = 4096;

fn specs(n: usize) -> Vec<ServerSpec> {
    (0..n)
        .map(|i| ServerSpec {
            weight: 1 + (i % 4) as u32,
            backup: false,
            maxconn: Some(8),
            id_hash: hash_bytes(format!("backend/server{i}").as_bytes()),
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let keys: Vec<u64> = (0..KEYS as u32)
        .map(|i| hash_bytes(&i.to_be_bytes()))
        .collect();
    let mut g = c.benchmark_group("balance");
    for (name, policy) in [
        ("round_robin", Policy::RoundRobin),
        ("least_conn", Policy::LeastConn),
        ("random", Policy::Random),
        ("first", Policy::First),
        ("hash", Policy::Hash),
    ] {
        for n in [2usize, 16, 256] {
            let b = Balancer::new(policy, &specs(n), false, 1);
            bench_one(&mut g, &format!("{name}_{n}"), b, &keys);
        }
    }
    g.finish();
}

fn bench_one(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut b: Balancer, keys: &[u64]) {
    let mut ring = [usize::MAX; IN_FLIGHT];
    let mut i = 0usize;
    g.bench_function(name, |bench| {
        bench.iter(|| {
            let key = Some(keys[i % KEYS]);
            let s = b.pick(black_box(key), black_box(&[])).unwrap_or(0);
            b.started(s);
            let slot = i % IN_FLIGHT;
            b.finished(ring[slot]); // usize::MAX at first: ignored
            ring[slot] = s;
            i = i.wrapping_add(1);
            s
        })
    });
}

/// What one health change costs a core: rebuilding a balancer's active set (and, for hash, its Maglev
/// table) after one server goes down or comes back. Each iteration toggles server 0.
fn rebuilds(c: &mut Criterion) {
    let mut g = c.benchmark_group("rebuild");
    for (name, policy) in [
        ("round_robin", Policy::RoundRobin),
        ("least_conn", Policy::LeastConn),
        ("random", Policy::Random),
        ("hash", Policy::Hash),
    ] {
        for n in [2usize, 16, 256] {
            let sp = specs(n);
            let mut b = Balancer::new(policy, &sp, false, 1);
            let up: Vec<u32> = sp.iter().map(|s| s.weight * 16).collect();
            let mut down = up.clone();
            down[0] = 0;
            let mut flip = false;
            g.bench_function(format!("{name}_{n}"), |bench| {
                bench.iter(|| {
                    flip = !flip;
                    b.rebuild(black_box(if flip { &down } else { &up }));
                    b.active_len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, picks, rebuilds);
criterion_main!(benches);

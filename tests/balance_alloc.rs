//! The request path of every balancing policy (`pick`, `started`, `finished`) performs no heap
//! allocation once the balancer is built: counted by a global allocator wrapping the system one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use corelb::balance::{hash_bytes, Balancer, Policy, ServerSpec};

thread_local! {
    // Per thread, so the test harness's own threads cannot disturb the count. Const-initialised
    // Cell<usize>: no lazy initialisation and no destructor, so using it inside the allocator cannot
    // itself allocate or recurse.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` unchanged; counting only touches a thread-local Cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

const PICKS: u32 = 10_000;

#[test]
fn counter_sees_allocations() {
    // The test must be able to fail: an allocation on this thread is counted.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(allocations() > before);
    drop(v);
}

#[test]
fn pick_does_not_allocate() {
    let specs: Vec<ServerSpec> = (0..16u32)
        .map(|i| ServerSpec {
            weight: 1 + i % 4,
            backup: i >= 14,
            maxconn: Some(3),
            id_hash: hash_bytes(format!("be/s{i}").as_bytes()),
        })
        .collect();
    let keys: Vec<u64> = (0..PICKS).map(|i| hash_bytes(&i.to_le_bytes())).collect();
    for policy in [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::Random,
        Policy::First,
        Policy::Hash,
    ] {
        let mut b = Balancer::new(policy, &specs, false, 3);
        let mut effective: Vec<u32> = specs.iter().map(|s| s.weight).collect();
        effective[5] = 0;
        b.rebuild(&effective);
        let mut ring = [0usize; 32];
        let before = allocations();
        let mut picked = 0u32;
        for (i, &k) in keys.iter().enumerate() {
            let tried_storage = [i % 16, (i + 7) % 16];
            let tried = &tried_storage[..i % 3];
            let key = if i % 10 == 0 { None } else { Some(k) };
            if let Some(s) = b.pick(key, tried) {
                b.started(s);
                let slot = i % ring.len();
                b.finished(ring[slot]);
                ring[slot] = s;
                picked += 1;
            }
        }
        let after = allocations();
        assert_eq!(picked, PICKS, "{policy:?}: every pick found a server");
        assert_eq!(
            after - before,
            0,
            "{policy:?}: allocations on the request path"
        );
    }
}

//! The vendored glommio stamps an io_uring operation with the time (queued, submitted, fulfilled:
//! one clock read each) only when the operation's I/O latencies are collected
//! (vendor/patches/glommio/0003-no-latency-stamps-unless-collected.patch): `record_io_latencies`,
//! off by default and never used by corelb. This test binary counts the monotonic clock reads of
//! each thread (it defines `clock_gettime`, which std's `Instant::now` calls, over the real
//! syscall), and compares the same file reads on an executor that collects latencies and on one
//! that does not: about three reads per operation apart with the patch, next to none without.

use std::cell::Cell;
use std::sync::mpsc;
use std::time::Duration;

use glommio::io::BufferedFile;
use glommio::LocalExecutorBuilder;

/// Bound on each executor: a hang becomes a failure.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// File reads per executor: enough that the per-operation difference stands far above the clock
/// reads the executor makes for its own timers, which do not grow with the operations.
const OPS: u64 = 1000;
/// Longer than a run: no preemption during the file reads. With glommio's default (100 ms) a run of
/// page-cache reads sometimes never finished, a lost wake-up that comes with patch 4 (the lazy
/// preemption timer; see the ignored test in tests/glommio_timers.rs), which this test is not about.
const PREEMPT_TIMER: Duration = Duration::from_secs(10);
/// The stamps an operation gets when its latency is collected: queued, submitted, fulfilled.
const STAMPS_PER_OP: u64 = 3;

thread_local! {
    /// CLOCK_MONOTONIC reads made by this thread.
    static MONOTONIC_READS: Cell<u64> = const { Cell::new(0) };
}

/// Counts the calling thread's monotonic clock reads and reads the clock with the real syscall
/// (no vDSO: slower, which does not matter here).
///
/// # Safety
/// As `clock_gettime(2)`: `tp` must be valid for writing a timespec.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(
    clock: libc::clockid_t,
    tp: *mut libc::timespec,
) -> libc::c_int {
    if clock == libc::CLOCK_MONOTONIC {
        let _ = MONOTONIC_READS.try_with(|c| c.set(c.get() + 1));
    }
    // SAFETY: the caller passes a valid timespec pointer, as clock_gettime requires.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as libc::c_int }
}

fn monotonic_reads() -> u64 {
    MONOTONIC_READS.with(|c| c.get())
}

/// Monotonic clock reads on the executor thread during OPS file reads, on an executor that
/// collects I/O latencies or not.
fn clock_reads_for_file_reads(record_io_latencies: bool) -> u64 {
    let dir = std::env::temp_dir().join(format!(
        "corelb-glommio-clock-{}-{record_io_latencies}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("data");
    std::fs::write(&path, vec![7u8; 4096]).expect("write temp file");
    let (tx, rx) = mpsc::channel();
    let file_path = path.clone();
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .preempt_timer(PREEMPT_TIMER)
        .record_io_latencies(record_io_latencies)
        .spawn(move || async move {
            let f = BufferedFile::open(&file_path).await.expect("open");
            // One read first, so lazily set-up state does not count.
            f.read_at(0, 64).await.expect("read");
            let before = monotonic_reads();
            for i in 0..OPS {
                let r = f.read_at(i % 64 * 64, 64).await.expect("read");
                assert_eq!(r.len(), 64);
            }
            let reads = monotonic_reads() - before;
            f.close().await.expect("close");
            let _ = tx.send(reads);
        })
        .expect("executor");
    let reads = rx
        .recv_timeout(TEST_DEADLINE)
        .expect("the executor did not finish (it panicked or hung)");
    let _ = std::fs::remove_dir_all(&dir);
    reads
}

#[test]
fn operations_are_stamped_only_when_latencies_are_collected() {
    // The counter itself works: std's clock goes through the definition above.
    let before = monotonic_reads();
    let _ = std::time::Instant::now();
    assert_eq!(monotonic_reads() - before, 1, "Instant::now is not counted");

    let without = clock_reads_for_file_reads(false);
    let with = clock_reads_for_file_reads(true);
    eprintln!(
        "monotonic clock reads per file read: {:.2} without latency collection, {:.2} with",
        without as f64 / OPS as f64,
        with as f64 / OPS as f64
    );
    // Collecting adds the three stamps (and its own bookkeeping); not collecting must save them.
    assert!(
        with >= without + STAMPS_PER_OP * OPS,
        "{without} clock reads without latency collection, {with} with, over {OPS} operations: \
         operations are stamped even when nothing collects their latencies"
    );
}

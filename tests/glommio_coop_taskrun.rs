//! The vendored glommio sets its io_uring rings up with IORING_SETUP_COOP_TASKRUN
//! (vendor/patches/glommio/0001-coop-taskrun.patch): a completion waits for the worker thread's next
//! syscall instead of interrupting it with an IPI. The kernel shows a ring's setup flags nowhere
//! (not in /proc/self/fdinfo), and the missing IPI is not observable deterministically (a thread
//! asleep in a syscall is woken either way), so the patch keeps the flags liburing reports for the
//! ring it created and this test reads them: the flag on a kernel that has it, the plain-ring
//! fallback (and a working executor) on one that does not.

use std::sync::mpsc;
use std::time::Duration;

use glommio::LocalExecutorBuilder;

/// Bound on the test's executor: a hang becomes a failure.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// The first kernel that accepts the flag (older ones reject it with EINVAL).
const COOP_TASKRUN_KERNEL: (u32, u32) = (5, 19);

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn rings_are_set_up_with_coop_taskrun_where_the_kernel_has_it() {
    let (tx, rx) = mpsc::channel();
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let _ = tx.send(glommio::executor().io_uring_coop_taskrun());
        })
        .expect("executor");
    let coop = rx
        .recv_timeout(TEST_DEADLINE)
        .expect("the executor did not start");
    let kernel = kernel_version();
    assert_eq!(
        coop,
        kernel >= COOP_TASKRUN_KERNEL,
        "kernel {kernel:?}: COOP_TASKRUN is {} (expected only from {COOP_TASKRUN_KERNEL:?} on)",
        if coop { "on" } else { "off" }
    );
}

//! `record` never allocates: counted by a global allocator that tallies the
//! allocations of the current thread only (other test threads do not count).

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::{Arm, MetricsAccumulator, Outcome, clock::ManualClock};

#[path = "support/alloc.rs"]
mod alloc;

use alloc::allocations;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[test]
fn record_does_not_allocate() {
    let metrics = MetricsAccumulator::with_clock(Arc::new(ManualClock::default()));
    // The thread's first record leases its stripe slot (a one-time cost per
    // thread, documented on `record`); everything after must be free.
    metrics.record(Arm::Sync, Outcome::Success, Duration::from_millis(1));

    let before = allocations();
    for i in 0..100_000u64 {
        let arm = Arm::ALL[(i % 2) as usize];
        let outcome = Outcome::ALL[(i % 4) as usize];
        metrics.record(arm, outcome, Duration::from_nanos(i * 7_919 * 1_000));
        if i % 100 == 0 {
            metrics.record_complaint(arm);
            metrics.record_memory(1 << 30 | i);
        }
    }
    metrics.record(Arm::Async, Outcome::Success, Duration::MAX);
    assert_eq!(allocations() - before, 0, "record allocated");

    // The counter does see allocations (the test is not vacuous).
    let before = allocations();
    let snapshot = metrics.snapshot();
    assert!(allocations() > before);
    assert_eq!(snapshot.uploads(Arm::Sync), 50_001);
}

#[test]
fn a_fresh_thread_leases_its_slot_without_allocating_on_linux() {
    let metrics = Arc::new(MetricsAccumulator::new());
    let worker = Arc::clone(&metrics);
    let counted = std::thread::spawn(move || {
        let before = allocations();
        for _ in 0..1_000 {
            worker.record(Arm::Async, Outcome::Success, Duration::from_millis(3));
        }
        allocations() - before
    })
    .join()
    .unwrap();
    // glibc registers the slot's thread-exit hook without Rust allocations;
    // other platforms may allocate once for it.
    let allowed = if cfg!(all(target_os = "linux", target_env = "gnu")) {
        0
    } else {
        2
    };
    assert!(
        counted <= allowed,
        "{counted} allocations on a fresh thread"
    );
    assert_eq!(metrics.snapshot().uploads(Arm::Async), 1_000);
}

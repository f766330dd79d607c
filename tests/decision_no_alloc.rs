//! The hot path allocates nothing: proven with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use async_upload_rollout::{Percent, Rollout, RolloutConfig};

/// Counts allocations made by the current thread only, so other test threads
/// cannot disturb the count.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local without a destructor, so
// touching it never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn should_use_async_allocates_nothing() {
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("{i:08x}-d9cb-469f-a165-70867728950e"))
        .collect();
    let with_lists = RolloutConfig {
        force_async: (0..100).map(|i| format!("allow-{i}")).collect(),
        force_sync: (0..100).map(|i| format!("deny-{i}")).collect(),
        ..RolloutConfig::with_percent(Percent::from_whole(10).unwrap())
    };
    let configs = [
        RolloutConfig::with_percent(Percent::from_whole(10).unwrap()),
        RolloutConfig::with_percent(Percent::ZERO),
        RolloutConfig::with_percent(Percent::HUNDRED),
        with_lists,
    ];
    for config in configs {
        let rollout = Rollout::new(config.clone());
        let mut handle = rollout.handle();
        // Warm up: the first load on a thread may register arc-swap's
        // per-thread debt list (a one-time allocation per thread).
        let _ = rollout.should_use_async("warm-up");
        let _ = handle.should_use_async("warm-up");

        let mut async_count = 0;
        let n = allocations_during(|| {
            for id in &ids {
                async_count += usize::from(rollout.should_use_async(id));
                async_count += usize::from(handle.should_use_async(id.as_bytes()));
                async_count += usize::from(rollout.should_use_async("allow-7"));
                async_count += usize::from(rollout.should_use_async("deny-7"));
                let _ = rollout.bucket(id);
                let _ = rollout.percent();
            }
        });
        assert_eq!(n, 0, "{n} allocations for config {config:?}");
        assert!(async_count > 0 || config.percent == Percent::ZERO);
    }
}

#[test]
fn alternating_among_more_rollouts_than_cache_slots_allocates_nothing() {
    let rollouts: Vec<Rollout> = (0..3)
        .map(|p| {
            Rollout::new(RolloutConfig::with_percent(
                Percent::from_whole(10 * p + 5).unwrap(),
            ))
        })
        .collect();
    for rollout in &rollouts {
        let _ = rollout.should_use_async("warm-up");
    }
    // Three rollouts on one thread with two cache slots: every decision
    // evicts a slot and makes a new one. That must not allocate either.
    let mut yes = 0;
    let n = allocations_during(|| {
        for i in 0..30_000 {
            yes += usize::from(rollouts[i % 3].should_use_async(&ID[i % 4]));
        }
    });
    assert_eq!(n, 0);
    assert!(yes > 0);
}

const ID: [&str; 4] = ["a", "b", "c", "d"];

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let n = allocations_during(|| {
        let v = std::hint::black_box(vec![1u8; 64]);
        drop(v);
    });
    assert_eq!(n, 1);
}

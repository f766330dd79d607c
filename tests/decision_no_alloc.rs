//! The hot path allocates nothing: proven with a counting global allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use async_upload_rollout::{Percent, Rollout, RolloutConfig};

#[path = "support/alloc.rs"]
mod alloc;

use alloc::allocations_during;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Every kind of config the hot path tells apart: the hashed percent, 0%,
/// 100%, override lists (decided through the compiled config), the kill
/// switch and a halt (answered without hashing). `true` = halt it.
fn every_kind_of_config() -> Vec<(RolloutConfig, bool)> {
    let ten = || RolloutConfig::with_percent(Percent::from_whole(10).unwrap());
    let with_lists = RolloutConfig {
        force_async: (0..100).map(|i| format!("allow-{i}")).collect(),
        force_sync: (0..100).map(|i| format!("deny-{i}")).collect(),
        ..ten()
    };
    vec![
        (ten(), false),
        (RolloutConfig::with_percent(Percent::ZERO), false),
        (RolloutConfig::with_percent(Percent::HUNDRED), false),
        (with_lists.clone(), false),
        (
            RolloutConfig {
                kill_switch: true,
                ..with_lists.clone()
            },
            false,
        ),
        (with_lists, true),
    ]
}

#[test]
fn should_use_async_allocates_nothing() {
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("{i:08x}-d9cb-469f-a165-70867728950e"))
        .collect();
    for (config, halt) in every_kind_of_config() {
        let rollout = Rollout::new(config.clone());
        if halt {
            rollout.halt();
        }
        let mut handle = rollout.handle();
        // Warm up: the first load on a thread may register arc-swap's
        // per-thread debt list (a one-time allocation per thread).
        let _ = rollout.should_use_async("warm-up");
        let _ = handle.should_use_async("warm-up");
        let _ = rollout.decide("warm-up");

        let mut async_count = 0;
        let n = allocations_during(|| {
            for id in &ids {
                async_count += usize::from(rollout.should_use_async(id));
                async_count += usize::from(handle.should_use_async(id.as_bytes()));
                async_count += usize::from(rollout.should_use_async("allow-7"));
                async_count += usize::from(handle.should_use_async("allow-7"));
                async_count += usize::from(rollout.should_use_async("deny-7"));
                let _ = rollout.bucket(id);
                let _ = rollout.percent();
                let _ = rollout.decide(id);
            }
        });
        assert_eq!(n, 0, "{n} allocations for config {config:?}, halted {halt}");
        let nothing_async = halt || config.kill_switch || config.percent == Percent::ZERO;
        assert_eq!(async_count == 0, nothing_async, "{config:?}, halted {halt}");
    }
}

#[test]
fn alternating_among_many_rollouts_allocates_nothing() {
    let rollouts: Vec<Rollout> = (0..8)
        .map(|p| {
            Rollout::new(RolloutConfig::with_percent(
                Percent::from_whole(10 * p + 5).unwrap(),
            ))
        })
        .collect();
    for rollout in &rollouts {
        let _ = rollout.should_use_async("warm-up");
    }
    // Nothing is kept per thread or per rollout, so interleaving rollouts
    // cannot evict or rebuild anything.
    let mut yes = 0;
    let n = allocations_during(|| {
        for i in 0..30_000 {
            yes += usize::from(rollouts[i % 8].should_use_async(&ID[i % 4]));
        }
    });
    assert_eq!(n, 0);
    assert!(yes > 0);
}

#[test]
fn deciding_while_another_thread_stores_allocates_nothing() {
    // Decisions that land on a write under way take the compiled config's
    // path; neither path allocates. The writer's allocations are its own
    // (the counter is per thread).
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).unwrap(),
    )));
    // Warm up both paths (the compiled config's takes an `ArcSwap::load`,
    // whose first call on a thread may allocate arc-swap's debt node).
    let _ = rollout.should_use_async("warm-up");
    let _ = rollout.decide("warm-up");
    let stop = Arc::new(AtomicBool::new(false));
    let stores = Arc::new(AtomicU64::new(0));
    let writer = {
        let (rollout, stop, stores) = (rollout.clone(), stop.clone(), stores.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (config, halt) in every_kind_of_config() {
                    rollout.store(config);
                    if halt {
                        rollout.halt();
                        rollout.set_percent(Percent::from_whole(10).unwrap());
                    }
                    stores.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Decide until the writer has stored a few hundred configs meanwhile.
    while stores.load(Ordering::Relaxed) == 0 {
        thread::yield_now();
    }
    let until = stores.load(Ordering::Relaxed) + 300;
    let mut decisions = 0usize;
    let mut yes = 0usize;
    let n = allocations_during(|| {
        while decisions < 100_000 || stores.load(Ordering::Relaxed) < until {
            yes += usize::from(rollout.should_use_async(&ID[decisions % 4]));
            decisions += 1;
        }
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(n, 0, "{n} allocations in {decisions} decisions");
    std::hint::black_box(yes);
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

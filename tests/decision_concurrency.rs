//! Readers deciding while a writer swaps configs: never a torn read, never a block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use async_upload_rollout::{Percent, Rollout, RolloutConfig};

/// Two configs built so that any mix of their fields is visible in a single
/// decision: under either whole config every decision is `false`, but the
/// kill switch of `b` with the percent of `a` (or the allow list of `a`
/// without the kill switch of `a`) answers `true`.
fn killed_at_hundred() -> RolloutConfig {
    RolloutConfig {
        percent: Percent::HUNDRED,
        kill_switch: true,
        force_async: vec!["probe".into()],
        salt: "config-a".into(),
        ..RolloutConfig::default()
    }
}

fn open_at_zero() -> RolloutConfig {
    RolloutConfig {
        percent: Percent::ZERO,
        kill_switch: false,
        force_sync: vec!["other".into()],
        salt: "config-b".into(),
        ..RolloutConfig::default()
    }
}

#[test]
fn readers_never_see_a_mix_of_two_configs() {
    const READERS: usize = 4;
    const DECISIONS_PER_READER: u64 = 200_000;

    let rollout = Arc::new(Rollout::new(killed_at_hundred()));
    let readers_done = Arc::new(AtomicU64::new(0));
    let stores = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let (rollout, stop, stores) = (rollout.clone(), stop.clone(), stores.clone());
        thread::spawn(move || {
            let (a, b) = (killed_at_hundred(), open_at_zero());
            while !stop.load(Ordering::Relaxed) {
                rollout.store(a.clone());
                rollout.store(b.clone());
                rollout.set_percent(Percent::ZERO);
                rollout.set_kill_switch(true);
                stores.fetch_add(4, Ordering::Relaxed);
            }
        })
    };

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (rollout, readers_done) = (rollout.clone(), readers_done.clone());
            thread::spawn(move || {
                let mut handle = rollout.handle();
                for i in 0..DECISIONS_PER_READER {
                    let id = if i % 2 == 0 { "probe" } else { "other" };
                    assert!(
                        !rollout.should_use_async(id),
                        "reader {r}: torn read at {i}"
                    );
                    assert!(
                        !handle.should_use_async(id),
                        "reader {r}: torn read via handle at {i}"
                    );
                    let config = rollout.config();
                    let a = (config.kill_switch
                        && config.percent == Percent::HUNDRED
                        && config.salt == "config-a")
                        || (config.kill_switch
                            && config.percent == Percent::ZERO
                            && config.salt == "config-b")
                        || (!config.kill_switch
                            && config.percent == Percent::ZERO
                            && config.salt == "config-b");
                    assert!(a, "reader {r}: config that was never stored: {config:?}");
                }
                readers_done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();

    for reader in readers {
        reader.join().expect("a reader panicked");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer panicked");
    assert_eq!(readers_done.load(Ordering::Relaxed), READERS as u64);
    assert!(stores.load(Ordering::Relaxed) > 0, "the writer never ran");
}

#[test]
fn concurrent_set_percent_and_set_kill_switch_lose_no_update() {
    // Two writers each change a different field with read-copy-update; the
    // final config has both fields set, whatever the interleaving.
    for _ in 0..200 {
        let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
        let r1 = rollout.clone();
        let t1 = thread::spawn(move || {
            r1.set_percent(Percent::from_whole(42).unwrap());
        });
        let r2 = rollout.clone();
        let t2 = thread::spawn(move || {
            r2.set_kill_switch(true);
        });
        t1.join().unwrap();
        t2.join().unwrap();
        let config = rollout.config();
        assert_eq!(config.percent, Percent::from_whole(42).unwrap());
        assert!(config.kill_switch);
    }
}

/// Two configs without override lists, whose decisions come from the atomic
/// words alone: salt `a` at 50%, and salt `b` at 50% with the kill switch.
fn hashed_at_half(salt: &str, kill_switch: bool) -> RolloutConfig {
    RolloutConfig {
        percent: Percent::from_whole(50).unwrap(),
        salt: salt.into(),
        kill_switch,
        ..RolloutConfig::default()
    }
}

#[test]
fn lock_free_readers_never_mix_keys_and_thresholds_of_two_configs() {
    const READERS: usize = 3;
    const DECISIONS_PER_READER: usize = 400_000;

    // Probes that are out under `a` (bucket ≥ 50% under salt a) and would be
    // in under salt b's keys: any decision that took b's keys with a's rule,
    // or one key of each (a random bucket), says `true` for about half of
    // them. Under either whole config every probe is `false` (`b` is killed).
    let (a, b) = (hashed_at_half("a", false), hashed_at_half("b", true));
    let (under_a, under_b) = (
        Rollout::new(a.clone()),
        Rollout::new(RolloutConfig {
            kill_switch: false,
            ..b.clone()
        }),
    );
    let probes: Vec<String> = (0..4000)
        .map(|i| format!("probe-{i}"))
        .filter(|id| under_a.bucket(id) >= 500_000 && under_b.bucket(id) < 500_000)
        .take(256)
        .collect();
    assert_eq!(probes.len(), 256);

    let rollout = Arc::new(Rollout::new(a.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let stores = Arc::new(AtomicU64::new(0));
    let writer = {
        let (rollout, stop, stores) = (rollout.clone(), stop.clone(), stores.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rollout.store(b.clone());
                rollout.store(a.clone());
                // A halt and its lifting go through the same words.
                rollout.halt();
                rollout.set_percent(Percent::from_whole(50).unwrap());
                stores.fetch_add(4, Ordering::Relaxed);
            }
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (rollout, probes, stores) = (rollout.clone(), probes.clone(), stores.clone());
            thread::spawn(move || {
                let mut handle = rollout.handle();
                // Decide while the writer runs: from its first store until it
                // has made a few thousand more.
                while stores.load(Ordering::Relaxed) == 0 {
                    thread::yield_now();
                }
                let until = stores.load(Ordering::Relaxed) + 4000;
                let mut i = 0;
                while i < DECISIONS_PER_READER || stores.load(Ordering::Relaxed) < until {
                    let id = &probes[i % probes.len()];
                    assert!(!rollout.should_use_async(id), "reader {r}: mix at {i}");
                    assert!(
                        !handle.should_use_async(id),
                        "reader {r}: mix via handle at {i}"
                    );
                    i += 1;
                }
            })
        })
        .collect();
    for reader in readers {
        reader.join().expect("a reader saw a mix of two configs");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer panicked");
    assert!(stores.load(Ordering::Relaxed) > 0, "the writer never ran");
}

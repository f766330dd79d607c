//! Exact totals under concurrency: no record is lost, no snapshot goes down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use async_upload_rollout::{Arm, ArmMetrics, MetricsAccumulator, MetricsSnapshot, Outcome};

const PER_THREAD: u64 = 40_000;

/// The `i`-th upload of thread `t`: a fixed, varied pattern of arm, outcome
/// and latency (1 µs to ~1 s), so every counter and many buckets move.
fn upload(t: u64, i: u64) -> (Arm, Outcome, Duration) {
    let x = (t * 1_000_003 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let arm = Arm::ALL[(x >> 7) as usize % 2];
    let outcome = Outcome::ALL[(x >> 13) as usize % 4];
    let latency = Duration::from_nanos(1_000 + (x >> 20) % 1_000_000_000);
    (arm, outcome, latency)
}

/// Every count and every latency bucket of `later` is at least `earlier`'s.
fn assert_monotone(earlier: &MetricsSnapshot, later: &MetricsSnapshot) {
    for arm in Arm::ALL {
        let (a, b) = (earlier.arm(arm), later.arm(arm));
        for outcome in Outcome::ALL {
            assert!(
                b.count(outcome) >= a.count(outcome),
                "{arm:?} {outcome:?} went down"
            );
        }
        assert!(b.complaints >= a.complaints);
        assert!(b.latency.count() >= a.latency.count());
        assert!(b.latency.sum_ns() >= a.latency.sum_ns());
        let mut later_buckets = b.latency.buckets().peekable();
        for bucket in a.latency.buckets() {
            while later_buckets.next_if(|l| l.low < bucket.low).is_some() {}
            let l = later_buckets.next().expect("a non-empty bucket vanished");
            assert_eq!(l.low, bucket.low, "a non-empty bucket vanished");
            assert!(l.count >= bucket.count, "bucket {:?} went down", bucket.low);
        }
    }
}

fn exact_totals_with(threads: u64) {
    let metrics = Arc::new(MetricsAccumulator::new());
    let done = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(threads as usize + 1));

    let observer = {
        let (metrics, done, taken, start) =
            (metrics.clone(), done.clone(), taken.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut previous = metrics.snapshot();
            while !done.load(Ordering::Acquire) {
                let next = metrics.snapshot();
                assert_monotone(&previous, &next);
                previous = next;
                taken.fetch_add(1, Ordering::Release);
            }
            taken.load(Ordering::Relaxed)
        })
    };
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let (metrics, taken, start) = (metrics.clone(), taken.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    if i == PER_THREAD / 2 {
                        // Make sure snapshots are taken mid-write, even if the
                        // scheduler starves the observer on a small machine.
                        while taken.load(Ordering::Acquire) < 2 {
                            thread::yield_now();
                        }
                    }
                    let (arm, outcome, latency) = upload(t, i);
                    metrics.record(arm, outcome, latency);
                    if i % 1000 == 0 {
                        metrics.record_complaint(arm);
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let snapshots = observer.join().unwrap();
    assert!(snapshots >= 2, "snapshots were taken while writing");

    let mut expected = MetricsSnapshot::default();
    for t in 0..threads {
        for i in 0..PER_THREAD {
            let (arm, outcome, latency) = upload(t, i);
            expected.arm_mut(arm).record(outcome, latency);
            if i % 1000 == 0 {
                expected.arm_mut(arm).complaints += 1;
            }
        }
    }
    let last = metrics.snapshot();
    for arm in Arm::ALL {
        let got: &ArmMetrics = last.arm(arm);
        assert_eq!(got, expected.arm(arm), "{threads} threads, {arm:?}");
    }
    let total: u64 = Arm::ALL.into_iter().map(|arm| last.uploads(arm)).sum();
    assert_eq!(total, threads * PER_THREAD);
}

#[test]
fn two_threads_lose_nothing_and_snapshots_never_go_down() {
    exact_totals_with(2);
}

#[test]
fn eight_threads_lose_nothing_and_snapshots_never_go_down() {
    // More writers than cores (and, with the test harness's own threads,
    // possibly more than owned stripes): shared stripes are exercised too.
    exact_totals_with(8);
}

//! Exact totals under concurrency: no record is lost, no snapshot goes down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use async_upload_rollout::{
    Arm, MetricsAccumulator, MetricsSnapshot, Outcome, metrics::ArmMetrics,
};

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

/// Records `per` uploads (`upload(t, i)`, and a complaint every 1,000th)
/// from each of `threads` threads once `start` opens, and returns when all
/// are done. Halfway, each thread waits until `observed` (what the thread
/// beside them has done: snapshots, resets) reaches `at_least`, so that work
/// falls mid-write.
fn record_from_threads(
    metrics: &Arc<MetricsAccumulator>,
    threads: u64,
    per: u64,
    start: &Arc<Barrier>,
    observed: &Arc<AtomicU64>,
    at_least: u64,
) {
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let (metrics, observed, start) = (metrics.clone(), observed.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..per {
                    if i == per / 2 {
                        while observed.load(Ordering::Acquire) < at_least {
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
    // Snapshots are taken mid-write, even if the scheduler starves the
    // observer on a small machine.
    record_from_threads(&metrics, threads, PER_THREAD, &start, &taken, 2);
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

/// What a reader checks, on a snapshot in memory: it survives a JSON round
/// trip (deserialization validates every invariant), its extremes are in
/// order, and every quantile answers without panicking.
fn assert_readable(s: &MetricsSnapshot) {
    let json = serde_json::to_string(s).unwrap();
    let back: MetricsSnapshot = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("a reader refuses a snapshot: {e}\n{json}"));
    assert_eq!(&back, s);
    for arm in Arm::ALL {
        let latency = &s.arm(arm).latency;
        assert!(latency.min() <= latency.max());
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(latency.quantile(q).is_some(), !latency.is_empty());
        }
        assert!(s.complaints(arm) <= s.uploads(arm));
    }
}

/// Issue 11's race: `reset` used to store min and max into stripes that
/// their owners were writing, and a record straddling it left min = MAX and
/// max = 0, on which `quantile` panicked. Now `reset` runs in a loop against
/// recording threads: every snapshot and every ended generation reads back,
/// the generations add up to exactly what was recorded, and the generation
/// after the race has exact extremes.
#[test]
fn reset_against_recording_threads_loses_nothing_and_every_snapshot_reads_back() {
    const THREADS: u64 = 4;
    const PER: u64 = 20_000;
    let metrics = Arc::new(MetricsAccumulator::new());
    let done = Arc::new(AtomicBool::new(false));
    let resets = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(THREADS as usize + 1));

    let resetter = {
        let (metrics, done, resets, start) =
            (metrics.clone(), done.clone(), resets.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut ended = MetricsSnapshot::default();
            while !done.load(Ordering::Acquire) {
                let generation = metrics.reset();
                assert_readable(&generation);
                ended = ended.merge(&generation);
                assert_readable(&metrics.snapshot());
                resets.fetch_add(1, Ordering::Release);
            }
            ended
        })
    };
    // Resets happen mid-write even on a starved machine.
    record_from_threads(&metrics, THREADS, PER, &start, &resets, 3);
    done.store(true, Ordering::Release);
    let ended = resetter.join().unwrap();
    let resets = resets.load(Ordering::Acquire);
    assert!(resets >= 3, "resets ran while recording");

    let total = ended.merge(&metrics.snapshot());
    let mut expected = MetricsSnapshot::default();
    for t in 0..THREADS {
        for i in 0..PER {
            let (arm, outcome, latency) = upload(t, i);
            expected.arm_mut(arm).record(outcome, latency);
            if i % 1000 == 0 {
                expected.arm_mut(arm).complaints += 1;
            }
        }
    }
    for arm in Arm::ALL {
        let (got, want) = (total.arm(arm), expected.arm(arm));
        for outcome in Outcome::ALL {
            assert_eq!(
                got.count(outcome),
                want.count(outcome),
                "{arm:?} {outcome:?}"
            );
        }
        let buckets = |m: &ArmMetrics| m.latency.buckets().collect::<Vec<_>>();
        assert_eq!(buckets(got), buckets(want), "{arm:?}: buckets exact");
        // A sum read into a generation that got none of its record's
        // buckets is dropped with that empty generation; counts never are.
        assert!(got.latency.sum_ns() <= want.latency.sum_ns());
        // Complaints are capped at each generation's uploads.
        assert!(got.complaints <= want.complaints);
    }

    // Quiet again: the next generation's extremes are exact.
    metrics.reset();
    metrics.record(Arm::Sync, Outcome::Success, Duration::from_nanos(257));
    metrics.record(Arm::Sync, Outcome::Error, Duration::from_nanos(256));
    let after = metrics.snapshot();
    assert_readable(&after);
    let latency = &after.arm(Arm::Sync).latency;
    assert_eq!(latency.min(), Some(Duration::from_nanos(256)));
    assert_eq!(latency.max(), Some(Duration::from_nanos(257)));
    assert_eq!(after.generation, resets + 1);
}

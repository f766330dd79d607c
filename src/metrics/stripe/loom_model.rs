//! The stripe protocol under loom's model (see the declaration in
//! `stripe.rs`).

use super::*;
use crate::metrics::ArmMetrics;
use crate::metrics::raw::RawArm;
use loom::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};

const SMALL: usize = 8;

/// What `read_raw` reads of one stripe's arm: scalars, then buckets.
fn read(cells: &ArmCells, epoch: u64) -> RawArm {
    let mut raw = RawArm::zero();
    if cells.add_scalars_to(&mut raw, epoch) {
        for (total, cell) in raw.buckets.iter_mut().zip(cells.buckets.iter()) {
            *total = total.wrapping_add(cell.load(Relaxed));
        }
    }
    raw
}

fn readable(arm: &ArmMetrics) {
    if let Err(e) = arm.latency.check() {
        panic!("a reader would refuse {arm:?}: {e}");
    }
    assert!(arm.latency.min() <= arm.latency.max());
}

/// Runs `f` under every schedule loom explores (preemptions bounded
/// at 3); returns how many.
fn model(f: impl Fn() + Sync + Send + 'static) -> usize {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    RUNS.store(0, Relaxed);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        RUNS.fetch_add(1, Relaxed);
        f();
    });
    let runs = RUNS.load(Relaxed);
    eprintln!("loom explored {runs} executions");
    runs
}

/// A reset while an owner records two uploads: the generations add up,
/// every result reads back, and a record that saw the new epoch is never
/// in the baseline, so a generation whose records all saw its epoch has
/// exact extremes. Loom explores only a few schedules of this one (it
/// did not catch a reset that publishes the epoch first); that order is
/// pinned by `interleavings`, which does.
#[test]
fn loom_model_reset_against_a_recording_owner() {
    let runs = model(|| {
        let cells = Arc::new(ArmCells::with_buckets(SMALL));
        let epoch = Arc::new(AtomicU64::new(extreme::epoch(0)));
        let owner = {
            let (cells, epoch) = (cells.clone(), epoch.clone());
            loom::thread::spawn(move || {
                let mut saw = Vec::new();
                for ns in [5u64, 3] {
                    let e = epoch.load(Acquire);
                    saw.push(e);
                    let writer = Writer {
                        kind: WriterKind::Owner,
                        epoch: e,
                    };
                    cells.record(writer, Outcome::Success, Duration::from_nanos(ns));
                }
                saw
            })
        };
        let base = read(&cells, extreme::epoch(0));
        epoch.store(extreme::epoch(1), Release);
        let saw = owner.join().unwrap();
        let ended = base.since(&RawArm::zero());
        let now = read(&cells, extreme::epoch(1));
        let current = now.since(&base);
        readable(&ended);
        readable(&current);
        assert_eq!(ended.success + current.success, 2);
        assert_eq!(ended.latency.count() + current.latency.count(), 2);
        // The extremes as the keys hold them (latencies this small have
        // one-value buckets, which would mend a lost key in the histogram).
        if saw.iter().all(|&e| e == extreme::epoch(1)) {
            assert_eq!(
                ended.success, 0,
                "a record after the epoch is not in the baseline"
            );
            assert_eq!((now.min_ns, now.max_ns), (3, 5));
        }
        if saw.iter().all(|&e| e == extreme::epoch(0)) {
            assert_eq!((now.min_ns, now.max_ns), (u64::MAX, 0), "no key of epoch 1");
        }
    });
    assert!(runs > 1, "{runs}");
}

/// Two threads on one shared stripe: nothing lost, both keys kept (a
/// plain store in place of the compare-exchange loop fails here).
#[test]
fn loom_model_two_shared_writers() {
    let runs = model(|| {
        let cells = Arc::new(ArmCells::with_buckets(SMALL));
        let writers: Vec<_> = [6u64, 2]
            .into_iter()
            .map(|ns| {
                let cells = cells.clone();
                loom::thread::spawn(move || {
                    let writer = Writer {
                        kind: WriterKind::Shared,
                        epoch: extreme::epoch(0),
                    };
                    cells.record(writer, Outcome::Error, Duration::from_nanos(ns));
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let raw = read(&cells, extreme::epoch(0));
        assert_eq!((raw.min_ns, raw.max_ns), (2, 6), "both keys kept");
        let arm = raw.since(&RawArm::zero());
        readable(&arm);
        assert_eq!((arm.error, arm.latency.sum_ns()), (2, 8));
        assert_eq!(arm.latency.min(), Some(Duration::from_nanos(2)));
        assert_eq!(arm.latency.max(), Some(Duration::from_nanos(6)));
    });
    assert!(runs > 1, "{runs}");
}

//! The recording hot path beside the baselines it must beat, and the cost of
//! a snapshot.
//!
//! - `record/1_thread`: `MetricsAccumulator::record` vs one shared
//!   `AtomicU64::fetch_add` vs `hdrhistogram` behind a `Mutex`.
//! - `record/2_threads`: the same, two threads at once on one shared
//!   instance; time is per operation per thread (so equal times mean each
//!   thread keeps its single-thread throughput).
//! - `snapshot`: summing the stripes into a `MetricsSnapshot`.
//!
//! Run with `cargo bench --bench metrics`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use async_upload_rollout::{Arm, MetricsAccumulator, Outcome};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;

/// 1,024 latencies spread log-uniformly over 1 ms to ~1 s, so recording
/// touches many buckets as real traffic does.
fn latencies() -> Vec<Duration> {
    let mut state = 0x853c_49e6_748f_ea9bu64;
    (0..1024)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let micros = 1_000.0 * 1_000f64.powf((z >> 11) as f64 / (1u64 << 53) as f64);
            Duration::from_nanos((micros * 1_000.0) as u64)
        })
        .collect()
}

/// Runs `op(i)` for `iters` values of `i` on each of two threads started
/// together; returns the slower thread's time (time per op per thread).
fn on_two_threads<F>(iters: u64, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let start = Barrier::new(2);
    thread::scope(|scope| {
        let run = || {
            start.wait();
            let began = Instant::now();
            for i in 0..iters {
                op(i);
            }
            began.elapsed()
        };
        let a = scope.spawn(run);
        let b = scope.spawn(run);
        a.join().unwrap().max(b.join().unwrap())
    })
}

fn hdr() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 2).unwrap()
}

fn record(c: &mut Criterion) {
    let lat = latencies();
    let at = |i: u64| lat[(i & 1023) as usize];

    let mut group = c.benchmark_group("record/1_thread");
    group.throughput(Throughput::Elements(1));
    let metrics = MetricsAccumulator::new();
    group.bench_function("accumulator", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            metrics.record(black_box(Arm::Async), black_box(Outcome::Success), at(i));
        });
    });
    let counter = AtomicU64::new(0);
    group.bench_function("baseline_atomic_fetch_add", |b| {
        b.iter(|| counter.fetch_add(black_box(1), Ordering::Relaxed));
    });
    let locked = Mutex::new(hdr());
    group.bench_function("hdrhistogram_mutex", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let ns = at(i).as_nanos() as u64;
            locked.lock().unwrap().saturating_record(black_box(ns));
        });
    });
    group.finish();

    let mut group = c.benchmark_group("record/2_threads");
    group.throughput(Throughput::Elements(1));
    let metrics = MetricsAccumulator::new();
    group.bench_function("accumulator", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |i| {
                metrics.record(black_box(Arm::Async), black_box(Outcome::Success), at(i));
            })
        });
    });
    let counter = AtomicU64::new(0);
    group.bench_function("baseline_atomic_fetch_add", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |_| {
                counter.fetch_add(black_box(1), Ordering::Relaxed);
            })
        });
    });
    let locked = Mutex::new(hdr());
    group.bench_function("hdrhistogram_mutex", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |i| {
                let ns = at(i).as_nanos() as u64;
                locked.lock().unwrap().saturating_record(black_box(ns));
            })
        });
    });
    group.finish();
}

/// An accumulator after `writers` threads each recorded 100,000 uploads of
/// every outcome on both arms.
fn filled(writers: usize) -> Arc<MetricsAccumulator> {
    let lat = latencies();
    let metrics = Arc::new(MetricsAccumulator::new());
    let barrier = Arc::new(Barrier::new(writers));
    thread::scope(|scope| {
        for _ in 0..writers {
            let (metrics, barrier, lat) = (&metrics, &barrier, &lat);
            scope.spawn(move || {
                // All writers alive at once, so each gets its own slot.
                barrier.wait();
                for i in 0..100_000usize {
                    let arm = Arm::ALL[i % 2];
                    let outcome = Outcome::ALL[(i / 2) % 4];
                    metrics.record(arm, outcome, lat[i % 1024]);
                }
                barrier.wait();
            });
        }
    });
    metrics
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    for writers in [2, 8] {
        let metrics = filled(writers);
        group.bench_function(format!("after_{writers}_writer_threads"), |b| {
            b.iter(|| black_box(metrics.snapshot()));
        });
    }
    group.finish();
}

criterion_group!(benches, record, snapshot);
criterion_main!(benches);

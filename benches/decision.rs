//! The hot-path decision beside the baselines it must stay close to.
//!
//! Every group cycles through the same 4096 UUID-shaped ids (36 bytes each).
//!
//! - `decision/10%`: `should_use_async` (per-thread cache),
//!   `should_use_async_uncached` (one `ArcSwap::load`) and `RolloutHandle`
//!   against the floor
//!   (a bare SipHash-1-3 of the id plus the bucket map, with no shared state),
//!   the same decision read through `RwLock<Arc<_>>`, and the decision while a
//!   background thread stores a new config every millisecond.
//! - `decision/edges`: 0% and 100% (which never hash) against one bare
//!   `ArcSwap::load`.
//! - `decision/threads`: decisions per second with 1 and 2 threads at once,
//!   for the bare hash and for `should_use_async` on one shared `Rollout`.

use std::hash::Hasher;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_upload_rollout::simulation::SplitMix64;
use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use siphasher::sip::SipHasher13;

const IDS: usize = 4096;

fn uuid_ids() -> Vec<String> {
    let mut rng = SplitMix64::new(7);
    (0..IDS).map(|_| rng.uuid()).collect()
}

/// The floor: what any consistent-hash decision must pay.
#[derive(Clone, Copy)]
struct BareDecision {
    seeded: SipHasher13,
    threshold: u32,
}

impl BareDecision {
    fn new() -> BareDecision {
        BareDecision {
            seeded: SipHasher13::new_with_keys(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            threshold: 100_000,
        }
    }

    #[inline]
    fn decide(&self, id: &[u8]) -> bool {
        let mut hasher = self.seeded;
        hasher.write(id);
        let bucket = ((u128::from(hasher.finish()) * 1_000_000) >> 64) as u32;
        bucket < self.threshold
    }
}

fn ten_percent() -> RolloutConfig {
    RolloutConfig::with_percent(Percent::from_whole(10).unwrap())
}

fn cycle<'a>(ids: &'a [String], i: &mut usize) -> &'a str {
    *i = (*i + 1) & (IDS - 1);
    &ids[*i]
}

fn ten_percent_group(c: &mut Criterion) {
    let ids = uuid_ids();
    let mut group = c.benchmark_group("decision/10%");
    group.throughput(Throughput::Elements(1));

    let bare = BareDecision::new();
    let mut i = 0;
    group.bench_function("bare SipHash-1-3 + map (floor)", |b| {
        b.iter(|| bare.decide(black_box(cycle(&ids, &mut i)).as_bytes()))
    });

    let rollout = Rollout::new(ten_percent());
    group.bench_function("Rollout::should_use_async", |b| {
        b.iter(|| rollout.should_use_async(black_box(cycle(&ids, &mut i))))
    });

    group.bench_function("Rollout::should_use_async_uncached (ArcSwap::load)", |b| {
        b.iter(|| rollout.should_use_async_uncached(black_box(cycle(&ids, &mut i))))
    });

    let mut handle = rollout.handle();
    group.bench_function("RolloutHandle::should_use_async (Cache)", |b| {
        b.iter(|| handle.should_use_async(black_box(cycle(&ids, &mut i))))
    });

    let locked = RwLock::new(Arc::new(BareDecision::new()));
    group.bench_function("RwLock<Arc<_>> read + hash", |b| {
        b.iter(|| {
            let guard = locked.read().unwrap();
            guard.decide(black_box(cycle(&ids, &mut i)).as_bytes())
        })
    });

    let shared = Arc::new(Rollout::new(ten_percent()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (shared, stop) = (shared.clone(), stop.clone());
        thread::spawn(move || {
            let (a, b) = (
                ten_percent(),
                RolloutConfig::with_percent(Percent::from_whole(11).unwrap()),
            );
            while !stop.load(Ordering::Relaxed) {
                shared.store(a.clone());
                thread::sleep(Duration::from_millis(1));
                shared.store(b.clone());
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    group.bench_function("Rollout::should_use_async, store every 1 ms", |b| {
        b.iter(|| shared.should_use_async(black_box(cycle(&ids, &mut i))))
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    group.finish();
}

fn edges_group(c: &mut Criterion) {
    let ids = uuid_ids();
    let mut group = c.benchmark_group("decision/edges");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;

    let cell = ArcSwap::from_pointee(100_000u32);
    group.bench_function("bare ArcSwap::load", |b| {
        b.iter(|| **cell.load() > black_box(cycle(&ids, &mut i)).len() as u32)
    });
    for (name, percent) in [("0%", Percent::ZERO), ("100%", Percent::HUNDRED)] {
        let rollout = Rollout::new(RolloutConfig::with_percent(percent));
        group.bench_function(format!("Rollout::should_use_async at {name}"), |b| {
            b.iter(|| rollout.should_use_async(black_box(cycle(&ids, &mut i))))
        });
    }
    group.finish();
}

/// A decision function shared by the threads of one bench.
type Decide<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// Runs `per_thread` decisions on each of `threads` threads at once; returns the wall time.
fn run_threads(threads: usize, per_thread: u64, decide: Decide<'_>, ids: &[String]) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut i = t * 997;
                let mut yes = 0u64;
                for _ in 0..per_thread {
                    yes += u64::from(decide(black_box(cycle(ids, &mut i))));
                }
                black_box(yes);
            });
        }
    });
    start.elapsed()
}

fn threads_group(c: &mut Criterion) {
    let ids = uuid_ids();
    let mut group = c.benchmark_group("decision/threads");
    let bare = BareDecision::new();
    let rollout = Rollout::new(ten_percent());
    let bare_decide = |id: &str| bare.decide(id.as_bytes());
    let rollout_decide = |id: &str| rollout.should_use_async(id);
    let cases: [(&str, Decide<'_>); 2] = [
        ("bare hash", &bare_decide),
        ("should_use_async", &rollout_decide),
    ];
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        for (name, decide) in cases {
            group.bench_function(format!("{name}, {threads} thread(s)"), |b| {
                // One iteration = one decision on each thread; threads are
                // spawned once per sample, amortised over `iters` decisions.
                b.iter_custom(|iters| run_threads(threads, iters, decide, &ids))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ten_percent_group, edges_group, threads_group);
criterion_main!(benches);

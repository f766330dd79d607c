//! The hot-path decision beside the baselines it must stay close to.
//!
//! Every group cycles through the same 4096 UUID-shaped ids (36 bytes each).
//!
//! Criterion times each variant alone, one after the other; `docs/performance.md`
//! ("A decision") compares it with `benches/interleaved.rs`,
//! which times them in round-robin slices as a user's binary would.
//!
//! - `decision/10%`: `should_use_async` and `RolloutHandle` against the floor
//!   (a bare SipHash-1-3 of the id plus the bucket map, with no shared state),
//!   the same hash read through `RwLock<Arc<_>>`, `ArcSwap::load` and
//!   `arc_swap::Cache`, both with 100+100 override ids, and the decision while
//!   a background thread stores a new config every millisecond.
//! - `decision/edges`: 0%, 100%, the kill switch and a halt (none of which
//!   hash) against one bare `ArcSwap::load`.
//! - `decision/threads`: decisions per second with 1 and 2 threads at once,
//!   for the bare hash and for `should_use_async` on one shared `Rollout`.

mod floor;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use floor::{BareDecision, IDS, uuid_ids};

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

    let mut handle = rollout.handle();
    group.bench_function("RolloutHandle::should_use_async", |b| {
        b.iter(|| handle.should_use_async(black_box(cycle(&ids, &mut i))))
    });

    let listed = Rollout::new(RolloutConfig {
        force_async: (0..100).map(|i| format!("allow-{i}")).collect(),
        force_sync: (0..100).map(|i| format!("deny-{i}")).collect(),
        ..ten_percent()
    });
    group.bench_function("Rollout::should_use_async, 100+100 force ids", |b| {
        b.iter(|| listed.should_use_async(black_box(cycle(&ids, &mut i))))
    });
    let mut listed_handle = listed.handle();
    group.bench_function("RolloutHandle::should_use_async, 100+100 force ids", |b| {
        b.iter(|| listed_handle.should_use_async(black_box(cycle(&ids, &mut i))))
    });

    let cell = ArcSwap::from_pointee(BareDecision::new());
    group.bench_function("ArcSwap::load + hash", |b| {
        b.iter(|| {
            cell.load()
                .decide(black_box(cycle(&ids, &mut i)).as_bytes())
        })
    });
    let mut cache = Cache::new(&cell);
    group.bench_function("arc_swap::Cache + hash", |b| {
        b.iter(|| {
            cache
                .load()
                .decide(black_box(cycle(&ids, &mut i)).as_bytes())
        })
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
    let killed = RolloutConfig {
        kill_switch: true,
        ..ten_percent()
    };
    let cases = [
        ("at 0%", RolloutConfig::with_percent(Percent::ZERO), false),
        (
            "at 100%",
            RolloutConfig::with_percent(Percent::HUNDRED),
            false,
        ),
        ("with the kill switch on", killed, false),
        ("halted", ten_percent(), true),
    ];
    for (name, config, halt) in cases {
        let rollout = Rollout::new(config);
        if halt {
            rollout.halt();
        }
        group.bench_function(format!("Rollout::should_use_async {name}"), |b| {
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

//! The snapshot algebra on arbitrary valid snapshots: whatever fields a
//! reader accepts, `since`, `merge` and the quantiles never panic; windows
//! and merges keep the invariants a reader checks whenever their counts
//! fit in u64; merge is commutative; `since` then `merge` gives back the
//! later snapshot's counts when it is a later state of the earlier one.
#![no_main]

use arbitrary::Arbitrary;
use async_upload_rollout::{Arm, MetricsSnapshot, metrics::LatencyHistogram};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct ArmFields {
    counts: [u64; 4],
    complaints: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    /// (bucket lower bound seed, count)
    buckets: Vec<(u64, u64)>,
}

#[derive(Arbitrary, Debug)]
struct SnapshotFields {
    at_unix_ms: u64,
    start_unix_ms: u64,
    generation: u64,
    arms: [ArmFields; 2],
    memory: Option<(u64, u64, u64)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    a: SnapshotFields,
    b: SnapshotFields,
    q: f64,
    /// Small values make the fields consistent more often.
    small: bool,
}

/// A lower bound of the layout near `seed` (its bucket's).
fn bucket_low(seed: u64) -> u64 {
    let mut h = LatencyHistogram::new();
    h.record(std::time::Duration::from_nanos(seed));
    h.buckets().next().map_or(0, |b| b.low.as_nanos() as u64)
}

fn arm_json(f: &ArmFields, small: bool) -> Value {
    let cut = |v: u64| if small { v % 1000 } else { v };
    let mut buckets: Vec<(u64, u64)> = f
        .buckets
        .iter()
        .take(64)
        .map(|&(seed, n)| {
            (
                bucket_low(if small { seed % 100_000 } else { seed }),
                cut(n).max(1),
            )
        })
        .collect();
    buckets.sort_unstable();
    buckets.dedup_by_key(|b| b.0);
    let count = buckets.iter().fold(0u64, |s, b| s.saturating_add(b.1));
    let (lo, hi) = (
        buckets.first().map_or(0, |b| b.0),
        buckets.last().map_or(0, |b| b.0),
    );
    let (min, max) = if small {
        (lo, hi)
    } else {
        (f.min_ns, f.max_ns)
    };
    let counts = f.counts.map(cut);
    json!({
        "success": counts[0], "error": counts[1], "critical": counts[2], "rejected": counts[3],
        "complaints": cut(f.complaints),
        "latency": {
            "count": count,
            "sum_ns": if buckets.is_empty() { 0 } else { cut(f.sum_ns) },
            "min_ns": min, "max_ns": max,
            "buckets": buckets.iter().map(|&(l, n)| json!([l, n])).collect::<Vec<_>>(),
        },
    })
}

fn snapshot(f: &SnapshotFields, small: bool) -> Option<MetricsSnapshot> {
    let mut v = json!({
        "at_unix_ms": f.at_unix_ms, "start_unix_ms": f.start_unix_ms,
        "generation": f.generation,
        "async": arm_json(&f.arms[0], small), "sync": arm_json(&f.arms[1], small),
    });
    if let Some((baseline, current, peak)) = f.memory {
        v["memory"] = json!({"baseline": baseline, "current": current, "peak": peak});
    }
    serde_json::from_value(v).ok()
}

/// Whether a reader accepts `s` (its JSON round trip).
fn readable(s: &MetricsSnapshot) -> Result<(), String> {
    let json = serde_json::to_string(s).map_err(|e| e.to_string())?;
    let back: MetricsSnapshot = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
    if &back != s {
        return Err("round trip changed it".into());
    }
    Ok(())
}

/// Whether every count of `s` is below u64::MAX (nothing saturated).
fn unsaturated(s: &MetricsSnapshot) -> bool {
    Arm::ALL.into_iter().all(|arm| {
        let m = s.arm(arm);
        m.success
            .checked_add(m.error)
            .and_then(|x| x.checked_add(m.critical))
            .and_then(|x| x.checked_add(m.rejected))
            .is_some_and(|x| x < u64::MAX)
            && m.latency.count() < u64::MAX
            && m.latency.buckets().all(|b| b.count < u64::MAX)
            && m.latency.sum_ns() < u64::MAX
    }) && s.memory.is_none_or(|m| m.peak < u64::MAX)
}

fuzz_target!(|input: Input| {
    let (Some(a), Some(b)) = (
        snapshot(&input.a, input.small),
        snapshot(&input.b, input.small),
    ) else {
        return;
    };
    let merged = a.merge(&b);
    assert_eq!(merged, b.merge(&a), "merge commutes");
    let window = b.since(&a);
    for s in [&merged, &window, &a.since(&b), &a.since(&a)] {
        for arm in Arm::ALL {
            let latency = &s.arm(arm).latency;
            assert!(latency.min() <= latency.max());
            for q in [input.q, 0.0, 0.5, 0.99, 1.0] {
                if let Some(v) = latency.quantile(q) {
                    assert!(Some(v) >= latency.min() && Some(v) <= latency.max(), "{q}");
                }
            }
            let _ = (
                s.success_rate(arm),
                s.error_rate(arm),
                s.complaint_rate(arm),
            );
            let _ = s.mean_latency(arm);
        }
        let _ = (s.memory_growth(), s.memory_peak_growth(), s.span());
    }
    if unsaturated(&merged) {
        readable(&merged).unwrap_or_else(|e| panic!("a merge is refused: {e}"));
    }
    readable(&window).unwrap_or_else(|e| panic!("a window is refused: {e}"));
    if window.generation == 0 {
        // b is a later state of a: since then merge gives b's counts back.
        let back = a.merge(&window);
        for arm in Arm::ALL {
            let (x, y) = (back.arm(arm), b.arm(arm));
            assert_eq!(
                (x.success, x.error, x.critical, x.rejected),
                (y.success, y.error, y.critical, y.rejected)
            );
            assert_eq!(x.latency.count(), y.latency.count());
        }
    }
});

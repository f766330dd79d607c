//! The per-run series a fleet replica exports: the current run's totals,
//! labelled with the rollout's name and the run's epoch, at the crate
//! histogram's own resolution, so that the fleet's controller can add the
//! replicas up into the exact [`MetricsSnapshot`] it judges.
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `async_upload_rollout_run_uploads_total` | counter | `rollout`, `epoch`, `arm`, `outcome` |
//! | `async_upload_rollout_run_complaints_total` | counter | `rollout`, `epoch`, `arm` |
//! | `async_upload_rollout_run_latency_buckets_total` | counter | `rollout`, `epoch`, `arm`, `low_ns` (the bucket's lowest latency in nanoseconds, an exact integer key; non-empty buckets only) |
//! | `async_upload_rollout_run_latency_seconds_total` | counter | `rollout`, `epoch`, `arm`: the sum of the run's latencies, in seconds |
//! | `async_upload_rollout_run_latency_min_seconds`, `_max_seconds` | gauge | `rollout`, `epoch`, `arm` (only when the arm has latencies) |
//!
//! Latencies are in seconds, Prometheus's base unit (`promtool check
//! metrics` refuses `_ns` in a name). The fleet's controller turns them back
//! into whole nanoseconds: a float holds the minimum and maximum exactly
//! enough (below 2⁴² ns the error is under 1/1000 ns, rounded away), and the
//! fleet's sum comes back to the nanosecond while a run's summed latency
//! stays below about 2⁵¹ ns divided by (replicas + 2): five days of upload
//! time at 3 replicas. Beyond that it is off by less than one part in 10¹⁵,
//! which no criterion can see. (Until this release the series were
//! `_latency_sum_ns_total`, `_min_ns` and `_max_ns`: replicas and
//! controllers of one fleet must run the same release.)
//!
//! [`MetricsSnapshot`]: crate::MetricsSnapshot

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::metrics::{Arm, MetricsSnapshot, Outcome};

/// Encodes `totals` (one run's, in this process) labelled with `rollout`
/// and `epoch`.
pub(crate) fn encode(
    encoder: &mut DescriptorEncoder,
    rollout: &str,
    epoch: u64,
    totals: &MetricsSnapshot,
) -> Result<(), fmt::Error> {
    let epoch = epoch.to_string();
    let run = [("rollout", rollout), ("epoch", epoch.as_str())];

    let mut uploads = encoder.encode_descriptor(
        "async_upload_rollout_run_uploads",
        "Uploads of the current run of the stage in this process, by path and outcome.",
        None,
        MetricType::Counter,
    )?;
    for arm in Arm::ALL {
        for outcome in Outcome::ALL {
            let labels = [
                run[0],
                run[1],
                ("arm", arm.as_str()),
                ("outcome", outcome.as_str()),
            ];
            uploads
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&totals.arm(arm).count(outcome), None)?;
        }
    }

    let mut complaints = encoder.encode_descriptor(
        "async_upload_rollout_run_complaints",
        "Complaints of the current run of the stage in this process, by path.",
        None,
        MetricType::Counter,
    )?;
    for arm in Arm::ALL {
        let labels = [run[0], run[1], ("arm", arm.as_str())];
        complaints
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&totals.arm(arm).complaints, None)?;
    }

    let mut buckets = encoder.encode_descriptor(
        "async_upload_rollout_run_latency_buckets",
        "Latencies of the current run per bucket of the crate's histogram (low_ns: its lowest value).",
        None,
        MetricType::Counter,
    )?;
    for arm in Arm::ALL {
        for bucket in totals.arm(arm).latency.buckets() {
            let low = u64::try_from(bucket.low.as_nanos())
                .unwrap_or(u64::MAX)
                .to_string();
            let labels = [
                run[0],
                run[1],
                ("arm", arm.as_str()),
                ("low_ns", low.as_str()),
            ];
            buckets
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&bucket.count, None)?;
        }
    }

    let mut sums = encoder.encode_descriptor(
        "async_upload_rollout_run_latency_seconds",
        "Sum of the current run's latencies in seconds, by path.",
        None,
        MetricType::Counter,
    )?;
    for arm in Arm::ALL {
        let labels = [run[0], run[1], ("arm", arm.as_str())];
        sums.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, f64>(
                &seconds(totals.arm(arm).latency.sum_ns()),
                None,
            )?;
    }

    for (name, help, pick) in [
        (
            "async_upload_rollout_run_latency_min_seconds",
            "Shortest latency of the current run in seconds, by path.",
            true,
        ),
        (
            "async_upload_rollout_run_latency_max_seconds",
            "Longest latency of the current run in seconds, by path.",
            false,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for arm in Arm::ALL {
            let latency = &totals.arm(arm).latency;
            let value = if pick { latency.min() } else { latency.max() };
            let Some(value) = value else { continue };
            let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
            let labels = [run[0], run[1], ("arm", arm.as_str())];
            family.encode_family(&labels)?.encode_gauge(&seconds(ns))?;
        }
    }
    Ok(())
}

/// Nanoseconds as seconds.
fn seconds(ns: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // exact below 2^53 ns; see the module docs
    let ns = ns as f64;
    ns / 1e9
}

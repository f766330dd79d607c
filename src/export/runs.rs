//! The per-run series a fleet replica exports: the current run's totals,
//! labelled with the rollout's name and the run's epoch, at the crate
//! histogram's own resolution, so that the fleet's controller can add the
//! replicas up into the exact [`MetricsSnapshot`] it judges.
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `async_upload_rollout_run_uploads_total` | counter | `rollout`, `epoch`, `arm`, `outcome` |
//! | `async_upload_rollout_run_complaints_total` | counter | `rollout`, `epoch`, `arm` |
//! | `async_upload_rollout_run_latency_buckets_total` | counter | `rollout`, `epoch`, `arm`, `low_ns` (the bucket's lowest latency; non-empty buckets only) |
//! | `async_upload_rollout_run_latency_sum_ns_total` | counter | `rollout`, `epoch`, `arm` |
//! | `async_upload_rollout_run_latency_min_ns`, `_max_ns` | gauge | `rollout`, `epoch`, `arm` (only when the arm has latencies) |
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
        "async_upload_rollout_run_latency_sum_ns",
        "Sum of the current run's latencies in nanoseconds, by path.",
        None,
        MetricType::Counter,
    )?;
    for arm in Arm::ALL {
        let labels = [run[0], run[1], ("arm", arm.as_str())];
        sums.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&totals.arm(arm).latency.sum_ns(), None)?;
    }

    for (name, help, pick) in [
        (
            "async_upload_rollout_run_latency_min_ns",
            "Shortest latency of the current run in nanoseconds, by path.",
            true,
        ),
        (
            "async_upload_rollout_run_latency_max_ns",
            "Longest latency of the current run in nanoseconds, by path.",
            false,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for arm in Arm::ALL {
            let latency = &totals.arm(arm).latency;
            let value = if pick { latency.min() } else { latency.max() };
            let Some(value) = value else { continue };
            let ns = i64::try_from(value.as_nanos()).unwrap_or(i64::MAX);
            let labels = [run[0], run[1], ("arm", arm.as_str())];
            family.encode_family(&labels)?.encode_gauge(&ns)?;
        }
    }
    Ok(())
}

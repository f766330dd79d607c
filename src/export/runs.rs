//! The per-run series a fleet replica exports: what this process counted of
//! the current run, labelled with the rollout's name, the run's epoch and
//! the process, at the crate histogram's own resolution, so that the fleet's
//! controller can add the replicas up into the exact [`MetricsSnapshot`] it
//! judges.
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `async_upload_rollout_run_uploads_total` | counter | `rollout`, `epoch`, `process`, `arm`, `outcome` |
//! | `async_upload_rollout_run_complaints_total` | counter | `rollout`, `epoch`, `process`, `arm` |
//! | `async_upload_rollout_run_latency_buckets_total` | counter | `rollout`, `epoch`, `process`, `arm`, `low_ns` (the bucket's lowest latency in nanoseconds, an exact integer key; non-empty buckets only) |
//! | `async_upload_rollout_run_latency_seconds_total` | counter | `rollout`, `epoch`, `process`, `arm`: the sum of the run's latencies, in seconds |
//! | `async_upload_rollout_run_latency_min_seconds`, `_max_seconds` | gauge | `rollout`, `epoch`, `process`, `arm` (only when the arm has latencies) |
//!
//! `process` names the process ([`process_label`]: its start time and id,
//! or [`PrometheusExporter::with_process_label`]): a replica that restarts,
//! with or without its log, exports the run under a new `process`, so its
//! earlier process's series stay in Prometheus beside the new ones, and the
//! controller's sum of every series' last value in the run keeps the
//! earlier share. For the same reason a process exports only what it
//! counted itself ([`RunView::counted_here`]), never the totals a restart
//! recovered from its log: those are in the earlier process's series. (It
//! is not called `instance`: Prometheus puts its own `instance` label, the
//! scraped target, on every series.)
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
//! [`process_label`]: crate::export::prometheus::process_label
//! [`PrometheusExporter::with_process_label`]: crate::export::prometheus::PrometheusExporter::with_process_label
//! [`RunView::counted_here`]: crate::act::RunView::counted_here

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::metrics::{Arm, MetricsSnapshot, Outcome};

/// Which series: the rollout, the run and the process.
pub(crate) struct Series<'a> {
    pub(crate) rollout: &'a str,
    pub(crate) epoch: u64,
    pub(crate) process: &'a str,
}

/// Encodes `totals` (what this process counted of one run) labelled with
/// `series`.
pub(crate) fn encode(
    encoder: &mut DescriptorEncoder,
    series: &Series<'_>,
    totals: &MetricsSnapshot,
) -> Result<(), fmt::Error> {
    let epoch = series.epoch.to_string();
    let run = [
        ("rollout", series.rollout),
        ("epoch", epoch.as_str()),
        ("process", series.process),
    ];

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
                run[2],
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
        let labels = [run[0], run[1], run[2], ("arm", arm.as_str())];
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
                run[2],
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
        let labels = [run[0], run[1], run[2], ("arm", arm.as_str())];
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
            let labels = [run[0], run[1], run[2], ("arm", arm.as_str())];
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

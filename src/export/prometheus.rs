//! [`PrometheusExporter`]: the rollout's counters, latencies, percent, stage
//! and verdict in the Prometheus / OpenMetrics text format.
//!
//! Everything is read when a scrape encodes (a [`Collector`] over
//! [`MetricsAccumulator::snapshot`] and [`Rollout::config`]), so the hot path
//! gains nothing: no counter is incremented per decision or per upload beyond
//! what [`MetricsAccumulator::record`] already does.
//!
//! # Metrics
//!
//! | name | type | labels | what it is |
//! | --- | --- | --- | --- |
//! | `async_upload_rollout_uploads_total` | counter | `arm`, `outcome` | uploads recorded with [`MetricsAccumulator::record`], by arm (`async`, `sync`) and outcome (`success`, `error`, `critical`, `rejected`) |
//! | `async_upload_rollout_decisions_total` | counter | `arm` | decisions acted on: uploads recorded on each arm, all outcomes (the sum of `uploads_total` over `outcome`). Calls of [`Rollout::should_use_async`] themselves are not counted: that would put an atomic increment on the hot path |
//! | `async_upload_rollout_complaints_total` | counter | `arm` | complaints recorded with [`MetricsAccumulator::record_complaint`] |
//! | `async_upload_rollout_upload_latency_seconds` | histogram | `arm` | latency of the judged uploads (success, error, critical; rejected uploads have no latency, see [Rates](crate::MetricsAccumulator#rates)) |
//! | `async_upload_rollout_percent` | gauge | | the percent in force, `0`–`100`: `0` whenever nothing is async (the kill switch is on, or the rollout is halted: rolled back, off, state unknown or stale) |
//! | `async_upload_rollout_kill_switch` | gauge | | `1` when the kill switch is on, else `0` |
//! | `async_upload_rollout_halted` | gauge | | `1` when nothing is async, force lists included ([`Rollout::halt`]: rolled back, off, state unknown or stale), else `0` |
//! | `async_upload_rollout_stage` | gauge | | the controller's stage index in its plan (0-based); only after [`PrometheusExporter::set_status`], and not while the rollout is off |
//! | `async_upload_rollout_state_epoch` | gauge | | the [`RolloutState`](crate::RolloutState)'s epoch; only after `set_status`, while the state is known |
//! | `async_upload_rollout_status` | gauge | `status` | one series per status (`off`, `running`, `awaiting_review`, `rolled_back`, `paused`, `complete`): `1` for the state's, `0` for the others; only after `set_status` |
//! | `async_upload_rollout_state_error` | gauge | | `1` while the state cannot be read or written (or is stale), else `0`; only after `set_status` |
//! | `async_upload_rollout_config_error` | gauge | | `1` while the config source (a config file, a fleet's config key) cannot be read (the last good config stays), else `0`; only after `set_status` |
//! | `async_upload_rollout_verdict` | gauge | `verdict` | one series per verdict (`advance`, `hold`, `manual_review`, `rollback`): `1` for the last evaluation's verdict, `0` for the others (all `0` before the first evaluation); only after [`PrometheusExporter::set_status`] |
//!
//! The per-run series of a fleet's replicas (`async_upload_rollout_run_*`,
//! labelled `rollout`, `epoch` and `process`) are listed in
//! [`runs`](crate::export::runs). Every name follows
//! Prometheus's conventions (`promtool check metrics` passes on the output;
//! a test runs it): base units (seconds), counters ending in `_total`.
//!
//! Counters are cumulative since the accumulator's creation or its last
//! [`reset`](crate::MetricsAccumulator::reset); a reset looks like a process
//! restart to Prometheus, which `rate()` and `increase()` handle.
//!
//! # Latency buckets
//!
//! Each `le` bound is the upper edge of one of [`LatencyHistogram`]'s own
//! buckets: the edge at or just above a nominal bound
//! ([`DEFAULT_LATENCY_BOUNDS`], 5 ms to 5 min, or your own through
//! [`with_latency_bounds`](PrometheusExporter::with_latency_bounds)), at most
//! 1/128 (0.78%) above it. So `le="0.100139007"` stands for 100 ms, and every
//! bucket count is exact: no bucket of the crate's histogram straddles a
//! bound. `_sum` and `_count` are exact too.
//!
//! # Format
//!
//! [`encode`](PrometheusExporter::encode) writes the OpenMetrics 1.0 text
//! format (serve it as [`OPENMETRICS_CONTENT_TYPE`]);
//! [`encode_prometheus_text`](PrometheusExporter::encode_prometheus_text)
//! writes the older Prometheus text format 0.0.4 (serve it as
//! [`PROMETHEUS_TEXT_CONTENT_TYPE`]). Prometheus reads both.
//!
//! [`Collector`]: prometheus_client::collector::Collector
//!
//! One concept in one file of about 727 lines (92 of them its unit tests, 165
//! docs): every series the exporter writes, and the tests that scrape them.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::act::controller::ControllerView;
use crate::act::run::RunView;
use crate::act::state::RolloutStatus;
use crate::decide::rollout::Rollout;
use crate::judge::Verdict;
use crate::metrics::histogram::{bounds, clamp_ns, index_of};
use crate::metrics::{Arm, LatencyHistogram, MetricsAccumulator, Outcome};

/// The `Content-Type` of [`PrometheusExporter::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of [`PrometheusExporter::encode_prometheus_text`]'s output.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The nominal upper bounds of the latency histogram's buckets: 5 ms to
/// 5 minutes, for uploads (a `+Inf` bucket follows). Each is rounded up to
/// an edge of [`LatencyHistogram`]'s layout (see the module docs).
pub const DEFAULT_LATENCY_BOUNDS: [Duration; 15] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
];

const NS_PER_SECOND: f64 = 1e9;

/// What the controller last said, for the `stage` and `verdict` gauges.
///
/// The exporter does not hold the controller, so the scrape handler pushes
/// this with [`PrometheusExporter::set_status`], from the controller's
/// lock-free [`ControllerView`] ([`MonitorHandle::view`](crate::MonitorHandle::view)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControllerStatus {
    /// The stage index in the plan (0-based); `None` when off or unknown.
    pub stage: Option<usize>,
    /// The last evaluation's verdict; `None` before the first tick.
    pub verdict: Option<Verdict>,
    /// The state's epoch; `None` while the state is unknown.
    pub epoch: Option<u64>,
    /// The state's status; `None` while the state is unknown.
    pub status: Option<RolloutStatus>,
    /// Whether the state cannot be read or written, or is stale.
    pub state_error: bool,
    /// Whether the config source cannot be read.
    pub config_error: bool,
}

impl ControllerStatus {
    /// The status the controller shows in `view`.
    #[must_use]
    pub fn of(view: &ControllerView) -> ControllerStatus {
        ControllerStatus {
            stage: view.state.as_ref().and_then(|s| s.stage),
            verdict: view.last_evaluation.as_ref().map(|e| e.verdict),
            epoch: view.state.as_ref().map(|s| s.epoch),
            status: view.state.as_ref().map(|s| s.status),
            state_error: view.state_error.is_some() || view.stale,
            config_error: view.config_error.is_some(),
        }
    }
}

const STATUSES: [RolloutStatus; 6] = [
    RolloutStatus::Off,
    RolloutStatus::Running,
    RolloutStatus::AwaitingReview,
    RolloutStatus::RolledBack,
    RolloutStatus::Paused,
    RolloutStatus::Complete,
];

/// Exports a rollout's metrics in the Prometheus / OpenMetrics text format,
/// reading everything at encode time.
///
/// Share it (it is `Send + Sync`) between the scrape handler and whoever
/// pushes the controller's status. The module docs list every metric.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_upload_rollout::export::prometheus::{
///     ControllerStatus, OPENMETRICS_CONTENT_TYPE, PrometheusExporter,
/// };
/// use async_upload_rollout::*;
///
/// let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(Percent::from_whole(10)?)));
/// let metrics = Arc::new(MetricsAccumulator::new());
/// let exporter = PrometheusExporter::new(rollout.clone(), metrics.clone());
///
/// metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(84));
/// // In a service: `exporter.set_status(ControllerStatus::of(&monitor.view()))`.
/// exporter.set_status(ControllerStatus {
///     stage: Some(1),
///     verdict: Some(Verdict::Hold),
///     ..ControllerStatus::default()
/// });
///
/// // In the `GET /metrics` handler: answer with this body and content type.
/// let body = exporter.encode();
/// let _content_type = OPENMETRICS_CONTENT_TYPE;
/// assert!(body.contains("async_upload_rollout_uploads_total{arm=\"async\",outcome=\"success\"} 1\n"));
/// assert!(body.contains("async_upload_rollout_percent 10.0\n"));
/// assert!(body.contains("async_upload_rollout_verdict{verdict=\"hold\"} 1\n"));
/// assert!(body.ends_with("# EOF\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PrometheusExporter {
    collector: Arc<RolloutCollector>,
}

impl PrometheusExporter {
    /// An exporter of `rollout`'s config and `metrics`' counts, with the
    /// [`DEFAULT_LATENCY_BOUNDS`] and no controller status.
    #[must_use]
    pub fn new(rollout: Arc<Rollout>, metrics: Arc<MetricsAccumulator>) -> PrometheusExporter {
        PrometheusExporter {
            collector: Arc::new(RolloutCollector {
                rollout,
                metrics,
                bounds: latency_bounds(DEFAULT_LATENCY_BOUNDS),
                status: Mutex::new(None),
                run: Mutex::new(None),
                rollout_name: crate::decide::config::DEFAULT_SALT.to_owned(),
                process: process_label().to_owned(),
            }),
        }
    }

    /// Uses these nominal latency bucket bounds instead of the defaults.
    ///
    /// Each is rounded up to an edge of [`LatencyHistogram`]'s layout (at most
    /// 1/128 above it); duplicates after rounding are dropped and the order
    /// does not matter. A `+Inf` bucket is always added.
    #[must_use]
    pub fn with_latency_bounds(self, nominal: impl IntoIterator<Item = Duration>) -> Self {
        let bounds = latency_bounds(nominal);
        self.rebuilt(|collector| collector.bounds = bounds)
    }

    /// Names the rollout in the per-run series' `rollout` label (default
    /// `async-upload`): a fleet's `--name`.
    #[must_use]
    pub fn with_rollout_name(self, name: &str) -> Self {
        self.rebuilt(|collector| collector.rollout_name = name.to_owned())
    }

    /// Names this process in the per-run series' `process` label instead of
    /// the default ([`process_label`]). It must differ from every earlier
    /// process's that exported the same run from the same target (a
    /// restart): a restarted replica's series must be new ones, not the old
    /// ones starting again, or the fleet's totals lose its earlier share.
    #[must_use]
    pub fn with_process_label(self, process: &str) -> Self {
        self.rebuilt(|collector| collector.process = process.to_owned())
    }

    /// A new exporter on the same rollout and metrics, with a copy of this
    /// one's settings and status changed by `change` (the builder methods).
    fn rebuilt(self, change: impl FnOnce(&mut RolloutCollector)) -> Self {
        let collector = &*self.collector;
        let mut copy = RolloutCollector {
            rollout: Arc::clone(&collector.rollout),
            metrics: Arc::clone(&collector.metrics),
            bounds: collector.bounds.clone(),
            status: Mutex::new(*collector.lock_status()),
            run: Mutex::new(lock(&collector.run).clone()),
            rollout_name: collector.rollout_name.clone(),
            process: collector.process.clone(),
        };
        change(&mut copy);
        PrometheusExporter {
            collector: Arc::new(copy),
        }
    }

    /// The per-run series' `process` label.
    #[must_use]
    pub fn process(&self) -> &str {
        &self.collector.process
    }

    /// Exports what this process counted of the current run (see
    /// [`runs`](crate::export::runs)): what a fleet's controller adds up
    /// over the replicas and their processes. Push the controller's
    /// [`ControllerView::run`] with each scrape; `None` stops the per-run
    /// series (nothing async, or not in a fleet).
    pub fn set_run(&self, run: Option<RunView>) {
        *lock(&self.collector.run) = run;
    }

    /// Sets the stage and verdict that the `stage` and `verdict` gauges
    /// report from now on. Call it after each controller tick, or in the
    /// scrape handler with [`ControllerStatus::of`] on the locked controller.
    pub fn set_status(&self, status: ControllerStatus) {
        *self.collector.lock_status() = Some(status);
    }

    /// Stops reporting the `stage` and `verdict` gauges.
    pub fn clear_status(&self) {
        *self.collector.lock_status() = None;
    }

    /// The status last set, if any.
    #[must_use]
    pub fn status(&self) -> Option<ControllerStatus> {
        *self.collector.lock_status()
    }

    /// The latency bucket bounds in use (after rounding to the layout's edges),
    /// ascending, without `+Inf`.
    #[must_use]
    pub fn latency_bounds(&self) -> Vec<Duration> {
        self.collector
            .bounds
            .iter()
            .map(|&ns| Duration::from_nanos(ns))
            .collect()
    }

    /// The exposition in the OpenMetrics 1.0 text format, ending in `# EOF`.
    /// Serve it with [`OPENMETRICS_CONTENT_TYPE`].
    ///
    /// Takes one [`MetricsAccumulator::snapshot`] and one
    /// [`Rollout::config`], so all series of one scrape agree.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect(ENCODE_CANNOT_FAIL);
        out
    }

    /// The exposition in the Prometheus text format 0.0.4. Serve it with
    /// [`PROMETHEUS_TEXT_CONTENT_TYPE`].
    #[must_use]
    pub fn encode_prometheus_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry())
            .expect(ENCODE_CANNOT_FAIL);
        out
    }

    /// Adds this exporter's metrics to `registry`, to be served with the
    /// application's own. They share this exporter's status. A registry made
    /// with a prefix puts it in front of the `async_upload_rollout_` names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Arc::clone(&self.collector)));
    }

    fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.register(&mut registry);
        registry
    }
}

/// This process's default `process` label on the per-run series: the
/// process's start (the first call, in milliseconds since 1970, in base 36)
/// and its id, `mbz0k3x2-4242`. Unique per process over time on one host,
/// so a restarted replica's series are new ones beside its earlier
/// process's; Prometheus's own `instance` label tells replicas apart.
#[must_use]
pub fn process_label() -> &'static str {
    static LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LABEL.get_or_init(|| {
        let ms = crate::clock::unix_ms(std::time::SystemTime::now());
        format!("{}-{}", base36(ms), std::process::id())
    })
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).unwrap_or(0)]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Why the `expect`s above hold: a `String` writer never fails, and the
/// collector only forwards the writer's errors (it encodes no native-only
/// histogram, the one thing the text encoders reject).
const ENCODE_CANNOT_FAIL: &str = "encoding into a String cannot fail";

impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.collector, f)
    }
}

/// The nominal bounds rounded up to the layout's bucket edges (inclusive
/// highest ns of a bucket), ascending and distinct.
fn latency_bounds(nominal: impl IntoIterator<Item = Duration>) -> Vec<u64> {
    let mut edges: Vec<u64> = nominal
        .into_iter()
        .map(|d| bounds(index_of(clamp_ns(d))).1)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// Per-bound (not cumulative) counts of `histogram`, the last entry `+Inf`.
/// Exact because every bound is the highest value of one of its buckets.
fn bucket_counts(histogram: &LatencyHistogram, edges: &[u64]) -> Vec<(f64, u64)> {
    #[allow(clippy::cast_precision_loss)] // ns below 2^42 are exact in f64
    let mut counts: Vec<(f64, u64)> = edges
        .iter()
        .map(|&ns| (ns as f64 / NS_PER_SECOND, 0))
        .chain([(f64::INFINITY, 0)])
        .collect();
    for bucket in histogram.buckets() {
        let high = clamp_ns(bucket.high);
        let at = edges.partition_point(|&edge| edge < high);
        counts[at].1 = counts[at].1.saturating_add(bucket.count);
    }
    counts
}

fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Advance => "advance",
        Verdict::Hold => "hold",
        Verdict::ManualReview => "manual_review",
        Verdict::Rollback => "rollback",
    }
}

const VERDICTS: [Verdict; 4] = [
    Verdict::Advance,
    Verdict::Hold,
    Verdict::ManualReview,
    Verdict::Rollback,
];

/// Reads the rollout at scrape time.
struct RolloutCollector {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    /// Bucket upper edges in ns, ascending.
    bounds: Vec<u64>,
    status: Mutex<Option<ControllerStatus>>,
    run: Mutex<Option<RunView>>,
    rollout_name: String,
    /// The per-run series' `process` label.
    process: String,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data replaced whole: a panic elsewhere cannot leave it torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RolloutCollector {
    fn lock_status(&self) -> std::sync::MutexGuard<'_, Option<ControllerStatus>> {
        // The guarded value is a plain Copy; a panic elsewhere cannot leave
        // it half-written.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RolloutCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter")
            .field("percent", &self.rollout.percent())
            .field("status", &*self.lock_status())
            .finish_non_exhaustive()
    }
}

impl Collector for RolloutCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.metrics.snapshot();
        let config = self.rollout.config();
        let status = *self.lock_status();

        let mut uploads = encoder.encode_descriptor(
            "async_upload_rollout_uploads",
            "Uploads recorded, by the path taken and how they ended.",
            None,
            MetricType::Counter,
        )?;
        for arm in Arm::ALL {
            for outcome in Outcome::ALL {
                let labels = [("arm", arm.as_str()), ("outcome", outcome.as_str())];
                uploads
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(
                        &snapshot.arm(arm).count(outcome),
                        None,
                    )?;
            }
        }

        let mut decisions = encoder.encode_descriptor(
            "async_upload_rollout_decisions",
            "Rollout decisions acted on: uploads recorded on each path, all outcomes.",
            None,
            MetricType::Counter,
        )?;
        for arm in Arm::ALL {
            decisions
                .encode_family(&[("arm", arm.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&snapshot.arm(arm).uploads(), None)?;
        }

        let mut complaints = encoder.encode_descriptor(
            "async_upload_rollout_complaints",
            "User complaints attributed to each path.",
            None,
            MetricType::Counter,
        )?;
        for arm in Arm::ALL {
            complaints
                .encode_family(&[("arm", arm.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&snapshot.arm(arm).complaints, None)?;
        }

        let mut latency = encoder.encode_descriptor(
            "async_upload_rollout_upload_latency",
            "Latency of judged uploads (success, error, critical), by path.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for arm in Arm::ALL {
            let histogram = &snapshot.arm(arm).latency;
            #[allow(clippy::cast_precision_loss)] // a sum below 2^53 ns (104 days) is exact
            let sum = histogram.sum_ns() as f64 / NS_PER_SECOND;
            latency
                .encode_family(&[("arm", arm.as_str())])?
                .encode_histogram::<NoLabelSet>(
                    sum,
                    histogram.count(),
                    &bucket_counts(histogram, &self.bounds),
                    None,
                )?;
        }

        // The percent in force: 0 whenever nothing is async (a halt reads
        // 0% already; the kill switch keeps the config's percent).
        let in_force = if config.kill_switch {
            0.0
        } else {
            config.percent.as_percent_f64()
        };
        encoder
            .encode_descriptor(
                "async_upload_rollout_percent",
                "Percent of uploads on the async path now, 0 to 100: 0 whenever nothing is async (kill switch, rolled back, off, state unknown or stale).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&in_force)?;

        encoder
            .encode_descriptor(
                "async_upload_rollout_kill_switch",
                "1 when the kill switch sends every upload to the sync path, else 0.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(config.kill_switch))?;

        encoder
            .encode_descriptor(
                "async_upload_rollout_halted",
                "1 when nothing takes the async path, force lists included (rolled back, off, state unknown or stale), else 0.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.rollout.is_halted()))?;

        if let Some(status) = status {
            if let Some(stage) = status.stage {
                encoder
                    .encode_descriptor(
                        "async_upload_rollout_stage",
                        "The controller's stage index in its plan, from 0.",
                        None,
                        MetricType::Gauge,
                    )?
                    .encode_gauge(&stage)?;
            }
            if let Some(epoch) = status.epoch {
                encoder
                    .encode_descriptor(
                        "async_upload_rollout_state_epoch",
                        "The rollout state's epoch: +1 on every change of stage or status.",
                        None,
                        MetricType::Gauge,
                    )?
                    .encode_gauge(&i64::try_from(epoch).unwrap_or(i64::MAX))?;
            }
            let mut statuses = encoder.encode_descriptor(
                "async_upload_rollout_status",
                "1 for the rollout state's status, 0 for the others (all 0 while unknown).",
                None,
                MetricType::Gauge,
            )?;
            for each in STATUSES {
                statuses
                    .encode_family(&[("status", each.as_str())])?
                    .encode_gauge(&i64::from(status.status == Some(each)))?;
            }
            encoder
                .encode_descriptor(
                    "async_upload_rollout_state_error",
                    "1 while the rollout state cannot be read or written, or is stale, else 0.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&i64::from(status.state_error))?;
            encoder
                .encode_descriptor(
                    "async_upload_rollout_config_error",
                    "1 while the rollout config (a config file, a fleet's config key) cannot be read and the last good one stays, else 0.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&i64::from(status.config_error))?;

            let mut verdicts = encoder.encode_descriptor(
                "async_upload_rollout_verdict",
                "1 for the verdict of the controller's last evaluation, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for verdict in VERDICTS {
                verdicts
                    .encode_family(&[("verdict", verdict_label(verdict))])?
                    .encode_gauge(&i64::from(status.verdict == Some(verdict)))?;
            }
        }
        let run = lock(&self.run).clone();
        if let Some(run) = run {
            // This process's own count: totals carried over a restart are
            // in the earlier process's series already.
            let totals = run.counted_here(&snapshot);
            let series = crate::export::runs::Series {
                rollout: &self.rollout_name,
                epoch: run.epoch,
                process: &self.process,
            };
            crate::export::runs::encode(&mut encoder, &series, &totals)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds_are_layout_edges_within_a_128th_above_nominal() {
        let edges = latency_bounds(DEFAULT_LATENCY_BOUNDS);
        assert_eq!(edges.len(), DEFAULT_LATENCY_BOUNDS.len());
        for (&edge, nominal) in edges.iter().zip(DEFAULT_LATENCY_BOUNDS) {
            let nominal = clamp_ns(nominal);
            assert!(edge >= nominal, "{edge} < {nominal}");
            assert!(
                (edge - nominal) * 128 <= nominal,
                "{edge} too far above {nominal}"
            );
            // An edge: the highest value of its bucket.
            assert_eq!(bounds(index_of(edge)).1, edge);
        }
    }

    #[test]
    fn bucket_counts_are_exact_at_the_edges() {
        let edges = latency_bounds([Duration::from_millis(100)]);
        let edge = edges[0];
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(edge)); // on the bound: in it
        h.record(Duration::from_nanos(edge + 1)); // just above: not
        h.record(Duration::from_millis(1));
        let counts = bucket_counts(&h, &edges);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[0].1, 2);
        assert_eq!(counts[1], (f64::INFINITY, 1));
    }

    #[test]
    fn run_series_carry_the_process_and_only_what_this_process_counted() {
        use crate::act::run::RunView;
        use crate::metrics::MetricsSnapshot;
        let metrics = Arc::new(MetricsAccumulator::new());
        let exporter = PrometheusExporter::new(
            Arc::new(Rollout::new(crate::decide::RolloutConfig::default())),
            Arc::clone(&metrics),
        )
        .with_rollout_name("fleet");
        assert_eq!(exporter.process(), process_label());
        let exporter = exporter.with_process_label("web-1-restart-2");
        // Totals recovered from the log after a restart: 5 async successes
        // counted by the earlier process.
        let mut carried = MetricsSnapshot::default();
        for _ in 0..5 {
            carried
                .arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_millis(10));
        }
        let run = RunView::new(4, metrics.snapshot(), None).carrying(4, carried);
        metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(20));
        metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(30));
        assert_eq!(run.totals(&metrics.snapshot()).uploads(Arm::Async), 7);
        exporter.set_run(Some(run));
        let text = exporter.encode_prometheus_text();
        assert!(
            text.contains(
                "async_upload_rollout_run_uploads_total{rollout=\"fleet\",epoch=\"4\",process=\"web-1-restart-2\",arm=\"async\",outcome=\"success\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_default_process_label_is_the_start_in_base_36_and_the_pid() {
        let label = process_label();
        let (start, pid) = label.split_once('-').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        let ms = u64::from_str_radix(start, 36).unwrap();
        let now = crate::clock::unix_ms(std::time::SystemTime::now());
        assert!(ms <= now && now - ms < 3_600_000, "{label}");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn custom_bounds_are_sorted_and_deduplicated() {
        let edges = latency_bounds([
            Duration::from_secs(1),
            Duration::from_millis(10),
            Duration::from_nanos(1_000_000_001),
        ]);
        assert_eq!(edges.len(), 2);
        assert!(edges[0] < edges[1]);
    }
}

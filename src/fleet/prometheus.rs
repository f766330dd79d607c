//! [`PrometheusSource`]: a run's fleet-wide totals from Prometheus.
//!
//! Every replica process exports what it counted of the current run
//! labelled with the rollout's name, the run's epoch and the process
//! ([`export::runs`](crate::export::runs)). The source asks Prometheus, over
//! its HTTP query API, for each series' latest value in the run
//! (`last_over_time` over the run's age) and adds them up over the replicas
//! and their processes (`sum by (arm, ...)`): counts, complaints, latency
//! buckets at the crate histogram's own resolution, latency sums, and the
//! smallest and largest latency. A replica that died since still counts
//! with its last scrape, and one that restarted counts twice over, once per
//! process: its earlier process's last values and its new process's, which
//! start from zero under a new `process` label, so the run's totals never go
//! down across a restart. The result is the [`MetricsSnapshot`] the
//! [`Evaluator`](crate::Evaluator) judges, exact up to each process's last
//! scrape (what a process counted after its last scrape before it died is
//! lost to the fleet; a replica restarted with its log still judges it
//! locally).
//!
//! A Prometheus that asks for credentials gets them with
//! [`with_auth`](PrometheusSource::with_auth): a bearer token from a file or
//! basic auth ([`PrometheusAuth`]). Queries go over plain HTTP, or with the
//! crate feature `prometheus-https` to an `https://` URL, trusting
//! Mozilla's roots or the CA given to [`with_ca`](PrometheusSource::with_ca).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::act::metrics_source::MetricsSource;
use crate::act::state::RolloutState;
use crate::clock::unix_ms;
use crate::fleet::security::{
    ConnectError, CredentialFile, PrometheusAuth, certificates, read_pem,
};
use crate::metrics::{Arm, ArmMetrics, LatencyHistogram, MetricsSnapshot, Outcome};

/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A run's totals summed over a fleet's replicas by Prometheus.
///
/// ```no_run
/// use std::time::SystemTime;
/// use async_upload_rollout::fleet::PrometheusSource;
/// use async_upload_rollout::{RolloutState, act::{ChangedBy, MetricsSource}};
///
/// let mut source = PrometheusSource::new("http://127.0.0.1:9090", "async-upload");
/// let state = RolloutState::running(1, SystemTime::now(), ChangedBy::Config, "start");
/// let totals = source.run_totals(&state, SystemTime::now())?;
/// println!("{} async uploads so far", totals.uploads(async_upload_rollout::Arm::Async));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone)]
pub struct PrometheusSource {
    url: String,
    name: String,
    agent: ureq::Agent,
    auth: PrometheusAuth,
    /// The CA trusted for `https://`, if not Mozilla's roots.
    ca: Option<PathBuf>,
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(default)]
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl PrometheusSource {
    /// A source querying the Prometheus at `url` (`http://127.0.0.1:9090`)
    /// for the series of rollout `name`.
    #[must_use]
    pub fn new(url: &str, name: &str) -> PrometheusSource {
        PrometheusSource {
            url: url.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
            agent: agent(None),
            auth: PrometheusAuth::None,
            ca: None,
        }
    }

    /// Trusts the CA certificate(s) in `path` (PEM) for an `https://`
    /// Prometheus, instead of Mozilla's root certificates (crate feature
    /// `prometheus-https`; without it, `https://` URLs are refused).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Unreadable`] or [`ConnectError::Invalid`] naming a
    /// file that cannot be read or holds no CA certificate;
    /// [`ConnectError::FeatureMissing`] without the feature.
    pub fn with_ca(mut self, path: &Path) -> Result<PrometheusSource, ConnectError> {
        let pem = read_pem(CredentialFile::PrometheusCa, path)?;
        let certs = certificates(CredentialFile::PrometheusCa, path, &pem)?;
        #[cfg(feature = "prometheus-https")]
        {
            let roots: Vec<ureq::tls::Certificate<'static>> = certs
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            self.agent = agent(Some(ureq::tls::RootCerts::new_with_certs(&roots)));
            self.ca = Some(path.to_owned());
            Ok(self)
        }
        #[cfg(not(feature = "prometheus-https"))]
        {
            drop(certs);
            self.ca = Some(path.to_owned());
            Err(ConnectError::FeatureMissing {
                what: format!("a Prometheus CA ({})", path.display()),
                feature: "prometheus-https",
            })
        }
    }

    /// Sends `auth` with every query: a bearer token read from a file
    /// before each query, or basic auth.
    ///
    /// ```no_run
    /// use async_upload_rollout::fleet::{PrometheusAuth, PrometheusSource};
    ///
    /// let source = PrometheusSource::new("http://prometheus:9090", "async-upload")
    ///     .with_auth(PrometheusAuth::from_env()?)?; // PROMETHEUS_USER, PROMETHEUS_PASSWORD
    /// let source = PrometheusSource::new("http://prometheus:9090", "async-upload")
    ///     .with_auth(PrometheusAuth::bearer_token_file("/var/run/secrets/prometheus/token"))?;
    /// # Ok::<(), async_upload_rollout::fleet::ConnectError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConnectError::Unreadable`] or [`ConnectError::Invalid`] when the
    /// token file cannot be read now or is empty.
    pub fn with_auth(mut self, auth: PrometheusAuth) -> Result<PrometheusSource, ConnectError> {
        auth.check()?;
        self.auth = auth;
        Ok(self)
    }

    /// One instant query at `at`; its samples as `(labels, value)`.
    fn query(&self, promql: &str, at: SystemTime) -> Result<Vec<Sample>, String> {
        #[allow(clippy::cast_precision_loss)] // ms since 1970 fit in f64 exactly
        let time = format!("{:.3}", unix_ms(at) as f64 / 1000.0);
        let fail = |why: String| format!("Prometheus {}: {why} (query {promql})", self.url);
        if !cfg!(feature = "prometheus-https") && self.url.starts_with("https://") {
            return Err(fail(
                "https:// needs the crate feature `prometheus-https`, which this build lacks"
                    .to_owned(),
            ));
        }
        let mut request = self
            .agent
            .get(&format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .query("time", &time);
        if let Some(header) = self.auth.header().map_err(|e| fail(e.to_string()))? {
            request = request.header("Authorization", &header);
        }
        let mut response = request.call().map_err(|e| fail(self.explain(&e)))?;
        let status = response.status();
        if status == 401 || status == 403 {
            let why = if self.auth == PrometheusAuth::None {
                "it asks for credentials and none were sent: --prometheus-bearer-token-file FILE, or PROMETHEUS_USER and PROMETHEUS_PASSWORD".to_owned()
            } else {
                format!("it refused {}", self.auth.describe())
            };
            return Err(fail(format!("HTTP {status}: {why}")));
        }
        let body: QueryResponse = response
            .body_mut()
            .read_json()
            .map_err(|e| fail(format!("HTTP {status}, not a query response: {e}")))?;
        if body.status != "success" {
            return Err(fail(body.error.unwrap_or_else(|| format!("HTTP {status}"))));
        }
        Ok(body.data.map(|d| d.result).unwrap_or_default())
    }

    /// `aggregate by (labels) (over_time(metric{rollout, epoch}[range]))`
    /// at `window.at`.
    fn by(
        &self,
        window: &Window,
        aggregate: &str,
        over_time: &str,
        metric: &str,
        labels: &str,
    ) -> Result<Vec<Sample>, String> {
        let selector = format!(
            "{metric}{{rollout=\"{}\",epoch=\"{}\"}}",
            self.name.replace('\\', "\\\\").replace('"', "\\\""),
            window.epoch
        );
        self.query(
            &format!(
                "{aggregate} by ({labels}) ({over_time}({selector}[{}]))",
                window.range
            ),
            window.at,
        )
    }
}

fn arm_of(sample: &Sample) -> Option<Arm> {
    match sample.metric.get("arm").map(String::as_str) {
        Some("async") => Some(Arm::Async),
        Some("sync") => Some(Arm::Sync),
        _ => None,
    }
}

/// A sample's value as a count: Prometheus sends floats as text.
fn count(sample: &Sample) -> Result<u64, String> {
    let value: f64 = sample
        .value
        .1
        .parse()
        .map_err(|_| format!("not a number: {:?}", sample.value.1))?;
    if !(value.is_finite() && (0.0..9.0e15).contains(&value)) {
        return Err(format!("not a count: {value}"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked just above
    Ok(value.round() as u64)
}

/// A sample's value in seconds as whole nanoseconds (see
/// [`export::runs`](crate::export::runs) on exactness).
fn nanos(sample: &Sample) -> Result<u64, String> {
    let value: f64 = sample
        .value
        .1
        .parse()
        .map_err(|_| format!("not a number: {:?}", sample.value.1))?;
    let ns = value * 1e9;
    if !(ns.is_finite() && (0.0..1.8e19).contains(&ns)) {
        return Err(format!("not a latency in seconds: {value}"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked just above
    Ok(ns.round() as u64)
}

impl MetricsSource for PrometheusSource {
    fn run_totals(
        &mut self,
        state: &RolloutState,
        now: SystemTime,
    ) -> Result<MetricsSnapshot, String> {
        let epoch = state.run_epoch;
        let started = state.run_started_at.unwrap_or(now);
        // The run's age and a minute: every scrape since the run began.
        let age = now.duration_since(started).unwrap_or_default() + Duration::from_secs(60);
        let range = format!("{}s", age.as_secs().min(90 * 24 * 3600));
        let mut snapshot = MetricsSnapshot::empty_at(started);
        snapshot.at_unix_ms = unix_ms(now);
        let mut arms: [ArmMetrics; 2] = Default::default();
        let mut parts: [HistogramParts; 2] = Default::default();

        let window = Window {
            epoch,
            range,
            at: now,
        };
        let q = |agg: &str, over: &str, metric: &str, labels: &str| {
            self.by(&window, agg, over, metric, labels)
        };
        for sample in q(
            "sum",
            "last_over_time",
            "async_upload_rollout_run_uploads_total",
            "arm, outcome",
        )? {
            let Some(arm) = arm_of(&sample) else { continue };
            let n = count(&sample)?;
            let arm = &mut arms[arm.index()];
            match sample.metric.get("outcome").map(String::as_str) {
                Some(o) if o == Outcome::Success.as_str() => arm.success = n,
                Some(o) if o == Outcome::Error.as_str() => arm.error = n,
                Some(o) if o == Outcome::Critical.as_str() => arm.critical = n,
                Some(o) if o == Outcome::Rejected.as_str() => arm.rejected = n,
                _ => {}
            }
        }
        for sample in q(
            "sum",
            "last_over_time",
            "async_upload_rollout_run_complaints_total",
            "arm",
        )? {
            if let Some(arm) = arm_of(&sample) {
                arms[arm.index()].complaints = count(&sample)?;
            }
        }
        for sample in q(
            "sum",
            "last_over_time",
            "async_upload_rollout_run_latency_buckets_total",
            "arm, low_ns",
        )? {
            let (Some(arm), Some(low)) = (arm_of(&sample), sample.metric.get("low_ns")) else {
                continue;
            };
            let low: u64 = low.parse().map_err(|_| format!("bucket low_ns {low:?}"))?;
            let n = count(&sample)?;
            if n > 0 {
                parts[arm.index()].buckets.push([low, n]);
            }
        }
        for sample in q(
            "sum",
            "last_over_time",
            "async_upload_rollout_run_latency_seconds_total",
            "arm",
        )? {
            if let Some(arm) = arm_of(&sample) {
                parts[arm.index()].sum_ns = nanos(&sample)?;
            }
        }
        for sample in q(
            "min",
            "min_over_time",
            "async_upload_rollout_run_latency_min_seconds",
            "arm",
        )? {
            if let Some(arm) = arm_of(&sample) {
                parts[arm.index()].min_ns = nanos(&sample)?;
            }
        }
        for sample in q(
            "max",
            "max_over_time",
            "async_upload_rollout_run_latency_max_seconds",
            "arm",
        )? {
            if let Some(arm) = arm_of(&sample) {
                parts[arm.index()].max_ns = nanos(&sample)?;
            }
        }
        for arm in Arm::ALL {
            let mut metrics = arms[arm.index()].clone();
            metrics.latency = parts[arm.index()]
                .histogram()
                .map_err(|e| format!("Prometheus {}: {} latency: {e}", self.url, arm.as_str()))?;
            *snapshot.arm_mut(arm) = metrics;
        }
        Ok(snapshot)
    }

    fn describe(&self) -> String {
        format!("Prometheus {} (rollout {})", self.url, self.name)
    }
}

impl PrometheusSource {
    /// A failed request in words, with a hint for a certificate its CA
    /// did not sign.
    fn explain(&self, err: &ureq::Error) -> String {
        let text = err.to_string();
        if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
            let trusted = self.ca.as_ref().map_or_else(
                || "Mozilla's root certificates: name its CA with --prometheus-ca".to_owned(),
                |ca| format!("the CA in {}", ca.display()),
            );
            return format!("{text} (Prometheus's certificate is not signed by {trusted})");
        }
        text
    }
}

/// The HTTP client: a timeout, statuses as answers, and `roots` for
/// `https://` when given.
fn agent(roots: Option<RootCerts>) -> ureq::Agent {
    let builder = ureq::Agent::config_builder()
        .timeout_global(Some(QUERY_TIMEOUT))
        .http_status_as_error(false);
    #[cfg(feature = "prometheus-https")]
    let builder = match roots {
        Some(roots) => {
            builder.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        }
        None => builder,
    };
    #[cfg(not(feature = "prometheus-https"))]
    let () = roots.map_or((), |never| match never {});
    builder.build().new_agent()
}

/// Trusted roots: ureq's with `prometheus-https`, nothing without it.
#[cfg(feature = "prometheus-https")]
type RootCerts = ureq::tls::RootCerts;
#[cfg(not(feature = "prometheus-https"))]
enum RootCerts {}

/// Which run, over which range, at which instant.
struct Window {
    epoch: u64,
    range: String,
    at: SystemTime,
}

/// A latency histogram's parts as Prometheus returns them.
#[derive(Default)]
struct HistogramParts {
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    buckets: Vec<[u64; 2]>,
}

impl HistogramParts {
    /// The histogram, through the same validation as a log line's.
    fn histogram(&mut self) -> Result<LatencyHistogram, String> {
        self.buckets.sort_unstable();
        let count = self
            .buckets
            .iter()
            .try_fold(0u64, |total, [_, n]| total.checked_add(*n))
            .ok_or("bucket counts overflow")?;
        if count == 0 {
            return Ok(LatencyHistogram::default());
        }
        let repr = serde_json::json!({
            "count": count,
            "sum_ns": self.sum_ns,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            "buckets": self.buckets,
        });
        serde_json::from_value(repr).map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

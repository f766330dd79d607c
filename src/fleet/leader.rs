//! [`FleetController`]: the fleet's leader part, its one decision-maker,
//! elected on etcd. While it leads it runs a [`RolloutController`] built by
//! [`RolloutController::judging`]: it serves no uploads (no rollout, no
//! local metrics, no acknowledgement) and judges every replica's counters
//! from Prometheus. The replicas' part is [`replica`](super::replica).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::act::controller::{ControllerError, RolloutController};
use crate::act::log::JsonlSink;
use crate::act::outage::OutageLog;
use crate::act::trace::{self, Severity};
use crate::decide::percent::Percent;
use crate::fleet::etcd::{DEFAULT_LEASE_TTL, EtcdStateStore};
use crate::fleet::prometheus::PrometheusSource;
use crate::fleet::security::{ConnectError, EtcdTls, EtcdUser, PrometheusAuth};
use crate::judge::plan::RolloutPlan;

/// How a [`FleetController`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FleetControllerConfig {
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// The Prometheus that scrapes the replicas.
    pub prometheus: String,
    /// The rollout's name.
    pub name: String,
    /// This controller's id (in the leader key).
    pub id: String,
    /// The plan (the replicas must run the same one).
    pub plan: RolloutPlan,
    /// How often the leader judges.
    pub tick: Duration,
    /// The leadership lease's TTL in seconds: a dead leader is replaced
    /// within it.
    pub lease_ttl: i64,
    /// Whether the leader advances stages by itself.
    pub auto_advance: bool,
    /// Where the leader logs its ticks and actions.
    pub log: Option<PathBuf>,
    /// The starting request, used only when no state is stored: 0% is off,
    /// another percent starts the plan's largest stage at or below it.
    pub start: Percent,
    /// TLS to etcd (empty: none, or the system's roots for `https://`).
    pub etcd_tls: EtcdTls,
    /// The etcd user, when etcd has authentication enabled.
    pub etcd_user: Option<EtcdUser>,
    /// The credentials sent to Prometheus.
    pub prometheus_auth: PrometheusAuth,
    /// The CA of an `https://` Prometheus (crate feature
    /// `prometheus-https`); `None`: Mozilla's roots.
    pub prometheus_ca: Option<PathBuf>,
}

impl FleetControllerConfig {
    /// A controller `id` for rollout `name` on `etcd`, judging from
    /// `prometheus`, with the default plan, a 5 s tick and a 5 s lease.
    #[must_use]
    pub fn new(etcd: Vec<String>, prometheus: &str, name: &str, id: &str) -> FleetControllerConfig {
        FleetControllerConfig {
            etcd,
            prometheus: prometheus.to_owned(),
            name: name.to_owned(),
            id: id.to_owned(),
            plan: RolloutPlan::default(),
            tick: Duration::from_secs(5),
            lease_ttl: DEFAULT_LEASE_TTL,
            auto_advance: false,
            log: None,
            start: Percent::ZERO,
            etcd_tls: EtcdTls::default(),
            etcd_user: None,
            prometheus_auth: PrometheusAuth::None,
            prometheus_ca: None,
        }
    }
}

/// A fleet's controller: any number may run; one leads, elected on an etcd
/// lease, and judges the whole fleet's metrics from Prometheus.
///
/// [`run`](FleetController::run) campaigns; while it leads, a
/// [`RolloutController`] ticks with every write fenced on the leadership
/// (a transaction that succeeds only while this controller still holds the
/// leader key and the state is at the revision it judged). When the lease is
/// lost it stops acting at once and campaigns again. A new leader continues
/// the stage from the stored state (stage start, epoch, run), it does not
/// restart it.
#[derive(Debug)]
pub struct FleetController {
    config: FleetControllerConfig,
    store: EtcdStateStore,
    /// The leader's Prometheus source, checked at start.
    source: PrometheusSource,
}

/// What a [`FleetController`] tells its operator, as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// This controller leads now.
    Leading,
    /// Another controller leads (its id, if known).
    Following(Option<String>),
    /// The leadership was lost; this controller stopped acting.
    LostLeadership,
    /// Something failed; the controller keeps trying. The same kind of
    /// failure is reported once per
    /// [`OUTAGE_LOG_INTERVAL`](crate::act::OUTAGE_LOG_INTERVAL) while it lasts,
    /// saying how many like it were not reported.
    Error(String),
    /// What failed works again: how long it failed, and how often.
    Recovered(String),
}

/// The [`OutageLog`] kind of a campaign that failed.
const CAMPAIGN: &str = "campaign";

impl FleetController {
    /// A controller for `config` (connects lazily).
    ///
    /// # Errors
    ///
    /// As [`EtcdStateStoreBuilder::connect`](crate::fleet::EtcdStateStoreBuilder::connect);
    /// also [`ConnectError`] naming a Prometheus bearer token or CA file
    /// that cannot be read, or an `https://` Prometheus in a build without
    /// the crate feature `prometheus-https`.
    pub fn new(config: FleetControllerConfig) -> Result<FleetController, ConnectError> {
        if !cfg!(feature = "prometheus-https") && config.prometheus.starts_with("https://") {
            return Err(ConnectError::FeatureMissing {
                what: format!("the https:// Prometheus {}", config.prometheus),
                feature: "prometheus-https",
            });
        }
        let mut source = PrometheusSource::new(&config.prometheus, &config.name)
            .with_auth(config.prometheus_auth.clone())?;
        if let Some(ca) = &config.prometheus_ca {
            source = source.with_ca(ca)?;
        }
        let mut builder = EtcdStateStore::builder(&config.etcd, &config.name, &config.id)
            .tls(config.etcd_tls.clone());
        if let Some(user) = &config.etcd_user {
            builder = builder.etcd_user(user.clone());
        }
        let store = builder.connect()?;
        Ok(FleetController {
            config,
            store,
            source,
        })
    }

    /// Campaigns and leads until `stop` is set, telling `events` what
    /// happens.
    ///
    /// # Errors
    ///
    /// [`ControllerError`] when a controller cannot be built (an invalid
    /// plan, a log that cannot be opened).
    pub fn run(
        &self,
        stop: &AtomicBool,
        events: &mut dyn FnMut(FleetEvent),
    ) -> Result<(), ControllerError> {
        let poll = Duration::from_millis(200);
        let mut following: Option<Option<String>> = None;
        let mut outage = OutageLog::default();
        while !stop.load(Ordering::Acquire) {
            let campaign = self.store.campaign(self.config.lease_ttl);
            if campaign.is_ok()
                && let Some(summary) = outage.recovered(CAMPAIGN, SystemTime::now())
            {
                let message = format!("etcd answers again ({summary})");
                trace::fleet(Severity::Info, &message);
                events(FleetEvent::Recovered(message));
            }
            match campaign {
                Ok(Some(leadership)) => {
                    following = None;
                    trace::fleet(
                        Severity::Info,
                        &format!("leading the rollout {}", self.config.name),
                    );
                    events(FleetEvent::Leading);
                    let monitor = self.lead()?;
                    while !leadership.is_lost() && !stop.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // Stop acting before anything else.
                    drop(monitor);
                    if leadership.is_lost() {
                        trace::fleet(
                            Severity::Warn,
                            &format!(
                                "lost the leadership of the rollout {}: stopped acting",
                                self.config.name
                            ),
                        );
                        events(FleetEvent::LostLeadership);
                    }
                    drop(leadership);
                }
                Ok(None) => {
                    // Its own id is its own lost leadership, being revoked:
                    // not a leader to follow.
                    let leader = self
                        .store
                        .leader()
                        .ok()
                        .flatten()
                        .filter(|id| *id != self.config.id);
                    if following.as_ref() != Some(&leader) {
                        events(FleetEvent::Following(leader.clone()));
                        following = Some(leader);
                    }
                    std::thread::sleep(poll);
                }
                Err(err) => {
                    let message = format!("cannot campaign: {err}");
                    if let Some(line) = outage.failed(CAMPAIGN, &message, SystemTime::now()) {
                        trace::fleet(Severity::Warn, &line);
                        events(FleetEvent::Error(line));
                    }
                    std::thread::sleep(poll);
                }
            }
        }
        Ok(())
    }

    /// Builds and spawns the leader's controller: the fenced store, the
    /// Prometheus source, the plan; the first state (when none is stored)
    /// from [`FleetControllerConfig::start`].
    fn lead(&self) -> Result<crate::MonitorHandle, ControllerError> {
        let mut builder = RolloutController::judging(Box::new(self.source.clone()))
            .start_percent(self.config.start)
            .plan(self.config.plan.clone())
            .auto_advance(self.config.auto_advance)
            .state_store(Arc::new(self.store.clone()));
        if let Some(path) = &self.config.log {
            builder = builder.log(JsonlSink::open(path)?);
        }
        let controller = builder.build()?;
        Ok(controller.spawn_with_poll(self.config.tick, Duration::from_millis(100)))
    }

    /// The store it campaigns and writes through.
    #[must_use]
    pub fn store(&self) -> &EtcdStateStore {
        &self.store
    }
}

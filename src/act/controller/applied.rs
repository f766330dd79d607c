//! What a [`RolloutController`] applies: the shared config (from its config
//! file and its store) and the percent in force, and, in a process that
//! serves uploads, the acknowledgement it writes of them so operators'
//! commands can confirm that this process applied their change.
//!
//! A controller is one of two compositions ([`Part`]): it **serves** (a
//! [`Serving`] part: the [`Rollout`] the percent and the config are applied
//! to, the [`MetricsAccumulator`] it judges, the config file it polls, its
//! acknowledgements), or it **only judges** run totals from a
//! [`MetricsSource`] (a fleet's leader: no rollout, no local metrics, no
//! acknowledgement; the shared config's kill switch is still in force in
//! what it shows and logs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::act::controller::RolloutController;
use crate::act::journal::KillSwitch;
use crate::act::metrics_source::MetricsSource;
use crate::act::source::ConfigWatcher;
use crate::act::store::{ACK_REFRESH, Applied, StateStore};
use crate::act::trace::{self, Severity};
use crate::decide::config::RolloutConfig;
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::metrics::MetricsAccumulator;

/// What a controller is made of besides its core (the store's
/// synchronisation, the policy, the judge and the journal).
pub(super) enum Part {
    /// It serves uploads: applies to its rollout, judges its own metrics.
    Serving(Box<Serving>),
    /// It serves none (a fleet's leader): judges run totals from a source.
    Judging {
        /// Where run totals come from (every replica's, from Prometheus).
        source: Box<dyn MetricsSource>,
        /// The shared config's kill switch, as last applied.
        kill_switch: Arc<AtomicBool>,
    },
}

impl Part {
    /// A controller's part judging from `source`.
    pub(super) fn judging(source: Box<dyn MetricsSource>) -> Part {
        Part::Judging {
            source,
            kill_switch: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Where the kill switch in force is read (taken once, at the start:
    /// the controller and its journal read it through this).
    pub(super) fn kill_switch(&self) -> KillSwitch {
        match self {
            Part::Serving(serving) => KillSwitch::Served(Arc::clone(&serving.rollout)),
            Part::Judging { kill_switch, .. } => KillSwitch::Shared(Arc::clone(kill_switch)),
        }
    }

    /// The rollout it serves, if it serves.
    pub(super) fn rollout(&self) -> Option<&Arc<Rollout>> {
        match self {
            Part::Serving(serving) => Some(&serving.rollout),
            Part::Judging { .. } => None,
        }
    }

    /// The local metrics it judges, if it serves.
    pub(super) fn metrics(&self) -> Option<&Arc<MetricsAccumulator>> {
        match self {
            Part::Serving(serving) => Some(&serving.metrics),
            Part::Judging { .. } => None,
        }
    }

    /// Nothing async from this instant (a rollback), if it serves.
    pub(super) fn halt(&self) {
        if let Part::Serving(serving) = self {
            serving.rollout.halt();
        }
    }
}

/// The part of a controller in a process that serves uploads.
pub(super) struct Serving {
    pub(super) rollout: Arc<Rollout>,
    pub(super) metrics: Arc<MetricsAccumulator>,
    /// The config file it polls, if any.
    watcher: Option<ConfigWatcher>,
    /// What this process last acknowledged, and when.
    acknowledged: Option<(Applied, SystemTime)>,
    /// The config last fingerprinted, and its fingerprint (computed again
    /// only when the config changes).
    fingerprint: Option<(Arc<RolloutConfig>, String)>,
}

impl Serving {
    pub(super) fn new(
        rollout: Arc<Rollout>,
        metrics: Arc<MetricsAccumulator>,
        watcher: Option<ConfigWatcher>,
    ) -> Serving {
        Serving {
            rollout,
            metrics,
            watcher,
            acknowledged: None,
            fingerprint: None,
        }
    }

    /// Applies the percent in force: `None` halts the rollout (nothing
    /// async, force lists included).
    fn apply_percent(&self, percent: Option<Percent>) {
        match percent {
            Some(percent) => {
                if self.rollout.is_halted() || self.rollout.percent() != percent {
                    self.rollout.set_percent(percent);
                }
            }
            None => {
                self.rollout.halt();
            }
        }
    }

    /// The fingerprint of the config in force (computed again only when
    /// the config changed).
    fn fingerprint(&mut self) -> String {
        let config = self.rollout.config();
        match &self.fingerprint {
            Some((seen, fingerprint)) if Arc::ptr_eq(seen, &config) => fingerprint.clone(),
            _ => {
                let fingerprint = config.fingerprint();
                self.fingerprint = Some((config, fingerprint.clone()));
                fingerprint
            }
        }
    }

    /// Writes `applied` to `store` when it changed and every
    /// [`ACK_REFRESH`] (its heartbeat).
    fn acknowledge(&mut self, store: &dyn StateStore, applied: Applied, now: SystemTime) {
        let due = self.acknowledged.as_ref().is_none_or(|(last, at)| {
            *last != applied || now.duration_since(*at).unwrap_or(ACK_REFRESH) >= ACK_REFRESH
        });
        if due && store.acknowledge(&applied).is_ok() {
            self.acknowledged = Some((applied, now));
        }
    }
}

impl RolloutController {
    /// Polls the config file (if any) and applies the store's shared
    /// config (salt, kill switch, id lists; never the percent) when it
    /// changed. A source that cannot be read keeps the last good config and
    /// is reported once per change of its problem: a `config` log line, a
    /// `WARN` event, [`ControllerView::config_error`](crate::act::controller::ControllerView::config_error).
    /// `reachable`: whether the store just answered (else its shared config
    /// is not asked for, and its last problem stays as it was).
    pub(super) fn apply_config(&mut self, now: SystemTime, reachable: bool) {
        // The watcher stores a changed file itself, and reports each bad
        // version once (a `WARN` event, and a `config` line with its log).
        let file_problem = match &mut self.part {
            Part::Serving(serving) => serving.watcher.as_mut().and_then(|watcher| {
                let _ = watcher.poll_once();
                watcher.last_error()
            }),
            Part::Judging { .. } => None,
        };
        let store = self.sync.store();
        let (config, store_problem) = if reachable {
            match store.load_config() {
                Ok(config) => (config, None),
                Err(err) => (
                    None,
                    Some(format!(
                        "cannot read the shared config: {err}; the last good config stays in force"
                    )),
                ),
            }
        } else {
            (None, self.store_config_error.clone())
        };
        if store_problem != self.store_config_error {
            let message = store_problem.clone().unwrap_or_else(|| {
                format!(
                    "the shared config in {} can be read again",
                    self.sync.store().describe()
                )
            });
            let severity = if store_problem.is_some() {
                Severity::Warn
            } else {
                Severity::Info
            };
            trace::shared_config(severity, &message);
            self.journal.config(now, message, self.sync.line());
            self.store_config_error = store_problem.clone();
        }
        let problems: Vec<String> = file_problem.into_iter().chain(store_problem).collect();
        self.config_error = (!problems.is_empty()).then(|| problems.join("; "));
        if let Some(config) = config
            && self.applied_config.as_ref() != Some(&config)
        {
            match &self.part {
                Part::Serving(serving) => {
                    serving.rollout.update(|current| {
                        current.salt.clone_from(&config.salt);
                        current.kill_switch = config.kill_switch;
                        current.force_async.clone_from(&config.force_async);
                        current.force_sync.clone_from(&config.force_sync);
                    });
                }
                Part::Judging { kill_switch, .. } => {
                    kill_switch.store(config.kill_switch, Ordering::Release);
                }
            }
            trace::state_event(
                Severity::Info,
                &format!(
                    "applied the shared config from {} (kill switch {}, {} force_async and {} force_sync ids)",
                    self.sync.store().describe(),
                    if config.kill_switch { "on" } else { "off" },
                    config.force_async.len(),
                    config.force_sync.len()
                ),
                self.sync.current(),
            );
            self.applied_config = Some(config);
        }
    }

    /// Applies the percent in force to the rollout it serves (the kill
    /// switch is the config's: it stays as it is). The store's contact is
    /// checked first, so a state is never applied past its `stale_after`.
    pub(super) fn apply(&mut self) {
        self.sync.check_stale(&mut self.journal);
        if let Part::Serving(serving) = &self.part {
            serving.apply_percent(self.sync.state_percent());
        }
    }

    /// Tells the store what this process applies (epoch, percent, config,
    /// errors), when that changed and every [`ACK_REFRESH`] (its
    /// heartbeat). Only a process that serves uploads acknowledges.
    pub(super) fn acknowledge(&mut self, now: SystemTime) {
        let percent = self.percent_now();
        let (epoch, stage) = self.sync.applied_epoch();
        let Part::Serving(serving) = &mut self.part else {
            return;
        };
        let mut applied = Applied::new(epoch, percent)
            .at_stage(stage)
            .with_config(serving.fingerprint());
        applied.config_error.clone_from(&self.config_error);
        applied.state_error = self.sync.state_error().map(str::to_owned);
        serving.acknowledge(self.sync.store().as_ref(), applied, now);
    }

    /// Removes this process's acknowledgement: it stops serving (the
    /// monitor stops).
    pub(crate) fn withdraw(&mut self) {
        if let Part::Serving(serving) = &mut self.part
            && serving.acknowledged.take().is_some()
        {
            let _ = self.sync.store().withdraw();
        }
    }
}

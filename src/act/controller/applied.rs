//! What a [`RolloutController`]'s process applies: the shared config (from
//! its config file and its store) and the percent in force, and the
//! acknowledgement it writes of them so operators' commands can confirm that
//! this process applied their change.

use std::sync::Arc;
use std::time::SystemTime;

use crate::act::controller::RolloutController;
use crate::act::store::{ACK_REFRESH, Applied};
use crate::act::trace::{self, Severity};

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
        let file_problem = self.watcher.as_mut().and_then(|watcher| {
            let _ = watcher.poll_once();
            watcher.last_error()
        });
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
            self.rollout.update(|current| {
                current.salt.clone_from(&config.salt);
                current.kill_switch = config.kill_switch;
                current.force_async.clone_from(&config.force_async);
                current.force_sync.clone_from(&config.force_sync);
            });
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

    /// What this process applies now, as it acknowledges it.
    fn applied(&mut self) -> Applied {
        let (epoch, stage) = self.sync.applied_epoch();
        let config = self.rollout.config();
        let fingerprint = match &self.fingerprint {
            Some((seen, fingerprint)) if Arc::ptr_eq(seen, &config) => fingerprint.clone(),
            _ => {
                let fingerprint = config.fingerprint();
                self.fingerprint = Some((config, fingerprint.clone()));
                fingerprint
            }
        };
        let mut applied = Applied::new(epoch, self.percent_now())
            .at_stage(stage)
            .with_config(fingerprint);
        applied.config_error.clone_from(&self.config_error);
        applied.state_error = self.sync.state_error().map(str::to_owned);
        applied
    }

    /// Tells the store what this process applies (epoch, percent, config),
    /// when that changed and every [`ACK_REFRESH`] (its heartbeat). Not for
    /// a controller that serves no uploads
    /// ([`RolloutControllerBuilder::acknowledges`](crate::act::controller::builder::RolloutControllerBuilder::acknowledges)).
    pub(super) fn acknowledge(&mut self, now: SystemTime) {
        if !self.acknowledges {
            return;
        }
        let applied = self.applied();
        let due = self.acknowledged.as_ref().is_none_or(|(last, at)| {
            *last != applied || now.duration_since(*at).unwrap_or(ACK_REFRESH) >= ACK_REFRESH
        });
        if due && self.sync.store().acknowledge(&applied).is_ok() {
            self.acknowledged = Some((applied, now));
        }
    }

    /// Removes this process's acknowledgement: it stops serving (the
    /// monitor stops).
    pub(crate) fn withdraw(&mut self) {
        if self.acknowledges && self.acknowledged.take().is_some() {
            let _ = self.sync.store().withdraw();
        }
    }
}

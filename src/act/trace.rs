//! Structured [`tracing`](https://docs.rs/tracing) events (feature
//! `tracing`): what the controller does and why, as fields a subscriber can
//! filter and index, beside the JSON-lines log (which stays the audit
//! record).
//!
//! Without the feature every function here is empty and inlined away.
//!
//! | target | events |
//! | --- | --- |
//! | `async_upload_rollout::controller` | actions (`action` = `rollback`, `advance`, …), verdict changes, quiet ticks, state changes, store and metrics errors, fail-closed states |
//! | `async_upload_rollout::monitor` | a tick that failed, panicked or stalled; the monitor stopping |
//! | `async_upload_rollout::config` | a config file applied or refused |
//! | `async_upload_rollout::fleet` | leadership won or lost, the etcd watch broken and restarted |
//!
//! Levels: an automatic rollback and every fail-closed event (state
//! unreadable, store stale, monitor gone) are `ERROR`; an operator's
//! rollback, a review request, a failed write or read that is retried, and
//! a refused config file are `WARN`; other actions, verdict changes, state
//! and config changes are `INFO`; quiet ticks and repeated `ready` are
//! `DEBUG`.
// Without the feature the arguments are unused by design.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use crate::act::record::Action;
use crate::act::state::RolloutState;
use crate::decide::percent::Percent;
use crate::judge::Evaluation;

/// How serious a state event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// A change an operator wants to see (`INFO`).
    Info,
    /// Something failed and is retried, or was refused (`WARN`).
    Warn,
    /// Nothing is async because of it: the rollout failed closed (`ERROR`).
    FailClosed,
}

/// Emits `$($field)*` at the level `$severity` stands for, on `$target`.
#[cfg(feature = "tracing")]
macro_rules! at_severity {
    ($severity:expr, target: $target:expr, $($rest:tt)*) => {
        match $severity {
            Severity::Info => tracing::info!(target: $target, $($rest)*),
            Severity::Warn => tracing::warn!(target: $target, $($rest)*),
            Severity::FailClosed => tracing::error!(target: $target, fail_closed = true, $($rest)*),
        }
    };
}

#[cfg(feature = "tracing")]
const CONTROLLER: &str = "async_upload_rollout::controller";
#[cfg(feature = "tracing")]
const MONITOR: &str = "async_upload_rollout::monitor";
#[cfg(feature = "tracing")]
const CONFIG: &str = "async_upload_rollout::config";
#[cfg(all(feature = "tracing", feature = "etcd"))]
const FLEET: &str = "async_upload_rollout::fleet";

/// An action of the controller (its own or an operator's).
#[inline]
pub(crate) fn action(
    action: &Action,
    reason: &str,
    state: Option<&RolloutState>,
    percent: Percent,
    repeated: bool,
) {
    #[cfg(feature = "tracing")]
    {
        let name = action.name();
        let epoch = state.map(|s| s.epoch);
        let stage = state.and_then(|s| s.stage);
        let status = state.map(|s| tracing::field::display(s.status));
        let percent = percent.as_percent_f64();
        match action {
            Action::Rollback { manual: false } => tracing::error!(
                target: CONTROLLER, action = name, manual = false, epoch, stage, status, percent, reason,
                "automatic rollback: nothing async"
            ),
            Action::Rollback { manual: true } => tracing::warn!(
                target: CONTROLLER, action = name, manual = true, epoch, stage, status, percent, reason,
                "rollback by an operator: nothing async"
            ),
            Action::ReviewRequested => tracing::warn!(
                target: CONTROLLER, action = name, epoch, stage, status, percent, reason,
                "manual review requested: automatic advancing stopped"
            ),
            Action::Ready { waiting_for } if repeated => tracing::debug!(
                target: CONTROLLER, action = name, epoch, stage, percent, waiting_for = waiting_for.as_str(),
                "ready, waiting"
            ),
            Action::Ready { waiting_for } => tracing::info!(
                target: CONTROLLER, action = name, epoch, stage, percent, waiting_for = waiting_for.as_str(),
                "ready, waiting"
            ),
            _ => tracing::info!(
                target: CONTROLLER, action = name, epoch, stage, status, percent, reason,
                "rollout action"
            ),
        }
    }
}

/// One evaluation: `INFO` when its verdict differs from the last one,
/// `DEBUG` otherwise (a quiet tick).
#[inline]
pub(crate) fn evaluation(evaluation: &Evaluation, changed: bool) {
    #[cfg(feature = "tracing")]
    {
        let verdict = tracing::field::display(evaluation.verdict);
        let percent = evaluation.percent.as_percent_f64();
        let reason = evaluation.reason.as_str();
        if changed {
            tracing::info!(
                target: CONTROLLER, verdict, stage = evaluation.stage, percent, reason,
                "verdict changed"
            );
        } else {
            tracing::debug!(
                target: CONTROLLER, verdict, stage = evaluation.stage, percent, reason,
                "tick"
            );
        }
    }
}

/// A change or problem of the rollout's state (the same text as the log's
/// `state` line).
#[inline]
pub(crate) fn state_event(severity: Severity, reason: &str, state: Option<&RolloutState>) {
    #[cfg(feature = "tracing")]
    {
        let epoch = state.map(|s| s.epoch);
        let stage = state.and_then(|s| s.stage);
        let status = state.map(|s| tracing::field::display(s.status));
        at_severity!(severity, target: CONTROLLER, epoch, stage, status, reason, "rollout state");
    }
}

/// A tick's metrics (from the fleet's Prometheus) could not be read.
#[inline]
pub(crate) fn metrics_error(error: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: CONTROLLER, error,
        "cannot read the run's metrics: not judged this tick"
    );
}

/// The monitor: a tick that failed, panicked or stalled, or the monitor
/// stopping.
#[inline]
pub(crate) fn monitor(severity: Severity, message: &str) {
    #[cfg(feature = "tracing")]
    at_severity!(severity, target: MONITOR, detail = message, "rollout monitor");
}

/// A config file applied (`INFO`) or refused, keeping the last good one
/// (`WARN`).
#[inline]
pub(crate) fn config(severity: Severity, path: &std::path::Path, message: &str) {
    #[cfg(feature = "tracing")]
    {
        let path = tracing::field::display(path.display());
        at_severity!(severity, target: CONFIG, path, detail = message, "rollout config file");
    }
}

/// A store's shared config (a fleet's config key) cannot be read (`WARN`:
/// the last good config stays) or can again (`INFO`).
#[inline]
pub(crate) fn shared_config(severity: Severity, message: &str) {
    #[cfg(feature = "tracing")]
    at_severity!(severity, target: CONFIG, detail = message, "rollout shared config");
}

/// Fleet mode: leadership and the etcd watch.
#[cfg(feature = "etcd")]
#[inline]
pub(crate) fn fleet(severity: Severity, message: &str) {
    #[cfg(feature = "tracing")]
    at_severity!(severity, target: FLEET, detail = message, "rollout fleet");
}

//! The operator's commands on the rollout's state: `status`, `rollback`,
//! `resume`, `advance`, `pause`, and the wait for the services'
//! acknowledgements.
//!
//! They read and write the [`StateStore`] a service's controller uses (the
//! state file by default), with the same transitions the controller applies
//! ([`RolloutState::apply`]) and a compare-and-swap on the store's revision:
//! a command that loses a race with the controller reads again and decides
//! again, it never overwrites. A running service sees the change at its next
//! poll (every second by default) and acknowledges it; [`wait_for_acks`]
//! waits for that.
//!
//! They never silently miss: a store that holds no state is refused (a
//! mistyped `--state` path or `--name` would otherwise start a state no
//! service reads) unless [`Create::Yes`] says to start one; and a rollback
//! is always accepted, over a state that cannot be read too.
//!
//! One concept in one file of about 864 lines (97 of them its unit tests, 133
//! docs): each operator command and its wait for the services' acknowledgements
//! share one flow.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::act::config_store::ConfigStore;
use crate::act::state::{ChangedBy, Operation, RolloutState, RolloutStatus};
use crate::act::store::{Acknowledgement, Salvaged, StateStore, Stored};
use crate::cli::error::CliError;
use crate::decide::config::RolloutConfig;
use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;

/// How many times a command reads again after losing a race.
const ATTEMPTS: usize = 5;

/// How often [`wait_for_acks`] reads the acknowledgements.
const ACK_POLL: Duration = Duration::from_millis(50);

/// Whether an operator command may start a state where none is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// No: a store without a state is an error naming it (`--state` or
    /// `--name` probably names the wrong one).
    No,
    /// Yes (`--create`): start one (`advance` starts the first stage,
    /// `rollback` writes `off`, so a service started later does not begin
    /// from its environment).
    Yes,
}

/// What an operator command did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Operated {
    /// The state was changed to this, at this revision.
    Changed(Stored),
    /// The state already was what was asked (a rollback while rolled back):
    /// nothing was written.
    Unchanged(Stored),
}

impl Operated {
    /// The state now stored.
    #[must_use]
    pub fn stored(&self) -> &Stored {
        match self {
            Operated::Changed(stored) | Operated::Unchanged(stored) => stored,
        }
    }
}

/// Applies `operation` to the state in `store`, as an operator, and writes it
/// with a compare-and-swap (reading again and deciding again up to five
/// times when another writer gets in first).
///
/// - No state stored: refused unless `create` is [`Create::Yes`]; then the
///   rollout counts as `off`: `advance` starts the first stage, `rollback`
///   writes `off`.
/// - A stored state that cannot be read (or does not fit `plan`): a
///   `rollback` replaces it with a readable `rolled_back` state whose epoch
///   is above every epoch seen (its own, if readable, and the services'
///   acknowledgements), at its stage when the plan has it (else 0); any
///   other operation is refused, saying that a rollback is always allowed.
/// - A new epoch is also above every epoch the services acknowledge and
///   the store's high-water mark ([`StateStore::high_water`]): epochs only
///   grow, even past a state restored from a backup or a state removed.
///
/// # Errors
///
/// [`CliError::NoState`] when nothing is stored (without `create`),
/// [`CliError::Refused`] when the state does not allow it (advance while
/// rolled back: resume first), [`CliError::Unreadable`] for an operation
/// other than rollback on a state that cannot be read,
/// [`CliError::InvalidState`] for one on a state that does not fit the
/// plan, [`CliError::State`] when the store cannot be read or written (or
/// kept losing races).
pub fn operate(
    store: &dyn StateStore,
    plan: &RolloutPlan,
    operation: Operation,
    reason: &str,
    now: SystemTime,
    create: Create,
) -> Result<Operated, CliError> {
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let (floor, acked_stage) = acknowledged(store);
        // The stage the broken content names if the plan has it, else the
        // one the services applied with the latest epoch.
        let with_stage = |salvaged: &Salvaged| {
            let mut salvaged = salvaged.clone();
            if salvaged.stage.is_none_or(|s| s >= plan.stages.len()) {
                salvaged.stage = acked_stage.or(salvaged.stage);
            }
            salvaged
        };
        let stored = match store.load() {
            Ok(stored) => stored,
            Err(err) if err.is_corrupt() && operation == Operation::Rollback => {
                match store.replace_unreadable(&mut |salvaged| {
                    RolloutState::rolled_back_over(
                        &with_stage(salvaged),
                        plan,
                        floor,
                        now,
                        ChangedBy::Operator,
                        reason,
                    )
                }) {
                    Ok(stored) => return Ok(Operated::Changed(stored)),
                    Err(err) if err.is_conflict() => {
                        last_conflict = Some(err);
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Err(err) if err.is_corrupt() => {
                return Err(CliError::Unreadable {
                    operation,
                    source: err,
                });
            }
            Err(err) => return Err(err.into()),
        };
        let Some(stored) = stored else {
            if create == Create::No {
                return Err(CliError::NoState {
                    store: store.describe(),
                });
            }
            let nothing = RolloutState {
                epoch: floor,
                ..RolloutState::off(now, ChangedBy::Operator, "no state stored")
            };
            let next = match nothing.apply(operation, plan, now, ChangedBy::Operator, reason)? {
                Some(next) => next,
                None => RolloutState {
                    epoch: floor.saturating_add(1),
                    ..RolloutState::off(now, ChangedBy::Operator, reason)
                },
            };
            match store.compare_and_swap(None, &next) {
                Ok(revision) => {
                    return Ok(Operated::Changed(Stored {
                        state: next,
                        revision,
                    }));
                }
                Err(err) if err.is_conflict() => {
                    last_conflict = Some(err);
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        };
        let next = match stored.state.validate(plan) {
            Ok(()) => {
                match stored
                    .state
                    .apply(operation, plan, now, ChangedBy::Operator, reason)?
                {
                    Some(next) => above(next, floor),
                    None => return Ok(Operated::Unchanged(stored)),
                }
            }
            Err(invalid) if operation == Operation::Rollback => {
                let salvaged = with_stage(&Salvaged {
                    epoch: Some(stored.state.epoch),
                    stage: stored.state.stage,
                    problem: invalid.to_string(),
                });
                RolloutState::rolled_back_over(
                    &salvaged,
                    plan,
                    floor,
                    now,
                    ChangedBy::Operator,
                    reason,
                )
            }
            Err(source) => {
                return Err(CliError::InvalidState {
                    store: store.describe(),
                    source,
                });
            }
        };
        match store.compare_and_swap(Some(stored.revision), &next) {
            Ok(revision) => {
                return Ok(Operated::Changed(Stored {
                    state: next,
                    revision,
                }));
            }
            Err(err) if err.is_conflict() => last_conflict = Some(err),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last_conflict.map_or_else(
        || CliError::Raced {
            store: store.describe(),
        },
        CliError::State,
    ))
}

/// `next` with its epoch above `floor` (a run that starts at it too).
fn above(next: RolloutState, floor: u64) -> RolloutState {
    next.lifted_above(floor)
}

/// The largest epoch any service acknowledges or the store has held (its
/// high-water mark), and the stage of the latest acknowledgement (0 and
/// `None` when none, or when the store keeps neither or cannot tell).
fn acknowledged(store: &dyn StateStore) -> (u64, Option<usize>) {
    let high_water = store.high_water().unwrap_or(0);
    let (epoch, stage) = store
        .acknowledgements()
        .ok()
        .flatten()
        .into_iter()
        .flatten()
        .max_by_key(|ack| ack.applied.epoch)
        .map_or((0, None), |ack| (ack.applied.epoch, ack.applied.stage));
    (epoch.max(high_water), stage)
}

/// The services' acknowledgements that count now (see
/// [`Acknowledgement::is_live`]); `None` when the store keeps none.
///
/// # Errors
///
/// [`CliError::State`] when they cannot be read.
pub fn live_acks(
    store: &dyn StateStore,
    now: SystemTime,
) -> Result<Option<Vec<Acknowledgement>>, CliError> {
    Ok(store
        .acknowledgements()?
        .map(|acks| acks.into_iter().filter(|a| a.is_live(now)).collect()))
}

/// What [`wait_for_acks`] (or [`wait_for`]) found.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Confirmation {
    /// What was waited for (`epoch 7`, `config 5c1f0a2e9b7d4413`).
    pub awaited: String,
    /// The services that acknowledged it (or a later one).
    pub confirmed: Vec<Acknowledgement>,
    /// The services that did not, as last seen: live when the wait began or
    /// seen live during it.
    pub missing: Vec<Acknowledgement>,
    /// Whether the store keeps acknowledgements at all.
    pub supported: bool,
    /// How long it waited.
    #[serde(with = "humantime_serde_secs")]
    pub waited: Duration,
}

/// Durations as seconds (a float) in JSON.
mod humantime_serde_secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The outcome of a wait, as an operator command's exit code says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// Every service seen acknowledged the epoch: exit 0.
    All,
    /// Some services did not within the wait (named): exit
    /// [`EXIT_NOT_CONFIRMED`].
    NotAll,
    /// No service acknowledged anything within the wait: exit
    /// [`EXIT_NONE_SEEN`].
    NoneSeen,
}

/// Exit code of an operator command whose change was stored but not
/// acknowledged by every live service within `--wait` (they are named).
pub const EXIT_NOT_CONFIRMED: u8 = 5;

/// Exit code of an operator command whose change was stored but no service
/// acknowledged anything within `--wait` ("none seen": no service runs on
/// this store, or none is alive).
pub const EXIT_NONE_SEEN: u8 = 6;

impl Confirmation {
    /// Which outcome this is.
    #[must_use]
    pub fn outcome(&self) -> Confirmed {
        if !self.missing.is_empty() {
            Confirmed::NotAll
        } else if self.confirmed.is_empty() {
            Confirmed::NoneSeen
        } else {
            Confirmed::All
        }
    }

    /// The exit code: 0, [`EXIT_NOT_CONFIRMED`] or [`EXIT_NONE_SEEN`].
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self.outcome() {
            Confirmed::All => 0,
            Confirmed::NotAll => EXIT_NOT_CONFIRMED,
            Confirmed::NoneSeen => EXIT_NONE_SEEN,
        }
    }

    /// What an operator reads, naming every service that did not confirm.
    #[must_use]
    pub fn render(&self, store: &str, now: SystemTime) -> String {
        let waited = format_secs(self.waited);
        let list = |acks: &[Acknowledgement]| {
            acks.iter()
                .map(|ack| describe_ack(ack, now))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self.outcome() {
            Confirmed::All => format!(
                "confirmed: {} service(s) applied {} within {waited}: {}",
                self.confirmed.len(),
                self.awaited,
                list(&self.confirmed)
            ),
            Confirmed::NotAll => {
                let mut text = format!(
                    "NOT CONFIRMED: {} of {} service(s) did not acknowledge {} within {waited}: {}",
                    self.missing.len(),
                    self.missing.len() + self.confirmed.len(),
                    self.awaited,
                    list(&self.missing)
                );
                if !self.confirmed.is_empty() {
                    let _ = write!(text, "\nconfirmed by: {}", list(&self.confirmed));
                }
                text
            }
            Confirmed::NoneSeen => format!(
                "NONE SEEN: no service acknowledged anything on {store} within {waited}; \
                 is this the store the services use? (a service started later applies the stored state)"
            ),
        }
    }
}

/// `web-1 (epoch 7, 0% in force, 1.2s ago, host h, pid 42)`.
fn describe_ack(ack: &Acknowledgement, now: SystemTime) -> String {
    let mut text = format!("{} (", ack.service);
    if ack.applied.epoch == 0 {
        text.push_str("no state applied");
    } else {
        let _ = write!(text, "epoch {}", ack.applied.epoch);
    }
    let _ = write!(
        text,
        ", {} in force, last seen {} ago",
        ack.applied.percent,
        format_secs(ack.age(now))
    );
    if !ack.host.is_empty() {
        let _ = write!(text, ", host {}", ack.host);
    }
    if ack.pid != 0 {
        let _ = write!(text, ", pid {}", ack.pid);
    }
    if let Some(err) = &ack.applied.state_error {
        let _ = write!(text, ", state error: {err}");
    }
    if let Some(err) = &ack.applied.config_error {
        let _ = write!(text, ", config error: {err}");
    }
    text.push(')');
    text
}

fn format_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Waits at most `wait` until every service on `store` has acknowledged
/// `epoch` (or a later one): every service live in `live_before` (read
/// before the change) and every one seen live since. Returns at once when
/// all of them have and at least one was seen; at the deadline otherwise.
///
/// # Errors
///
/// [`CliError::State`] when the acknowledgements cannot be read.
pub fn wait_for_acks(
    store: &dyn StateStore,
    epoch: u64,
    live_before: &[Acknowledgement],
    wait: Duration,
) -> Result<Confirmation, CliError> {
    wait_for(
        store,
        &format!("epoch {epoch}"),
        &|ack| ack.applied.epoch >= epoch,
        live_before,
        wait,
    )
}

/// As [`wait_for_acks`], for any condition on a service's acknowledgement
/// (`awaited` names it in messages): a config fingerprint, for example.
///
/// # Errors
///
/// [`CliError::State`] when the acknowledgements cannot be read.
pub fn wait_for(
    store: &dyn StateStore,
    awaited: &str,
    applied: &dyn Fn(&Acknowledgement) -> bool,
    live_before: &[Acknowledgement],
    wait: Duration,
) -> Result<Confirmation, CliError> {
    let started = Instant::now();
    // Every service expected, by id, with its latest acknowledgement.
    let mut expected: BTreeMap<String, Acknowledgement> = live_before
        .iter()
        .map(|ack| (ack.service.clone(), ack.clone()))
        .collect();
    loop {
        let Some(acks) = store.acknowledgements()? else {
            return Ok(Confirmation {
                awaited: awaited.to_owned(),
                confirmed: Vec::new(),
                missing: Vec::new(),
                supported: false,
                waited: started.elapsed(),
            });
        };
        let now = SystemTime::now();
        for ack in acks {
            // A service seen live joins; one already expected is updated
            // whatever its age (a stopped service stays expected).
            if ack.is_live(now) || expected.contains_key(&ack.service) {
                expected.insert(ack.service.clone(), ack);
            }
        }
        let (confirmed, missing): (Vec<_>, Vec<_>) =
            expected.values().cloned().partition(|ack| applied(ack));
        let done = !expected.is_empty() && missing.is_empty();
        if done || started.elapsed() >= wait {
            return Ok(Confirmation {
                awaited: awaited.to_owned(),
                confirmed,
                missing,
                supported: true,
                waited: started.elapsed(),
            });
        }
        std::thread::sleep(ACK_POLL.min(wait.saturating_sub(started.elapsed())));
    }
}

/// One service as `status` shows it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// Its latest acknowledgement.
    #[serde(flatten)]
    pub ack: Acknowledgement,
    /// Whether it counts (written within [`ACK_TTL`](crate::act::ACK_TTL)).
    pub live: bool,
    /// Whether it applies the stored epoch (or a later one).
    pub current: bool,
}

/// The body of `status --json`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct StatusReport {
    /// Where the state was read.
    pub store: String,
    /// The store's revision; `null` when nothing is stored.
    pub revision: Option<u64>,
    /// The percent in force under this state, the plan and the config: 0
    /// when nothing is async (kill switch, rolled back, off, unknown).
    pub percent: Percent,
    /// Whether nothing is async because of the state (force lists
    /// included).
    pub halted: bool,
    /// Whether the config's kill switch is on; `null` when no config was
    /// read.
    pub kill_switch: Option<bool>,
    /// The state; `null` when nothing is stored (a service starts from its
    /// environment then) or it cannot be read.
    pub state: Option<RolloutState>,
    /// Why the state cannot be read, if it cannot.
    pub state_error: Option<String>,
    /// Where the config was read, if it was.
    pub config_store: Option<String>,
    /// The config, if it was read.
    pub config: Option<RolloutConfig>,
    /// Why the config cannot be read, if it cannot (the services keep their
    /// last good one).
    pub config_error: Option<String>,
    /// Every service's latest acknowledgement; `null` when the store keeps
    /// none.
    pub services: Option<Vec<ServiceStatus>>,
}

impl StatusReport {
    /// The report of what `store` holds (and `config`, when given), judged
    /// against `plan`. A state or config that cannot be read is reported,
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`CliError::State`] when the store cannot be reached.
    pub fn read(
        store: &dyn StateStore,
        config: Option<&dyn ConfigStore>,
        plan: &RolloutPlan,
        now: SystemTime,
    ) -> Result<StatusReport, CliError> {
        let (stored, state_error) = match store.load() {
            Ok(stored) => match &stored {
                Some(s) => match s.state.validate(plan) {
                    Ok(()) => (stored, None),
                    Err(err) => (stored, Some(err.to_string())),
                },
                None => (None, None),
            },
            Err(err) if err.is_corrupt() => (None, Some(err.to_string())),
            Err(err) => return Err(err.into()),
        };
        let (config_store, config, config_error) = match config {
            None => (None, None, None),
            Some(source) => match source.load_config_revision() {
                Ok(config) => (
                    Some(source.describe_config()),
                    config.map(|(config, _)| config),
                    None,
                ),
                Err(err) if err.is_corrupt() => {
                    (Some(source.describe_config()), None, Some(err.to_string()))
                }
                Err(err) => return Err(err.into()),
            },
        };
        let by_state = stored
            .as_ref()
            .filter(|_| state_error.is_none())
            .and_then(|s| s.state.percent_in_force(plan));
        let kill_switch = config.as_ref().map(|c| c.kill_switch);
        let epoch = stored.as_ref().map_or(0, |s| s.state.epoch);
        let services = store.acknowledgements()?.map(|acks| {
            acks.into_iter()
                .map(|ack| ServiceStatus {
                    live: ack.is_live(now),
                    current: epoch > 0 && ack.applied.epoch >= epoch,
                    ack,
                })
                .collect()
        });
        Ok(StatusReport {
            store: store.describe(),
            revision: stored.as_ref().map(|s| s.revision.0),
            percent: by_state
                .filter(|_| kill_switch != Some(true))
                .unwrap_or(Percent::ZERO),
            halted: by_state.is_none(),
            kill_switch,
            state: stored.map(|s| s.state),
            state_error,
            config_store,
            config,
            config_error,
            services,
        })
    }

    /// The report as an operator reads it, `now` giving the ages.
    #[must_use]
    pub fn render(&self, plan: &RolloutPlan, now: SystemTime) -> String {
        let mut out = String::new();
        let ago = |at: SystemTime| {
            let age = now.duration_since(at).unwrap_or_default();
            format!(
                "{} ({} ago)",
                humantime::format_rfc3339_seconds(at),
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )
        };
        let row = |out: &mut String, name: &str, value: &str| {
            let _ = writeln!(out, "{name:>12}: {value}");
        };
        row(&mut out, "store", &self.store);
        match (&self.state, &self.state_error) {
            (_, Some(error)) => {
                row(&mut out, "STATE ERROR", error);
                row(&mut out, "in force", "nothing async (services fail closed)");
            }
            (None, None) => row(
                &mut out,
                "state",
                "none stored: a service starts from its environment (ASYNC_UPLOAD_ROLLOUT) and writes its first state",
            ),
            (Some(state), None) => self.render_state(&mut out, state, plan, &ago),
        }
        match (&self.config_store, &self.config, &self.config_error) {
            (Some(source), _, Some(error)) => {
                row(&mut out, "CONFIG ERROR", error);
                row(
                    &mut out,
                    "config",
                    &format!("{source}: services keep their last good config"),
                );
            }
            (Some(source), Some(config), None) => row(
                &mut out,
                "config",
                &format!(
                    "{source}: kill switch {}, {} force_async and {} force_sync ids, salt {:?} (fingerprint {})",
                    if config.kill_switch { "ON" } else { "off" },
                    config.force_async.len(),
                    config.force_sync.len(),
                    config.salt,
                    config.fingerprint()
                ),
            ),
            (Some(source), None, None) => {
                row(&mut out, "config", &format!("{source}: none stored"))
            }
            (None, ..) => {}
        }
        self.render_services(&mut out, now);
        if self.state_error.is_some() {
            let _ = writeln!(
                out,
                "\nonly a rollback is accepted over an unreadable state: async-upload-rollout rollback --reason TEXT"
            );
        } else if let Some(state) = &self.state {
            let hint = match state.status {
                RolloutStatus::RolledBack => {
                    Some("resume it with: async-upload-rollout resume --reason TEXT")
                }
                RolloutStatus::Off => {
                    Some("start the first stage with: async-upload-rollout advance --reason TEXT")
                }
                RolloutStatus::AwaitingReview => {
                    Some("after the review: async-upload-rollout resume (or advance) --reason TEXT")
                }
                RolloutStatus::Paused => Some(
                    "resume automatic advancing with: async-upload-rollout resume --reason TEXT",
                ),
                RolloutStatus::Running | RolloutStatus::Complete => None,
            };
            if let Some(hint) = hint {
                let _ = writeln!(out, "\n{hint}");
            }
        }
        out
    }

    fn render_state(
        &self,
        out: &mut String,
        state: &RolloutState,
        plan: &RolloutPlan,
        ago: &dyn Fn(SystemTime) -> String,
    ) {
        let stage = state.stage.map_or_else(
            || "none".to_owned(),
            |i| match plan.stages.get(i) {
                Some(stage) => format!("{i} of {} ({})", plan.stages.len(), stage.percent),
                None => format!("{i} (not in the plan)"),
            },
        );
        let in_force = if self.kill_switch == Some(true) {
            "nothing async: the kill switch is on".to_owned()
        } else if self.halted {
            "nothing async (force lists included)".to_owned()
        } else {
            self.percent.to_string()
        };
        let rows: [(&str, String); 8] = [
            ("status", state.status.to_string()),
            ("stage", stage),
            ("in force", in_force),
            (
                "epoch",
                format!(
                    "{} (revision {})",
                    state.epoch,
                    self.revision.unwrap_or_default()
                ),
            ),
            (
                "changed",
                format!("{} by {}", ago(state.changed_at), state.changed_by),
            ),
            ("reason", state.reason.clone()),
            (
                "stage since",
                state.stage_started_at.map_or_else(|| "-".to_owned(), ago),
            ),
            (
                "run since",
                state.run_started_at.map_or_else(|| "-".to_owned(), ago),
            ),
        ];
        for (name, value) in rows {
            if name == "run since" && state.run_started_at == state.stage_started_at {
                continue;
            }
            let _ = writeln!(out, "{name:>12}: {value}");
        }
    }

    fn render_services(&self, out: &mut String, now: SystemTime) {
        let Some(services) = &self.services else {
            return;
        };
        let live = services.iter().filter(|s| s.live).count();
        let behind = services.iter().filter(|s| s.live && !s.current).count();
        let mut summary = format!("{live} live");
        if behind > 0 {
            let _ = write!(summary, ", {behind} NOT on the stored epoch");
        }
        if live == 0 {
            summary.push_str(" (no service acknowledges this store)");
        }
        let _ = writeln!(out, "{:>12}: {summary}", "services");
        for service in services {
            let mut line = describe_ack(&service.ack, now);
            if !service.live {
                line.push_str(" [gone: no acknowledgement within the last 10s]");
            } else if !service.current && self.state.is_some() {
                line.push_str(" [behind the stored epoch]");
            }
            let _ = writeln!(out, "{:>12}  {line}", "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::store::MemoryStateStore;

    #[test]
    fn nothing_stored_is_refused_without_create() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        for operation in [
            Operation::Rollback,
            Operation::Advance,
            Operation::Resume,
            Operation::Pause,
        ] {
            let err =
                operate(&store, &plan, operation, "x", SystemTime::now(), Create::No).unwrap_err();
            assert!(matches!(err, CliError::NoState { .. }), "{err}");
            assert!(err.to_string().contains("--create"), "{err}");
        }
        assert!(store.load().unwrap().is_none(), "nothing written");
    }

    #[test]
    fn advance_with_create_starts_the_first_stage() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let done = operate(
            &store,
            &plan,
            Operation::Advance,
            "go",
            SystemTime::now(),
            Create::Yes,
        )
        .unwrap();
        let Operated::Changed(stored) = done else {
            panic!("{done:?}")
        };
        assert_eq!(stored.state.stage, Some(0));
        assert_eq!(stored.state.epoch, 1);
        assert_eq!(stored.state.changed_by, ChangedBy::Operator);
    }

    #[test]
    fn rollback_with_create_writes_off() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let done = operate(
            &store,
            &plan,
            Operation::Rollback,
            "not yet",
            SystemTime::now(),
            Create::Yes,
        );
        let stored = store.load().unwrap().unwrap();
        assert_eq!(stored.state.status, RolloutStatus::Off);
        assert!(matches!(done, Ok(Operated::Changed(_))));
        let report = StatusReport::read(&store, None, &plan, SystemTime::now()).unwrap();
        assert!(report.halted);
        assert!(report.render(&plan, SystemTime::now()).contains("advance"));
    }

    #[test]
    fn advance_while_rolled_back_is_refused_naming_resume() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let now = SystemTime::now();
        let _ = operate(&store, &plan, Operation::Advance, "go", now, Create::Yes).unwrap();
        let _ = operate(&store, &plan, Operation::Rollback, "pager", now, Create::No).unwrap();
        let err = operate(&store, &plan, Operation::Advance, "again", now, Create::No).unwrap_err();
        assert!(err.to_string().contains("resume"), "{err}");
        assert!(matches!(
            operate(&store, &plan, Operation::Rollback, "twice", now, Create::No),
            Ok(Operated::Unchanged(_))
        ));
    }

    #[test]
    fn a_state_outside_the_plan_is_rolled_back_to_a_stage_it_has() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let now = SystemTime::now();
        let mut beyond = RolloutState::running(1, now, ChangedBy::Config, "start");
        beyond.stage = Some(9);
        beyond.epoch = 4;
        let _ = store.compare_and_swap(None, &beyond).unwrap();
        let err = operate(&store, &plan, Operation::Resume, "x", now, Create::No).unwrap_err();
        assert!(matches!(err, CliError::InvalidState { .. }), "{err}");
        let done = operate(&store, &plan, Operation::Rollback, "pager", now, Create::No).unwrap();
        let state = &done.stored().state;
        assert_eq!(state.status, RolloutStatus::RolledBack);
        assert_eq!((state.stage, state.epoch), (Some(0), 5));
        assert!(state.validate(&plan).is_ok());
    }
}

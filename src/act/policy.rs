//! The controller's policy: what a verdict or an operator's request calls
//! for, given the state in force, the plan, the time and the controller's
//! settings.
//!
//! [`decide`] is pure: it reads plain values and returns the next state and
//! the action that names it ([`Step`]); it never reads a clock, a store or a
//! metric, and changes nothing. The controller's shell does what the step
//! says: it halts the rollout for a rollback, writes the next state to its
//! store (compare-and-swap, retried on a conflict), and logs the action once
//! stored. Ticks and operator actions go through the same function, so the
//! rules below hold for both:
//!
//! - A rollback verdict acts in every status that still sends traffic to the
//!   async path (safety never pauses); an operator's rollback is always
//!   accepted, also over a state that cannot be read.
//! - A manual-review verdict stops automatic advancing (`awaiting_review`).
//! - An advance verdict waits for the stage's `min_duration`; at the last
//!   stage it completes the rollout; with `auto_advance` off it reports that
//!   the stage is ready; otherwise it starts the next stage.
//! - A replica of a fleet only pulls the fuse: it acts on rollback verdicts,
//!   the leading controller judges the rest.

use std::time::SystemTime;

use crate::act::record::{Action, NoOp};
use crate::act::state::{ChangedBy, Operation, Refused, RolloutState, RolloutStatus};
use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;
use crate::judge::{Evaluation, Verdict};

/// What a controller may write of its own accord: its role's part of the
/// state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Authority {
    /// It owns the rollout's state: it writes the first state, every
    /// transition its verdicts call for, and a lost state again.
    #[default]
    Owner,
    /// A fleet's replica ([`fleet::replica`](crate::fleet::replica)): the
    /// leading controller owns the state; the replica writes only a
    /// rollback its own immediate triggers call for (the local fuse), and
    /// waits for the leader where an owner would write.
    Fuse,
}

/// What the controller is set to do on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Whether an advance verdict starts the next stage by itself.
    pub(crate) auto_advance: bool,
    /// What it may write of its own accord.
    pub(crate) authority: Authority,
}

/// What asks for a change.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Input<'a> {
    /// A tick's evaluation of the current run.
    Verdict(&'a Evaluation),
    /// An operator's request, with the operator's words.
    Operator {
        operation: Operation,
        reason: &'a str,
    },
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Nothing.
    Stay,
    /// The stage met its criteria but does not advance by itself
    /// ([`Action::Ready`]); nothing is written.
    Ready(Action),
    /// An operator's request that the state already satisfies.
    NoOp(NoOp),
    /// Nothing async from now on: halt, then write a rollback (kept pending
    /// until the store takes it). `run`: the run whose data was judged (a
    /// newer run is not rolled back on older evidence); `None` for a
    /// rollback over whatever is stored, also a state that cannot be read.
    Rollback {
        reason: String,
        by: ChangedBy,
        run: Option<u64>,
    },
    /// Write `next` (halting first when `action` is a rollback), then name
    /// it with `action`.
    Write { next: RolloutState, action: Action },
}

/// Why an operator's request cannot be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The state does not allow it.
    Refused(Refused),
    /// The state is unknown (only a rollback is accepted then).
    Unknown,
}

/// The step `input` calls for over `state` (`None`: the state in force is
/// unknown), at `now`. See the module's rules.
///
/// # Errors
///
/// For an operator's request only: [`Refusal::Refused`] when the state does
/// not allow it, [`Refusal::Unknown`] for anything but a rollback over an
/// unknown state. A verdict is never refused.
pub(crate) fn decide(
    state: Option<&RolloutState>,
    input: Input<'_>,
    plan: &RolloutPlan,
    now: SystemTime,
    settings: Settings,
) -> Result<Step, Refusal> {
    match input {
        Input::Verdict(evaluation) => Ok(state.map_or(Step::Stay, |state| {
            on_verdict(state, evaluation, plan, now, settings)
        })),
        Input::Operator { operation, reason } => match state {
            None if operation == Operation::Rollback => Ok(Step::Rollback {
                reason: reason.to_owned(),
                by: ChangedBy::Operator,
                run: None,
            }),
            None => Err(Refusal::Unknown),
            Some(state) => on_operator(state, operation, reason, plan, now),
        },
    }
}

fn on_verdict(
    state: &RolloutState,
    evaluation: &Evaluation,
    plan: &RolloutPlan,
    now: SystemTime,
    settings: Settings,
) -> Step {
    let Some(stage) = state.stage else {
        return Step::Stay;
    };
    if settings.authority == Authority::Fuse && evaluation.verdict != Verdict::Rollback {
        return Step::Stay;
    }
    let reason = &evaluation.reason;
    match (state.status, evaluation.verdict) {
        // Safety never pauses: a rollback trigger acts in every status that
        // still sends traffic to the async path.
        (_, Verdict::Rollback) => Step::Rollback {
            reason: reason.clone(),
            by: ChangedBy::Controller,
            run: Some(state.run_epoch),
        },
        (RolloutStatus::Running | RolloutStatus::Complete, Verdict::ManualReview) => Step::Write {
            next: state.automatic(RolloutStatus::AwaitingReview, now, reason),
            action: Action::ReviewRequested,
        },
        (RolloutStatus::Running, Verdict::Advance) => {
            let min_duration = plan.stages[stage].criteria.min_duration;
            if state.stage_age(now) < min_duration {
                // Not ready until the stage has run its minimum.
                Step::Stay
            } else if stage + 1 >= plan.stages.len() {
                Step::Write {
                    next: state.automatic(RolloutStatus::Complete, now, reason),
                    action: Action::Complete,
                }
            } else if !settings.auto_advance {
                Step::Ready(Action::Ready {
                    waiting_for: "an operator to advance (auto-advance is off)".into(),
                })
            } else {
                let to = stage + 1;
                Step::Write {
                    next: state.advanced(to, now, reason),
                    action: Action::Advance {
                        from: Some(stage),
                        to,
                        percent: plan.stages[to].percent,
                        manual: false,
                    },
                }
            }
        }
        _ => Step::Stay,
    }
}

fn on_operator(
    state: &RolloutState,
    operation: Operation,
    reason: &str,
    plan: &RolloutPlan,
    now: SystemTime,
) -> Result<Step, Refusal> {
    let next = state
        .apply(operation, plan, now, ChangedBy::Operator, reason)
        .map_err(Refusal::Refused)?;
    let Some(next) = next else {
        return Ok(Step::NoOp(NoOp {
            operation,
            detail: format!(
                "{operation}: nothing to change: the state already is {} at epoch {}",
                state.status, state.epoch
            ),
        }));
    };
    let percent = next.percent_in_force(plan).unwrap_or(Percent::ZERO);
    let action = match operation {
        Operation::Advance => Action::Advance {
            from: state.stage,
            to: next.stage.unwrap_or_default(),
            percent,
            manual: true,
        },
        Operation::Rollback => Action::Rollback { manual: true },
        Operation::Pause => Action::Pause,
        Operation::Resume => Action::Resume {
            stage: next.stage.unwrap_or_default(),
            percent,
        },
    };
    Ok(Step::Write { next, action })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn verdict(verdict: Verdict, stage: usize, plan: &RolloutPlan) -> Evaluation {
        Evaluation {
            verdict,
            reason: format!("{verdict:?} on purpose"),
            stage,
            percent: plan.stages[stage].percent,
            at_unix_ms: 0,
            checks: Vec::new(),
        }
    }

    fn running(stage: usize) -> RolloutState {
        RolloutState::running(stage, at(0), ChangedBy::Config, "test")
    }

    fn on(
        state: &RolloutState,
        evaluation: &Evaluation,
        plan: &RolloutPlan,
        now: SystemTime,
        settings: Settings,
    ) -> Step {
        decide(Some(state), Input::Verdict(evaluation), plan, now, settings).unwrap()
    }

    #[test]
    fn a_rollback_verdict_rolls_back_the_judged_run_in_every_status_and_role() {
        let plan = RolloutPlan::default();
        let fuse = Settings {
            auto_advance: false,
            authority: Authority::Fuse,
        };
        for status in [
            RolloutStatus::Running,
            RolloutStatus::AwaitingReview,
            RolloutStatus::Paused,
            RolloutStatus::Complete,
        ] {
            let mut state = running(1);
            state.status = status;
            state.run_epoch = 7;
            for settings in [Settings::default(), fuse] {
                let step = on(
                    &state,
                    &verdict(Verdict::Rollback, 1, &plan),
                    &plan,
                    at(1),
                    settings,
                );
                assert_eq!(
                    step,
                    Step::Rollback {
                        reason: "Rollback on purpose".into(),
                        by: ChangedBy::Controller,
                        run: Some(7),
                    },
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn an_advance_waits_for_min_duration_then_is_ready_or_advances() {
        let plan = RolloutPlan::default();
        let state = running(0);
        let evaluation = verdict(Verdict::Advance, 0, &plan);
        let min = plan.stages[0].criteria.min_duration;
        let early = at(0) + min - Duration::from_secs(1);
        let late = at(0) + min;
        assert_eq!(
            on(&state, &evaluation, &plan, early, Settings::default()),
            Step::Stay
        );
        assert!(matches!(
            on(&state, &evaluation, &plan, late, Settings::default()),
            Step::Ready(Action::Ready { .. })
        ));
        let auto = Settings {
            auto_advance: true,
            authority: Authority::Owner,
        };
        let Step::Write { next, action } = on(&state, &evaluation, &plan, late, auto) else {
            panic!("auto-advance writes the next stage");
        };
        assert_eq!(next.stage, Some(1));
        assert_eq!(
            action,
            Action::Advance {
                from: Some(0),
                to: 1,
                percent: plan.stages[1].percent,
                manual: false,
            }
        );
    }

    #[test]
    fn the_last_stage_completes_and_a_review_verdict_stops_advancing() {
        let plan = RolloutPlan::default();
        let last = plan.stages.len() - 1;
        let state = running(last);
        let late = at(0) + plan.stages[last].criteria.min_duration;
        let Step::Write { next, action } = on(
            &state,
            &verdict(Verdict::Advance, last, &plan),
            &plan,
            late,
            Settings::default(),
        ) else {
            panic!("the last stage completes");
        };
        assert_eq!(
            (next.status, action),
            (RolloutStatus::Complete, Action::Complete)
        );
        let Step::Write { next, action } = on(
            &running(0),
            &verdict(Verdict::ManualReview, 0, &plan),
            &plan,
            at(1),
            Settings::default(),
        ) else {
            panic!("a review verdict is written");
        };
        assert_eq!(
            (next.status, action),
            (RolloutStatus::AwaitingReview, Action::ReviewRequested)
        );
    }

    #[test]
    fn a_replica_acts_on_nothing_but_rollback_and_nothing_acts_on_an_unknown_state() {
        let plan = RolloutPlan::default();
        let fuse = Settings {
            auto_advance: true,
            authority: Authority::Fuse,
        };
        let late = at(0) + plan.stages[0].criteria.min_duration;
        for v in [Verdict::Advance, Verdict::ManualReview] {
            let evaluation = verdict(v, 0, &plan);
            assert_eq!(on(&running(0), &evaluation, &plan, late, fuse), Step::Stay);
            let unknown = decide(None, Input::Verdict(&evaluation), &plan, late, fuse);
            assert_eq!(unknown, Ok(Step::Stay));
        }
        let off = RolloutState::off(at(0), ChangedBy::Config, "off");
        let evaluation = verdict(Verdict::Rollback, 0, &plan);
        assert_eq!(
            on(&off, &evaluation, &plan, late, Settings::default()),
            Step::Stay
        );
    }

    #[test]
    fn operators_go_through_the_same_policy() {
        let plan = RolloutPlan::default();
        let state = running(0);
        let request = |operation| Input::Operator {
            operation,
            reason: "ops",
        };
        let advance = decide(
            Some(&state),
            request(Operation::Advance),
            &plan,
            at(1),
            Settings::default(),
        );
        let Ok(Step::Write { next, action }) = advance else {
            panic!("an operator advances at once: {advance:?}");
        };
        assert_eq!(next.stage, Some(1));
        assert_eq!(
            action,
            Action::Advance {
                from: Some(0),
                to: 1,
                percent: plan.stages[1].percent,
                manual: true,
            }
        );
        let Ok(Step::Write {
            next: rolled,
            action,
        }) = decide(
            Some(&state),
            request(Operation::Rollback),
            &plan,
            at(1),
            Settings::default(),
        )
        else {
            panic!("a rollback is written");
        };
        assert_eq!(action, Action::Rollback { manual: true });
        let again = decide(
            Some(&rolled),
            request(Operation::Rollback),
            &plan,
            at(2),
            Settings::default(),
        );
        let Ok(Step::NoOp(no_op)) = again else {
            panic!("a second rollback changes nothing: {again:?}");
        };
        assert_eq!(no_op.operation, Operation::Rollback);
        assert!(
            no_op.detail.contains("nothing to change"),
            "{}",
            no_op.detail
        );
        assert!(matches!(
            decide(
                Some(&rolled),
                request(Operation::Advance),
                &plan,
                at(2),
                Settings::default()
            ),
            Err(Refusal::Refused(_))
        ));
        assert_eq!(
            decide(
                None,
                request(Operation::Pause),
                &plan,
                at(2),
                Settings::default()
            ),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            decide(
                None,
                request(Operation::Rollback),
                &plan,
                at(2),
                Settings::default()
            ),
            Ok(Step::Rollback {
                reason: "ops".into(),
                by: ChangedBy::Operator,
                run: None,
            })
        );
    }
}

//! Putting instances' logs together and judging them: [`Fleet`].
//!
//! One concept in one file of about 895 lines (202 of them its unit tests, 104
//! docs): putting instances' logs together and judging them as one.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::act::record::LogEvent;
use crate::act::state::{RolloutState, RolloutStatus};
use crate::clock::{from_unix_ms, unix_ms};
use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;
use crate::judge::{CheckStatus, Evaluation, Evaluator, Verdict};
use crate::metrics::{ArmMetrics, History, MetricsSnapshot};

use super::error::CliError;
use super::error::exit_code;
use super::read::{InstanceLog, Logged, Series, time_text};

/// Where the stage that was judged came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageSource {
    /// `--stage`.
    Flag,
    /// The `stage` field of the latest line that has one.
    Logged {
        /// The log.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// The plan's stage at the `percent` of the latest line that has one.
    Percent {
        /// The log.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The percent found there.
        percent: Percent,
    },
}

/// The controller's own answer, as one instance's log has it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ControllerAnswer {
    /// The instance's log.
    pub path: PathBuf,
    /// Its last logged state (the `state` of the latest line with one).
    pub state: Option<Logged<RolloutState>>,
    /// Its last logged verdict (the evaluation of the latest tick line).
    pub verdict: Option<Logged<Evaluation>>,
}

/// How the recomputed evaluation compares with the controller's own
/// evaluation of the same totals (its last tick).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Comparison {
    /// The controller's evaluation, and where it was logged.
    pub logged: Logged<Evaluation>,
    /// What differs, one sentence each (the verdict, then each check whose
    /// status differs); empty when they agree.
    pub differences: Vec<String>,
}

impl Comparison {
    /// Whether the recomputation gives the controller's verdict and every
    /// check the controller's status.
    #[must_use]
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }
}

/// What [`Fleet::check`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// The recomputed verdict and every check behind it.
    pub evaluation: Evaluation,
    /// The merged totals of the run that was judged.
    pub totals: MetricsSnapshot,
    /// Where the stage index came from.
    pub stage_source: StageSource,
    /// How many snapshots the rebuilt history holds.
    pub history_len: usize,
    /// Things the operator should know (which data was used, disagreements),
    /// one sentence each.
    pub notes: Vec<String>,
    /// Each judged instance's controller answer, in the order given.
    pub controllers: Vec<ControllerAnswer>,
    /// The controller's state the headline and exit code follow: the
    /// newest (highest epoch) of the judged instances' last logged states.
    pub state: Option<Logged<RolloutState>>,
    /// The recomputation beside the controller's own evaluation of the same
    /// totals; `None` when there is none to compare with (several
    /// instances, plain snapshot lines, or a run with no tick logged yet).
    pub comparison: Option<Comparison>,
    /// The sync baseline carried from an earlier run, when one was used.
    pub carried_baseline: Option<Logged<ArmMetrics>>,
}

impl CheckOutcome {
    /// The verdict `check` answers with: while the controller's state is
    /// `rolled_back` or `awaiting_review` (both hold until a person acts),
    /// that state's verdict (rollback, manual review); otherwise the
    /// recomputed one.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        match self.state.as_ref().map(|s| s.value.status) {
            Some(RolloutStatus::RolledBack) => Verdict::Rollback,
            Some(RolloutStatus::AwaitingReview) => Verdict::ManualReview,
            _ => self.evaluation.verdict,
        }
    }

    /// `check`'s exit code: [`exit_code`] of [`verdict`](Self::verdict).
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        exit_code(self.verdict())
    }

    /// One line that says where the rollout stands, the controller's state
    /// first: `ROLLED BACK at stage 1 (10%): …`, `AWAITING REVIEW …`,
    /// `COMPLETE …`, `RUNNING …`, or for logs without a controller state the
    /// recomputed verdict.
    #[must_use]
    pub fn headline(&self) -> String {
        let e = &self.evaluation;
        let Some(state) = &self.state else {
            return format!("stage {} ({}): verdict {}", e.stage, e.percent, e.verdict);
        };
        let s = &state.value;
        let stage = s.stage.map_or_else(
            || "no stage".to_owned(),
            |stage| {
                if stage == e.stage {
                    format!("stage {stage} ({})", e.percent)
                } else {
                    format!("stage {stage}")
                }
            },
        );
        let since = time_text(unix_ms(s.changed_at));
        let by = format!("since {since}, by the {}", s.changed_by);
        let recomputed = format!("recomputed from the log: {}", e.verdict);
        match s.status {
            RolloutStatus::RolledBack => format!(
                "ROLLED BACK at {stage}: nothing async until a person resumes ({by}); {recomputed}"
            ),
            RolloutStatus::AwaitingReview => format!(
                "AWAITING REVIEW at {stage}: automatic advancing stopped until a person resumes or advances ({by}); {recomputed}"
            ),
            RolloutStatus::Complete => format!("COMPLETE at {stage}: verdict {} ({by})", e.verdict),
            RolloutStatus::Paused => format!("PAUSED at {stage}: verdict {} ({by})", e.verdict),
            RolloutStatus::Off => format!("OFF: nothing async ({by}); {recomputed}"),
            RolloutStatus::Running => format!("RUNNING at {stage}: verdict {}", e.verdict),
        }
    }
}

/// Several instances' logs, judged together.
#[derive(Clone, Debug)]
pub struct Fleet {
    instances: Vec<InstanceLog>,
}

/// What one instance's log says is being judged now.
struct Current<'a> {
    log: &'a InstanceLog,
    /// The series whose totals are judged; `None` when the controller moved
    /// on to a run with no tick logged yet.
    series: Option<&'a Series>,
    /// The state that started a run after the series' data.
    moved_on: Option<Logged<RolloutState>>,
    /// The stage, and where it came from.
    stage: Option<(usize, StageSource)>,
    /// The run: `(run_epoch, run_started_at)` from the controller's state.
    run: Option<(u64, Option<SystemTime>)>,
    status: Option<RolloutStatus>,
}

impl Current<'_> {
    /// `stage 1 (10%), run of epoch 3, rolled_back (a.jsonl, line 57)`.
    fn describe(&self, plan: &RolloutPlan) -> String {
        let mut text = match &self.stage {
            Some((stage, _)) => match plan.stages.get(*stage) {
                Some(spec) => format!("stage {stage} ({})", spec.percent),
                None => format!("stage {stage}"),
            },
            None => "no stage".to_owned(),
        };
        if let Some((epoch, _)) = self.run {
            let _ = write!(text, ", run of epoch {epoch}");
        }
        if let Some(status) = self.status {
            let _ = write!(text, ", {status}");
        }
        text
    }
}

impl Fleet {
    /// The fleet of `instances`.
    ///
    /// # Errors
    ///
    /// [`CliError::NoLogs`] when `instances` is empty.
    pub fn new(instances: Vec<InstanceLog>) -> Result<Fleet, CliError> {
        if instances.is_empty() {
            return Err(CliError::NoLogs);
        }
        Ok(Fleet { instances })
    }

    /// The instances, in the order given.
    #[must_use]
    pub fn instances(&self) -> &[InstanceLog] {
        &self.instances
    }

    fn current<'a>(log: &'a InstanceLog, plan: &RolloutPlan) -> Current<'a> {
        let series = log.current_series();
        let moved_on = series
            .filter(|s| log.moved_on(s))
            .and_then(|_| log.last_state());
        let stage = match (&moved_on, series) {
            (Some(state), _) => state.value.stage.map(|stage| {
                (
                    stage,
                    StageSource::Logged {
                        path: state.path.clone(),
                        line: state.line,
                    },
                )
            }),
            (None, Some(series)) if series.key.stage.is_some() => {
                log.current_series_lines().and_then(|(_, last, _)| {
                    series.key.stage.map(|stage| {
                        (
                            stage,
                            StageSource::Logged {
                                path: last.path,
                                line: last.line,
                            },
                        )
                    })
                })
            }
            _ => log.latest_percent().and_then(|logged| {
                plan.stage_at(logged.value).map(|stage| {
                    (
                        stage,
                        StageSource::Percent {
                            path: logged.path,
                            line: logged.line,
                            percent: logged.value,
                        },
                    )
                })
            }),
        };
        let run = match &moved_on {
            Some(state) => Some((state.value.run_epoch, state.value.run_started_at)),
            None => series
                .and_then(|s| s.run_state.as_ref())
                .map(|s| (s.run_epoch, s.run_started_at)),
        };
        Current {
            log,
            series: if moved_on.is_some() { None } else { series },
            moved_on,
            stage,
            run,
            status: log.status(),
        }
    }

    /// The stage to judge: `flag` if given, else the stage of the
    /// instances' current runs (the `stage` field of the latest line with
    /// one and a snapshot, or of the controller's state when it moved on to
    /// a run with no tick logged yet), else the plan's stage at the
    /// `percent` of the latest line that has one.
    ///
    /// # Errors
    ///
    /// [`CliError::UnknownStage`] for a `flag` outside the plan,
    /// [`CliError::StageNotInPlan`] for a logged stage outside the plan,
    /// [`CliError::MixedRuns`] when the instances are at different stages
    /// or runs and no `flag` picks one, [`CliError::NoStage`] when nothing
    /// tells the stage.
    pub fn stage(
        &self,
        plan: &RolloutPlan,
        flag: Option<usize>,
    ) -> Result<(usize, StageSource), CliError> {
        let current: Vec<Current<'_>> = self
            .instances
            .iter()
            .map(|log| Fleet::current(log, plan))
            .collect();
        Fleet::stage_of(&current, plan, flag).map(|(stage, source, _)| (stage, source))
    }

    /// The stage, where it came from, and which of `current` to judge.
    fn stage_of(
        current: &[Current<'_>],
        plan: &RolloutPlan,
        flag: Option<usize>,
    ) -> Result<(usize, StageSource, Vec<usize>), CliError> {
        let stages = plan.stages.len();
        for c in current {
            if let Some((stage, StageSource::Logged { path, line })) = &c.stage
                && *stage >= stages
                && flag.is_none()
            {
                return Err(CliError::StageNotInPlan {
                    path: path.clone(),
                    line: *line,
                    stage: *stage,
                    stages,
                });
            }
        }
        let mixed = {
            let mut known_stages: Vec<usize> = current
                .iter()
                .filter_map(|c| c.stage.as_ref().map(|s| s.0))
                .collect();
            known_stages.dedup();
            let mut runs: Vec<(u64, Option<SystemTime>)> =
                current.iter().filter_map(|c| c.run).collect();
            runs.dedup();
            let distinct_stages = known_stages.iter().any(|s| *s != known_stages[0]);
            let distinct_runs = runs.iter().any(|r| *r != runs[0]);
            distinct_stages || distinct_runs
        };
        let mixed_error = || CliError::MixedRuns {
            logs: current
                .iter()
                .map(|c| (c.log.path().to_path_buf(), c.describe(plan)))
                .collect(),
        };
        if let Some(stage) = flag {
            if stage >= stages {
                return Err(CliError::UnknownStage { stage, stages });
            }
            let chosen: Vec<usize> = if mixed && current.len() > 1 {
                (0..current.len())
                    .filter(|&i| current[i].stage.as_ref().is_none_or(|s| s.0 == stage))
                    .collect()
            } else {
                (0..current.len()).collect()
            };
            if chosen.is_empty() {
                return Err(mixed_error());
            }
            return Ok((stage, StageSource::Flag, chosen));
        }
        if mixed {
            return Err(mixed_error());
        }
        let all = (0..current.len()).collect();
        // The latest line that tells the stage, over every instance.
        let latest = current
            .iter()
            .filter_map(|c| c.stage.clone().map(|s| (c, s)))
            .max_by_key(|(c, _)| c.log.latest_line().map(|l| l.at_unix_ms));
        if let Some((_, (stage, source))) = latest {
            if stage >= stages {
                return Err(CliError::NoStage {
                    detail: format!("stage {stage} is not in the plan"),
                });
            }
            return Ok((stage, source, all));
        }
        if let Some(c) = current.iter().find(|c| c.log.latest_percent().is_some())
            && let Some(logged) = c.log.latest_percent()
        {
            return Err(CliError::NoStage {
                detail: format!(
                    "{}, line {}: percent {} is not a stage of the plan",
                    logged.path.display(),
                    logged.line,
                    logged.value
                ),
            });
        }
        let files: Vec<String> = current
            .iter()
            .map(|c| c.log.path().display().to_string())
            .collect();
        Err(CliError::NoStage {
            detail: format!(
                "no line of {} has a `stage` or `percent` field",
                files.join(", ")
            ),
        })
    }

    /// The merged history of the instances' current series (see the
    /// [module docs](super#merging-several-instances)); its latest entry is
    /// the merged totals.
    ///
    /// # Errors
    ///
    /// [`CliError::NoSnapshot`] naming the first log without a snapshot.
    pub fn history(&self) -> Result<History, CliError> {
        let series: Vec<&Series> = self
            .instances
            .iter()
            .map(|log| {
                log.current_series().ok_or_else(|| CliError::NoSnapshot {
                    path: log.path().to_path_buf(),
                    records: log.record_count(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(history_of(&series).into_owned())
    }

    /// Judges the instances' current run against `plan` at stage `stage`
    /// (or as [`stage`](Self::stage) finds it), with the history rebuilt from
    /// the logs and the sync baseline the controller carried from earlier
    /// runs, stamped with the latest snapshot's time; and puts the
    /// controllers' own last logged state and verdict beside it.
    ///
    /// For one instance whose log has every controller tick, the evaluation
    /// is the one its latest tick logged, as the controller made it.
    ///
    /// # Errors
    ///
    /// [`CliError::Plan`] for an invalid plan, [`CliError::MixedRuns`] for
    /// instances at different stages or runs without `stage`, and as
    /// [`stage`](Self::stage) and [`history`](Self::history).
    pub fn check(
        &self,
        plan: &RolloutPlan,
        stage: Option<usize>,
    ) -> Result<CheckOutcome, CliError> {
        let evaluator = Evaluator::new(plan.clone())?;
        let current: Vec<Current<'_>> = self
            .instances
            .iter()
            .map(|log| Fleet::current(log, plan))
            .collect();
        let (stage, stage_source, chosen) = Fleet::stage_of(&current, plan, stage)?;
        let judged: Vec<&Current<'_>> = chosen.iter().map(|&i| &current[i]).collect();
        let mut notes = Vec::new();
        for (i, c) in current.iter().enumerate() {
            if !chosen.contains(&i) {
                notes.push(format!(
                    "{}: left out, at {}",
                    c.log.path().display(),
                    c.describe(plan)
                ));
            }
        }
        // Every judged instance needs data, unless its run has just begun.
        for c in &judged {
            if c.series.is_none() && c.moved_on.is_none() {
                return Err(CliError::NoSnapshot {
                    path: c.log.path().to_path_buf(),
                    records: c.log.record_count(),
                });
            }
        }
        let series: Vec<&Series> = judged.iter().filter_map(|c| c.series).collect();
        let history = history_of(&series);
        let latest_at = judged
            .iter()
            .filter_map(|c| c.log.latest_line().map(|l| l.at_unix_ms))
            .max()
            .unwrap_or_default();
        let totals = match history.latest() {
            Some(latest) => latest.clone(),
            None => {
                // The controller moved on to a run with no tick logged yet:
                // that run is judged, on no data.
                let start = judged
                    .iter()
                    .filter_map(|c| c.moved_on.as_ref())
                    .filter_map(|s| s.value.run_started_at)
                    .max()
                    .map_or(latest_at, unix_ms);
                let mut empty = MetricsSnapshot::empty_at(from_unix_ms(start));
                empty.at_unix_ms = latest_at.max(start);
                empty
            }
        };
        for c in &judged {
            if let Some(state) = &c.moved_on {
                notes.push(format!(
                    "{}: the controller started a new run at line {} ({}) and logged no tick in it yet: the run is judged on no data",
                    state.path.display(),
                    state.line,
                    state.value
                ));
            } else if let Some(series) = c.series
                && let Some((first, last, n)) = c.log.current_series_lines()
            {
                let what = if series.event == LogEvent::Tick {
                    "the run's totals from controller ticks"
                } else {
                    "cumulative totals since the instance started (snapshot lines, not controller ticks)"
                };
                notes.push(format!(
                    "{}: {what}, lines {}–{} ({n} snapshots)",
                    c.log.path().display(),
                    first.line,
                    last.line
                ));
            }
        }
        // What the controller carried into this run from earlier runs.
        let min_judged = plan.triggers.min_uploads;
        let baselines: Vec<Logged<ArmMetrics>> = judged
            .iter()
            .filter_map(|c| c.log.carried_sync_baseline(min_judged))
            .collect();
        let carried = baselines
            .iter()
            .skip(1)
            .fold(baselines.first().cloned(), |acc, b| {
                acc.map(|mut acc| {
                    acc.value = acc.value.merge(&b.value);
                    acc
                })
            });
        let now: SystemTime = from_unix_ms(totals.at_unix_ms);
        let evaluation = evaluator
            .evaluate_with_sync_baseline(
                stage,
                &totals,
                &history,
                carried.as_ref().map(|c| &c.value),
                now,
            )
            .map_err(|e| CliError::UnknownStage {
                stage: e.index,
                stages: e.stages,
            })?;
        if let Some(c) = &carried
            && evaluation
                .checks
                .iter()
                .any(|check| check.detail.contains("the carried sync baseline"))
        {
            notes.push(format!(
                "compared with the sync baseline carried from an earlier run: {} sync uploads judged, logged at {}, line {}",
                c.value.judged(),
                c.path.display(),
                c.line
            ));
        }
        let controllers: Vec<ControllerAnswer> = judged
            .iter()
            .map(|c| ControllerAnswer {
                path: c.log.path().to_path_buf(),
                state: c.log.last_state(),
                verdict: c.log.last_verdict(),
            })
            .collect();
        let state = controllers
            .iter()
            .filter_map(|c| c.state.clone())
            .max_by_key(|s| (s.value.epoch, s.at_unix_ms));
        let comparison = match judged.as_slice() {
            [c] => c
                .series
                .and_then(|series| compare(c.log, series, &evaluation)),
            _ => None,
        };
        Ok(CheckOutcome {
            evaluation,
            totals,
            stage_source,
            history_len: history.len(),
            notes,
            controllers,
            state,
            comparison,
            carried_baseline: carried,
        })
    }
}

/// The history of `series` merged: one series' own (not copied: it is the
/// largest thing kept), or the merge (see [`merged_history`]).
fn history_of<'a>(series: &[&'a Series]) -> Cow<'a, History> {
    match series {
        [one] => Cow::Borrowed(&one.history),
        many => {
            let all: Vec<Vec<&MetricsSnapshot>> =
                many.iter().map(|s| s.history.iter().collect()).collect();
            Cow::Owned(merged_history(&all))
        }
    }
}

/// The recomputed `evaluation` beside the controller's own evaluation of the
/// same totals: the latest tick of `series`, when it is the log's last
/// verdict.
fn compare(log: &InstanceLog, series: &Series, evaluation: &Evaluation) -> Option<Comparison> {
    let logged = log.last_verdict()?;
    let (_, last, _) = log.current_series_lines()?;
    if series.event != LogEvent::Tick
        || (logged.path.as_path(), logged.line) != (last.path.as_path(), last.line)
    {
        return None;
    }
    let mut differences = Vec::new();
    let theirs = &logged.value;
    if theirs.stage != evaluation.stage {
        differences.push(format!(
            "the controller judged stage {}, the recomputation stage {}",
            theirs.stage, evaluation.stage
        ));
    }
    if theirs.verdict != evaluation.verdict {
        differences.push(format!(
            "verdict: the controller's {}, recomputed {}",
            theirs.verdict, evaluation.verdict
        ));
    }
    for check in &theirs.checks {
        let status = |s: CheckStatus| s.to_string();
        match evaluation.check(&check.name) {
            Some(ours) if ours.status != check.status => differences.push(format!(
                "{}: the controller's {}, recomputed {}",
                check.name,
                status(check.status),
                status(ours.status)
            )),
            None => differences.push(format!(
                "{}: the controller's {}, not recomputed",
                check.name,
                status(check.status)
            )),
            _ => {}
        }
    }
    Some(Comparison {
        logged,
        differences,
    })
}

/// Merges several instances' series into one history: an entry at every
/// time at which some instance has a snapshot, from the first time at which
/// all have one, each the merge of every instance's newest snapshot at or
/// before that time.
pub(crate) fn merged_history(series: &[Vec<&MetricsSnapshot>]) -> History {
    let mut history = History::default();
    let Some(start) = series
        .iter()
        .map(|s| s.first().map_or(u64::MAX, |f| f.at_unix_ms))
        .max()
    else {
        return history;
    };
    let mut times: Vec<u64> = series
        .iter()
        .flat_map(|s| s.iter().map(|snap| snap.at_unix_ms))
        .filter(|&t| t >= start)
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut next = vec![0usize; series.len()];
    for t in times {
        let mut merged: Option<MetricsSnapshot> = None;
        for (s, i) in series.iter().zip(next.iter_mut()) {
            while *i + 1 < s.len() && s[*i + 1].at_unix_ms <= t {
                *i += 1;
            }
            let snap = s[*i];
            merged = Some(match merged {
                None => snap.clone(),
                Some(m) => m.merge(snap),
            });
        }
        if let Some(mut merged) = merged {
            merged.at_unix_ms = t;
            history.push(merged);
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::act::log::LogError;
    use crate::act::record::LogRecord;
    use crate::act::state::{ChangedBy, RolloutState};
    use crate::metrics::{Arm, Outcome};

    fn tick(at_min: u64, stage: usize, stage_start_min: u64, async_ok: u64) -> LogRecord {
        let mut snapshot = MetricsSnapshot::default();
        snapshot.at_unix_ms = at_min * 60_000;
        snapshot.start_unix_ms = stage_start_min * 60_000;
        for _ in 0..async_ok {
            snapshot
                .arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_millis(100));
        }
        let mut record = LogRecord::new(LogEvent::Tick, at_min * 60_000);
        record.snapshot = Some(snapshot);
        record.stage = Some(stage);
        record.state = Some(RolloutState::running(
            stage,
            crate::clock::from_unix_ms(stage_start_min * 60_000),
            ChangedBy::Controller,
            "test",
        ));
        record
    }

    fn try_log(records: Vec<LogRecord>) -> Result<InstanceLog, LogError> {
        InstanceLog::from_records(
            "a.jsonl",
            records.into_iter().zip(1..).map(|(r, l)| (l, r)).collect(),
        )
    }

    fn log(records: Vec<LogRecord>) -> InstanceLog {
        try_log(records).unwrap()
    }

    #[test]
    fn the_current_series_stops_where_the_stage_restarted() {
        let log = log(vec![
            tick(1, 0, 0, 5),
            tick(2, 1, 2, 0),
            tick(3, 1, 2, 7),
            // resumed after a rollback: same stage, totals start again
            tick(4, 1, 4, 1),
            tick(5, 1, 4, 3),
        ]);
        let (first, last, n) = log.current_series_lines().unwrap();
        assert_eq!((first.line, last.line, n), (4, 5, 2));
    }

    #[test]
    fn a_bucket_that_went_down_within_a_run_is_inconsistent_even_if_totals_grew() {
        let earlier = tick(1, 0, 0, 3);
        let mut later = tick(2, 0, 0, 0);
        let snapshot = later.snapshot.as_mut().unwrap();
        for _ in 0..4 {
            snapshot
                .arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_millis(900));
        }
        snapshot
            .arm_mut(Arm::Async)
            .record(Outcome::Success, Duration::from_millis(100));
        let err = try_log(vec![earlier.clone(), later.clone()]).unwrap_err();
        match err {
            LogError::Inconsistent { line, field, .. } => {
                assert_eq!(line, 2);
                assert!(
                    field.starts_with("snapshot.async.latency.buckets["),
                    "{field}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A new run (another stage start) may start lower.
        later.snapshot.as_mut().unwrap().start_unix_ms = 60_000;
        assert!(try_log(vec![earlier, later]).is_ok());
    }

    #[test]
    fn one_instance_history_is_its_own_series() {
        let log = log(vec![tick(1, 0, 0, 5), tick(2, 0, 0, 9), tick(3, 0, 0, 12)]);
        let fleet = Fleet::new(vec![log]).unwrap();
        let history = fleet.history().unwrap();
        let counts: Vec<u64> = history.iter().map(|s| s.judged(Arm::Async)).collect();
        assert_eq!(counts, [5, 9, 12]);
    }

    #[test]
    fn merged_history_sums_each_instances_latest_snapshot_at_each_time() {
        let a = log(vec![tick(1, 0, 0, 5), tick(3, 0, 0, 9)]);
        let b = log(vec![tick(2, 0, 0, 100), tick(4, 0, 0, 200)]);
        let fleet = Fleet::new(vec![a, b]).unwrap();
        let history = fleet.history().unwrap();
        let got: Vec<(u64, u64)> = history
            .iter()
            .map(|s| (s.at_unix_ms / 60_000, s.judged(Arm::Async)))
            .collect();
        // Starts once both have logged (minute 2).
        assert_eq!(got, [(2, 105), (3, 109), (4, 209)]);
    }

    #[test]
    fn stage_comes_from_the_flag_then_the_current_run() {
        let plan = RolloutPlan::default();
        let fleet = Fleet::new(vec![log(vec![tick(1, 0, 0, 1), tick(2, 2, 2, 1)])]).unwrap();
        assert_eq!(fleet.stage(&plan, Some(1)).unwrap(), (1, StageSource::Flag));
        let (stage, source) = fleet.stage(&plan, None).unwrap();
        assert_eq!(stage, 2);
        assert!(matches!(source, StageSource::Logged { line: 2, .. }));
        assert!(matches!(
            fleet.stage(&plan, Some(9)),
            Err(CliError::UnknownStage {
                stage: 9,
                stages: 4
            })
        ));
    }

    #[test]
    fn logs_at_different_stages_are_not_merged_unless_a_stage_is_picked() {
        let plan = RolloutPlan::default();
        let a = log(vec![tick(1, 1, 0, 5), tick(2, 1, 0, 9)]);
        let b = InstanceLog::from_records(
            "b.jsonl",
            vec![(1, tick(1, 2, 0, 50)), (2, tick(2, 2, 0, 90))],
        )
        .unwrap();
        let fleet = Fleet::new(vec![a, b]).unwrap();
        let err = fleet.check(&plan, None).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CliError::MixedRuns { .. }), "{text}");
        assert!(
            text.contains("a.jsonl: stage 1 (10%)") && text.contains("b.jsonl: stage 2 (50%)"),
            "{text}"
        );
        // --stage 2 judges the log at stage 2, and says which was left out.
        let outcome = fleet.check(&plan, Some(2)).unwrap();
        assert_eq!(outcome.totals.judged(Arm::Async), 90);
        assert!(
            outcome
                .notes
                .iter()
                .any(|n| n.contains("a.jsonl: left out")),
            "{:?}",
            outcome.notes
        );
    }

    #[test]
    fn a_run_started_after_the_last_tick_is_judged_on_no_data() {
        let plan = RolloutPlan::default();
        let mut advancing = tick(2, 1, 0, 900);
        let mut next = RolloutState::running(
            2,
            crate::clock::from_unix_ms(2 * 60_000),
            ChangedBy::Controller,
            "advanced",
        );
        next.epoch = 2;
        next.run_epoch = 2;
        advancing.state = Some(next);
        let fleet = Fleet::new(vec![log(vec![tick(1, 1, 0, 500), advancing])]).unwrap();
        let outcome = fleet.check(&plan, None).unwrap();
        assert_eq!(outcome.evaluation.stage, 2);
        assert_eq!(outcome.evaluation.verdict, Verdict::Hold);
        assert_eq!(outcome.totals.judged(Arm::Async), 0);
        assert!(outcome.comparison.is_none());
        assert!(
            outcome.headline().starts_with("RUNNING at stage 2"),
            "{}",
            outcome.headline()
        );
    }

    #[test]
    fn a_held_state_decides_the_answer() {
        let plan = RolloutPlan::default();
        let mut last = tick(2, 1, 0, 9);
        if let Some(state) = &mut last.state {
            state.status = RolloutStatus::RolledBack;
        }
        let fleet = Fleet::new(vec![log(vec![tick(1, 1, 0, 5), last])]).unwrap();
        let outcome = fleet.check(&plan, None).unwrap();
        assert_eq!(outcome.evaluation.verdict, Verdict::Hold, "too few uploads");
        assert_eq!(
            (outcome.verdict(), outcome.exit_code()),
            (Verdict::Rollback, 3)
        );
        assert!(
            outcome
                .headline()
                .starts_with("ROLLED BACK at stage 1 (10%)")
        );
    }
}

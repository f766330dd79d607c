//! Reading instances' logs and putting them together: [`InstanceLog`], [`Fleet`].

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::act::log::{LogError, TornLine, check_not_torn, log_files, read_log_numbered};
use crate::act::record::{LogEvent, LogRecord};
use crate::clock::from_unix_ms;
use crate::decide::percent::Percent;
use crate::judge::criteria::{Evaluation, Evaluator};
use crate::judge::plan::RolloutPlan;
use crate::metrics::{Arm, History, MetricsSnapshot, Outcome};

use super::error::CliError;

/// One instance's `metrics.jsonl` (with its rotated files, oldest first):
/// every record with its 1-based line number in its file.
#[derive(Clone, Debug)]
pub struct InstanceLog {
    path: PathBuf,
    records: Vec<(usize, LogRecord)>,
    /// Each file read, oldest first, and how many records came from it.
    files: Vec<(PathBuf, usize)>,
    torn_tail: Option<TornLine>,
    warnings: Vec<String>,
}

impl InstanceLog {
    /// Reads the log at `path` and its rotated files before it
    /// ([`log_files`](crate::log_files)), calling `progress(lines, bytes)`
    /// after every line of each.
    ///
    /// A torn last line (no `\n`: a crash cut it short) is skipped and kept
    /// in [`torn_tail`](Self::torn_tail). Every other line must be a valid
    /// record (a known schema version, valid snapshots and percent), and
    /// the records must agree with each other: within one run (the same
    /// event, stage, controller state, stage start and generation) no
    /// counter of the snapshots goes down, and a tick's `stage` is the stage
    /// its evaluation judged.
    ///
    /// # Errors
    ///
    /// [`LogError::Read`] when a file cannot be read, [`LogError::BadLine`]
    /// and [`LogError::LineTooLong`] (naming the file, line and field) for a
    /// line that is not a valid record, [`LogError::Inconsistent`] for
    /// records that contradict each other, [`LogError::TornRotated`] for an
    /// unfinished line in a rotated file.
    pub fn read(
        path: impl AsRef<Path>,
        progress: &mut dyn FnMut(usize, u64),
    ) -> Result<InstanceLog, LogError> {
        let path = path.as_ref();
        let files = log_files(path);
        let mut log = InstanceLog {
            path: path.to_path_buf(),
            records: Vec::new(),
            files: Vec::with_capacity(files.len()),
            torn_tail: None,
            warnings: Vec::new(),
        };
        let (mut lines_before, mut bytes_before) = (0usize, 0u64);
        for (i, file) in files.iter().enumerate() {
            let (mut lines, mut bytes) = (0, 0);
            let read = read_log_numbered::<LogRecord>(file, &mut |l, b| {
                (lines, bytes) = (l, b);
                progress(lines_before + l, bytes_before + b);
            })?;
            (lines_before, bytes_before) = (lines_before + lines, bytes_before + bytes);
            if i + 1 < files.len() {
                check_not_torn(file, read.torn_tail.as_ref())?;
            }
            log.files.push((file.clone(), read.records.len()));
            log.records.extend(read.records);
            log.torn_tail = read.torn_tail;
        }
        log.check_consistency()?;
        Ok(log)
    }

    /// The file that record `index` (of [`records`](Self::records)) came from.
    fn file_of(&self, index: usize) -> &Path {
        let mut end = 0;
        for (file, n) in &self.files {
            end += n;
            if index < end {
                return file;
            }
        }
        &self.path
    }

    /// The cross-line and record-level checks of [`read`](Self::read).
    fn check_consistency(&self) -> Result<(), LogError> {
        // Per event kind: the run key, snapshot and index of the latest
        // record with a snapshot.
        let mut last: Vec<(LogEvent, String, &MetricsSnapshot, usize)> = Vec::new();
        for (index, (line, record)) in self.records.iter().enumerate() {
            let inconsistent = |field: &str, reason: String| LogError::Inconsistent {
                path: self.file_of(index).to_path_buf(),
                line: *line,
                field: field.to_owned(),
                reason,
            };
            if let (Some(stage), Some(evaluation)) = (record.stage, &record.evaluation)
                && record.event == LogEvent::Tick
                && stage != evaluation.stage
            {
                return Err(inconsistent(
                    "stage",
                    format!(
                        "stage {stage} but the evaluation judged stage {}",
                        evaluation.stage
                    ),
                ));
            }
            let Some(snapshot) = &record.snapshot else {
                continue;
            };
            let key = run_key(record, snapshot);
            let previous = last.iter_mut().find(|(event, ..)| *event == record.event);
            if let Some((_, previous_key, earlier, earlier_index)) = &previous
                && *previous_key == key
                && let Some((field, from, to)) = first_decrease(earlier, snapshot)
            {
                let earlier_line = self.records[*earlier_index].0;
                return Err(inconsistent(
                    &format!("snapshot.{field}"),
                    format!(
                        "went down from {from} (line {earlier_line} of {}) to {to} within one stage run; counters only grow",
                        self.file_of(*earlier_index).display()
                    ),
                ));
            }
            match previous {
                Some(entry) => *entry = (record.event, key, snapshot, index),
                None => last.push((record.event, key, snapshot, index)),
            }
        }
        Ok(())
    }

    /// A log made of `records` (in file order, with their line numbers), as
    /// if read from `path`.
    #[must_use]
    pub fn from_records(path: impl Into<PathBuf>, records: Vec<(usize, LogRecord)>) -> InstanceLog {
        let path = path.into();
        InstanceLog {
            files: vec![(path.clone(), records.len())],
            path,
            records,
            torn_tail: None,
            warnings: Vec::new(),
        }
    }

    /// The file it was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records, in file order, each with its 1-based line number.
    #[must_use]
    pub fn records(&self) -> &[(usize, LogRecord)] {
        &self.records
    }

    /// The torn last line that was skipped, if any.
    #[must_use]
    pub fn torn_tail(&self) -> Option<&TornLine> {
        self.torn_tail.as_ref()
    }

    /// Lines that were skipped for another reason, one sentence each, naming
    /// the file and line.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The snapshots of the current series, oldest first, with their lines.
    ///
    /// The series is the trailing run of records of the same kind as the
    /// latest record with a snapshot: for `tick` lines, those of the same
    /// stage whose totals start at the same time (one run of one stage: a
    /// new stage or a resume after a rollback starts the totals afresh); for
    /// `snapshot` lines, those of the same accumulator lifetime (same start
    /// and generation). Windows between any two of them are exact.
    #[must_use]
    pub fn current_series(&self) -> Vec<(usize, &MetricsSnapshot)> {
        let mut with_snapshot = self
            .records
            .iter()
            .rev()
            .filter_map(|(line, r)| r.snapshot.as_ref().map(|s| (*line, r, s)));
        let Some((line, latest, snapshot)) = with_snapshot.next() else {
            return Vec::new();
        };
        let key = |r: &LogRecord, s: &MetricsSnapshot| (r.stage, s.start_unix_ms, s.generation);
        let want = key(latest, snapshot);
        let mut series = vec![(line, snapshot)];
        for (line, r, s) in with_snapshot {
            if r.event != latest.event {
                continue;
            }
            if key(r, s) != want || s.at_unix_ms > series[series.len() - 1].1.at_unix_ms {
                break;
            }
            series.push((line, s));
        }
        series.reverse();
        series
    }

    /// The latest record with a `stage` field and a snapshot, and its line:
    /// the stage whose data is judged (an action line after an advance names
    /// the new stage, which has no data yet).
    fn latest_with_stage(&self) -> Option<(usize, &LogRecord)> {
        self.records
            .iter()
            .rev()
            .find(|(_, r)| r.stage.is_some() && r.snapshot.is_some())
            .map(|(line, r)| (*line, r))
    }

    /// The latest record with a `percent` field and a snapshot, and its line.
    fn latest_with_percent(&self) -> Option<(usize, &LogRecord)> {
        self.records
            .iter()
            .rev()
            .find(|(_, r)| r.percent.is_some() && r.snapshot.is_some())
            .map(|(line, r)| (*line, r))
    }
}

/// What makes two records with snapshots parts of one run, whose counters
/// only grow: the same stage, controller state (as written), stage start and
/// generation. The event kind is compared by the caller.
fn run_key(record: &LogRecord, snapshot: &MetricsSnapshot) -> String {
    // Serialized, so that it follows the state's type wherever it goes.
    let state = serde_json::to_string(&record.state).unwrap_or_default();
    format!(
        "{:?}/{state}/{}/{}",
        record.stage, snapshot.start_unix_ms, snapshot.generation
    )
}

/// The first counter of `later` below the same counter of `earlier`, as
/// `(field path, earlier value, later value)`.
fn first_decrease(
    earlier: &MetricsSnapshot,
    later: &MetricsSnapshot,
) -> Option<(String, u64, u64)> {
    for arm in Arm::ALL {
        let (a, b) = (earlier.arm(arm), later.arm(arm));
        let counters = Outcome::ALL
            .into_iter()
            .map(|o| (o.as_str(), a.count(o), b.count(o)))
            .chain([
                ("complaints", a.complaints, b.complaints),
                ("latency.count", a.latency.count(), b.latency.count()),
                ("latency.sum_ns", a.latency.sum_ns(), b.latency.sum_ns()),
            ]);
        for (name, from, to) in counters {
            if to < from {
                return Some((format!("{}.{name}", arm.as_str()), from, to));
            }
        }
        let mut buckets = b.latency.buckets().peekable();
        for bucket in a.latency.buckets() {
            while buckets.next_if(|l| l.low < bucket.low).is_some() {}
            let now = buckets
                .next_if(|l| l.low == bucket.low)
                .map_or(0, |l| l.count);
            if now < bucket.count {
                let field = format!(
                    "{}.latency.buckets[{} ns]",
                    arm.as_str(),
                    bucket.low.as_nanos()
                );
                return Some((field, bucket.count, now));
            }
        }
    }
    None
}

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

/// What [`Fleet::check`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// The verdict and every check behind it.
    pub evaluation: Evaluation,
    /// The merged stage totals that were judged.
    pub totals: MetricsSnapshot,
    /// Where the stage index came from.
    pub stage_source: StageSource,
    /// How many snapshots the rebuilt history holds.
    pub history_len: usize,
    /// Things the operator should know (which data was used, disagreements),
    /// one sentence each.
    pub notes: Vec<String>,
}

/// Several instances' logs, judged together.
#[derive(Clone, Debug)]
pub struct Fleet {
    instances: Vec<InstanceLog>,
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

    /// The stage to judge: `flag` if given, else the `stage` field of the
    /// latest line (over all instances) that has one, else the plan's stage
    /// at the `percent` of the latest line that has one.
    ///
    /// # Errors
    ///
    /// [`CliError::UnknownStage`] for a `flag` outside the plan,
    /// [`CliError::StageNotInPlan`] for a logged stage outside the plan,
    /// [`CliError::NoStage`] when nothing tells the stage.
    pub fn stage(
        &self,
        plan: &RolloutPlan,
        flag: Option<usize>,
    ) -> Result<(usize, StageSource), CliError> {
        let stages = plan.stages.len();
        if let Some(stage) = flag {
            if stage >= stages {
                return Err(CliError::UnknownStage { stage, stages });
            }
            return Ok((stage, StageSource::Flag));
        }
        let latest = |pick: fn(&InstanceLog) -> Option<(usize, &LogRecord)>| {
            self.instances
                .iter()
                .filter_map(|log| pick(log).map(|(line, r)| (log, line, r)))
                .max_by_key(|(_, _, r)| r.at_unix_ms)
        };
        if let Some((log, line, record)) = latest(InstanceLog::latest_with_stage) {
            let stage = record.stage.unwrap_or_default();
            if stage >= stages {
                return Err(CliError::StageNotInPlan {
                    path: log.path.clone(),
                    line,
                    stage,
                    stages,
                });
            }
            let source = StageSource::Logged {
                path: log.path.clone(),
                line,
            };
            return Ok((stage, source));
        }
        if let Some((log, line, record)) = latest(InstanceLog::latest_with_percent) {
            let percent = record.percent.unwrap_or_default();
            return match plan.stage_at(percent) {
                Some(stage) => Ok((
                    stage,
                    StageSource::Percent {
                        path: log.path.clone(),
                        line,
                        percent,
                    },
                )),
                None => Err(CliError::NoStage {
                    detail: format!(
                        "{}, line {line}: percent {percent} is not a stage of the plan",
                        log.path.display()
                    ),
                }),
            };
        }
        let files: Vec<String> = self
            .instances
            .iter()
            .map(|l| l.path.display().to_string())
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
        let mut series = Vec::with_capacity(self.instances.len());
        for log in &self.instances {
            let s: Vec<&MetricsSnapshot> =
                log.current_series().into_iter().map(|(_, s)| s).collect();
            if s.is_empty() {
                return Err(CliError::NoSnapshot {
                    path: log.path.clone(),
                    records: log.records.len(),
                });
            }
            series.push(s);
        }
        Ok(merged_history(&series))
    }

    /// Judges the instances' latest data against `plan` at stage `stage`
    /// (or as [`stage`](Self::stage) finds it), with the history rebuilt from
    /// the logs, stamped with the latest snapshot's time.
    ///
    /// For one instance whose log has controller ticks this is the
    /// evaluation of its latest tick, as the controller made it.
    ///
    /// # Errors
    ///
    /// [`CliError::Plan`] for an invalid plan, and as [`stage`](Self::stage)
    /// and [`history`](Self::history).
    pub fn check(
        &self,
        plan: &RolloutPlan,
        stage: Option<usize>,
    ) -> Result<CheckOutcome, CliError> {
        let evaluator = Evaluator::new(plan.clone())?;
        let (stage, stage_source) = self.stage(plan, stage)?;
        let history = self.history()?;
        let totals = history.latest().cloned().unwrap_or_default();
        let mut notes = Vec::new();
        for log in &self.instances {
            let series = log.current_series();
            if let Some((line, _)) = series.last() {
                let first = series.first().map_or(*line, |(l, _)| *l);
                let record = log.records.iter().find(|(l, _)| l == line).map(|(_, r)| r);
                let what = match record.map(|r| r.event) {
                    Some(LogEvent::Tick) => "the stage's totals from controller ticks",
                    _ => {
                        "cumulative totals since the instance started (snapshot lines, not controller ticks)"
                    }
                };
                notes.push(format!(
                    "{}: {what}, lines {first}–{line} ({} snapshots)",
                    log.path.display(),
                    series.len()
                ));
            }
        }
        let stages: Vec<Option<usize>> = self
            .instances
            .iter()
            .map(|l| l.latest_with_stage().and_then(|(_, r)| r.stage))
            .collect();
        if stages.iter().flatten().any(|s| Some(*s) != stages[0]) {
            notes.push(format!(
                "the instances' latest lines are at different stages ({}); judged stage {stage}",
                stages
                    .iter()
                    .map(|s| s.map_or_else(|| "none".to_owned(), |s| s.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let now: SystemTime = from_unix_ms(totals.at_unix_ms);
        let evaluation = evaluator
            .evaluate(stage, &totals, &history, now)
            .map_err(|e| CliError::UnknownStage {
                stage: e.index,
                stages: e.stages,
            })?;
        Ok(CheckOutcome {
            evaluation,
            totals,
            stage_source,
            history_len: history.len(),
            notes,
        })
    }
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

    fn log(records: Vec<LogRecord>) -> InstanceLog {
        InstanceLog::from_records(
            "a.jsonl",
            records.into_iter().zip(1..).map(|(r, l)| (l, r)).collect(),
        )
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
        let lines: Vec<usize> = log.current_series().iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [4, 5]);
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
        let err = log(vec![earlier.clone(), later.clone()])
            .check_consistency()
            .unwrap_err();
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
        assert!(log(vec![earlier, later]).check_consistency().is_ok());
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
    fn stage_comes_from_the_flag_then_the_latest_stage_field() {
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
}

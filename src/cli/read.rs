//! Reading one instance's log in one pass: [`InstanceLog`].
//!
//! A week of a real service's log is hundreds of megabytes, so the reader
//! keeps no line: it validates each record alone and against the one before
//! it, and keeps only what the judgement and the report read afterwards —
//! the current series' last [`History::DEFAULT_CAPACITY`] snapshots, the
//! controller's last logged state and verdict, the sync baseline carried
//! from earlier runs, and the report's [`Timeline`] (a bounded number of
//! time bins). Memory does not grow with the log's length.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::act::log::{LogError, TornLine, check_not_torn, for_each_record, log_files};
use crate::act::record::{Action, LogEvent, LogRecord};
use crate::act::state::{RolloutState, RolloutStatus};
use crate::act::validate::{SeriesKey, first_decrease, missing_totals, snapshot_contradiction};
use crate::decide::percent::Percent;
use crate::judge::Evaluation;
use crate::metrics::{Arm, ArmMetrics, History, MetricsSnapshot};

use super::timeline::Timeline;

/// Most carried-baseline candidates kept (see [`Baselines`]).
const MAX_BASELINES: usize = 16;

/// How [`InstanceLog::read_with`] reads.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReadOptions {
    /// The report's verdict table covers this much time before the log's
    /// latest line; older rows are not kept (default 24 hours).
    pub table_span: Duration,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            table_span: Duration::from_secs(24 * 3600),
        }
    }
}

/// A value found on one line of a log.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Logged<T> {
    /// The file it is in (the log, or one of its rotated files).
    pub path: PathBuf,
    /// The 1-based line in that file.
    pub line: usize,
    /// The line's `at_unix_ms`.
    pub at_unix_ms: u64,
    /// The value.
    pub value: T,
}

/// Where a line is, while reading: an index into the files read, the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    file: usize,
    line: usize,
    at_unix_ms: u64,
}

/// A value and its [`Place`].
#[derive(Clone, Debug)]
struct At<T> {
    place: Place,
    value: T,
}

/// The trailing series of one event kind's snapshots (see
/// [`InstanceLog::current_series`]).
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) event: LogEvent,
    pub(crate) key: SeriesKey,
    /// Its number in this log (for the timeline's slots).
    pub(crate) seq: u32,
    first: Place,
    last: Place,
    /// Snapshots in it so far.
    pub(crate) len: usize,
    /// Its last snapshots, as the controller's history keeps them.
    pub(crate) history: History,
    /// Tick series: the state of its latest tick that did not move to
    /// another stage, which names the run (its `run_epoch`).
    pub(crate) run_state: Option<RolloutState>,
}

impl Series {
    fn latest(&self) -> Option<&MetricsSnapshot> {
        self.history.latest()
    }
}

/// The sync arms of the last tick of each ended run, newest last, kept as a
/// skyline: an entry is dropped when a newer run has at least as many judged
/// sync uploads, since then the newer one is what any threshold picks. The
/// carried sync baseline for a threshold `min` is the newest entry with at
/// least `min` judged uploads, which is what the controller carries (see
/// [`Evaluator::carry_sync_baseline`](crate::Evaluator::carry_sync_baseline)).
#[derive(Clone, Debug, Default)]
struct Baselines(Vec<(Place, ArmMetrics)>);

impl Baselines {
    fn push(&mut self, place: Place, sync: ArmMetrics) {
        let judged = sync.judged();
        self.0.retain(|(_, older)| older.judged() > judged);
        if self.0.len() == MAX_BASELINES {
            self.0.remove(0);
        }
        self.0.push((place, sync));
    }

    fn carried(&self, min_judged: u64) -> Option<&(Place, ArmMetrics)> {
        self.0
            .iter()
            .rev()
            .find(|(_, sync)| sync.judged() >= min_judged.max(1))
    }
}

/// One instance's `metrics.jsonl` (with its rotated files, oldest first),
/// read in one pass without keeping its lines.
///
/// Every line is validated (see [`read`](Self::read)); what is kept is what
/// [`Fleet::check`](super::Fleet::check) and
/// [`report_html`](super::report_html) need: the current series' last
/// snapshots (its history), the controller's last logged state and verdict,
/// the sync baseline carried from earlier runs, and the report's time bins.
/// Its memory does not grow with the log's length.
#[derive(Clone, Debug)]
pub struct InstanceLog {
    path: PathBuf,
    files: Vec<PathBuf>,
    records: usize,
    torn_tail: Option<TornLine>,
    warnings: Vec<String>,
    /// The first record's time, of the judged part (see `restart`).
    first_at: Option<u64>,
    /// The latest record time so far.
    max_at: Option<u64>,
    latest: Option<Place>,
    /// Per event kind with snapshots, its current series.
    series: Vec<Series>,
    next_seq: u32,
    latest_with_stage: Option<At<usize>>,
    latest_with_percent: Option<At<Percent>>,
    last_state: Option<At<RolloutState>>,
    last_verdict: Option<At<Evaluation>>,
    baselines: Baselines,
    pub(crate) timeline: Timeline,
}

impl InstanceLog {
    /// Reads the log at `path` and its rotated files before it
    /// ([`log_files`](crate::act::log::log_files)), calling `progress(lines, bytes)`
    /// after every line of each, with the default [`ReadOptions`].
    ///
    /// A torn last line (no `\n`: a crash cut it short) is skipped and kept
    /// in [`torn_tail`](Self::torn_tail). Every other line must be a valid
    /// record (a known schema version, valid snapshots and percent) that
    /// does not contradict itself or the lines before it:
    ///
    /// - a `tick` line carries the totals it judged (`snapshot`), and its
    ///   `stage` is the stage its evaluation judged;
    /// - in every snapshot each arm's latency count agrees with the judged
    ///   uploads it describes (within what a snapshot taken while uploads are
    ///   recorded can catch in flight: [`LATENCY_SLACK`] plus
    ///   [`LATENCY_SLACK_PER_MILLE`]‰ of them);
    /// - within one series (the same event kind, stage, run start and
    ///   generation) no count, sum or bucket goes down from the line before.
    ///
    /// [`LATENCY_SLACK`]: super::LATENCY_SLACK
    /// [`LATENCY_SLACK_PER_MILLE`]: super::LATENCY_SLACK_PER_MILLE
    ///
    /// # Errors
    ///
    /// [`LogError::Read`] when a file cannot be read, [`LogError::BadLine`]
    /// and [`LogError::LineTooLong`] (naming the file, line and field) for a
    /// line that is not a valid record, [`LogError::Inconsistent`] (naming
    /// the file, line and field) for a record that contradicts itself or the
    /// one before it, [`LogError::TornRotated`] for an unfinished line in a
    /// rotated file.
    pub fn read(
        path: impl AsRef<Path>,
        progress: &mut dyn FnMut(usize, u64),
    ) -> Result<InstanceLog, LogError> {
        InstanceLog::read_with(path, &ReadOptions::default(), progress)
    }

    /// As [`read`](Self::read), with `options`.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub fn read_with(
        path: impl AsRef<Path>,
        options: &ReadOptions,
        progress: &mut dyn FnMut(usize, u64),
    ) -> Result<InstanceLog, LogError> {
        let path = path.as_ref();
        let files = log_files(path);
        let mut log = InstanceLog::empty(path, options);
        let (mut lines_before, mut bytes_before) = (0usize, 0u64);
        for (i, file) in files.iter().enumerate() {
            log.files.push(file.clone());
            let (mut lines, mut bytes) = (0, 0);
            let torn = for_each_record::<LogRecord>(
                file,
                &mut |l, b| {
                    (lines, bytes) = (l, b);
                    progress(lines_before + l, bytes_before + b);
                },
                &mut |line, record| log.take(i, line, record),
            )?;
            (lines_before, bytes_before) = (lines_before + lines, bytes_before + bytes);
            if i + 1 < files.len() {
                check_not_torn(file, torn.as_ref())?;
            }
            log.torn_tail = torn;
        }
        log.finish();
        Ok(log)
    }

    /// A log made of `records` (in file order, with their line numbers), as
    /// if read from `path`: validated and kept as [`read`](Self::read) does.
    ///
    /// # Errors
    ///
    /// [`LogError::Inconsistent`] as [`read`](Self::read).
    pub fn from_records(
        path: impl Into<PathBuf>,
        records: Vec<(usize, LogRecord)>,
    ) -> Result<InstanceLog, LogError> {
        let path = path.into();
        let mut log = InstanceLog::empty(&path, &ReadOptions::default());
        log.files.push(path);
        for (line, record) in records {
            log.take(0, line, record)?;
        }
        log.finish();
        Ok(log)
    }

    fn empty(path: &Path, options: &ReadOptions) -> InstanceLog {
        InstanceLog {
            path: path.to_path_buf(),
            files: Vec::new(),
            records: 0,
            torn_tail: None,
            warnings: Vec::new(),
            first_at: None,
            max_at: None,
            latest: None,
            series: Vec::new(),
            next_seq: 0,
            latest_with_stage: None,
            latest_with_percent: None,
            last_state: None,
            last_verdict: None,
            baselines: Baselines::default(),
            timeline: Timeline::new(options.table_span),
        }
    }

    /// The file it was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records were read (every whole line that is not blank).
    #[must_use]
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// The torn last line that was skipped, if any.
    #[must_use]
    pub fn torn_tail(&self) -> Option<&TornLine> {
        self.torn_tail.as_ref()
    }

    /// Things the reader noticed about the log, one sentence each, naming
    /// the file and line (for example another run appended to the file).
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The latest line read: its file, line and time (no value).
    #[must_use]
    pub fn latest_line(&self) -> Option<Logged<()>> {
        self.latest.map(|p| self.logged(p, ()))
    }

    /// The controller's last logged state: the `state` of the latest line
    /// that has one.
    #[must_use]
    pub fn last_state(&self) -> Option<Logged<RolloutState>> {
        self.last_state
            .as_ref()
            .map(|a| self.logged(a.place, a.value.clone()))
    }

    /// The controller's last logged verdict: the evaluation of the latest
    /// `tick` line that has one.
    #[must_use]
    pub fn last_verdict(&self) -> Option<Logged<Evaluation>> {
        self.last_verdict
            .as_ref()
            .map(|a| self.logged(a.place, a.value.clone()))
    }

    /// The `stage` of the latest line that has one and a snapshot.
    #[must_use]
    pub fn latest_stage(&self) -> Option<Logged<usize>> {
        self.latest_with_stage
            .as_ref()
            .map(|a| self.logged(a.place, a.value))
    }

    /// The `percent` of the latest line that has one and a snapshot.
    #[must_use]
    pub fn latest_percent(&self) -> Option<Logged<Percent>> {
        self.latest_with_percent
            .as_ref()
            .map(|a| self.logged(a.place, a.value))
    }

    /// The sync baseline the controller carried into the current run: the
    /// sync arm of the last logged tick of the newest earlier run with at
    /// least `min_judged` judged sync uploads (the controller keeps the sync
    /// arm of each run it leaves that has
    /// [`triggers.min_uploads`](crate::judge::RollbackTriggers::min_uploads)), and
    /// where it was logged. `None` when no earlier run had enough.
    #[must_use]
    pub fn carried_sync_baseline(&self, min_judged: u64) -> Option<Logged<ArmMetrics>> {
        // A current tick run that has ended (the controller's state moved on
        // to a new run) is carried too.
        let ended = self
            .current_series()
            .filter(|s| self.moved_on(s))
            .and_then(|s| s.latest().map(|l| (s.last, l.arm(Arm::Sync))))
            .filter(|(_, sync)| sync.judged() >= min_judged.max(1));
        match ended {
            Some((place, sync)) => Some(self.logged(place, sync.clone())),
            None => self
                .baselines
                .carried(min_judged)
                .map(|(place, sync)| self.logged(*place, sync.clone())),
        }
    }

    /// The series the latest snapshot belongs to: the trailing run of lines
    /// of the same event kind as the latest line with a snapshot, of one
    /// series key (for `tick` lines: one run of one stage; for `snapshot`
    /// lines: one accumulator lifetime), in time order.
    pub(crate) fn current_series(&self) -> Option<&Series> {
        self.series
            .iter()
            .filter(|s| s.len > 0)
            .max_by_key(|s| (s.last.file, s.last.line))
    }

    /// The lines of the current series: first, last, and how many.
    #[must_use]
    pub fn current_series_lines(&self) -> Option<(Logged<()>, Logged<()>, usize)> {
        self.current_series()
            .map(|s| (self.logged(s.first, ()), self.logged(s.last, ()), s.len))
    }

    /// The state that started a run after the current series' data: the
    /// controller moved on (advanced, resumed) after its last logged tick,
    /// so the run it is in has no logged data yet.
    pub(crate) fn moved_on(&self, series: &Series) -> bool {
        if series.event != LogEvent::Tick {
            return false;
        }
        // The latest state is at or after the series' last tick (tick lines
        // carry one): the state the last tick left, or a later one.
        let Some(state) = self.last_state.as_ref() else {
            return false;
        };
        state.value.stage.is_some()
            && (state.value.stage != series.key.stage
                || series.run_state.as_ref().is_some_and(|run| {
                    state.value.is_new_run_since(run) && state.value.epoch > run.epoch
                }))
    }

    fn logged<T>(&self, place: Place, value: T) -> Logged<T> {
        Logged {
            path: self
                .files
                .get(place.file)
                .cloned()
                .unwrap_or_else(|| self.path.clone()),
            line: place.line,
            at_unix_ms: place.at_unix_ms,
            value,
        }
    }

    fn file(&self, index: usize) -> &Path {
        self.files.get(index).map_or(&self.path, PathBuf::as_path)
    }

    /// Takes one record: validates it, then keeps what is needed of it.
    fn take(&mut self, file: usize, line: usize, mut record: LogRecord) -> Result<(), LogError> {
        let place = Place {
            file,
            line,
            at_unix_ms: record.at_unix_ms,
        };
        let inconsistent =
            |log: &InstanceLog, field: &str, reason: String| LogError::Inconsistent {
                path: log.file(file).to_path_buf(),
                line,
                field: field.to_owned(),
                reason,
            };
        if let Some((field, reason)) = missing_totals(&record) {
            return Err(inconsistent(self, &field, reason));
        }
        if let (Some(stage), Some(evaluation)) = (record.stage, &record.evaluation)
            && record.event == LogEvent::Tick
            && stage != evaluation.stage
        {
            return Err(inconsistent(
                self,
                "stage",
                format!(
                    "stage {stage} but the evaluation judged stage {}",
                    evaluation.stage
                ),
            ));
        }
        self.records += 1;
        // A controller that starts at an earlier time than lines already
        // read is another timeline appended to the file (say a second
        // simulation): judge and draw the latest one only.
        if matches!(record.action, Some(Action::Start { .. }))
            && self.max_at.is_some_and(|max| record.at_unix_ms < max)
        {
            self.restart(place);
        }
        self.first_at.get_or_insert(record.at_unix_ms);
        self.max_at = Some(
            self.max_at
                .map_or(record.at_unix_ms, |m| m.max(record.at_unix_ms)),
        );
        self.latest = Some(place);
        self.timeline.take(&record);

        if let Some(snapshot) = record.snapshot.take() {
            if let Some(stage) = record.stage {
                self.latest_with_stage = Some(At {
                    place,
                    value: stage,
                });
            }
            if let Some(percent) = record.percent {
                self.latest_with_percent = Some(At {
                    place,
                    value: percent,
                });
            }
            self.take_snapshot(place, &record, snapshot)
                .map_err(|(field, reason)| inconsistent(self, &field, reason))?;
        }
        if let Some(state) = record.state.take() {
            self.last_state = Some(At {
                place,
                value: state,
            });
        }
        if record.event == LogEvent::Tick
            && let Some(evaluation) = record.evaluation.take()
        {
            self.last_verdict = Some(At {
                place,
                value: evaluation,
            });
        }
        Ok(())
    }

    /// Adds `snapshot` (of `record`, on `place`) to its event kind's series,
    /// or starts a new series; checks that no counter went down within one.
    fn take_snapshot(
        &mut self,
        place: Place,
        record: &LogRecord,
        snapshot: MetricsSnapshot,
    ) -> Result<(), (String, String)> {
        let key = SeriesKey::of(record, &snapshot);
        let first_at = self.first_at.unwrap_or(0);
        let index = match self.series.iter().position(|s| s.event == record.event) {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    event: record.event,
                    key,
                    seq: 0,
                    first: place,
                    last: place,
                    len: 0,
                    history: History::default(),
                    run_state: None,
                });
                self.series.len() - 1
            }
        };
        let continues = {
            let series = &self.series[index];
            match series.latest() {
                Some(earlier) if series.key == key => {
                    if let Some((field, from, to)) = first_decrease(earlier, &snapshot) {
                        return Err((
                            format!("snapshot.{field}"),
                            format!(
                                "went down from {from} (line {} of {}) to {to} within one stage run; counters only grow",
                                series.last.line,
                                self.file(series.last.file).display()
                            ),
                        ));
                    }
                    // A clock that went back starts a new series: windows
                    // across it would mean nothing.
                    snapshot.at_unix_ms >= earlier.at_unix_ms
                }
                _ => false,
            }
        };
        // After the comparison with the line before, which names a counter
        // that went down more precisely.
        if let Some(contradiction) = snapshot_contradiction(&snapshot) {
            return Err(contradiction);
        }
        if continues {
            let series = &mut self.series[index];
            if let Some(earlier) = series.history.latest() {
                self.timeline
                    .gap(series.event, snapshot.at_unix_ms - earlier.at_unix_ms);
                self.timeline.leave(
                    series.seq,
                    series.key.stage,
                    series.event,
                    earlier,
                    &snapshot,
                );
            }
            series.last = place;
            series.len += 1;
        } else {
            self.end_series(index);
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            let series = &mut self.series[index];
            series.key = key;
            series.seq = seq;
            series.first = place;
            series.last = place;
            series.len = 1;
            series.history.clear();
            series.run_state = None;
            self.timeline
                .open(seq, &snapshot, snapshot.start_unix_ms >= first_at);
        }
        let series = &mut self.series[index];
        if record.event == LogEvent::Tick
            && let Some(state) = &record.state
            && state.stage == record.stage
        {
            series.run_state = Some(state.clone());
        }
        series.history.push(snapshot);
        Ok(())
    }

    /// Ends the series at `index`: its last snapshot goes to the timeline,
    /// and a tick series' sync arm becomes a carried-baseline candidate.
    fn end_series(&mut self, index: usize) {
        let series = &self.series[index];
        let Some(latest) = series.history.latest() else {
            return;
        };
        self.timeline
            .close(series.seq, series.key.stage, series.event, latest);
        if series.event == LogEvent::Tick {
            let (place, sync) = (series.last, latest.arm(Arm::Sync).clone());
            self.baselines.push(place, sync);
        }
    }

    /// Forgets what was kept before `place`: a new timeline starts there.
    fn restart(&mut self, place: Place) {
        let from = self.logged(place, ());
        self.warnings.push(format!(
            "{}, line {}: a controller starts at {}, before lines already read (up to {}): another run was appended to this log; only the lines from here on are judged and drawn",
            from.path.display(),
            from.line,
            time_text(place.at_unix_ms),
            time_text(self.max_at.unwrap_or_default())
        ));
        self.first_at = None;
        self.max_at = None;
        self.series.clear();
        self.latest_with_stage = None;
        self.latest_with_percent = None;
        self.last_state = None;
        self.last_verdict = None;
        self.baselines = Baselines::default();
        self.timeline.clear();
    }

    /// After the last line: the open series' last snapshots go to the
    /// timeline.
    fn finish(&mut self) {
        for series in &self.series {
            if let Some(latest) = series.history.latest() {
                self.timeline
                    .close(series.seq, series.key.stage, series.event, latest);
            }
        }
        self.timeline.finish();
    }

    /// The first and latest record times of the judged part of the log.
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        Some((self.first_at?, self.max_at?))
    }

    /// The status of the controller's last logged state.
    pub(crate) fn status(&self) -> Option<RolloutStatus> {
        self.last_state.as_ref().map(|s| s.value.status)
    }
}

/// `2025-11-05T00:00:00Z`, or past year 9999 (which RFC 3339 cannot write:
/// a log line may say anything) `18446744073709551615 ms since 1970`.
pub(crate) fn time_text(ms: u64) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if write!(
        text,
        "{}",
        humantime::format_rfc3339_seconds(crate::clock::from_unix_ms(ms))
    )
    .is_err()
    {
        return format!("{ms} ms since 1970");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_year_9999_are_written_in_ms() {
        assert_eq!(time_text(1_762_300_800_000), "2025-11-05T00:00:00Z");
        assert_eq!(time_text(u64::MAX), "18446744073709551615 ms since 1970");
    }
}

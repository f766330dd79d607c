//! What the report draws over time, collected while a log is read:
//! [`Timeline`].
//!
//! The charts show the uploads in time bins. A bin's uploads are the
//! differences of consecutive snapshots of one series (exact, see
//! [`MetricsSnapshot::since`]) whose later snapshot falls in the bin, so a
//! series only needs to be looked at when its next snapshot falls in another
//! bin: its last snapshot in the bin, since its last one before the bin, is
//! the bin's window. A [`Timeline`] keeps per bin and stage the sum of those
//! windows and the latest totals (the cumulative line), and per open series
//! the snapshot its next window starts from. Bins are aligned on whole
//! multiples of their length (UTC) and start at one minute; when there are
//! more than [`MAX_CELLS`] they are merged into the next length of
//! [`BIN_MINUTES`] (each divides the next), so memory stays bounded whatever
//! the log's length, and the windows are computed about once per bin, not
//! once per line.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::act::record::{Action, LogEvent, LogRecord};
use crate::act::state::RolloutState;
use crate::judge::Verdict;
use crate::metrics::MetricsSnapshot;

/// Bin lengths, in minutes; each divides the next, so bins merge whole.
/// Beyond the last, lengths double.
pub(crate) const BIN_MINUTES: [u64; 9] = [1, 5, 10, 30, 60, 120, 360, 720, 1440];
/// About this many bins over the log's span.
pub(crate) const TARGET_BINS: u64 = 240;
/// Bins (of each stage) kept while reading before they are merged into
/// longer ones. Above the [`TARGET_BINS`] the report draws, so that the
/// drawn bins are rarely longer than the span asks for; each holds two
/// snapshots (a window and the latest totals), so this bounds the memory.
const MAX_CELLS: usize = TARGET_BINS as usize * 5 / 4;
/// Most percent steps and action marks kept (the latest).
const MAX_POINTS: usize = 4096;
/// At most this many rows in the verdict table (the latest are kept).
pub(crate) const MAX_TABLE_ROWS: usize = 400;

/// The bin length after `ms`: the next of [`BIN_MINUTES`], then doubling.
pub(crate) fn next_bin_ms(ms: u64) -> u64 {
    BIN_MINUTES
        .iter()
        .map(|m| m * 60_000)
        .find(|&b| b > ms)
        .unwrap_or_else(|| ms.saturating_mul(2))
}

/// The shortest bin length of the chain that is at least `ms`.
pub(crate) fn bin_at_least(ms: u64) -> u64 {
    let mut bin = BIN_MINUTES[0] * 60_000;
    while bin < ms && bin < u64::MAX / 2 {
        bin = next_bin_ms(bin);
    }
    bin
}

/// A series whose snapshots are still coming.
#[derive(Clone, Debug)]
struct Open {
    seq: u32,
    /// Where its next window starts: its last snapshot before the current
    /// bin (or its first, when it started before the log's first line);
    /// `None` while its first totals are uploads (it started inside the
    /// log).
    from: Option<MetricsSnapshot>,
}

/// One bin of one stage: the uploads in it and the totals at its end.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cell {
    /// The uploads in the bin (windows of the series, summed).
    pub(crate) window: MetricsSnapshot,
    /// The latest totals in the bin.
    pub(crate) last: MetricsSnapshot,
}

/// The key of a [`Cell`]: tick lines (or plain snapshot lines), bin, stage.
pub(crate) type CellKey = (bool, u64, Option<usize>);

/// What an action mark is, for its color.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkKind {
    Stage,
    Rollback,
    Review,
    Pause,
    Complete,
}

/// One row of the verdict table: a run of ticks with the same stage,
/// state, percent and verdict, or one action.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) percent: String,
    pub(crate) state: Option<RolloutState>,
    pub(crate) stage: Option<usize>,
    /// `None` for an action row.
    pub(crate) verdict: Option<Verdict>,
    /// The action's label for an action row.
    pub(crate) action: Option<String>,
    pub(crate) ticks: usize,
    pub(crate) reason: String,
}

/// The report's data over time for one log (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    pub(crate) bin_ms: u64,
    /// The bins, by kind of line, bin and stage.
    pub(crate) cells: BTreeMap<CellKey, Cell>,
    /// The series still open (one per event kind at most).
    open: Vec<Open>,
    /// Gaps between consecutive snapshots of a series, counted per bin
    /// length of the chain they fit in (`[tick lines, snapshot lines]`).
    gaps: [Vec<u64>; 2],
    /// The percent in force over time, `(at, percent)`, at every change.
    pub(crate) percents: VecDeque<(u64, f64)>,
    /// The latest line's time, and the percent then.
    pub(crate) percent_end: Option<(u64, f64)>,
    /// Actions: `(at, label, kind)`.
    pub(crate) marks: VecDeque<(u64, String, MarkKind)>,
    table_span_ms: u64,
    /// Verdict table rows within the table span of the latest line.
    pub(crate) rows: VecDeque<Row>,
    /// Rows left out of `rows` by [`MAX_TABLE_ROWS`]: their end times.
    pub(crate) dropped: VecDeque<u64>,
    max_at: u64,
}

impl Timeline {
    pub(crate) fn new(table_span: Duration) -> Timeline {
        Timeline {
            bin_ms: BIN_MINUTES[0] * 60_000,
            cells: BTreeMap::new(),
            open: Vec::new(),
            gaps: [Vec::new(), Vec::new()],
            percents: VecDeque::new(),
            percent_end: None,
            marks: VecDeque::new(),
            table_span_ms: u64::try_from(table_span.as_millis()).unwrap_or(u64::MAX),
            rows: VecDeque::new(),
            dropped: VecDeque::new(),
            max_at: 0,
        }
    }

    /// Forgets everything (a new timeline starts in the log).
    pub(crate) fn clear(&mut self) {
        *self = Timeline::new(Duration::from_millis(self.table_span_ms));
    }

    /// The percent steps, actions and verdict rows of one record.
    pub(crate) fn take(&mut self, r: &LogRecord) {
        self.max_at = self.max_at.max(r.at_unix_ms);
        // The percent in force: none while rolled back or off, whatever
        // the line's `percent` says.
        let serving = r.state.as_ref().is_none_or(|s| s.status.serves_async());
        let percent = if serving {
            r.percent.map(|p| p.as_percent_f64())
        } else {
            Some(0.0)
        };
        if let Some(p) = percent {
            let changed = self
                .percents
                .back()
                .is_none_or(|&(_, before)| (before - p).abs() > f64::EPSILON);
            if changed {
                if let Some(&(_, before)) = self.percents.back() {
                    self.percents.push_back((r.at_unix_ms, before));
                }
                self.percents.push_back((r.at_unix_ms, p));
                while self.percents.len() > MAX_POINTS {
                    self.percents.pop_front();
                }
            }
        }
        if let Some((_, p)) = self.percents.back() {
            self.percent_end = Some((r.at_unix_ms, *p));
        }
        if let Some((label, kind)) = r.action.as_ref().and_then(action_label) {
            self.marks.push_back((r.at_unix_ms, label.clone(), kind));
            if self.marks.len() > MAX_POINTS {
                self.marks.pop_front();
            }
            self.push_row(Row {
                from: r.at_unix_ms,
                to: r.at_unix_ms,
                percent: r.percent.map(|p| p.to_string()).unwrap_or_default(),
                state: r.state.clone(),
                stage: r.stage,
                verdict: None,
                action: Some(label),
                ticks: 0,
                reason: r.reason.clone().unwrap_or_default(),
            });
        }
        if r.event == LogEvent::Tick
            && let Some(e) = &r.evaluation
        {
            let percent = r.percent.map(|p| p.to_string()).unwrap_or_default();
            let extends = self.rows.back().is_some_and(|row| {
                row.verdict == Some(e.verdict)
                    && row.stage == r.stage
                    && row.percent == percent
                    && row.state == r.state
            });
            if extends && let Some(row) = self.rows.back_mut() {
                row.to = r.at_unix_ms;
                row.ticks += 1;
                row.reason.clone_from(&e.reason);
            } else {
                self.push_row(Row {
                    from: r.at_unix_ms,
                    to: r.at_unix_ms,
                    percent,
                    state: r.state.clone(),
                    stage: r.stage,
                    verdict: Some(e.verdict),
                    action: None,
                    ticks: 1,
                    reason: e.reason.clone(),
                });
            }
        }
        self.prune_rows();
    }

    fn push_row(&mut self, row: Row) {
        self.rows.push_back(row);
        if self.rows.len() > MAX_TABLE_ROWS
            && let Some(old) = self.rows.pop_front()
        {
            self.dropped.push_back(old.to);
        }
    }

    /// Drops rows (and counts of dropped rows) that ended before the table
    /// span of the latest line.
    fn prune_rows(&mut self) {
        let since = self.max_at.saturating_sub(self.table_span_ms);
        // A row that is still extended stays, whatever its start.
        while self.rows.len() > 1 && self.rows.front().is_some_and(|r| r.to < since) {
            self.rows.pop_front();
        }
        while self.dropped.front().is_some_and(|&to| to < since) {
            self.dropped.pop_front();
        }
    }

    /// A gap of `ms` between two consecutive snapshots of one series.
    pub(crate) fn gap(&mut self, event: LogEvent, ms: u64) {
        let counts = &mut self.gaps[usize::from(event != LogEvent::Tick)];
        let mut bin = BIN_MINUTES[0] * 60_000;
        let mut level = 0;
        while bin < ms && level < 64 {
            bin = next_bin_ms(bin);
            level += 1;
        }
        if counts.len() <= level {
            counts.resize(level + 1, 0);
        }
        counts[level] += 1;
    }

    /// The gap between consecutive snapshots of the `tick` (or `snapshot`)
    /// series that at least 80% of the gaps are within, as a bin length of
    /// the chain: a bin narrower than that would leave most bins empty.
    pub(crate) fn typical_gap_ms(&self, tick: bool) -> u64 {
        let counts = &self.gaps[usize::from(!tick)];
        let total: u64 = counts.iter().sum();
        let mut bin = BIN_MINUTES[0] * 60_000;
        let mut seen = 0;
        for &n in counts {
            seen += n;
            if seen * 5 >= total * 4 {
                break;
            }
            bin = next_bin_ms(bin);
        }
        bin
    }

    /// A new series `seq` starts with `first`: its uploads count from zero
    /// when it started inside the log, else from `first`.
    pub(crate) fn open(&mut self, seq: u32, first: &MetricsSnapshot, started_inside: bool) {
        let from = (!started_inside).then(|| first.clone());
        self.open.retain(|o| o.seq != seq);
        self.open.push(Open { seq, from });
    }

    /// Series `seq` goes on from `earlier` to `later`: when `later` is in
    /// another bin, `earlier` was the series' last snapshot in its bin.
    pub(crate) fn leave(
        &mut self,
        seq: u32,
        stage: Option<usize>,
        event: LogEvent,
        earlier: &MetricsSnapshot,
        later: &MetricsSnapshot,
    ) {
        if earlier.at_unix_ms / self.bin_ms != later.at_unix_ms / self.bin_ms {
            self.put(seq, stage, event, earlier);
        }
    }

    /// Series `seq` ended with `last`.
    pub(crate) fn close(
        &mut self,
        seq: u32,
        stage: Option<usize>,
        event: LogEvent,
        last: &MetricsSnapshot,
    ) {
        self.put(seq, stage, event, last);
        self.open.retain(|o| o.seq != seq);
    }

    /// `last` is series `seq`'s last snapshot in its bin: the bin gets its
    /// window, and the series' next window starts from it.
    fn put(&mut self, seq: u32, stage: Option<usize>, event: LogEvent, last: &MetricsSnapshot) {
        let Some(open) = self.open.iter_mut().find(|o| o.seq == seq) else {
            return;
        };
        let window = match &open.from {
            None => last.clone(),
            Some(before) => last.since(before),
        };
        open.from = Some(last.clone());
        let key = (
            event == LogEvent::Tick,
            last.at_unix_ms / self.bin_ms,
            stage,
        );
        let cell = self.cells.entry(key).or_default();
        cell.window = if cell.window == MetricsSnapshot::default() {
            window
        } else {
            cell.window.merge(&window)
        };
        if last.at_unix_ms >= cell.last.at_unix_ms {
            cell.last = last.clone();
        }
        while self.cells.len() > MAX_CELLS && self.bin_ms < u64::MAX / 4 {
            let longer = next_bin_ms(self.bin_ms);
            self.rebin(longer);
        }
    }

    /// Merges the bins into bins of `bin_ms` (a multiple of the current
    /// length): windows add, the latest totals stay.
    fn rebin(&mut self, bin_ms: u64) {
        if bin_ms <= self.bin_ms {
            return;
        }
        let old = std::mem::take(&mut self.cells);
        for ((tick, _, stage), cell) in old {
            let key = (tick, cell.last.at_unix_ms / bin_ms, stage);
            match self.cells.get_mut(&key) {
                Some(kept) => {
                    kept.window = kept.window.merge(&cell.window);
                    if cell.last.at_unix_ms >= kept.last.at_unix_ms {
                        kept.last = cell.last;
                    }
                }
                None => {
                    self.cells.insert(key, cell);
                }
            }
        }
        self.bin_ms = bin_ms;
    }

    /// The bins of `tick` lines (or plain snapshot lines) merged into bins
    /// of `bin_ms` (a multiple of the current length): by bin and stage,
    /// the uploads in it and the latest totals (borrowed).
    pub(crate) fn cells_at(
        &self,
        bin_ms: u64,
        tick: bool,
    ) -> BTreeMap<(u64, Option<usize>), (MetricsSnapshot, &MetricsSnapshot)> {
        let mut out: BTreeMap<(u64, Option<usize>), (MetricsSnapshot, &MetricsSnapshot)> =
            BTreeMap::new();
        let bin_ms = bin_ms.max(1);
        for ((t, _, stage), cell) in &self.cells {
            if *t != tick {
                continue;
            }
            let key = (cell.last.at_unix_ms / bin_ms, *stage);
            match out.get_mut(&key) {
                Some((window, last)) => {
                    *window = window.merge(&cell.window);
                    if cell.last.at_unix_ms >= last.at_unix_ms {
                        *last = &cell.last;
                    }
                }
                None => {
                    out.insert(key, (cell.window.clone(), &cell.last));
                }
            }
        }
        out
    }

    /// After the last line.
    pub(crate) fn finish(&mut self) {
        self.open.clear();
        self.prune_rows();
    }

    /// Whether any bin holds tick lines' totals.
    pub(crate) fn has_ticks(&self) -> bool {
        self.cells.keys().any(|(tick, ..)| *tick)
    }
}

/// A short label and a kind for the actions worth marking (not `ready`,
/// which a waiting stage logs on every tick).
pub(crate) fn action_label(action: &Action) -> Option<(String, MarkKind)> {
    match action {
        Action::Start { percent, .. } => Some((format!("start {percent}"), MarkKind::Stage)),
        Action::Advance {
            percent, manual, ..
        } => Some((
            format!("→ {percent}{}", if *manual { " (manual)" } else { "" }),
            MarkKind::Stage,
        )),
        Action::Rollback { manual } => Some((
            format!("rollback{}", if *manual { " (manual)" } else { "" }),
            MarkKind::Rollback,
        )),
        Action::ReviewRequested => Some(("review".to_owned(), MarkKind::Review)),
        Action::Pause => Some(("pause".to_owned(), MarkKind::Pause)),
        Action::Resume { percent, .. } => Some((format!("resume {percent}"), MarkKind::Stage)),
        Action::Complete => Some(("complete".to_owned(), MarkKind::Complete)),
        Action::Ready { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bin_length_divides_the_next() {
        let mut bin = BIN_MINUTES[0] * 60_000;
        for _ in 0..20 {
            let next = next_bin_ms(bin);
            assert_eq!(next % bin, 0, "{bin} → {next}");
            bin = next;
        }
        assert_eq!(bin_at_least(29 * 60_000), 30 * 60_000);
        assert_eq!(bin_at_least(30 * 60_000), 30 * 60_000);
        assert_eq!(bin_at_least(1), 60_000);
    }

    #[test]
    fn the_typical_gap_is_what_most_gaps_fit_in() {
        let mut t = Timeline::new(Duration::from_secs(3600));
        for _ in 0..9 {
            t.gap(LogEvent::Tick, 30 * 60_000);
        }
        t.gap(LogEvent::Tick, 60_000);
        assert_eq!(t.typical_gap_ms(true), 30 * 60_000);
        assert_eq!(t.typical_gap_ms(false), 60_000, "no gaps: the shortest");
    }
}

//! Recovering a run's totals from the end of the log after a restart.
//!
//! Every logged tick line carries the totals of the run it judged and the
//! [`RolloutState`] it was written under. A restarted controller whose stored
//! state is still the same run (same stage, same `run_started_at`) reads the
//! log backwards to the newest such tick line and carries its totals, so
//! uploads judged before the restart still count.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::act::record::{LogEvent, LogRecord};
use crate::act::state::RolloutState;
use crate::metrics::{Arm, ArmMetrics, MetricsSnapshot};

/// How much of the log's end is read back at most (tick lines are ~20 KiB
/// and quiet ones are written once a minute, so this is hours of ticks).
pub(crate) const RECOVERY_SCAN_BYTES: u64 = 64 * 1024 * 1024;

const CHUNK: u64 = 256 * 1024;

/// The newest tick line's totals for `state`'s run in the log at `path`:
/// `Ok(None)` when the log has none (or no log exists). Lines that do not
/// parse (a torn tail) are passed over; the scan stops at the first line of
/// an older run, or after [`RECOVERY_SCAN_BYTES`].
pub(crate) fn run_totals(path: &Path, state: &RolloutState) -> io::Result<Option<MetricsSnapshot>> {
    scan_back(path, |record| {
        let logged = record.state.as_ref()?;
        if logged.is_new_run_since(state) {
            return (logged.epoch < state.epoch).then_some(None);
        }
        match (&record.event, &record.snapshot) {
            (LogEvent::Tick, Some(totals)) => Some(Some(totals.clone())),
            _ => None,
        }
    })
    .map(Option::flatten)
}

/// The sync arm of the newest tick line, of a run older than `state`'s,
/// whose totals hold at least `min_judged` judged sync uploads: the
/// carried sync baseline ([`Evaluator::carry_sync_baseline`]) a restarted
/// controller takes back, so that a 100% stage (no sync traffic of its own)
/// can still be judged after a restart. `Ok(None)` when the last
/// [`RECOVERY_SCAN_BYTES`] of the log hold none.
///
/// [`Evaluator::carry_sync_baseline`]: crate::Evaluator::carry_sync_baseline
pub(crate) fn sync_baseline(
    path: &Path,
    state: &RolloutState,
    min_judged: u64,
) -> io::Result<Option<ArmMetrics>> {
    scan_back(path, |record| {
        let logged = record.state.as_ref()?;
        if !logged.is_new_run_since(state) || logged.epoch > state.epoch {
            return None;
        }
        match (&record.event, &record.snapshot) {
            (LogEvent::Tick, Some(totals)) if totals.arm(Arm::Sync).judged() >= min_judged => {
                Some(totals.arm(Arm::Sync).clone())
            }
            _ => None,
        }
    })
}

/// Reads the log at `path` backwards, line by line, at most the last
/// [`RECOVERY_SCAN_BYTES`], passing each record that parses to `found`
/// until it returns `Some`. A missing log is `Ok(None)`.
fn scan_back<T>(
    path: &Path,
    mut found: impl FnMut(&LogRecord) -> Option<T>,
) -> io::Result<Option<T>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut judge = |line: &[u8]| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let record = serde_json::from_slice::<LogRecord>(line).ok()?;
        found(&record)
    };
    let len = file.metadata()?.len();
    let floor = len.saturating_sub(RECOVERY_SCAN_BYTES);
    // `tail` holds the bytes after the last newline seen so far, that is the
    // start of a line whose beginning is in an earlier chunk.
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    while end > floor {
        let start = end.saturating_sub(CHUNK).max(floor);
        let mut chunk = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        // Every line that starts inside this chunk is now whole, except the
        // first one when the chunk does not start at the file's start.
        let mut lines: Vec<&[u8]> = chunk.split(|&b| b == b'\n').collect();
        let first = if start == 0 {
            None
        } else {
            Some(lines.remove(0))
        };
        for line in lines.iter().rev() {
            if let Some(value) = judge(line) {
                return Ok(Some(value));
            }
        }
        tail = first.map(<[u8]>::to_vec).unwrap_or_default();
        end = start;
    }
    if floor == 0 && !tail.is_empty() {
        return Ok(judge(&tail));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::log::JsonlSink;
    use crate::act::state::ChangedBy;
    use std::time::{Duration, UNIX_EPOCH};

    fn tick(state: &RolloutState, successes: u64) -> LogRecord {
        let mut record = LogRecord::new(LogEvent::Tick, 1);
        let mut totals = MetricsSnapshot::default();
        totals.arm_mut(Arm::Async).success = successes;
        record.snapshot = Some(totals);
        record.state = Some(state.clone());
        record
    }

    #[test]
    fn finds_the_newest_tick_of_the_same_run_and_stops_at_an_older_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let old_run = RolloutState::running(1, t0, ChangedBy::Config, "start");
        let mut run = old_run.clone();
        run.epoch = 3;
        run.run_started_at = Some(t0 + Duration::from_secs(60));
        let mut sink = JsonlSink::open(&path).unwrap();
        sink.append(&tick(&old_run, 5)).unwrap();
        // Enough lines to span several chunks.
        let padding = "x".repeat(1000);
        for i in 0..400 {
            let mut record = tick(&run, i);
            record.reason = Some(padding.clone());
            sink.append(&record).unwrap();
        }
        let mut action = LogRecord::new(LogEvent::Action, 2);
        action.state = Some(run.clone());
        sink.append(&action).unwrap();
        drop(sink);
        let totals = run_totals(&path, &run).unwrap().unwrap();
        assert_eq!(totals.arm(Arm::Async).success, 399);

        let mut later_run = run.clone();
        later_run.epoch = 4;
        later_run.run_started_at = Some(t0 + Duration::from_secs(120));
        assert_eq!(run_totals(&path, &later_run).unwrap(), None);
        assert_eq!(
            run_totals(&dir.path().join("missing.jsonl"), &run).unwrap(),
            None
        );
    }
}

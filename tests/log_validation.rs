//! Issue 11: corrupt log data is refused, never believed. Tick lines of a
//! real controller log, edited one field at a time, must make `read_log`
//! (and the command line's reader) fail with the file, line and field; only
//! a last line *without* its newline is a torn tail.

use std::fs;
use std::path::Path;

use async_upload_rollout::act::simulation::{Simulation, SimulationConfig};
use async_upload_rollout::{
    JsonlSink,
    act::log::{LogError, LogRecord, MAX_LINE_BYTES, read_log},
};
use serde_json::Value;

/// Forty simulated minutes of a healthy 10% stage, logged by a real
/// controller through `JsonlSink`: one line per tick.
fn real_log(path: &Path) -> Vec<String> {
    let sink = JsonlSink::open(path).unwrap();
    let config = SimulationConfig {
        start_stage: 1,
        uploads_per_minute: 600,
        log_interval: std::time::Duration::ZERO,
        ..SimulationConfig::default()
    };
    let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
    for _ in 0..40 {
        assert!(sim.step().log_error.is_none());
    }
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The index of the last tick line.
fn last_tick(lines: &[String]) -> usize {
    lines
        .iter()
        .rposition(|l| l.contains(r#""event":"tick""#))
        .expect("a tick line")
}

/// `lines` with line `at` edited as JSON by `edit`, each ending in `\n`.
fn edited(lines: &[String], at: usize, edit: impl Fn(&mut Value)) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == at {
            let mut v: Value = serde_json::from_str(line).unwrap();
            edit(&mut v);
            out.push_str(&v.to_string());
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

type Edit = fn(&mut Value);

/// One corruption each: (name, edit, expected field, words of the reason).
const CORRUPTIONS: &[(&str, Edit, &str, &str)] = &[
    (
        "min_ns above max_ns",
        |v| {
            let h = &mut v["snapshot"]["async"]["latency"];
            let (min, max) = (h["min_ns"].clone(), h["max_ns"].clone());
            h["min_ns"] = max;
            h["max_ns"] = min;
        },
        "snapshot.async.latency",
        "is above max_ns",
    ),
    (
        "complaints far above uploads",
        |v| v["snapshot"]["async"]["complaints"] = 1_000_000_000_000_000u64.into(),
        "snapshot.async",
        "complaints for",
    ),
    (
        "outcome counts whose sum overflows u64",
        |v| {
            v["snapshot"]["sync"]["rejected"] = u64::MAX.into();
        },
        "snapshot.sync",
        "add up to more than",
    ),
    (
        "bucket counts whose sum overflows u64",
        |v| {
            let h = &mut v["snapshot"]["sync"]["latency"];
            h["buckets"][0][1] = u64::MAX.into();
        },
        "snapshot.sync.latency",
        "add up to more than",
    ),
    (
        "a schema version of 99",
        |v| v["v"] = 99.into(),
        "v",
        "schema version 99",
    ),
    (
        "a schema version of 0",
        |v| v["v"] = 0.into(),
        "v",
        "schema version 0",
    ),
    (
        "percent 1000",
        |v| v["percent"] = 1000.into(),
        "percent",
        "over 100",
    ),
    (
        "a negative count",
        |v| v["snapshot"]["async"]["success"] = (-1).into(),
        "snapshot.async.success",
        "-1",
    ),
    (
        "unsorted buckets",
        |v| {
            let buckets = v["snapshot"]["async"]["latency"]["buckets"]
                .as_array_mut()
                .unwrap();
            buckets.swap(0, 1);
        },
        "snapshot.async.latency",
        "out of order",
    ),
    (
        "a missing histogram",
        |v| {
            v["snapshot"]["sync"]
                .as_object_mut()
                .unwrap()
                .remove("latency");
        },
        "snapshot.sync",
        "missing field `latency`",
    ),
    (
        "a stage that is not a number",
        |v| v["stage"] = "two".into(),
        "stage",
        "invalid type",
    ),
    (
        "memory peak below the current sample",
        |v| {
            v["snapshot"]["memory"] =
                serde_json::json!({"baseline": 10, "current": 30, "peak": 20});
        },
        "snapshot.memory",
        "peak",
    ),
];

#[test]
fn every_corruption_of_a_whole_line_is_an_error_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let lines = real_log(&path);
    let at = last_tick(&lines);
    // In the middle and as the last line (newline-terminated): both errors.
    for keep in [lines.len(), at + 1] {
        for &(name, edit, field, words) in CORRUPTIONS {
            fs::write(&path, edited(&lines[..keep], at, edit)).unwrap();
            let err = read_log::<LogRecord>(&path).unwrap_err();
            let LogError::BadLine {
                line, field: got, ..
            } = &err
            else {
                panic!("{name}: {err:?}");
            };
            assert_eq!((*line, got.as_str()), (at + 1, field), "{name}: {err}");
            let message = err.to_string();
            assert!(message.contains(words), "{name}: {message}");
            assert!(message.contains(&path.display().to_string()), "{name}");
            assert!(message.contains(&format!("line {}", at + 1)), "{name}");
        }
    }
}

#[test]
fn only_a_last_line_without_its_newline_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let lines = real_log(&path);
    let whole: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let last = &lines[lines.len() - 1];

    // Cut short: torn, every whole line kept.
    fs::write(&path, format!("{whole}{}", &last[..last.len() / 2])).unwrap();
    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.records.len(), lines.len());
    assert_eq!(read.torn_tail.unwrap().line, lines.len() + 1);

    // The same bytes with a newline: a whole line, so an error.
    fs::write(&path, format!("{whole}{}\n", &last[..last.len() / 2])).unwrap();
    let err = read_log::<LogRecord>(&path).unwrap_err();
    assert!(matches!(err, LogError::BadLine { line, .. } if line == lines.len() + 1));

    // Invalid UTF-8 in a whole last line: an error too.
    let mut bytes = whole.clone().into_bytes();
    bytes.extend_from_slice(br#"{"v":1,"at_unix_ms":1,"event":"action","reason":"#);
    bytes.extend_from_slice(b"\"\xff\xfe\"}\n");
    fs::write(&path, bytes).unwrap();
    let err = read_log::<LogRecord>(&path).unwrap_err();
    assert!(
        matches!(&err, LogError::BadLine { field, .. } if field == "reason"),
        "{err:?}"
    );
}

#[test]
fn an_8_mib_line_is_an_error_naming_file_and_line_not_a_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let lines = real_log(&path);
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    text.push_str(r#"{"v":1,"reason":""#);
    text.push_str(&"x".repeat(8 << 20));
    text.push_str("\"}\n");
    text.push_str(&lines[0]);
    text.push('\n');
    fs::write(&path, text).unwrap();
    let err = read_log::<LogRecord>(&path).unwrap_err();
    match &err {
        LogError::LineTooLong { line, limit, .. } => {
            assert_eq!((*line, *limit), (lines.len() + 1, MAX_LINE_BYTES));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));

    // A line of exactly the limit is read (and here refused as JSON).
    let mut at_limit = vec![b'x'; MAX_LINE_BYTES];
    at_limit.push(b'\n');
    fs::write(&path, at_limit).unwrap();
    assert!(matches!(
        read_log::<LogRecord>(&path),
        Err(LogError::BadLine { line: 1, .. })
    ));
}

#[cfg(feature = "cli")]
mod command_line {
    use super::*;
    use async_upload_rollout::act::log::LogEvent;
    use async_upload_rollout::act::simulation::Fault;
    use async_upload_rollout::cli::InstanceLog;
    use std::process::Command;

    const BIN: &str = env!("CARGO_BIN_EXE_async-upload-rollout");

    /// `check` on a log with `corruption`: exit 1 and a message naming the
    /// file, line and field, never a verdict.
    fn check_refuses(path: &Path, name: &str, line: usize, field: &str) {
        let out = Command::new(BIN).arg("check").arg(path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&format!("line {line}")), "{name}: {stderr}");
        assert!(stderr.contains(field), "{name}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{name}");
    }

    #[test]
    fn check_refuses_every_corruption_with_exit_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let at = last_tick(&lines);
        for &(name, edit, field, _) in CORRUPTIONS {
            fs::write(&path, edited(&lines[..=at], at, edit)).unwrap();
            check_refuses(&path, name, at + 1, field);
        }
    }

    #[test]
    fn a_counter_that_goes_down_within_one_stage_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let at = last_tick(&lines);
        let text = edited(&lines[..=at], at, |v| {
            v["snapshot"]["sync"]["success"] = 1.into();
        });
        fs::write(&path, &text).unwrap();
        // Each line is valid alone: the plain reader accepts it.
        assert!(read_log::<LogRecord>(&path).is_ok());
        let err = InstanceLog::read(&path, &mut |_, _| {}).unwrap_err();
        match &err {
            LogError::Inconsistent { line, field, .. } => {
                assert_eq!((*line, field.as_str()), (at + 1, "snapshot.sync.success"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("went down"), "{err}");
        check_refuses(&path, "sync.success down", at + 1, "snapshot.sync.success");

        // A tick whose stage is not the one its evaluation judged.
        let text = edited(&lines[..=at], at, |v| v["stage"] = 3.into());
        fs::write(&path, &text).unwrap();
        check_refuses(&path, "stage", at + 1, "`stage`");
    }

    /// A log whose controller changes the state on a tick (`fault` makes
    /// it roll back or ask for a review; none: it advances), every tick
    /// logged, cut two ticks after that one; and the index of that tick.
    fn state_changing_log(path: &Path, fault: Option<Fault>) -> (Vec<String>, usize) {
        let config = SimulationConfig {
            start_stage: 1,
            uploads_per_minute: 600,
            log_interval: std::time::Duration::ZERO,
            fault: fault.map(|f| (f, 1)),
            fault_after: std::time::Duration::ZERO,
            plan: {
                let mut plan = async_upload_rollout::RolloutPlan::default();
                plan.stages[1].criteria.min_duration = std::time::Duration::from_secs(3600);
                plan
            },
            ..SimulationConfig::default()
        };
        let _ = fs::remove_file(path);
        let sink = JsonlSink::open(path).unwrap();
        let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
        let mut after = None;
        for _ in 0..24 * 60 {
            let tick = sim.step();
            assert!(tick.log_error.is_none());
            if after.is_none() && tick.action.as_ref().is_some_and(|a| a.name() != "ready") {
                after = Some(0);
            }
            if let Some(n) = &mut after {
                *n += 1;
                if *n > 2 {
                    break;
                }
            }
        }
        let lines: Vec<String> = fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let at = lines
            .iter()
            .position(|l| {
                l.contains(r#""event":"tick""#)
                    && (l.contains(r#""action":"rollback""#)
                        || l.contains(r#""action":"review_requested""#)
                        || l.contains(r#""action":"advance""#))
            })
            .expect("a tick that changed the state");
        (lines, at)
    }

    #[test]
    fn run_totals_that_shrink_on_a_tick_that_changed_the_state_are_refused() {
        // The tick that rolls back, asks for review or advances is written
        // under the new state; its totals are still the run's and may not
        // be below the tick before.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        for (fault, action) in [
            (Some(Fault::ErrorBurst), "rollback"),
            (Some(Fault::LatencyCreep), "review_requested"),
            (None, "advance"),
        ] {
            let (lines, at) = state_changing_log(&path, fault);
            assert!(lines[at].contains(action), "{action}: {}", lines[at]);
            let shrunk = edited(&lines, at, |v| {
                let n = v["snapshot"]["async"]["success"].as_u64().unwrap();
                v["snapshot"]["async"]["success"] = (n / 2).into();
            });
            fs::write(&path, shrunk).unwrap();
            check_refuses(&path, action, at + 1, "snapshot.async.success");
            let err = InstanceLog::read(&path, &mut |_, _| {}).unwrap_err();
            assert!(err.to_string().contains("went down"), "{action}: {err}");
        }
    }

    #[test]
    fn a_tick_without_its_totals_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let at = last_tick(&lines) - 3;
        assert!(lines[at].contains(r#""event":"tick""#));
        for (name, edit) in [
            ("null", (|v| v["snapshot"] = Value::Null) as Edit),
            ("missing", |v| {
                v.as_object_mut().unwrap().remove("snapshot");
            }),
        ] {
            fs::write(&path, edited(&lines, at, edit)).unwrap();
            check_refuses(&path, name, at + 1, "`snapshot`");
            let err = InstanceLog::read(&path, &mut |_, _| {}).unwrap_err();
            assert!(
                matches!(&err, LogError::Inconsistent { line, field, .. } if *line == at + 1 && field == "snapshot"),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn latency_counts_that_disagree_with_their_outcomes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let at = last_tick(&lines);
        // Ten times the successes of the latencies described (the last
        // tick, so that nothing after it goes down).
        let more = edited(&lines, at, |v| {
            let n = v["snapshot"]["sync"]["success"].as_u64().unwrap();
            v["snapshot"]["sync"]["success"] = (n * 10).into();
        });
        fs::write(&path, more).unwrap();
        check_refuses(&path, "ten times", at + 1, "snapshot.sync.latency.count");
        let err = InstanceLog::read(&path, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("latencies for"), "{err}");
        // A histogram emptied of its latencies (count and buckets agree).
        let emptied = edited(&lines, at, |v| {
            v["snapshot"]["async"]["latency"] = serde_json::json!({
                "count": 0, "sum_ns": 0, "min_ns": 0, "max_ns": 0, "buckets": []
            });
        });
        fs::write(&path, emptied).unwrap();
        let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("line {}", at + 1)), "{stderr}");
        // The earlier line's buckets went down, or the count disagrees:
        // either way the line is named.
        assert!(stderr.contains("snapshot.async.latency"), "{stderr}");
    }

    /// Issue 11: `report` on a log whose last tick is stamped
    /// 18446744073709551615 ms panicked (exit 101) printing the date, and
    /// then laid out billions of axis labels.
    #[test]
    fn report_on_a_tick_at_u64_max_ms_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let at = last_tick(&lines);
        fs::write(
            &path,
            edited(&lines[..=at], at, |v| v["at_unix_ms"] = u64::MAX.into()),
        )
        .unwrap();
        let html = dir.path().join("report.html");
        let out = Command::new(BIN)
            .arg("report")
            .arg(&path)
            .arg("-o")
            .arg(&html)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let page = fs::read_to_string(&html).unwrap();
        assert!(page.contains("18446744073709551615 ms since 1970"));
        let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
        assert_ne!(out.status.code(), Some(101));
    }

    #[test]
    fn a_rotated_log_is_read_as_one_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines = real_log(&path);
        let total = lines.len();
        // Rewrite the same records through a sink that rotates every ~3 lines.
        fs::remove_file(&path).unwrap();
        let longest = lines.iter().map(String::len).max().unwrap() as u64;
        let mut sink = JsonlSink::open(&path)
            .unwrap()
            .rotate_at(3 * longest + 3, 100);
        for line in &lines {
            let record: LogRecord = serde_json::from_str(line).unwrap();
            sink.append(&record).unwrap();
        }
        assert!(dir.path().join("metrics.jsonl.2").is_file());
        let log = InstanceLog::read(&path, &mut |_, _| {}).unwrap();
        assert_eq!(log.record_count(), total);
        let records = read_log::<LogRecord>(&path).unwrap().records;
        let stamps: Vec<u64> = records.iter().map(|r| r.at_unix_ms).collect();
        assert!(stamps.is_sorted(), "oldest first");
        assert_eq!(records.len(), total);
        // The latest line is the current file's last, a tick.
        assert_eq!(log.latest_line().unwrap().path, path);
        assert_eq!(log.last_verdict().unwrap().path, path);
        let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(records.last().map(|r| r.event), Some(LogEvent::Tick));
    }
}

//! Crashes and faults while logging (issue 11): a logger killed with
//! SIGKILL loses at most its last, unfinished line; a full disk is counted
//! and survived; the log's size is bounded by rotation.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_upload_rollout::{
    Arm, JsonlSink, MetricsAccumulator, Outcome, Percent,
    act::log::{LogError, LogRecord, read_log},
};

/// Set in the child: the log to write.
const CHILD_ENV: &str = "AUR_CRASH_CHILD_LOG";

/// Not a test of its own: the child process of
/// `a_logger_killed_mid_write_loses_at_most_its_last_line`, which runs this
/// binary again with `--ignored --exact` and the log's path in
/// [`CHILD_ENV`]. It records uploads and appends a snapshot line as fast as
/// it can until it is killed.
#[test]
#[ignore = "the child process of a_logger_killed_mid_write_loses_at_most_its_last_line"]
fn child_logs_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let metrics = MetricsAccumulator::new();
    let mut sink = JsonlSink::open(&path).unwrap();
    let percent = Percent::from_whole(10).unwrap();
    for i in 0u64.. {
        // Many latencies, so lines are long (many buckets) and a kill
        // often lands inside a write.
        for j in 0..64 {
            let latency = Duration::from_nanos(1_000 + (i * 64 + j) * 7_919 % 5_000_000_000);
            metrics.record(
                Arm::ALL[(j % 2) as usize],
                Outcome::ALL[(j % 4) as usize],
                latency,
            );
        }
        let mut record = LogRecord::snapshot(metrics.snapshot());
        record.percent = Some(percent);
        sink.append(&record).unwrap();
    }
}

/// Lines in the file so far (whole ones).
fn whole_lines(path: &Path) -> usize {
    fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[test]
fn a_logger_killed_mid_write_loses_at_most_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut torn_seen = 0;
    for round in 0..6 {
        let path = dir.path().join(format!("metrics-{round}.jsonl"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_logs_until_killed",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it after a varying number of lines.
        let want = 200 + round * 150;
        let deadline = Instant::now() + Duration::from_secs(60);
        while whole_lines(&path) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let seen = whole_lines(&path);
        assert!(seen >= want, "the child logged {seen} lines in 60 s");

        let read = read_log::<LogRecord>(&path).unwrap();
        assert_eq!(read.records.len(), seen, "every whole line is a record");
        let bytes = fs::read(&path).unwrap();
        match &read.torn_tail {
            Some(torn) => {
                torn_seen += 1;
                assert_eq!(torn.line, seen + 1);
                assert_ne!(bytes.last(), Some(&b'\n'));
            }
            None => assert!(bytes.is_empty() || bytes.last() == Some(&b'\n')),
        }
        // Cumulative counts only grow, line after line: nothing was lost.
        let uploads: Vec<u64> = read
            .records
            .iter()
            .map(|r| r.snapshot.as_ref().unwrap().uploads(Arm::Async))
            .collect();
        assert!(uploads.is_sorted());

        #[cfg(feature = "cli")]
        {
            let out = Command::new(env!("CARGO_BIN_EXE_async-upload-rollout"))
                .arg("check")
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                matches!(out.status.code(), Some(0 | 2 | 3)),
                "check judged the recovered lines: {stderr}"
            );
            assert_eq!(
                stderr.contains("torn last line"),
                read.torn_tail.is_some(),
                "{stderr}"
            );
        }

        // Reopening repairs the tail; appending goes on cleanly.
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.repaired_tail().is_some(), read.torn_tail.is_some());
        sink.append(&LogRecord::snapshot(MetricsAccumulator::new().snapshot()))
            .unwrap();
        let again = read_log::<LogRecord>(&path).unwrap();
        assert_eq!(again.records.len(), seen + 1);
        assert!(again.torn_tail.is_none());
    }
    // Not asserted (timing decides), but said: how often a kill tore a line.
    eprintln!("{torn_seen} of 6 kills left a torn last line");
}

/// A full disk: `/dev/full` takes the place of the log file (through a
/// symbolic link), then the link is removed, as space returns.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_counted_and_logging_resumes_when_space_returns() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let metrics = MetricsAccumulator::new();
    let mut sink = JsonlSink::open(&path).unwrap();

    for i in 0..5u64 {
        metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(i + 1));
        let err = sink
            .append(&LogRecord::snapshot(metrics.snapshot()))
            .unwrap_err();
        assert!(matches!(err, LogError::Write { .. }), "{err:?}");
    }
    assert_eq!(sink.write_errors(), 5);
    let message = sink.last_error().unwrap().to_owned();
    assert!(message.contains("No space left"), "{message}");
    // Recording went on regardless.
    assert_eq!(metrics.snapshot().uploads(Arm::Async), 5);

    // Space returns: the next append reopens the path and succeeds.
    fs::remove_file(&path).unwrap();
    metrics.record(Arm::Async, Outcome::Error, Duration::from_millis(9));
    sink.append(&LogRecord::snapshot(metrics.snapshot()))
        .unwrap();
    sink.append(&LogRecord::snapshot(metrics.snapshot()))
        .unwrap();
    assert_eq!(sink.write_errors(), 5, "no new failure");
    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.records.len(), 2);
    let last = read.records[1].snapshot.as_ref().unwrap();
    assert_eq!(
        last.uploads(Arm::Async),
        6,
        "the first line after the outage carries what the failed ones had"
    );
}

#[test]
fn rotation_bounds_the_log_and_read_log_reads_the_set_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let metrics = MetricsAccumulator::new();
    let line = |i: u64| {
        metrics.record(Arm::Sync, Outcome::Success, Duration::from_micros(i));
        let mut record = LogRecord::snapshot(metrics.snapshot());
        record.at_unix_ms = i;
        record
    };
    let one = serde_json::to_string(&line(0)).unwrap().len() as u64 + 1;
    // Room for ~4 lines per file, 2 old files kept.
    let mut sink = JsonlSink::open(&path)
        .unwrap()
        .rotate_at(4 * one + one / 2, 2);
    for i in 1..=40 {
        sink.append(&line(i)).unwrap();
    }
    let files = async_upload_rollout::act::log::log_files(&path);
    assert_eq!(
        files,
        [
            dir.path().join("metrics.jsonl.2"),
            dir.path().join("metrics.jsonl.1"),
            path.clone()
        ]
    );
    assert!(!dir.path().join("metrics.jsonl.3").exists());
    for file in &files {
        // Lines grow a little as buckets fill: allow one line of slack.
        assert!(fs::metadata(file).unwrap().len() <= 6 * one, "{file:?}");
    }
    let stamps: Vec<u64> = read_log::<LogRecord>(&path)
        .unwrap()
        .records
        .iter()
        .map(|r| r.at_unix_ms)
        .collect();
    assert!(!stamps.is_empty());
    let first = stamps[0];
    assert_eq!(
        stamps,
        (first..=40).collect::<Vec<_>>(),
        "contiguous, oldest first"
    );
    assert!(first > 1, "the oldest lines were dropped");

    // keep_files 0: only the current file.
    let solo = dir.path().join("solo.jsonl");
    let mut sink = JsonlSink::open(&solo).unwrap().rotate_at(2 * one, 0);
    for i in 1..=10 {
        sink.append(&line(i)).unwrap();
    }
    assert!(read_log::<LogRecord>(&solo).unwrap().records.len() <= 2);
    assert_eq!(async_upload_rollout::act::log::log_files(&solo), [solo]);
}

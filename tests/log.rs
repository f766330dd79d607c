//! The JSON-lines log: round trips, torn tails, directories, errors.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_upload_rollout::{
    Arm, JsonlSink, MetricsAccumulator, Outcome,
    act::log::{DEFAULT_LOG_PATH, LOG_SCHEMA_VERSION, LogError, LogEvent, LogRecord, read_log},
    clock::ManualClock,
};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aur-log-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `n` snapshot records, each one minute after the previous, with traffic.
fn records(n: usize) -> Vec<LogRecord> {
    let clock = ManualClock::default();
    let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
    (0..n)
        .map(|i| {
            let outcome = Outcome::ALL[i % 4];
            metrics.record(
                Arm::ALL[i % 2],
                outcome,
                Duration::from_micros(i as u64 * 37),
            );
            metrics.record_memory(1_000_000 + i as u64);
            clock.advance(Duration::from_secs(60));
            LogRecord::snapshot(metrics.snapshot())
        })
        .collect()
}

fn write_all(path: &Path, records: &[LogRecord]) {
    let mut sink = JsonlSink::open(path).unwrap();
    for record in records {
        sink.append(record).unwrap();
    }
}

#[test]
fn thousand_records_round_trip() {
    let dir = TempDir::new("round-trip");
    let path = dir.path().join("metrics.jsonl");
    let written = records(1000);
    write_all(&path, &written);

    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.torn_tail, None);
    assert_eq!(read.records, written);

    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert!(text.ends_with('\n'));
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["v"], LOG_SCHEMA_VERSION);
    assert_eq!(first["event"], "snapshot");
    assert_eq!(first["at_unix_ms"], first["snapshot"]["at_unix_ms"]);
}

#[test]
fn appending_never_rewrites_earlier_lines() {
    let dir = TempDir::new("append-only");
    let path = dir.path().join("metrics.jsonl");
    let all = records(20);
    write_all(&path, &all[..10]);
    let before = fs::read(&path).unwrap();
    write_all(&path, &all[10..]); // a second process start appends
    let after = fs::read(&path).unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(read_log::<LogRecord>(&path).unwrap().records, all);
}

#[test]
fn file_cut_in_its_last_line_reads_every_whole_record_and_reports_the_torn_one() {
    let dir = TempDir::new("torn");
    let path = dir.path().join("metrics.jsonl");
    let written = records(1000);
    write_all(&path, &written);
    let bytes = fs::read(&path).unwrap();
    let last_line_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cut = last_line_start + (bytes.len() - last_line_start) / 2;
    fs::write(&path, &bytes[..cut]).unwrap();

    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.records, written[..999]);
    let torn = read.torn_tail.expect("the torn line is reported");
    assert_eq!(torn.line, 1000);
    assert_eq!(torn.bytes, cut - last_line_start);
    assert!(torn.preview.starts_with("{\"v\":2"), "{}", torn.preview);

    // Reopening cuts the fragment off, so new lines start clean.
    let mut sink = JsonlSink::open(&path).unwrap();
    assert_eq!(sink.repaired_tail().map(|t| t.line), Some(1000));
    sink.append(&written[999]).unwrap();
    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.torn_tail, None);
    assert_eq!(read.records, written);
}

#[test]
fn a_last_line_missing_only_its_newline_is_kept() {
    let dir = TempDir::new("no-newline");
    let path = dir.path().join("metrics.jsonl");
    let written = records(3);
    write_all(&path, &written);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(read_log::<LogRecord>(&path).unwrap().records, written);

    let sink = JsonlSink::open(&path).unwrap();
    assert_eq!(sink.repaired_tail(), None);
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "only the newline was added"
    );
}

#[test]
fn a_bad_line_before_the_last_is_an_error_naming_path_and_line() {
    let dir = TempDir::new("bad-middle");
    let path = dir.path().join("metrics.jsonl");
    write_all(&path, &records(3));
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{\"v\":1,\"garbage");
    fs::write(&path, lines.join("\n") + "\n").unwrap();

    let err = read_log::<LogRecord>(&path).unwrap_err();
    assert!(matches!(err, LogError::BadLine { line: 2, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn missing_directories_are_created() {
    let dir = TempDir::new("mkdir");
    let path = dir.path().join(DEFAULT_LOG_PATH);
    assert!(!path.parent().unwrap().exists());
    let mut sink = JsonlSink::open(&path).unwrap();
    assert_eq!(sink.path(), path);
    sink.append(&LogRecord::new(LogEvent::Snapshot, 1)).unwrap();
    assert!(path.is_file());
}

#[test]
fn unwritable_path_is_an_error_naming_the_path() {
    let dir = TempDir::new("unwritable");
    // A regular file where a directory should be: fails even for root.
    let blocker = dir.path().join("not-a-dir");
    fs::File::create(&blocker).unwrap().write_all(b"x").unwrap();
    let cases = [
        blocker.join("logs/metrics.jsonl"), // cannot create the directory
        blocker.join("metrics.jsonl"),      // parent is a file
        dir.path().to_path_buf(),           // the path is a directory
    ];
    for path in cases {
        let err = JsonlSink::open(&path).unwrap_err();
        assert_eq!(err.path(), path);
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let err = read_log::<LogRecord>(dir.path().join("missing.jsonl")).unwrap_err();
    assert!(matches!(err, LogError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn unknown_fields_and_events_are_read_for_forward_compatibility() {
    let dir = TempDir::new("compat");
    let path = dir.path().join("metrics.jsonl");
    fs::write(
        &path,
        "{\"v\":1,\"at_unix_ms\":5,\"event\":\"rollback\",\"region\":\"eu-1\",\"reason\":\"error rate\"}\n\n",
    )
    .unwrap();
    let read = read_log::<LogRecord>(&path).unwrap();
    assert_eq!(read.records.len(), 1, "blank lines are skipped");
    assert_eq!(read.records[0].event, LogEvent::Other);
    assert_eq!(read.records[0].snapshot, None);

    // Any serde type can be logged and read back.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Custom {
        v: u32,
        note: String,
    }
    let mut sink = JsonlSink::open(dir.path().join("custom.jsonl")).unwrap();
    let record = Custom {
        v: 1,
        note: "two\nlines".into(),
    };
    sink.append(&record).unwrap();
    let read = read_log::<Custom>(sink.path()).unwrap();
    assert_eq!(read.records, [record]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_write_error_is_returned_naming_the_path_and_recording_goes_on() {
    // /dev/full accepts the open and fails every write with ENOSPC.
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let metrics = MetricsAccumulator::new();
    let mut sink = JsonlSink::open(path).unwrap();
    for i in 1..=3 {
        metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(i));
        let err = sink
            .append(&LogRecord::snapshot(metrics.snapshot()))
            .unwrap_err();
        assert!(matches!(err, LogError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }
    assert_eq!(metrics.snapshot().uploads(Arm::Async), 3);
}

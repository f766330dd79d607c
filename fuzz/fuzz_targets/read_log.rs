//! `read_log` and the command line's reader over arbitrary bytes: never
//! panic; what they accept, `check` judges and `report` draws without
//! panicking either.
#![no_main]

use std::io::Write;

use async_upload_rollout::cli::{Fleet, InstanceLog, ReportOptions, report_html};
use async_upload_rollout::{RolloutPlan, act::log::{LogRecord, read_log}};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("metrics.jsonl");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("write the log");
    let plain = read_log::<LogRecord>(&path);
    let Ok(log) = InstanceLog::read(&path, &mut |_, _| {}) else {
        return;
    };
    let read = plain.expect("what the command line reads, read_log reads");
    assert_eq!(read.records.len(), log.record_count());
    let fleet = Fleet::new(vec![log]).expect("one log");
    let plan = RolloutPlan::default();
    let _ = fleet.check(&plan, None);
    // Drawing is slow: only for small logs with a snapshot to draw.
    if data.len() < 64 * 1024 && fleet.history().is_ok() {
        let _ = report_html(&fleet, &ReportOptions::default());
    }
});

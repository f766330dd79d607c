//! One log line (`LogRecord` from JSON): never panics; an accepted record's
//! snapshot answers every query, and the record prints and reads back.
#![no_main]

use async_upload_rollout::{Arm, act::log::LogRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<LogRecord>(data) else {
        return;
    };
    if let Some(snapshot) = &record.snapshot {
        for arm in Arm::ALL {
            let latency = &snapshot.arm(arm).latency;
            assert!(latency.min() <= latency.max());
            for q in [0.0, 0.5, 0.99, 1.0] {
                if let Some(v) = latency.quantile(q) {
                    assert!(Some(v) >= latency.min() && Some(v) <= latency.max());
                }
            }
            let _ = (snapshot.success_rate(arm), snapshot.error_rate(arm));
            let _ = (snapshot.complaint_rate(arm), snapshot.mean_latency(arm));
            assert!(snapshot.complaints(arm) <= snapshot.uploads(arm));
        }
        let _ = (snapshot.span(), snapshot.memory_growth());
        let _ = snapshot.since(snapshot);
    }
    let printed = serde_json::to_string(&record).expect("an accepted record prints");
    let back: LogRecord = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("a record does not read back: {e}\n{printed}"));
    assert_eq!(back.snapshot, record.snapshot);
    assert_eq!(back.v, record.v);
});

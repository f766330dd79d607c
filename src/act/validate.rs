//! Record-level checks of the log's lines that serde runs while reading a
//! [`LogRecord`](crate::LogRecord), so that every reader refuses the same
//! lines. Snapshot invariants are checked by the metrics types themselves.

use serde::{Deserialize, Deserializer, de};

use crate::act::record::LOG_SCHEMA_VERSION;

/// Reads the `v` field: a version this build knows, `1..=LOG_SCHEMA_VERSION`.
/// A newer version is refused rather than guessed at: its fields may mean
/// something this build does not know.
pub(crate) fn schema_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(deserializer)?;
    if v == 0 || v > LOG_SCHEMA_VERSION {
        return Err(de::Error::custom(format_args!(
            "schema version {v} is not one this build reads (1 to {LOG_SCHEMA_VERSION}); \
             a newer async-upload-rollout wrote it"
        )));
    }
    Ok(v)
}

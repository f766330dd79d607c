//! Upload metrics: what the handler records and what the rollout criteria read.
//!
//! - [`MetricsAccumulator`]: shared by every upload handler; `record` is the
//!   hot path (lock-free, allocation-free, striped per thread).
//! - [`MetricsSnapshot`]: plain, serializable, cumulative since the last
//!   reset; two snapshots give a window ([`MetricsSnapshot::since`]), two
//!   instances' snapshots add up ([`MetricsSnapshot::merge`]).
//! - [`History`]: a bounded ring of snapshots that answers "the last 5
//!   minutes" and "each 5 minutes of the last 30".
//!
//! # Rates
//!
//! For one arm, with `success`, `error`, `critical` and `rejected` the counts
//! of each [`Outcome`]:
//!
//! ```text
//! uploads      = success + error + critical + rejected
//! judged       = success + error + critical
//! success_rate = success / judged
//! error_rate   = (error + critical) / judged        (success_rate + error_rate = 1)
//! ```
//!
//! A rejected upload (the client's fault: a bad file, a quota) counts as an
//! upload but neither for nor against the path. Its latency is not recorded
//! either: it measures the client, not the path. Every rate is `None` when
//! its denominator is 0, never NaN.

mod accumulator;
mod critical;
pub(crate) mod histogram;
mod history;
mod memory;
mod raw;
mod slot;
mod snapshot;
mod stripe;

use serde::{Deserialize, Serialize};

pub use accumulator::MetricsAccumulator;
pub use histogram::{HistogramBucket, LatencyHistogram};
pub use history::History;
pub use memory::process_memory_bytes;
pub use snapshot::{ArmMetrics, MemoryStats, MetricsSnapshot};

/// The path an upload took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The new asynchronous path (the rollout's treatment).
    Async,
    /// The proven synchronous path (the baseline).
    Sync,
}

impl Arm {
    /// Both arms, async first.
    pub const ALL: [Arm; 2] = [Arm::Async, Arm::Sync];

    /// The arm a rollout decision picks: `Async` when
    /// [`should_use_async`](crate::Rollout::should_use_async) said yes.
    #[must_use]
    pub const fn from_use_async(use_async: bool) -> Arm {
        if use_async { Arm::Async } else { Arm::Sync }
    }

    /// `"async"` or `"sync"`, as serialized.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Arm::Async => "async",
            Arm::Sync => "sync",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// How one upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Stored and acknowledged.
    Success,
    /// Failed on the server's side; counts against the path.
    Error,
    /// Failed in a way that triggers an immediate rollback (data loss,
    /// corruption, a crash); counts against the path as an error too.
    Critical,
    /// Refused because of the client (a bad or oversized upload). Counts as an
    /// upload, but neither for nor against the path's success or error rate,
    /// and its latency is not recorded.
    Rejected,
}

impl Outcome {
    /// All outcomes, in serialization order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Error,
        Outcome::Critical,
        Outcome::Rejected,
    ];

    /// Whether the outcome is judged, i.e. counts in the success and error
    /// rates (everything but [`Rejected`](Outcome::Rejected)).
    #[must_use]
    pub const fn is_judged(self) -> bool {
        !matches!(self, Outcome::Rejected)
    }

    /// `"success"`, `"error"`, `"critical"` or `"rejected"`, as serialized.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Critical => "critical",
            Outcome::Rejected => "rejected",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_in_serde_and_as_str() {
        for arm in Arm::ALL {
            let json = serde_json::to_string(&arm).unwrap();
            assert_eq!(json, format!("\"{}\"", arm.as_str()));
            assert_eq!(serde_json::from_str::<Arm>(&json).unwrap(), arm);
        }
        for outcome in Outcome::ALL {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
        }
        assert_eq!(Arm::Async.as_str(), "async");
        assert_eq!(Outcome::Rejected.as_str(), "rejected");
    }

    #[test]
    fn indices_match_the_all_arrays() {
        for (i, arm) in Arm::ALL.into_iter().enumerate() {
            assert_eq!(arm.index(), i);
        }
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        assert_eq!(Arm::from_use_async(true), Arm::Async);
        assert_eq!(Arm::from_use_async(false), Arm::Sync);
    }
}

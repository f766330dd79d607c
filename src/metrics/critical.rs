//! The critical-event log of one arm: critical errors reported with
//! [`MetricsAccumulator::record_critical`](crate::MetricsAccumulator::record_critical)
//! (not uploads), counted, with the latest reasons kept for the log.

use std::collections::VecDeque;

/// How many reasons of critical events a snapshot keeps per arm (the latest).
pub(super) const REASONS_KEPT: usize = 8;
/// Longest reason kept, in bytes; a longer one is cut at a character
/// boundary and ends with `…`.
pub(super) const REASON_MAX_BYTES: usize = 256;

/// One arm's critical events that were not an upload: a count and the
/// latest reasons.
#[derive(Default)]
pub(super) struct CriticalLog {
    pub(super) count: u64,
    pub(super) reasons: VecDeque<String>,
}

impl CriticalLog {
    /// Counts one event; keeps its `reason` (already cut with
    /// [`truncate_reason`]) among the latest [`REASONS_KEPT`].
    pub(super) fn push(&mut self, reason: String) {
        self.count = self.count.saturating_add(1);
        if self.reasons.len() == REASONS_KEPT {
            self.reasons.pop_front();
        }
        self.reasons.push_back(reason);
    }
}

/// `reason` cut to at most `max` bytes at a character boundary, then ending
/// with `…` (3 bytes, so within `max` when it is at least 3).
pub(super) fn truncate_reason(reason: &str, max: usize) -> String {
    if reason.len() <= max {
        return reason.to_owned();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !reason.is_char_boundary(end) {
        end -= 1; // 0 is a boundary, so this stops
    }
    let mut cut = reason[..end].to_owned();
    cut.push(ellipsis);
    cut
}

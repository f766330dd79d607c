//! Literal mode's sustained conditions: how long a condition has held,
//! judged on the window ending at each kept snapshot, and the review check
//! that fires once it has held long enough. Also how far back a history
//! reaches, which the windowed checks say when they lack data.

use std::time::Duration;

use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::metrics::{History, MetricsSnapshot};

/// How long a condition has held, walking back over the kept snapshots.
pub(crate) struct Streak {
    /// Time from the first evaluation point of the current streak to the latest.
    held_for: Option<Duration>,
    /// The condition at the latest point (`None`: too little data there).
    now: Option<bool>,
}

/// Evaluates `condition` on the window of length `window` ending at each kept
/// snapshot, newest first, and measures the current streak of `true`.
pub(crate) fn sustained(
    history: &History,
    window: Duration,
    condition: impl Fn(&MetricsSnapshot) -> Option<bool>,
) -> Streak {
    let snapshots: Vec<&MetricsSnapshot> = history.iter().collect();
    let Some(latest) = snapshots.last() else {
        return Streak {
            held_for: None,
            now: None,
        };
    };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let mut first_true: Option<u64> = None;
    let mut now = None;
    for (k, end) in snapshots.iter().enumerate().rev() {
        // The window's start: the newest snapshot at or before end - window,
        // or the oldest kept one when history is shorter than the window.
        let start_ms = end.at_unix_ms.saturating_sub(window_ms);
        let start = snapshots[..k]
            .iter()
            .rev()
            .find(|s| s.at_unix_ms <= start_ms)
            .or_else(|| snapshots.first())
            .copied();
        let Some(start) = start.filter(|s| s.at_unix_ms < end.at_unix_ms) else {
            break;
        };
        let held = condition(&end.since(start));
        if k == snapshots.len() - 1 {
            now = held;
        }
        if held != Some(true) {
            break;
        }
        first_true = Some(end.at_unix_ms);
    }
    Streak {
        held_for: first_true.map(|t| Duration::from_millis(latest.at_unix_ms.saturating_sub(t))),
        now,
    }
}

/// The review check `id` on `condition`'s `streak`: fires once it has held
/// for `needed`. Observed and threshold are minutes.
pub(crate) fn sustained_check(
    id: &CheckId,
    condition: &str,
    streak: Streak,
    needed: Duration,
    sample_size: u64,
) -> Check {
    let held = streak.held_for;
    let fired = held.is_some_and(|h| h >= needed);
    let needed_text = humantime::format_duration(needed);
    let detail = match (streak.now, held) {
        (_, Some(h)) => format!(
            "{condition} has held for {} (review at {needed_text})",
            humantime::format_duration(Duration::from_secs(h.as_secs()))
        ),
        (Some(false), None) => format!("{condition}: not now"),
        (_, None) => format!("{condition}: too little recent data to tell"),
    };
    Check::new(
        id,
        CheckStatus::fail_if(fired),
        held.map(|h| h.as_secs_f64() / 60.0),
        needed.as_secs_f64() / 60.0,
        sample_size,
        detail,
    )
}

/// How far back `history` reaches (latest − oldest).
pub(crate) fn history_reach(history: &History) -> Duration {
    match (history.oldest(), history.latest()) {
        (Some(o), Some(l)) => Duration::from_millis(l.at_unix_ms.saturating_sub(o.at_unix_ms)),
        _ => Duration::ZERO,
    }
}

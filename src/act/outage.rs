//! [`OutageLog`]: one line per kind of failure per
//! [`OUTAGE_LOG_INTERVAL`] while it lasts, with a count of the lines not
//! shown, and one line when it ends.
//!
//! A store that cannot be reached fails on every poll (ten times a second
//! in fleet mode) and a controller campaigns five times a second: without
//! this, an outage of a minute writes hundreds of identical lines and buries
//! the one that matters. Counters (health, metrics) still count every
//! failure; only the lines are thinned.

use std::time::{Duration, SystemTime};

/// How often one kind of failure is reported while it lasts: its first
/// occurrence at once, then at most one line per interval, saying how many
/// like it were not shown; and one line when it stops, saying how long it
/// lasted and how many failures there were.
pub const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The failures of one kind since it started failing.
#[derive(Clone, Debug)]
struct Failing {
    kind: &'static str,
    since: SystemTime,
    last_shown: SystemTime,
    /// Failures not shown since the last line.
    suppressed: u64,
    /// Failures in all, since it started failing.
    total: u64,
}

/// Thins repeated failure lines; see the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct OutageLog {
    interval: Duration,
    failing: Vec<Failing>,
}

impl Default for OutageLog {
    fn default() -> OutageLog {
        OutageLog::new(OUTAGE_LOG_INTERVAL)
    }
}

impl OutageLog {
    /// One line per kind per `interval`.
    pub(crate) fn new(interval: Duration) -> OutageLog {
        OutageLog {
            interval,
            failing: Vec::new(),
        }
    }

    /// A failure of `kind` at `now`: the line to show (`message`, with how
    /// many like it were not shown since the last line), or `None` when it
    /// is counted and not shown.
    pub(crate) fn failed(
        &mut self,
        kind: &'static str,
        message: &str,
        now: SystemTime,
    ) -> Option<String> {
        let interval = self.interval;
        let Some(failing) = self.failing.iter_mut().find(|f| f.kind == kind) else {
            self.failing.push(Failing {
                kind,
                since: now,
                last_shown: now,
                suppressed: 0,
                total: 1,
            });
            return Some(message.to_owned());
        };
        failing.total += 1;
        if now.duration_since(failing.last_shown).unwrap_or_default() < interval {
            failing.suppressed += 1;
            return None;
        }
        let line = format!(
            "{message} (still failing since {} ago: {} more like it not shown)",
            whole_seconds(now.duration_since(failing.since).unwrap_or_default()),
            failing.suppressed
        );
        failing.last_shown = now;
        failing.suppressed = 0;
        Some(line)
    }

    /// `kind` works again at `now`: what to say (`<kind>: N failures over
    /// <how long>`), or `None` when it was not failing.
    pub(crate) fn recovered(&mut self, kind: &'static str, now: SystemTime) -> Option<String> {
        let at = self.failing.iter().position(|f| f.kind == kind)?;
        let failing = self.failing.swap_remove(at);
        Some(format!(
            "{}: {} failure{} over {}",
            failing.kind,
            failing.total,
            if failing.total == 1 { "" } else { "s" },
            whole_seconds(now.duration_since(failing.since).unwrap_or_default())
        ))
    }
}

/// `d` in whole seconds, or milliseconds below one second, for messages.
fn whole_seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_of_what_was_not_shown() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut log = OutageLog::new(Duration::from_secs(30));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(
            log.failed("campaign", "refused", at(0)).as_deref(),
            Some("refused")
        );
        // Five a second for a minute: two more lines, each with its count.
        let mut shown = Vec::new();
        for i in 1..300 {
            if let Some(line) = log.failed("campaign", "refused", at(i * 200)) {
                shown.push(line);
            }
        }
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(
            shown[0],
            "refused (still failing since 30s ago: 149 more like it not shown)"
        );
        // Another kind has its own line.
        assert!(log.failed("watch", "silent", at(59_000)).is_some());
        assert_eq!(
            log.recovered("campaign", at(60_000)).as_deref(),
            Some("campaign: 300 failures over 1m")
        );
        assert_eq!(log.recovered("campaign", at(61_000)), None);
        // After recovering, the next failure is shown at once.
        assert!(log.failed("campaign", "refused", at(62_000)).is_some());
    }
}

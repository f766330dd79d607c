//! The immediate rollback triggers (fail → [`Verdict::Rollback`](crate::judge::check::Verdict::Rollback)):
//! critical errors, memory growth, and the success and error rates over the
//! whole stage, over the recent window and, in guarded mode, sequentially
//! over whole minutes (see the module docs of
//! [`evaluator`](crate::judge::evaluator)).

use std::time::Duration;

use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::judge::judging::Judging;
use crate::judge::plan::Stage;
use crate::judge::sequential::{self, Minutes};
use crate::judge::stats::wilson;
use crate::judge::streak::history_reach;
use crate::judge::text::pct;
use crate::metrics::{Arm, History, MetricsSnapshot};

/// The rate trigger on the success rate (`success`) or the error rate, over
/// the whole stage (`window: None`) or the recent window.
fn rate_id(success: bool, window: Option<Duration>) -> CheckId {
    if success {
        CheckId::RollbackSuccessRate { window }
    } else {
        CheckId::RollbackErrorRate { window }
    }
}

impl Judging<'_> {
    /// Every rollback trigger, in a fixed order.
    pub(crate) fn rollback_triggers(
        &self,
        spec: &Stage,
        totals: &MetricsSnapshot,
        history: &History,
        minutes: &Minutes<'_>,
        checks: &mut Vec<Check>,
    ) {
        let t = &self.plan.triggers;

        // Critical uploads, and critical errors that were not an upload
        // (`MetricsAccumulator::record_critical`), with the latest reason.
        let arm = totals.arm(Arm::Async);
        let (uploads, events) = (arm.critical, arm.critical_events);
        let critical = uploads.saturating_add(events);
        let mut what = format!("critical errors on the async path = {critical}");
        if events > 0 {
            what.push_str(&format!(" ({uploads} uploads, {events} reported"));
            if let Some(reason) = arm.critical_reasons.last() {
                what.push_str(&format!(", latest: {reason:?}"));
            }
            what.push(')');
        }
        checks.push(Check::new(
            &CheckId::CriticalErrors,
            CheckStatus::fail_if(t.rollback_on_critical && critical > 0),
            Some(critical as f64),
            0.0,
            totals.judged(Arm::Async),
            if t.rollback_on_critical {
                format!("{what} (any rolls back)")
            } else {
                format!("{what} (trigger off)")
            },
        ));

        let growth = totals.memory_peak_growth();
        let limit = t.max_memory_growth;
        checks.push(Check::new(
            &CheckId::MemoryGrowth,
            match growth {
                None => CheckStatus::NotEnoughData,
                Some(g) if g > limit => CheckStatus::Fail,
                Some(_) => CheckStatus::Pass,
            },
            growth,
            limit,
            totals.judged(Arm::Async),
            match growth {
                None => "memory growth: no memory samples recorded".into(),
                Some(g) => format!(
                    "peak memory growth {} (rolls back above {})",
                    pct(g),
                    pct(limit)
                ),
            },
        ));

        let n = totals.judged(Arm::Async);
        let successes = totals.arm(Arm::Async).success;
        checks.push(self.rate_trigger(
            &rate_id(true, None),
            successes,
            n,
            t.min_success_rate,
            true,
        ));
        checks.push(self.rate_trigger(
            &rate_id(false, None),
            n - successes,
            n,
            t.max_error_rate,
            false,
        ));

        let recent_window = self.plan.evaluation.recent_window;
        match history.window(recent_window) {
            Some(window) => {
                let n = window.judged(Arm::Async);
                let successes = window.arm(Arm::Async).success;
                checks.push(self.rate_trigger(
                    &rate_id(true, Some(recent_window)),
                    successes,
                    n,
                    t.min_success_rate,
                    true,
                ));
                checks.push(self.rate_trigger(
                    &rate_id(false, Some(recent_window)),
                    n - successes,
                    n,
                    t.max_error_rate,
                    false,
                ));
            }
            None => {
                // Said, not silently left out: early in a stage the stage
                // view covers the same uploads.
                let reach = history_reach(history);
                for (success, threshold, rule) in [
                    (
                        true,
                        t.min_success_rate,
                        format!("success_rate < {} rolls back", pct(t.min_success_rate)),
                    ),
                    (
                        false,
                        t.max_error_rate,
                        format!("error_rate > {} rolls back", pct(t.max_error_rate)),
                    ),
                ] {
                    checks.push(Check::new(
                        &rate_id(success, Some(recent_window)),
                        CheckStatus::NotEnoughData,
                        None,
                        threshold,
                        0,
                        format!(
                            "{rule}: the history reaches back {} of the {}; the stage view covers it",
                            humantime::format_duration(reach),
                            humantime::format_duration(recent_window)
                        ),
                    ));
                }
            }
        }

        if self.guarded() {
            for (absolute, baseline, trigger) in [
                (
                    CheckId::RollbackSuccessSequential,
                    CheckId::RollbackSuccessBaseline,
                    1.0 - t.min_success_rate,
                ),
                (
                    CheckId::RollbackErrorSequential,
                    CheckId::RollbackErrorBaseline,
                    t.max_error_rate,
                ),
            ] {
                checks.push(sequential::absolute_check(
                    self.plan, &absolute, trigger, minutes,
                ));
                checks.push(sequential::baseline_check(
                    self.plan, spec, &baseline, trigger, totals, minutes,
                ));
            }
        }
    }

    /// An immediate trigger on a rate. `fires_below`: the trigger is "rate
    /// below threshold" (else "rate above threshold").
    fn rate_trigger(
        &self,
        id: &CheckId,
        count: u64,
        n: u64,
        threshold: f64,
        fires_below: bool,
    ) -> Check {
        let min = self.plan.triggers.min_uploads;
        let observed = (n > 0).then(|| count as f64 / n as f64);
        let interval = wilson(count, n, self.z_rollback);
        let rate = match id {
            CheckId::RollbackSuccessRate { .. } => "success_rate",
            _ => "error_rate",
        };
        let rule = format!(
            "{rate} {} {} rolls back",
            if fires_below { "<" } else { ">" },
            pct(threshold)
        );
        let (status, detail) = match (observed, interval) {
            (Some(p), Some(i)) if n >= min => {
                let fired = match (self.guarded(), fires_below) {
                    (false, true) => p < threshold,
                    (false, false) => p > threshold,
                    // Guarded: the whole interval must be on the bad side.
                    (true, true) => i.high < threshold,
                    (true, false) => i.low > threshold,
                };
                let mut detail = format!("{rule}: observed {} over {n} async uploads", pct(p));
                if self.guarded() {
                    detail.push_str(&format!(", interval [{}, {}]", pct(i.low), pct(i.high)));
                }
                (CheckStatus::fail_if(fired), detail)
            }
            _ => (
                CheckStatus::NotEnoughData,
                format!("{rule}: {n} async uploads, fires from {min}"),
            ),
        };
        Check::new(id, status, observed, threshold, n, detail).with_interval(if self.guarded() {
            interval
        } else {
            None
        })
    }
}

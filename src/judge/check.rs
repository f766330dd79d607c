//! The result model of a judgement: a [`Verdict`] and the [`Check`]s behind
//! it, gathered in an [`Evaluation`].
//!
//! A check knows what it is ([`CheckId`]: which rule, on which window) and
//! what its numbers are ([`Unit`]: a count, a fraction, minutes or a
//! likelihood ratio). Its `name` in the log is the identity's text, exactly
//! as earlier versions wrote it (the log schema is a compatibility promise):
//! [`CheckId`]'s `Display` writes it and [`CheckId::parse`] reads it back.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decide::percent::Percent;
use crate::judge::stats::Interval;

/// What to do with a stage, most severe first in [`Ord`] terms reversed:
/// `Rollback > ManualReview > Hold > Advance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every criterion holds with enough data: the stage may move on.
    Advance,
    /// Keep the stage running: a criterion is not met yet or there is too little data.
    Hold,
    /// Stop advancing and ask a person (a sustained or soft signal).
    ManualReview,
    /// Roll back now.
    Rollback,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Advance => "advance",
            Verdict::Hold => "hold",
            Verdict::ManualReview => "manual review",
            Verdict::Rollback => "rollback",
        })
    }
}

/// What a failing check leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A stage criterion: failing (or lacking data) holds the stage.
    Criterion,
    /// A manual-review trigger.
    Review,
    /// An immediate rollback trigger.
    Rollback,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check holds: a criterion is met, or a trigger did not fire.
    Pass,
    /// A criterion is not met, or a trigger fired.
    Fail,
    /// Too little data to say; for a criterion this holds the stage.
    NotEnoughData,
}

impl CheckStatus {
    /// [`Fail`](CheckStatus::Fail) when a criterion is not met or a trigger
    /// `fired`, else [`Pass`](CheckStatus::Pass).
    pub(crate) const fn fail_if(fired: bool) -> CheckStatus {
        if fired {
            CheckStatus::Fail
        } else {
            CheckStatus::Pass
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "FAIL",
            CheckStatus::NotEnoughData => "not enough data",
        })
    }
}

/// What a check's observed value and threshold measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A count of uploads or errors.
    Count,
    /// A rate, ratio or growth: `0.99` is 99%.
    Fraction,
    /// Minutes a sustained condition has held (literal mode's streaks).
    Minutes,
    /// A likelihood ratio (the sequential checks), held as its natural log.
    LikelihoodRatio,
}

/// Which rule a check applies, to which window: a check's identity.
///
/// Its `Display` is the check's `name` in the log and in the CLI's tables
/// (`uploads`, `rollback.error_rate[last 30m]`, …), unchanged from earlier
/// versions; [`CheckId::parse`] reads a name back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckId {
    /// `uploads`: the stage's async uploads against the criterion's minimum.
    Uploads,
    /// `success_rate`: the stage's async success rate against its target.
    SuccessRate,
    /// `error_rate`: the stage's async error rate against its target.
    ErrorRate,
    /// `latency_ratio`: the stage's async / sync latency ratio.
    LatencyRatio,
    /// `rollback.critical_errors`: critical errors on the async path.
    CriticalErrors,
    /// `rollback.memory_growth`: peak memory growth.
    MemoryGrowth,
    /// `rollback.success_rate[stage]` (`window: None`: the stage's totals)
    /// or `rollback.success_rate[last 30m]` (the recent window).
    RollbackSuccessRate {
        /// The recent window, or `None` for the whole stage.
        window: Option<Duration>,
    },
    /// `rollback.error_rate[stage]` or `rollback.error_rate[last 30m]`.
    RollbackErrorRate {
        /// The recent window, or `None` for the whole stage.
        window: Option<Duration>,
    },
    /// `rollback.success_rate[sequential]`: sequential evidence against the
    /// trigger over whole minutes.
    RollbackSuccessSequential,
    /// `rollback.error_rate[sequential]`.
    RollbackErrorSequential,
    /// `rollback.success_rate[sequential, baseline]`: sequential evidence
    /// against the path's own clean history.
    RollbackSuccessBaseline,
    /// `rollback.error_rate[sequential, baseline]`.
    RollbackErrorBaseline,
    /// `review.success_rate_in_band`: literal mode's streak of windows with
    /// the success rate in the review band.
    BandSustained,
    /// `review.success_rate_in_band[sequential]`: sliding windows of whole
    /// minutes (guarded mode).
    BandSequential,
    /// `review.success_rate_in_band[sequential, stage]`: the stage as a
    /// whole, at any time (guarded mode).
    BandStageSequential,
    /// `review.success_rate_in_band[stage at 1h]`: one look at the stage
    /// as a whole (guarded mode).
    BandLook {
        /// How far into the stage the look is.
        at: Duration,
    },
    /// `review.latency_ratio`: literal mode's streak of windows with the
    /// latency ratio above the review ratio.
    LatencySustained,
    /// `review.latency_ratio[last 30m]`: the latency ratio over the
    /// sustained span as a whole (guarded mode).
    LatencyReview {
        /// The span judged.
        span: Duration,
    },
    /// `review.complaints`: complaints per upload, async against sync.
    Complaints,
}

impl CheckId {
    /// What a failing check of this identity leads to.
    #[must_use]
    pub fn kind(&self) -> CheckKind {
        use CheckId::*;
        match self {
            Uploads | SuccessRate | ErrorRate | LatencyRatio => CheckKind::Criterion,
            CriticalErrors
            | MemoryGrowth
            | RollbackSuccessRate { .. }
            | RollbackErrorRate { .. }
            | RollbackSuccessSequential
            | RollbackErrorSequential
            | RollbackSuccessBaseline
            | RollbackErrorBaseline => CheckKind::Rollback,
            BandSustained
            | BandSequential
            | BandStageSequential
            | BandLook { .. }
            | LatencySustained
            | LatencyReview { .. }
            | Complaints => CheckKind::Review,
        }
    }

    /// What the check's observed value and threshold measure.
    #[must_use]
    pub fn unit(&self) -> Unit {
        use CheckId::*;
        match self {
            Uploads | CriticalErrors => Unit::Count,
            BandSustained | LatencySustained => Unit::Minutes,
            RollbackSuccessSequential
            | RollbackErrorSequential
            | RollbackSuccessBaseline
            | RollbackErrorBaseline
            | BandSequential
            | BandStageSequential => Unit::LikelihoodRatio,
            SuccessRate
            | ErrorRate
            | LatencyRatio
            | MemoryGrowth
            | RollbackSuccessRate { .. }
            | RollbackErrorRate { .. }
            | BandLook { .. }
            | LatencyReview { .. }
            | Complaints => Unit::Fraction,
        }
    }

    /// The identity whose name is `name`, or `None` for a name this version
    /// does not write (a log from another version).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_upload_rollout::judge::{CheckId, Unit};
    ///
    /// let id = CheckId::parse("rollback.error_rate[last 30m]").unwrap();
    /// assert_eq!(id, CheckId::RollbackErrorRate { window: Some(Duration::from_secs(1800)) });
    /// assert_eq!(id.to_string(), "rollback.error_rate[last 30m]");
    /// assert_eq!(id.unit(), Unit::Fraction);
    /// assert_eq!(CheckId::parse("no.such_check"), None);
    /// ```
    #[must_use]
    pub fn parse(name: &str) -> Option<CheckId> {
        use CheckId::*;
        let (base, label) = match name.split_once('[') {
            Some((base, rest)) => (base, Some(rest.strip_suffix(']')?)),
            None => (name, None),
        };
        let id = match (base, label) {
            ("uploads", None) => Uploads,
            ("success_rate", None) => SuccessRate,
            ("error_rate", None) => ErrorRate,
            ("latency_ratio", None) => LatencyRatio,
            ("rollback.critical_errors", None) => CriticalErrors,
            ("rollback.memory_growth", None) => MemoryGrowth,
            ("rollback.success_rate", Some("sequential")) => RollbackSuccessSequential,
            ("rollback.error_rate", Some("sequential")) => RollbackErrorSequential,
            ("rollback.success_rate", Some("sequential, baseline")) => RollbackSuccessBaseline,
            ("rollback.error_rate", Some("sequential, baseline")) => RollbackErrorBaseline,
            ("rollback.success_rate", Some(window)) => RollbackSuccessRate {
                window: parse_window(window)?,
            },
            ("rollback.error_rate", Some(window)) => RollbackErrorRate {
                window: parse_window(window)?,
            },
            ("review.success_rate_in_band", None) => BandSustained,
            ("review.success_rate_in_band", Some("sequential")) => BandSequential,
            ("review.success_rate_in_band", Some("sequential, stage")) => BandStageSequential,
            ("review.success_rate_in_band", Some(look)) => BandLook {
                at: parse_duration(look.strip_prefix("stage at ")?)?,
            },
            ("review.latency_ratio", None) => LatencySustained,
            ("review.latency_ratio", Some(span)) => LatencyReview {
                span: parse_duration(span.strip_prefix("last ")?)?,
            },
            ("review.complaints", None) => Complaints,
            _ => return None,
        };
        // One identity, one name: `30min` is not the name of `30m`.
        Some(id).filter(|id| id.to_string() == name)
    }
}

/// `stage` (the whole stage) or `last 30m`.
fn parse_window(label: &str) -> Option<Option<Duration>> {
    if label == "stage" {
        return Some(None);
    }
    parse_duration(label.strip_prefix("last ")?).map(Some)
}

fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok()
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckId::*;
        let window =
            |f: &mut fmt::Formatter<'_>, base: &str, window: &Option<Duration>| match window {
                None => write!(f, "{base}[stage]"),
                Some(w) => write!(f, "{base}[last {}]", humantime::format_duration(*w)),
            };
        match self {
            Uploads => f.write_str("uploads"),
            SuccessRate => f.write_str("success_rate"),
            ErrorRate => f.write_str("error_rate"),
            LatencyRatio => f.write_str("latency_ratio"),
            CriticalErrors => f.write_str("rollback.critical_errors"),
            MemoryGrowth => f.write_str("rollback.memory_growth"),
            RollbackSuccessRate { window: w } => window(f, "rollback.success_rate", w),
            RollbackErrorRate { window: w } => window(f, "rollback.error_rate", w),
            RollbackSuccessSequential => f.write_str("rollback.success_rate[sequential]"),
            RollbackErrorSequential => f.write_str("rollback.error_rate[sequential]"),
            RollbackSuccessBaseline => f.write_str("rollback.success_rate[sequential, baseline]"),
            RollbackErrorBaseline => f.write_str("rollback.error_rate[sequential, baseline]"),
            BandSustained => f.write_str("review.success_rate_in_band"),
            BandSequential => f.write_str("review.success_rate_in_band[sequential]"),
            BandStageSequential => f.write_str("review.success_rate_in_band[sequential, stage]"),
            BandLook { at } => write!(
                f,
                "review.success_rate_in_band[stage at {}]",
                humantime::format_duration(*at)
            ),
            LatencySustained => f.write_str("review.latency_ratio"),
            LatencyReview { span } => write!(
                f,
                "review.latency_ratio[last {}]",
                humantime::format_duration(*span)
            ),
            Complaints => f.write_str("review.complaints"),
        }
    }
}

/// One rule applied to one window of data.
///
/// Built with [`Check::new`] from its [`CheckId`]; the fields are what the
/// log holds (`name` is the identity's text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked, e.g. `success_rate` or `rollback.error_rate[last 30m]`
    /// (the text of its [`CheckId`]).
    pub name: String,
    /// What a failure leads to.
    pub kind: CheckKind,
    /// Pass, fail, or not enough data.
    pub status: CheckStatus,
    /// The observed value (a rate, ratio, count or growth; for a
    /// `[sequential]` check the natural log of its likelihood ratio; for a
    /// literal sustained check the minutes it has held), when there is one:
    /// see [`Check::unit`].
    pub observed: Option<f64>,
    /// The threshold it was compared with (in the same unit as `observed`).
    pub threshold: f64,
    /// The confidence interval behind a guarded decision on a rate or a
    /// latency ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// How many async uploads the observation rests on.
    pub sample_size: u64,
    /// A sentence for people: the rule and, when not passing, why.
    pub detail: String,
}

impl Check {
    /// The check `id` with its outcome; its kind follows from `id`
    /// ([`CheckId::kind`]), and it has no interval (see
    /// [`with_interval`](Self::with_interval)).
    #[must_use]
    pub fn new(
        id: &CheckId,
        status: CheckStatus,
        observed: Option<f64>,
        threshold: f64,
        sample_size: u64,
        detail: String,
    ) -> Check {
        Check {
            name: id.to_string(),
            kind: id.kind(),
            status,
            observed,
            threshold,
            interval: None,
            sample_size,
            detail,
        }
    }

    /// The same check with `interval` as its confidence interval.
    #[must_use]
    pub fn with_interval(mut self, interval: Option<Interval>) -> Check {
        self.interval = interval;
        self
    }

    /// The check's identity, read from its name; `None` for a name this
    /// version does not write.
    #[must_use]
    pub fn id(&self) -> Option<CheckId> {
        CheckId::parse(&self.name)
    }

    /// Whether this is the check `id`.
    #[must_use]
    pub fn is(&self, id: &CheckId) -> bool {
        self.id().as_ref() == Some(id)
    }

    /// What the observed value and the threshold measure (a fraction for a
    /// check this version does not know).
    #[must_use]
    pub fn unit(&self) -> Unit {
        self.id().map_or(Unit::Fraction, |id| id.unit())
    }
}

/// A verdict with everything behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The most severe outcome of the checks.
    pub verdict: Verdict,
    /// One line: the checks that decided the verdict.
    pub reason: String,
    /// Index of the stage in the plan.
    pub stage: usize,
    /// The stage's percent.
    pub percent: Percent,
    /// When it was evaluated, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Evaluation {
    /// The checks that did not pass.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status != CheckStatus::Pass)
    }

    /// The check called `name`, if present.
    #[must_use]
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The most severe outcome of `checks` (`Hold` when there are none).
pub(crate) fn verdict_of(checks: &[Check]) -> Verdict {
    checks
        .iter()
        .map(|c| match (c.kind, c.status) {
            (_, CheckStatus::Pass) => Verdict::Advance,
            (CheckKind::Criterion, _) => Verdict::Hold,
            (CheckKind::Review, CheckStatus::Fail) => Verdict::ManualReview,
            (CheckKind::Rollback, CheckStatus::Fail) => Verdict::Rollback,
            // Missing data never fires a trigger.
            (CheckKind::Review | CheckKind::Rollback, CheckStatus::NotEnoughData) => {
                Verdict::Advance
            }
        })
        .max()
        .unwrap_or(Verdict::Hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every identity's name reads back as the same identity, with the kind
    /// and unit the name always implied.
    #[test]
    fn names_round_trip_with_their_kind_and_unit() {
        use CheckId::*;
        let min = |m: u64| Duration::from_secs(60 * m);
        let cases = [
            (Uploads, "uploads", CheckKind::Criterion, Unit::Count),
            (
                SuccessRate,
                "success_rate",
                CheckKind::Criterion,
                Unit::Fraction,
            ),
            (
                ErrorRate,
                "error_rate",
                CheckKind::Criterion,
                Unit::Fraction,
            ),
            (
                LatencyRatio,
                "latency_ratio",
                CheckKind::Criterion,
                Unit::Fraction,
            ),
            (
                CriticalErrors,
                "rollback.critical_errors",
                CheckKind::Rollback,
                Unit::Count,
            ),
            (
                MemoryGrowth,
                "rollback.memory_growth",
                CheckKind::Rollback,
                Unit::Fraction,
            ),
            (
                RollbackSuccessRate { window: None },
                "rollback.success_rate[stage]",
                CheckKind::Rollback,
                Unit::Fraction,
            ),
            (
                RollbackErrorRate {
                    window: Some(min(30)),
                },
                "rollback.error_rate[last 30m]",
                CheckKind::Rollback,
                Unit::Fraction,
            ),
            (
                RollbackSuccessSequential,
                "rollback.success_rate[sequential]",
                CheckKind::Rollback,
                Unit::LikelihoodRatio,
            ),
            (
                RollbackErrorBaseline,
                "rollback.error_rate[sequential, baseline]",
                CheckKind::Rollback,
                Unit::LikelihoodRatio,
            ),
            (
                BandSustained,
                "review.success_rate_in_band",
                CheckKind::Review,
                Unit::Minutes,
            ),
            (
                BandStageSequential,
                "review.success_rate_in_band[sequential, stage]",
                CheckKind::Review,
                Unit::LikelihoodRatio,
            ),
            (
                BandLook { at: min(90) },
                "review.success_rate_in_band[stage at 1h 30m]",
                CheckKind::Review,
                Unit::Fraction,
            ),
            (
                LatencySustained,
                "review.latency_ratio",
                CheckKind::Review,
                Unit::Minutes,
            ),
            (
                LatencyReview { span: min(30) },
                "review.latency_ratio[last 30m]",
                CheckKind::Review,
                Unit::Fraction,
            ),
            (
                Complaints,
                "review.complaints",
                CheckKind::Review,
                Unit::Fraction,
            ),
        ];
        for (id, name, kind, unit) in cases {
            assert_eq!(id.to_string(), name);
            assert_eq!(CheckId::parse(name), Some(id.clone()), "{name}");
            assert_eq!((id.kind(), id.unit()), (kind, unit), "{name}");
        }
        for name in [
            "",
            "uploads[stage]",
            "rollback.error_rate[last 30min]",
            "rollback.error_rate[last 30m",
            "review.latency_ratio[last]",
            "review.success_rate_in_band[stage at]",
        ] {
            assert_eq!(CheckId::parse(name), None, "{name}");
        }
    }
}

//! [`RolloutPlan`]: the stages, their success criteria and the rollback triggers.
//!
//! The default plan is the week-2 operating plan: 1% → 10% → 50% → 100%.
//! A plan is plain data (serde) and loads from TOML or JSON; loading
//! validates every number and names the offending field.
//!
//! One concept in one file of about 936 lines (334 docs): the plan is one
//! schema; a third of the file documents each setting's default and why.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decide::percent::Percent;

/// The whole rollout: ordered stages, rollback triggers, and how to judge.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::{RolloutPlan, judge::EvaluationMode};
///
/// let plan = RolloutPlan::default();
/// assert_eq!(plan.stages.len(), 4);
/// assert_eq!(plan.stages[1].percent.to_string(), "10%");
/// assert_eq!(plan.stages[1].criteria.min_uploads, 500);
/// assert_eq!(plan.evaluation.mode, EvaluationMode::Guarded);
///
/// // Plans load from TOML or JSON; omitted sections keep their defaults.
/// let plan = RolloutPlan::from_toml_str(r#"
///     [evaluation]
///     mode = "literal"
///
///     [[stages]]
///     percent = 5
///     criteria = { min_success_rate = 0.99, max_error_rate = 0.01, max_latency_ratio = 1.05, min_uploads = 300 }
///
///     [[stages]]
///     percent = 100
/// "#)?;
/// assert_eq!(plan.stages.len(), 2);
/// # Ok::<(), async_upload_rollout::judge::PlanError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// How rates are judged (literal or statistically guarded).
    #[serde(default)]
    pub evaluation: EvaluationSettings,
    /// When to roll back at once or ask a person.
    #[serde(default)]
    pub triggers: RollbackTriggers,
    /// The stages, in increasing percent. The last one is where the rollout ends.
    pub stages: Vec<Stage>,
}

/// One step of the rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Share of uploads on the async path during this stage.
    pub percent: Percent,
    /// What must hold before moving on from this stage.
    #[serde(default)]
    pub criteria: StageCriteria,
}

/// What must hold before a stage may advance.
///
/// Rates are fractions (`0.99` is 99%). Success and error rates are those of
/// the async path over the whole stage (see
/// [`MetricsSnapshot::success_rate`](crate::MetricsSnapshot::success_rate));
/// the latency ratio is the async path's `latency_statistic` divided by the
/// sync path's, both measured over the same stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageCriteria {
    /// Lowest acceptable success rate of the async path.
    pub min_success_rate: f64,
    /// Highest acceptable error rate of the async path (errors and critical errors).
    pub max_error_rate: f64,
    /// Highest acceptable async / sync latency ratio (`1.05` is 105% of baseline).
    ///
    /// With a quantile [`latency_statistic`](Self::latency_statistic) each
    /// arm's quantile is within 1/256 of its exact value, so the observed
    /// ratio is within 2/255 ≈ 0.78% of the exact one (see
    /// [`LatencyStatistic`]). A threshold of `1.02` therefore passes every
    /// exact ratio up to 1.02 · 255/257 ≈ 1.012 and fails every exact ratio
    /// above 1.02 · 257/255 ≈ 1.028; in between, the verdict depends on where
    /// the two quantiles fall in their buckets. With
    /// [`LatencyStatistic::Mean`] the ratio is exact.
    pub max_latency_ratio: f64,
    /// Fewest async uploads with a verdict (success, error or critical) before
    /// the stage can be judged at all.
    pub min_uploads: u64,
    /// Which latency to compare: the mean or a quantile (default `p50`).
    pub latency_statistic: LatencyStatistic,
    /// Shortest time the stage runs before it may advance.
    #[serde(with = "duration_text")]
    pub min_duration: Duration,
    /// A fixed latency baseline (e.g. `"180ms"`) to compare the async path
    /// with, instead of the sync path measured in the same window. Needed
    /// where no sync traffic is left (the 100% stage); otherwise leave it
    /// unset: a baseline measured alongside follows the day's load, a
    /// fixed number goes stale.
    #[serde(
        default,
        with = "optional_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub baseline_latency: Option<Duration>,
}

impl Default for StageCriteria {
    /// The 10% stage of the week-2 plan.
    fn default() -> StageCriteria {
        StageCriteria {
            min_success_rate: 0.99,
            max_error_rate: 0.01,
            max_latency_ratio: 1.05,
            min_uploads: 500,
            latency_statistic: LatencyStatistic::default(),
            min_duration: Duration::from_secs(60 * 60),
            baseline_latency: None,
        }
    }
}

/// When to roll back at once, and when to ask a person.
///
/// Immediate triggers roll back within one tick; manual-review triggers stop
/// automatic advancing and ask an operator to look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackTriggers {
    /// Roll back when the async success rate is below this (plan: 95%).
    pub min_success_rate: f64,
    /// Roll back when the async error rate is above this (plan: 5%).
    pub max_error_rate: f64,
    /// Roll back on any `Critical` outcome on the async path (plan: critical system errors).
    pub rollback_on_critical: bool,
    /// Roll back when process memory (peak) grows more than this over its
    /// baseline (plan: spikes > 20%).
    pub max_memory_growth: f64,
    /// Rate triggers need at least this many async uploads with a verdict.
    /// In `literal` mode 0 means the plan's rules exactly, checked from the
    /// first upload; `guarded` mode never fires below it either.
    pub min_uploads: u64,
    /// Ask for review when the async success rate stays in this band
    /// `[low, high]` (plan: 95–97%)...
    pub review_success_band: [f64; 2],
    /// ...for at least this long (plan: 30 minutes).
    #[serde(with = "duration_text")]
    pub review_success_sustained: Duration,
    /// Ask for review when the async / sync latency ratio stays above this
    /// (plan: 120% of baseline)...
    pub review_latency_ratio: f64,
    /// ...for at least this long ("consistently": 30 minutes by default).
    #[serde(with = "duration_text")]
    pub review_latency_sustained: Duration,
    /// Ask for review when complaints per upload on the async path exceed the
    /// sync path's (plan: user complaint rate increase).
    pub review_on_more_complaints: bool,
}

impl Default for RollbackTriggers {
    /// The week-2 plan's triggers.
    fn default() -> RollbackTriggers {
        RollbackTriggers {
            min_success_rate: 0.95,
            max_error_rate: 0.05,
            rollback_on_critical: true,
            max_memory_growth: 0.20,
            min_uploads: 20,
            review_success_band: [0.95, 0.97],
            review_success_sustained: Duration::from_secs(30 * 60),
            review_latency_ratio: 1.20,
            review_latency_sustained: Duration::from_secs(30 * 60),
            review_on_more_complaints: true,
        }
    }
}

/// How the evaluator turns counts into verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSettings {
    /// `guarded` (default) or `literal`.
    pub mode: EvaluationMode,
    /// Confidence of the two-sided Wilson score interval used by `guarded`
    /// mode (default 0.95).
    pub confidence: f64,
    /// In `guarded` mode a stage advances when the observed success rate
    /// meets `min_success_rate` **and** the interval's lower bound is at
    /// least `min_success_rate - advance_tolerance` (likewise for the error
    /// rate's upper bound). Default 0.005 (half a percentage point).
    pub advance_tolerance: f64,
    /// Length of the recent window on which the immediate rate triggers are
    /// also judged with a Wilson interval (default 30 minutes), beside the
    /// whole stage and the sequential check
    /// ([`rollback_evidence`](Self::rollback_evidence)). While the history
    /// does not reach back that far the check says so (not enough data) and
    /// the stage view covers the same uploads.
    #[serde(with = "duration_text")]
    pub recent_window: Duration,
    /// `literal` mode only: the length of the windows that sustained
    /// (manual-review) conditions are checked on, one ending at each kept
    /// snapshot (default 5 minutes). `guarded` mode judges a sustained
    /// condition on its whole window instead (see
    /// [`review_evidence`](Self::review_evidence)).
    #[serde(with = "duration_text")]
    pub sustain_window: Duration,
    /// Fewest async uploads a window needs before a sustained condition is
    /// judged on it (default 20); in `literal` mode a sub-window with fewer
    /// breaks the streak.
    pub sustain_min_uploads: u64,
    /// In `guarded` mode, the complaint trigger fires when the always-valid
    /// evidence ratio ([`mixture_likelihood_ratio`](crate::judge::stats::mixture_likelihood_ratio))
    /// that the async path draws more complaints per upload reaches
    /// `1 / complaint_significance`, with at least 5 async complaints. The
    /// chance that equal complaint rates ever fire it, over the whole stage
    /// and however often it is checked, is at most this (default 0.005 per
    /// stage, so at most 1% over the 10% and 50% stages together). A
    /// fixed-sample test repeated on every tick fires far more often: at a
    /// p-value of 0.001 it sent 4 of 300 healthy simulated rollouts to review.
    pub complaint_significance: f64,
    /// In `guarded` mode, the confidence of the two-sided Wilson intervals
    /// of the **interval** rate triggers (on the stage's totals and on the
    /// recent window): they roll back when the whole interval is on the bad
    /// side of the trigger (default 0.9999).
    ///
    /// These triggers are tested again on every tick. At 95% they rolled
    /// back 4–5% of paths at 96% success (the review band) in their first
    /// minutes, when a handful of early failures make a wide interval clear
    /// 5%: a path the plan sends to review, not back. At 99.9% they still
    /// did so in 0.48% of simulated 10% stages at 12 async uploads a minute
    /// (29 of 6,000), at 99.99% in 0.17% (10 of 6,000). They act on
    /// overwhelming evidence only, and the sequential checks judge the rest.
    pub rollback_confidence: f64,
    /// In `guarded` mode, the likelihood ratio at which the **absolute**
    /// sequential rate triggers roll back (default 10,000,000, about
    /// `e^16.1`).
    ///
    /// For each rate trigger (success below 95%, errors above 5%: a failure
    /// rate `f` = 5%) a CUSUM of the log-likelihood ratio of the failure
    /// rate being `2f` against a rate `p₀` is kept over whole minutes of the
    /// stage's history, `p₀` chosen so that its drift is zero exactly at
    /// `f`: each failure adds `ln(2f/p₀)` (1.62), each success subtracts
    /// `ln((1−p₀)/(1−2f))` (0.085), and it fires when the most telling
    /// window ending at the latest whole minute reaches
    /// `ln(rollback_evidence)`. It needs no history: it is the rule from a
    /// stage's first minutes, and for a path whose history is not clean
    /// (see [`baseline_evidence`](Self::baseline_evidence)). `p₀` is 1.97%
    /// (98% success), so this bar spends the budget of paths at 98%: `docs/decision-quality.md`
    /// gives its false-alarm rate per stage, measured beside the exact bound,
    /// and its speed.
    ///
    /// The bar is set by the paths just inside the review band, not by the
    /// 98% budget alone: at 96% success the drift is only −0.017 per upload,
    /// so a run of failures reaches a low bar before the band review has
    /// had its hour. At 2,000,000 (`e^14.5`) this check rolled back 1.1% of
    /// 96% paths before their review (66 of 6,000 simulated 10% stages at 12
    /// async uploads a minute), at 10,000,000 0.45% (27 of 6,000). The
    /// price is 1.6 more nats: a path at 10% errors from a stage's first
    /// upload is rolled back after a median of about 200 async uploads
    /// instead of 175. A step after a clean history is judged by the
    /// baseline-aware check, which this bar does not slow.
    pub rollback_evidence: f64,
    /// In `guarded` mode, the likelihood ratio at which the **baseline-aware**
    /// sequential rate triggers roll back (default 60,000, about `e^11`).
    ///
    /// A path that has run clean tells what it normally does: for each whole
    /// minute `s` of the stage's history whose stage data *before* `s`
    /// spans at least [`baseline_span`](Self::baseline_span) and meets the
    /// stage's own error criterion (failures at most
    /// [`max_error_rate`](crate::judge::StageCriteria::max_error_rate), success at
    /// least [`min_success_rate`](crate::judge::StageCriteria::min_success_rate)),
    /// the window from `s` to the latest whole minute is judged by the
    /// likelihood ratio of the failure rate being `2f` (the trigger's twice,
    /// 10%) against `p₀(s)`, the upper end of a one-standard-error Wilson
    /// interval around the failure rate before `s`. The largest ratio over
    /// those windows is compared with this bar. A step from 0.5% to 10%
    /// failures after hours of clean traffic adds about 3.0 per failure
    /// (`ln(10%/0.5%)`) instead of the absolute check's 1.62, so it is
    /// rolled back about twice as fast. The price: after a clean history,
    /// a step to more than about 3.2% failures (`p₀` = 0.5%) climbs too, so
    /// such a step is rolled back rather than left to the band review.
    pub baseline_evidence: f64,
    /// How long the stage's clean history before a window must span for the
    /// baseline-aware check to judge that window (default 30 minutes; see
    /// [`baseline_evidence`](Self::baseline_evidence)).
    #[serde(with = "duration_text")]
    pub baseline_span: Duration,
    /// In `guarded` mode, the likelihood ratio at which the sustained
    /// success-band review fires on sliding windows (default 100,000, about
    /// `e^11.5`).
    ///
    /// "Success in 95–97% for 30 minutes" is judged on windows of whole
    /// minutes, at least
    /// [`review_success_sustained`](RollbackTriggers::review_success_sustained)
    /// long, ending at the latest whole minute, each as a whole (at least
    /// [`sustain_min_uploads`](Self::sustain_min_uploads) async uploads): a
    /// CUSUM of the failure rate being the band's middle (4%) against a rate
    /// chosen so that its drift is zero at the band's top (3% failures). A
    /// path below the band's top climbs, one above it sinks. The windows
    /// catch a path that enters the band late in a stage; one in the band
    /// from the stage's start is caught sooner by the stage's looks
    /// ([`review_looks`](Self::review_looks)). The bar is high because the
    /// maximum over many windows is tested and because it spends the same
    /// budget as the looks: paths at 98% success.
    pub review_evidence: f64,
    /// In `guarded` mode, the likelihood ratio at which the success-band
    /// review fires on the **stage as a whole** at any time (default 3,000,
    /// about `e^8`).
    ///
    /// Beside the looks ([`review_looks`](Self::review_looks)) and the
    /// sliding windows of [`review_evidence`](Self::review_evidence), the
    /// stage's own totals (once they span
    /// [`review_success_sustained`](RollbackTriggers::review_success_sustained)
    /// and hold [`sustain_min_uploads`](Self::sustain_min_uploads) async
    /// uploads) are tested on every tick as one window: the likelihood ratio
    /// of the failure rate being the band's middle (4%) against its mirror
    /// image across the band's top (2% failures, 98% success). Only one
    /// window is tested, so by Ville's inequality a path at 98% success or
    /// better reaches the bar with probability at most
    /// `1 / review_stage_evidence` per stage (0.03%), however long the stage
    /// and however often it is checked. It catches a path in the band that
    /// both looks missed, and strong evidence between them.
    pub review_stage_evidence: f64,
    /// In `guarded` mode, the **looks** of the success-band review: at each
    /// `at` of a stage's run (default 1 hour and 3 hours), the stage's async
    /// uploads and failures up to then are tested once, exactly, against
    /// the band's mirror image across its top (2% failures, 98% success):
    /// review when the failures are so many that a path at 98% would show as
    /// many with probability at most `size` (a one-sided binomial test given
    /// the number of uploads; default sizes 0.75% and 0.05%).
    ///
    /// A look is the most powerful test of the data it sees
    /// (Neyman–Pearson), so the band's false-review budget (paths at 98%
    /// reviewed in at most 1% of stages, with everything else that stops
    /// them) is best spent where an answer is wanted: a path at 96% from
    /// the stage's start is reviewed within the hour in about three runs of
    /// four at 12 async uploads a minute, and within 3 hours in almost all.
    /// Each look's false-review probability for a path at 98% success (or
    /// better) is at most its `size`, at any traffic. The look judges the
    /// first kept snapshot at or after `at` (a whole minute of the stage);
    /// once the history no longer reaches back to it, that look says so.
    /// Each `at` must be at least
    /// [`review_success_sustained`](RollbackTriggers::review_success_sustained)
    /// (the plan's "for 30+ minutes").
    pub review_looks: Vec<ReviewLook>,
    /// In `guarded` mode the stage's latency criterion passes when the
    /// observed ratio meets `max_latency_ratio` **and** the upper end of its
    /// confidence interval (order-statistic bounds on each arm's quantile,
    /// see [`LatencyStatistic`]) is within this of it (default 0.02: at most
    /// 107% for a 105% criterion).
    pub latency_tolerance: f64,
    /// In `guarded` mode, the fewest async uploads the latency review's
    /// window needs before it is judged (default 200).
    ///
    /// The review looks at the same sliding window on every tick, so its
    /// interval is tested again and again: with a few dozen uploads a window
    /// (the 1% stage at 120 uploads a minute) a healthy path's median drifts
    /// past 120% by chance often enough that 6 of 30 healthy simulated
    /// week-2 rollouts were sent to review at 1%. At 200 uploads the median's
    /// noise (σ 0.5) is about 4.4% of it, so 120% is over 4 standard errors
    /// away; a climbing latency at 12 async uploads a minute (360 a window)
    /// is unaffected. Below the minimum the review says "not enough data";
    /// the stage's own latency criterion still guards every advance.
    pub review_latency_min_uploads: u64,
}

impl Default for EvaluationSettings {
    fn default() -> EvaluationSettings {
        EvaluationSettings {
            mode: EvaluationMode::Guarded,
            confidence: 0.95,
            advance_tolerance: 0.005,
            recent_window: Duration::from_secs(30 * 60),
            sustain_window: Duration::from_secs(5 * 60),
            sustain_min_uploads: 20,
            complaint_significance: 0.005,
            rollback_confidence: 0.9999,
            rollback_evidence: 10_000_000.0,
            baseline_evidence: 60_000.0,
            baseline_span: Duration::from_secs(30 * 60),
            review_evidence: 100_000.0,
            review_stage_evidence: 3_000.0,
            review_looks: vec![
                ReviewLook {
                    at: Duration::from_secs(60 * 60),
                    size: 0.01,
                },
                ReviewLook {
                    at: Duration::from_secs(3 * 60 * 60),
                    size: 0.0005,
                },
            ],
            latency_tolerance: 0.02,
            review_latency_min_uploads: 200,
        }
    }
}

/// One look of the success-band review at the stage as a whole (see
/// [`EvaluationSettings::review_looks`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLook {
    /// When, from the start of the stage's run (e.g. `"1h"`).
    #[serde(with = "duration_text")]
    pub at: Duration,
    /// The largest chance that a path at the band's mirror image (98%
    /// success for a 95–97% band) is reviewed at this look, in `(0, 1)`.
    pub size: f64,
}

/// How rate rules are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluationMode {
    /// The plan's rules on observed rates, exactly as written.
    Literal,
    /// Rates judged by a Wilson score interval: roll back only when the
    /// interval lies wholly on the bad side of a trigger; advance only when
    /// the observed rate meets the target and the interval is within the
    /// tolerance of it.
    #[default]
    Guarded,
}

/// Which latency figure the latency ratio compares.
///
/// Precision of the ratio `async / sync`: a quantile is read from the
/// [`LatencyHistogram`](crate::metrics::LatencyHistogram) and is within
/// [`RELATIVE_ERROR`](crate::metrics::LatencyHistogram::RELATIVE_ERROR) = `ε` = 1/256
/// (0.39%) of the exact nearest-rank value, so the ratio of two quantiles is
/// within a factor `[(1 − ε)/(1 + ε), (1 + ε)/(1 − ε)]` = `[255/257, 257/255]`
/// of the exact ratio: about ±0.78%. The mean is exact (sum and count are
/// exact), so its ratio is exact too.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatencyStatistic {
    /// The arithmetic mean.
    Mean,
    /// A quantile in `(0, 1)`: `p50` is `Quantile(0.5)`.
    Quantile(f64),
}

impl Default for LatencyStatistic {
    /// The median, `p50`: robust to the slow tail that dominates a mean.
    fn default() -> LatencyStatistic {
        LatencyStatistic::Quantile(0.5)
    }
}

impl fmt::Display for LatencyStatistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyStatistic::Mean => f.write_str("mean"),
            LatencyStatistic::Quantile(q) => write!(f, "p{}", q * 100.0),
        }
    }
}

impl FromStr for LatencyStatistic {
    type Err = String;

    /// `mean`, or `p` followed by a percentile strictly between 0 and 100 (`p50`, `p99.9`).
    fn from_str(s: &str) -> Result<LatencyStatistic, String> {
        if s == "mean" {
            return Ok(LatencyStatistic::Mean);
        }
        let percentile = s
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p > 0.0 && *p < 100.0);
        match percentile {
            Some(p) => Ok(LatencyStatistic::Quantile(p / 100.0)),
            None => Err(format!(
                "invalid latency statistic {s:?}: expected \"mean\" or a percentile such as \"p50\" or \"p99.9\""
            )),
        }
    }
}

impl Serialize for LatencyStatistic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LatencyStatistic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LatencyStatistic, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations as text: `"30m"`, `"1h 30m"`, `"90s"` (humantime's format).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|err| {
            serde::de::Error::custom(format_args!(
                "invalid duration {text:?}: {err} (expected e.g. \"30m\", \"1h 30m\", \"90s\")"
            ))
        })
    }
}

/// Optional durations as text; absent means `None`.
mod optional_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Text(#[serde(with = "super::duration_text")] Duration);
        Ok(Some(Text::deserialize(deserializer)?.0))
    }
}

/// A plan that could not be loaded or is not coherent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan file could not be read.
    #[error("cannot read plan file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a plan: bad syntax, an unknown field, a wrong type.
    /// The message names the field (and, for TOML, the line).
    #[error("invalid plan{}: {message}", origin.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    Parse {
        /// The file the text came from, when known.
        origin: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// The plan parses but a value is impossible.
    #[error("invalid plan{}: {field} = {value}: {problem}", origin.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    Invalid {
        /// The file the plan came from, when known.
        origin: Option<String>,
        /// The field, as a path: `stages[1].criteria.min_success_rate`.
        field: String,
        /// The offending value, as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl PlanError {
    fn with_origin(self, path: &Path) -> PlanError {
        let origin = Some(path.display().to_string());
        match self {
            PlanError::Parse { message, .. } => PlanError::Parse { origin, message },
            PlanError::Invalid {
                field,
                value,
                problem,
                ..
            } => PlanError::Invalid {
                origin,
                field,
                value,
                problem,
            },
            read @ PlanError::Read { .. } => read,
        }
    }
}

impl Default for RolloutPlan {
    /// The week-2 plan: 1% → 10% → 50% → 100%.
    ///
    /// 10% and 50% carry the plan's criteria. The plan gives none for 1%, so
    /// this one asks for the 10% stage's rates with 200 async uploads: at 1%
    /// traffic the stage is a smoke test of the new path, and 200 uploads are
    /// enough for the guarded evaluator to tell a healthy path (≥ 99%) from
    /// one below 97% while keeping the stage short. 100% is the end of the
    /// rollout; its criteria are the 50% stage's and its verdicts keep
    /// watching for regressions.
    fn default() -> RolloutPlan {
        let stage = |percent: u32,
                     min_success_rate: f64,
                     max_error_rate: f64,
                     max_latency_ratio: f64,
                     min_uploads: u64,
                     hours: u64| Stage {
            percent: Percent::from_whole(percent).expect("stage percents are at most 100"),
            criteria: StageCriteria {
                min_success_rate,
                max_error_rate,
                max_latency_ratio,
                min_uploads,
                latency_statistic: LatencyStatistic::default(),
                min_duration: Duration::from_secs(hours * 60 * 60),
                baseline_latency: None,
            },
        };
        RolloutPlan {
            evaluation: EvaluationSettings::default(),
            triggers: RollbackTriggers::default(),
            stages: vec![
                stage(1, 0.99, 0.01, 1.05, 200, 24),
                stage(10, 0.99, 0.01, 1.05, 500, 48),
                stage(50, 0.985, 0.015, 1.02, 2000, 72),
                stage(100, 0.985, 0.015, 1.02, 2000, 0),
            ],
        }
    }
}

impl RolloutPlan {
    /// Parses and validates a plan written in TOML.
    ///
    /// # Errors
    ///
    /// [`PlanError::Parse`] for syntax errors, unknown fields and wrong types;
    /// [`PlanError::Invalid`] for impossible values (see [`validate`](RolloutPlan::validate)).
    pub fn from_toml_str(text: &str) -> Result<RolloutPlan, PlanError> {
        let plan: RolloutPlan = toml::from_str(text).map_err(|err| PlanError::Parse {
            origin: None,
            message: err.to_string(),
        })?;
        plan.validate()?;
        Ok(plan)
    }

    /// Parses and validates a plan written in JSON.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](RolloutPlan::from_toml_str).
    pub fn from_json_str(text: &str) -> Result<RolloutPlan, PlanError> {
        let plan: RolloutPlan = serde_json::from_str(text).map_err(|err| PlanError::Parse {
            origin: None,
            message: err.to_string(),
        })?;
        plan.validate()?;
        Ok(plan)
    }

    /// Loads a plan file: JSON when the name ends in `.json`, TOML otherwise.
    ///
    /// # Errors
    ///
    /// [`PlanError::Read`] when the file cannot be read; otherwise as
    /// [`from_toml_str`](RolloutPlan::from_toml_str), with the file named.
    pub fn load(path: impl AsRef<Path>) -> Result<RolloutPlan, PlanError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            RolloutPlan::from_json_str(&text)
        } else {
            RolloutPlan::from_toml_str(&text)
        };
        parsed.map_err(|err| err.with_origin(path))
    }

    /// The plan as TOML (the format [`from_toml_str`](RolloutPlan::from_toml_str) reads).
    #[must_use]
    pub fn to_toml_string(&self) -> String {
        // Serializing plain structs of numbers, strings and arrays cannot fail.
        toml::to_string_pretty(self)
            .unwrap_or_else(|err| format!("# plan not serializable: {err}\n"))
    }

    /// Checks that every value is possible and that the plan is coherent.
    ///
    /// Rates must be within `[0, 1]`; latency ratios and the confidence
    /// finite and positive (confidence below 1); stage percents strictly
    /// increasing; the review band ordered; no stage may accept a success rate
    /// below the rollback floor or an error rate above the rollback ceiling;
    /// no stage may accept more latency than the review trigger.
    ///
    /// # Errors
    ///
    /// [`PlanError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), PlanError> {
        let invalid = |field: String, value: &dyn fmt::Display, problem: &str| PlanError::Invalid {
            origin: None,
            field,
            value: value.to_string(),
            problem: problem.to_owned(),
        };
        let rate = |field: &str, value: f64| -> Result<(), PlanError> {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    field.to_owned(),
                    &value,
                    "a rate must be between 0 and 1 (0.99 is 99%)",
                ))
            }
        };
        let positive = |field: &str, value: f64| -> Result<(), PlanError> {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(invalid(
                    field.to_owned(),
                    &value,
                    "must be a positive number",
                ))
            }
        };

        let e = &self.evaluation;
        for (field, value) in [
            ("evaluation.confidence", e.confidence),
            ("evaluation.rollback_confidence", e.rollback_confidence),
        ] {
            if !(value.is_finite() && value > 0.5 && value < 1.0) {
                return Err(invalid(
                    field.into(),
                    &value,
                    "must be between 0.5 and 1 (exclusive), e.g. 0.95",
                ));
            }
        }
        rate("evaluation.advance_tolerance", e.advance_tolerance)?;
        if !(e.complaint_significance > 0.0 && e.complaint_significance < 1.0) {
            return Err(invalid(
                "evaluation.complaint_significance".into(),
                &e.complaint_significance,
                "must be between 0 and 1 (exclusive), e.g. 0.01",
            ));
        }
        for (field, value) in [
            ("evaluation.rollback_evidence", e.rollback_evidence),
            ("evaluation.baseline_evidence", e.baseline_evidence),
            ("evaluation.review_evidence", e.review_evidence),
            ("evaluation.review_stage_evidence", e.review_stage_evidence),
        ] {
            if !(value.is_finite() && value > 1.0) {
                return Err(invalid(
                    field.into(),
                    &value,
                    "a likelihood ratio bar must be a finite number above 1, e.g. 1000",
                ));
            }
        }
        if !(e.latency_tolerance.is_finite() && e.latency_tolerance >= 0.0) {
            return Err(invalid(
                "evaluation.latency_tolerance".into(),
                &e.latency_tolerance,
                "must be a finite number of at least 0, e.g. 0.02",
            ));
        }
        for (field, value) in [
            ("evaluation.recent_window", e.recent_window),
            ("evaluation.sustain_window", e.sustain_window),
            ("evaluation.baseline_span", e.baseline_span),
        ] {
            if value.is_zero() {
                return Err(invalid(field.into(), &"0s", "must be longer than zero"));
            }
        }

        let t = &self.triggers;
        let mut spent = 0.0;
        let mut previous_look: Option<Duration> = None;
        for (i, look) in e.review_looks.iter().enumerate() {
            let field = |name: &str| format!("evaluation.review_looks[{i}].{name}");
            if !(look.size > 0.0 && look.size < 1.0) {
                return Err(invalid(
                    field("size"),
                    &look.size,
                    "a look's size is a probability between 0 and 1 (exclusive), e.g. 0.005",
                ));
            }
            spent += look.size;
            if look.at < t.review_success_sustained {
                return Err(invalid(
                    field("at"),
                    &humantime::format_duration(look.at),
                    &format!(
                        "a look comes after triggers.review_success_sustained ({}): the band must have held that long",
                        humantime::format_duration(t.review_success_sustained)
                    ),
                ));
            }
            if previous_look.is_some_and(|p| look.at <= p) {
                return Err(invalid(
                    field("at"),
                    &humantime::format_duration(look.at),
                    "looks must be in increasing order of time",
                ));
            }
            previous_look = Some(look.at);
        }
        if spent >= 1.0 {
            return Err(invalid(
                "evaluation.review_looks".into(),
                &spent,
                "the looks' sizes add up to 1 or more: every path would be reviewed",
            ));
        }
        rate("triggers.min_success_rate", t.min_success_rate)?;
        rate("triggers.max_error_rate", t.max_error_rate)?;
        positive("triggers.max_memory_growth", t.max_memory_growth)?;
        rate("triggers.review_success_band[0]", t.review_success_band[0])?;
        rate("triggers.review_success_band[1]", t.review_success_band[1])?;
        if t.review_success_band[0] > t.review_success_band[1] {
            return Err(invalid(
                "triggers.review_success_band".into(),
                &format!(
                    "[{}, {}]",
                    t.review_success_band[0], t.review_success_band[1]
                ),
                "the low end is above the high end",
            ));
        }
        positive("triggers.review_latency_ratio", t.review_latency_ratio)?;

        if self.stages.is_empty() {
            return Err(invalid(
                "stages".into(),
                &"[]",
                "a plan needs at least one stage",
            ));
        }
        let mut previous: Option<Percent> = None;
        for (i, stage) in self.stages.iter().enumerate() {
            let field = |name: &str| format!("stages[{i}].{name}");
            if let Some(prev) = previous
                && stage.percent <= prev
            {
                return Err(invalid(
                    field("percent"),
                    &stage.percent,
                    &format!("stage percents must increase; the stage before is at {prev}"),
                ));
            }
            previous = Some(stage.percent);
            let c = &stage.criteria;
            rate(&field("criteria.min_success_rate"), c.min_success_rate)?;
            rate(&field("criteria.max_error_rate"), c.max_error_rate)?;
            positive(&field("criteria.max_latency_ratio"), c.max_latency_ratio)?;
            if let LatencyStatistic::Quantile(q) = c.latency_statistic
                && !(q > 0.0 && q < 1.0)
            {
                return Err(invalid(
                    field("criteria.latency_statistic"),
                    &c.latency_statistic,
                    "a quantile must be strictly between 0 and 1",
                ));
            }
            if c.baseline_latency.is_some_and(|b| b.is_zero()) {
                return Err(invalid(
                    field("criteria.baseline_latency"),
                    &"0s",
                    "a latency baseline must be longer than zero",
                ));
            }
            if c.min_success_rate < t.min_success_rate {
                return Err(invalid(
                    field("criteria.min_success_rate"),
                    &c.min_success_rate,
                    &format!(
                        "is below triggers.min_success_rate ({}): the stage would accept a rate that rolls it back",
                        t.min_success_rate
                    ),
                ));
            }
            if c.max_error_rate > t.max_error_rate {
                return Err(invalid(
                    field("criteria.max_error_rate"),
                    &c.max_error_rate,
                    &format!(
                        "is above triggers.max_error_rate ({}): the stage would accept a rate that rolls it back",
                        t.max_error_rate
                    ),
                ));
            }
            if c.max_latency_ratio > t.review_latency_ratio {
                return Err(invalid(
                    field("criteria.max_latency_ratio"),
                    &c.max_latency_ratio,
                    &format!(
                        "is above triggers.review_latency_ratio ({}): the stage would accept a latency that needs review",
                        t.review_latency_ratio
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The stage running at `percent`, if the plan has one.
    #[must_use]
    pub fn stage_at(&self, percent: Percent) -> Option<usize> {
        self.stages
            .iter()
            .position(|stage| stage.percent == percent)
    }
}

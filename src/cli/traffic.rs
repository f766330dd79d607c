//! `async-upload-rollout plan --traffic RATE`: what each rollback trigger of
//! a plan can show at a service's traffic.
//!
//! The plan promises "immediate rollback (within 5 minutes)". Whether the
//! data can show a regression that fast depends on how many async uploads a
//! minute the stage sees; [`plan_at_traffic`] tells, per stage and rate
//! trigger:
//!
//! - the median and 99th-percentile time to roll back a step to twice the
//!   trigger's failure rate, from a healthy path, at a uniformly random
//!   minute of the stage, and the chance that it is within 5 minutes —
//!   **simulated** with the crate's own [`Evaluator`] on simulated minutes
//!   (Poisson async uploads, failures at a steady rate; the stage's hours
//!   before the last one are drawn in one piece, the rest minute by minute);
//! - the lowest traffic at which "within 5 minutes" holds in 99% of runs —
//!   **simulated** the same way, found by bisection;
//! - the false stops per stage of the sequential rollback checks for a
//!   healthy path and for a path just outside the trigger — **computed
//!   exactly** (the Markov chain of the checks' statistic on whole minutes,
//!   an upper bound; see the judge's `exact` module).
//!
//! # Examples
//!
//! ```
//! use async_upload_rollout::RolloutPlan;
//! use async_upload_rollout::cli::{TrafficOptions, plan_at_traffic, render_traffic};
//!
//! let rate = "120/min".parse()?;
//! let options = TrafficOptions { runs: 100, search_runs: 0, ..TrafficOptions::default() };
//! let report = plan_at_traffic(&RolloutPlan::default(), rate, &options);
//! let ten = &report.stages[1];
//! // 10% of 120 a minute, less the 0.2% the client rejects: 11.976 judged.
//! assert!((ten.async_per_minute - 11.976).abs() < 1e-9);
//! assert!(ten.triggers[0].within_5_min > 0.3);
//! println!("{}", render_traffic(&report));
//! # Ok::<(), async_upload_rollout::cli::InvalidTraffic>(())
//! ```
//!
//! One concept in one file of about 703 lines (30 of them its unit tests, 117
//! docs): the simulation and the exact bounds feed one report, read top to
//! bottom.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::act::simulation::SplitMix64;
use crate::judge::exact::minute_cusum_alarm_probability;
use crate::judge::plan::RolloutPlan;
use crate::judge::sequential::rollback_target;
use crate::judge::stats::Cusum;
use crate::judge::{Evaluator, Verdict};
use crate::metrics::{Arm, History, MetricsSnapshot};

/// The plan's promise for immediate rollback triggers.
pub const PLAN_ROLLBACK_WITHIN: Duration = Duration::from_secs(5 * 60);

/// A service's upload traffic, both paths together: `"120/min"`, `"2/s"`,
/// `"7200/h"`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Traffic {
    /// Uploads a minute.
    pub per_minute: f64,
}

/// A traffic rate that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid traffic {text:?}: {problem} (expected uploads per unit of time, e.g. 120/min, 2/s or 7200/h)"
)]
pub struct InvalidTraffic {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FromStr for Traffic {
    type Err = InvalidTraffic;

    fn from_str(text: &str) -> Result<Traffic, InvalidTraffic> {
        let invalid = |problem: &str| InvalidTraffic {
            text: text.to_owned(),
            problem: problem.to_owned(),
        };
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("no unit"))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| invalid("the count is not a number"))?;
        if !(count.is_finite() && count > 0.0) {
            return Err(invalid("the count must be a positive number"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => 60.0,
            "m" | "min" | "minute" => 1.0,
            "h" | "hour" => 1.0 / 60.0,
            "d" | "day" => 1.0 / 1440.0,
            _ => return Err(invalid("unknown unit: use s, min, h or d")),
        };
        let per_minute = count * per;
        if per_minute > 1e9 {
            return Err(invalid("more than a billion uploads a minute"));
        }
        Ok(Traffic { per_minute })
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} uploads a minute", number(self.per_minute))
    }
}

/// How hard [`plan_at_traffic`] works.
#[derive(Clone, Copy, Debug)]
pub struct TrafficOptions {
    /// Simulated runs behind each time-to-rollback figure (default 1,000).
    pub runs: usize,
    /// Simulated runs behind each step of the search for the lowest traffic
    /// (default 400; 0 skips the search).
    pub search_runs: usize,
    /// The healthy path's failure rate (default 0.5%).
    pub healthy: f64,
    /// Seed of the simulations: the same seed gives the same figures.
    pub seed: u64,
}

impl Default for TrafficOptions {
    fn default() -> TrafficOptions {
        TrafficOptions {
            runs: 1_000,
            search_runs: 400,
            healthy: 0.005,
            seed: 20_261_204,
        }
    }
}

/// What the plan's rollback triggers can show at one traffic.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficReport {
    /// The traffic, both paths together.
    pub traffic: Traffic,
    /// The healthy path's failure rate used throughout.
    pub healthy: f64,
    /// The time the plan promises ("within 5 minutes").
    #[serde(with = "seconds")]
    pub within: Duration,
    /// Runs behind each simulated time figure.
    pub runs: usize,
    /// How each trigger figure was made, as the text's `[simulated]` and
    /// `[exact]` say it.
    pub methods: Methods,
    /// Per stage of the plan.
    pub stages: Vec<StageReport>,
}

/// How each figure of a [`TriggerReport`] was made: `"simulated"` (the
/// crate's own [`Evaluator`] on simulated minutes) or `"exact"` (the Markov
/// chain of the sequential rollback checks, an upper bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Methods {
    /// [`TriggerReport::median`] and [`TriggerReport::p99`].
    pub time_to_rollback: &'static str,
    /// [`TriggerReport::within_5_min`].
    pub within_5_min: &'static str,
    /// [`TriggerReport::lowest_traffic_for_99`].
    pub lowest_traffic_for_99: &'static str,
    /// [`TriggerReport::false_stops_healthy`] and
    /// [`TriggerReport::false_stops_outside`].
    pub false_stops: &'static str,
}

/// The methods [`plan_at_traffic`] uses.
pub const METHODS: Methods = Methods {
    time_to_rollback: "simulated",
    within_5_min: "simulated",
    lowest_traffic_for_99: "simulated",
    false_stops: "exact",
};

/// One stage at the traffic.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// Index in the plan.
    pub stage: usize,
    /// Share of uploads on the async path, in percent.
    pub percent: f64,
    /// Judged async uploads a minute.
    pub async_per_minute: f64,
    /// The stretch of stage the false stops are counted over: its minimum
    /// duration, or a day for a stage without one.
    #[serde(with = "seconds")]
    pub horizon: Duration,
    /// One per distinct rate trigger.
    pub triggers: Vec<TriggerReport>,
}

/// One rate trigger of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerReport {
    /// Which of the plan's triggers: `"success < 95%, errors > 5%"`.
    pub trigger: String,
    /// The failure rate (errors and critical uploads over judged ones) that
    /// rolls back.
    pub failure_rate: f64,
    /// The step simulated: twice the trigger's failure rate.
    pub step_to: f64,
    /// Median time from the step to the rollback (simulated); `None` when
    /// more than half the runs were not rolled back within an hour.
    #[serde(with = "optional_seconds")]
    pub median: Option<Duration>,
    /// 99th percentile of the same (simulated); `None` past an hour.
    #[serde(with = "optional_seconds")]
    pub p99: Option<Duration>,
    /// Share of runs rolled back within [`TrafficReport::within`] (simulated).
    pub within_5_min: f64,
    /// The lowest traffic (both paths, uploads a minute) at which that share
    /// is at least 99% (simulated, to about 10%); `None` when the search was
    /// skipped or not even 10⁶ a minute does it.
    pub lowest_traffic_for_99: Option<f64>,
    /// Chance per stage that the sequential checks roll back a healthy path
    /// (computed exactly, an upper bound).
    pub false_stops_healthy: f64,
    /// The failure rate of the path just outside the trigger: four fifths
    /// of the trigger's.
    pub outside: f64,
    /// Chance per stage that they roll back a path steady at
    /// [`outside`](Self::outside) (computed exactly, an upper bound).
    pub false_stops_outside: f64,
}

/// What each rate trigger of `plan` can show at `traffic` (see the module
/// docs). Takes a few seconds for the default plan.
#[must_use]
pub fn plan_at_traffic(
    plan: &RolloutPlan,
    traffic: Traffic,
    options: &TrafficOptions,
) -> TrafficReport {
    let Ok(evaluator) = Evaluator::new(plan.clone()) else {
        // A loaded plan is valid; a hand-built invalid one has nothing to show.
        return TrafficReport {
            traffic,
            healthy: options.healthy,
            within: PLAN_ROLLBACK_WITHIN,
            runs: options.runs,
            methods: METHODS,
            stages: Vec::new(),
        };
    };
    let stages: Vec<StageReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.stages.len())
            .map(|stage| {
                let evaluator = &evaluator;
                scope.spawn(move || stage_report(evaluator, stage, traffic, options))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    TrafficReport {
        traffic,
        healthy: options.healthy,
        within: PLAN_ROLLBACK_WITHIN,
        runs: options.runs,
        methods: METHODS,
        stages,
    }
}

fn stage_report(
    evaluator: &Evaluator,
    stage: usize,
    traffic: Traffic,
    options: &TrafficOptions,
) -> StageReport {
    let plan = evaluator.plan();
    let spec = &plan.stages[stage];
    let share = spec.percent.as_ratio();
    let async_per_minute = traffic.per_minute * share * (1.0 - REJECTED);
    let horizon = if spec.criteria.min_duration.is_zero() {
        Duration::from_secs(24 * 60 * 60)
    } else {
        spec.criteria.min_duration.max(Duration::from_secs(60))
    };
    let t = &plan.triggers;
    let mut rates: Vec<(String, f64)> = Vec::new();
    let success = 1.0 - t.min_success_rate;
    if (success - t.max_error_rate).abs() < 1e-12 {
        rates.push((
            format!(
                "success < {}, errors > {}",
                percent(t.min_success_rate),
                percent(t.max_error_rate)
            ),
            t.max_error_rate,
        ));
    } else {
        rates.push((
            format!("success < {}", percent(t.min_success_rate)),
            success,
        ));
        rates.push((
            format!("errors > {}", percent(t.max_error_rate)),
            t.max_error_rate,
        ));
    }
    let triggers = rates
        .into_iter()
        .filter(|(_, f)| *f > 0.0 && *f < 1.0)
        .map(|(name, failure_rate)| {
            trigger_report(
                evaluator,
                stage,
                name,
                failure_rate,
                async_per_minute,
                horizon,
                share,
                options,
            )
        })
        .collect();
    StageReport {
        stage,
        percent: share * 100.0,
        async_per_minute,
        horizon,
        triggers,
    }
}

/// The simulation's share of rejected uploads (the client's fault, not
/// judged), as in `simulation::SimulationConfig::default`.
const REJECTED: f64 = 0.002;

#[allow(clippy::too_many_arguments)]
fn trigger_report(
    evaluator: &Evaluator,
    stage: usize,
    trigger: String,
    failure_rate: f64,
    async_per_minute: f64,
    horizon: Duration,
    share: f64,
    options: &TrafficOptions,
) -> TriggerReport {
    let plan = evaluator.plan();
    let step_to = rollback_target(failure_rate);
    let healthy = options.healthy.min(failure_rate / 2.0);
    let scenario = Scenario {
        evaluator,
        stage,
        healthy,
        step_to,
        horizon,
    };
    let times = scenario.times(async_per_minute, options.runs, options.seed);
    let within = share_within(&times, PLAN_ROLLBACK_WITHIN);
    let lowest_traffic_for_99 = (options.search_runs > 0)
        .then(|| scenario.lowest_rate_for(0.99, options.search_runs, options.seed))
        .flatten()
        .map(|per_minute| per_minute / (share * (1.0 - REJECTED)));

    // Exact false stops: the absolute check at the path's rate, plus the
    // baseline-aware check for a path at its own baseline's rate once a
    // baseline can exist (a union bound).
    let minutes = horizon.as_secs() / 60;
    let absolute = Cusum::with_reference(failure_rate, step_to);
    let rollback_bar = plan.evaluation.rollback_evidence.ln();
    let at = |cusum: &Cusum, bar: f64, rate: f64, minutes: u64| {
        minute_cusum_alarm_probability(cusum, bar, rate, async_per_minute, minutes, 6)
    };
    let baseline_minutes = minutes.saturating_sub(plan.evaluation.baseline_span.as_secs() / 60);
    let clean = spec_clean(plan, stage);
    let baseline_part = if healthy <= clean && baseline_minutes > 0 {
        at(
            &Cusum::new(healthy, step_to),
            plan.evaluation.baseline_evidence.ln(),
            healthy,
            baseline_minutes,
        )
    } else {
        0.0
    };
    let false_stops_healthy =
        (at(&absolute, rollback_bar, healthy, minutes) + baseline_part).min(1.0);
    let outside = 0.8 * failure_rate;
    let false_stops_outside = at(&absolute, rollback_bar, outside, minutes);
    TriggerReport {
        trigger,
        failure_rate,
        step_to,
        median: quantile(&times, 0.5),
        p99: quantile(&times, 0.99),
        within_5_min: within,
        lowest_traffic_for_99,
        false_stops_healthy,
        outside,
        false_stops_outside,
    }
}

/// The failure rate up to which a stage's history is clean for the
/// baseline-aware check.
fn spec_clean(plan: &RolloutPlan, stage: usize) -> f64 {
    let c = &plan.stages[stage].criteria;
    c.max_error_rate.min(1.0 - c.min_success_rate).max(0.0)
}

/// The simulated step of one stage and trigger.
struct Scenario<'a> {
    evaluator: &'a Evaluator,
    stage: usize,
    healthy: f64,
    step_to: f64,
    horizon: Duration,
}

/// How long after the step a run is followed at most.
const FOLLOW: u64 = 60;
/// How much of the stage before the step is simulated minute by minute.
const LEAD: u64 = 60;

impl Scenario<'_> {
    /// Minutes from the step to the rollback for `runs` runs (`None`: not
    /// within [`FOLLOW`] minutes), at `per_minute` judged async uploads.
    fn times(&self, per_minute: f64, runs: usize, seed: u64) -> Vec<Option<u64>> {
        (0..runs as u64)
            .map(|run| self.one(per_minute, seed ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect()
    }

    fn one(&self, per_minute: f64, seed: u64) -> Option<u64> {
        let mut rng = SplitMix64::new(seed);
        let stage_minutes = (self.horizon.as_secs() / 60).max(1);
        let onset = (rng.next_f64() * stage_minutes as f64) as u64;
        let lead = onset.min(LEAD);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut totals = MetricsSnapshot::empty_at(t0);
        // The stage before the last `lead` minutes, in one piece.
        let before = onset - lead;
        if before > 0 {
            let n = poisson(&mut rng, per_minute * before as f64);
            let k = binomial(&mut rng, n, self.healthy);
            let arm = totals.arm_mut(Arm::Async);
            arm.success = n - k;
            arm.error = k;
        }
        totals.at_unix_ms += before * 60_000;
        let mut history = History::new(2 * (LEAD + FOLLOW) as usize + 4, Duration::ZERO);
        if before > 0 {
            history.push(totals.clone());
        }
        let minute = |totals: &mut MetricsSnapshot, rng: &mut SplitMix64, rate: f64| {
            let n = poisson(rng, per_minute);
            let k = binomial(rng, n, rate);
            let arm = totals.arm_mut(Arm::Async);
            arm.success += n - k;
            arm.error += k;
            totals.at_unix_ms += 60_000;
        };
        for _ in 0..lead {
            minute(&mut totals, &mut rng, self.healthy);
            history.push(totals.clone());
        }
        for after in 1..=FOLLOW {
            minute(&mut totals, &mut rng, self.step_to);
            history.push(totals.clone());
            let now: SystemTime = totals.at();
            let e = self
                .evaluator
                .evaluate_in_range(self.stage, &totals, &history, None, now);
            if e.verdict == Verdict::Rollback {
                return Some(after);
            }
        }
        None
    }

    /// The lowest judged async uploads a minute at which at least `goal` of
    /// the runs are rolled back within the plan's 5 minutes: geometric
    /// bisection to about 10%, assuming more traffic never hurts.
    fn lowest_rate_for(&self, goal: f64, runs: usize, seed: u64) -> Option<f64> {
        let reaches =
            |rate: f64| share_within(&self.times(rate, runs, seed), PLAN_ROLLBACK_WITHIN) >= goal;
        let (mut low, mut high) = (0.05f64, 1e6f64);
        if !reaches(high) {
            return None;
        }
        // Coarse steps up first: most plans reach it within a few factors of 4.
        let mut probe = 1.0;
        while probe < high {
            if reaches(probe) {
                high = probe;
                break;
            }
            low = probe;
            probe *= 4.0;
        }
        while high / low > 1.1 {
            let mid = (low * high).sqrt();
            if reaches(mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(high)
    }
}

/// The share of `times` at most `within`.
fn share_within(times: &[Option<u64>], within: Duration) -> f64 {
    let limit = within.as_secs() / 60;
    let n = times
        .iter()
        .filter(|t| t.is_some_and(|m| m <= limit))
        .count();
    n as f64 / times.len().max(1) as f64
}

/// The `q` quantile of `times`, runs never rolled back counting as longest.
fn quantile(times: &[Option<u64>], q: f64) -> Option<Duration> {
    let mut sorted: Vec<u64> = times.iter().map(|t| t.unwrap_or(u64::MAX)).collect();
    sorted.sort_unstable();
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted
        .get(k)
        .copied()
        .filter(|&m| m != u64::MAX)
        .map(|m| Duration::from_secs(m * 60))
}

/// A Poisson draw: by inversion for small means, normal beyond.
fn poisson(rng: &mut SplitMix64, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 200.0 {
        return (mean + mean.sqrt() * rng.normal()).round().max(0.0) as u64;
    }
    let (mut n, mut p) = (0u64, (-mean).exp());
    let mut cdf = p;
    let u = rng.next_f64();
    while u > cdf && n < 10_000 {
        n += 1;
        p *= mean / n as f64;
        cdf += p;
    }
    n
}

/// A binomial draw: one Bernoulli each up to 500 trials, normal beyond.
fn binomial(rng: &mut SplitMix64, n: u64, p: f64) -> u64 {
    if n <= 500 {
        return (0..n).filter(|_| rng.next_f64() < p).count() as u64;
    }
    let mean = n as f64 * p;
    let sd = (mean * (1.0 - p)).sqrt();
    ((mean + sd * rng.normal()).round().max(0.0) as u64).min(n)
}

/// The report as text, one block per stage.
#[must_use]
pub fn render_traffic(report: &TrafficReport) -> String {
    let mut out = format!(
        "What the plan's rollback triggers can show at {}.\n\
         [simulated]: the crate's own Evaluator on simulated minutes (Poisson async uploads, a step from a healthy path at {} failures \
         to twice the trigger's rate at a uniformly random minute of the stage), {} runs a figure.\n\
         [exact]: the Markov chain of the sequential rollback checks on whole minutes (an upper bound).\n",
        report.traffic,
        percent(report.healthy),
        report.runs
    );
    let within = report.within.as_secs() / 60;
    for s in &report.stages {
        out.push_str(&format!(
            "\nstage {} ({}% async: {} judged async uploads a minute; false stops per {} h of stage):\n",
            s.stage,
            number(s.percent),
            number(s.async_per_minute),
            number(s.horizon.as_secs_f64() / 3600.0)
        ));
        for t in &s.triggers {
            let minutes = |d: Option<Duration>| {
                d.map_or_else(
                    || format!("more than {FOLLOW} min"),
                    |d| format!("{} min", d.as_secs() / 60),
                )
            };
            out.push_str(&format!(
                "  trigger {} (failures > {}):\n",
                t.trigger,
                percent(t.failure_rate)
            ));
            out.push_str(&format!(
                "    a step to {} failures is rolled back in a median of {}, 99th percentile {}   [simulated]\n",
                percent(t.step_to),
                minutes(t.median),
                minutes(t.p99)
            ));
            out.push_str(&format!(
                "    within the plan's {within} minutes: {} of runs   [simulated]\n",
                percent(t.within_5_min)
            ));
            out.push_str(&match t.lowest_traffic_for_99 {
                Some(r) => format!(
                    "    99% of runs within {within} minutes from about {} uploads a minute   [simulated]\n",
                    number(r)
                ),
                None => format!("    99% of runs within {within} minutes: not found (search skipped or beyond a million a minute)\n"),
            });
            out.push_str(&format!(
                "    false stops per stage: a healthy path ({}) at most {}; a path just outside the trigger ({}) at most {}   [exact]\n",
                percent(report.healthy.min(t.failure_rate / 2.0)),
                percent(t.false_stops_healthy),
                percent(t.outside),
                percent(t.false_stops_outside)
            ));
        }
    }
    out
}

/// A fraction as a percentage with up to two decimals: `0.0125` → `1.25%`.
fn percent(x: f64) -> String {
    let text = format!("{:.2}", x * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A number with at most three significant figures beyond the integer part.
fn number(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        let text = format!("{x:.1}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        let text = format!("{x:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Durations in JSON as whole seconds.
mod seconds {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// Optional durations in JSON as whole seconds or null.
mod optional_seconds {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_parses_every_unit_and_names_bad_input() {
        for (text, per_minute) in [
            ("120/min", 120.0),
            ("2/s", 120.0),
            ("7200/h", 120.0),
            (" 1.5 / minute ", 1.5),
            ("1440/d", 1.0),
        ] {
            let t: Traffic = text.parse().unwrap();
            assert!((t.per_minute - per_minute).abs() < 1e-9, "{text}");
        }
        for (text, problem) in [
            ("120", "no unit"),
            ("abc/min", "not a number"),
            ("-3/min", "positive"),
            ("0/min", "positive"),
            ("NaN/min", "positive"),
            ("5/week", "unknown unit"),
        ] {
            let err = text.parse::<Traffic>().unwrap_err();
            assert!(err.to_string().contains(text.trim()), "{err}");
            assert!(err.problem.contains(problem), "{text}: {err}");
        }
    }
}

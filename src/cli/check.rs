//! Text output of `check` and `bucket`.

use std::fmt::Write as _;

use super::error::exit_code;
use super::fleet::CheckOutcome;
use crate::decide::config::RolloutConfig;
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::sequential::evidence_text;
use crate::judge::{Check, CheckKind, Evaluation, Unit};
use crate::metrics::Arm;

/// The evaluation as `check --json` prints it: one line of JSON, the
/// [`Evaluation`] exactly as the controller logs it (verdict, reason, stage,
/// percent, time, and every check with its observed value, threshold,
/// interval, sample size and detail), so `jq` can pick any field.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::cli::render_json;
/// use async_upload_rollout::{Evaluation, Evaluator, History, MetricsSnapshot, RolloutPlan, Verdict};
///
/// let evaluator = Evaluator::new(RolloutPlan::default())?;
/// let evaluation = evaluator.evaluate(
///     1, &MetricsSnapshot::default(), &History::default(), SystemTime::UNIX_EPOCH)?;
/// let line = render_json(&evaluation);
/// assert!(!line.contains('\n'));
/// let back: Evaluation = serde_json::from_str(&line)?;
/// assert_eq!(back.verdict, Verdict::Hold);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn render_json(evaluation: &Evaluation) -> String {
    // An evaluation is plain data (finite numbers, strings): serializing it
    // cannot fail; should it ever, say so as JSON rather than panic.
    serde_json::to_string(evaluation).unwrap_or_else(|err| {
        serde_json::json!({ "error": format!("cannot serialize the evaluation: {err}") })
            .to_string()
    })
}

/// What `check --json` prints: the recomputed evaluation as
/// [`render_json`] prints it, with one more member, `controller`: what
/// `check` answers (`answer`, the verdict its exit code stands for, which
/// follows the controller's state while it is `rolled_back` or
/// `awaiting_review`), the `headline`, the controller's last logged `state`
/// (the [`RolloutState`](crate::RolloutState) object) and `verdict` with the
/// file and line of each, and whether the recomputation `agrees` with the
/// controller's evaluation of the same totals (`null` when there is none to
/// compare with) with the `differences`.
#[must_use]
pub fn render_outcome_json(outcome: &CheckOutcome) -> String {
    let mut value = match serde_json::to_value(&outcome.evaluation) {
        Ok(value) => value,
        Err(err) => {
            return serde_json::json!({ "error": format!("cannot serialize the evaluation: {err}") })
                .to_string();
        }
    };
    let place = |path: &std::path::Path, line: usize| serde_json::json!({ "file": path.display().to_string(), "line": line });
    let state = outcome.state.as_ref();
    let verdict = outcome
        .controllers
        .iter()
        .filter_map(|c| c.verdict.as_ref())
        .max_by_key(|v| v.at_unix_ms);
    let controller = serde_json::json!({
        "answer": outcome.verdict(),
        "headline": outcome.headline(),
        "state": state.map(|s| &s.value),
        "state_line": state.map(|s| place(&s.path, s.line)),
        "verdict": verdict.map(|v| v.value.verdict),
        "verdict_reason": verdict.map(|v| v.value.reason.as_str()),
        "verdict_line": verdict.map(|v| place(&v.path, v.line)),
        "agrees": outcome.comparison.as_ref().map(super::fleet::Comparison::agrees),
        "differences": outcome.comparison.as_ref().map_or(&[][..], |c| &c.differences[..]),
    });
    if let Some(object) = value.as_object_mut() {
        object.insert("controller".to_owned(), controller);
    }
    value.to_string()
}

/// The controller's answer beside the recomputation, as `check` prints it
/// below the table: the controller's last logged state, its last logged
/// verdict, and whether the recomputation from the log agrees with it
/// (naming every difference).
#[must_use]
pub fn render_controller(outcome: &CheckOutcome) -> String {
    let mut out = String::new();
    for c in &outcome.controllers {
        match &c.state {
            Some(state) => {
                let _ = writeln!(
                    out,
                    "controller's state ({}, line {}): {}",
                    state.path.display(),
                    state.line,
                    state.value
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "controller's state: none logged in {} (no controller lines)",
                    c.path.display()
                );
            }
        }
        if let Some(verdict) = &c.verdict {
            let _ = writeln!(
                out,
                "controller's last verdict ({}, line {}): {} at stage {}: {}",
                verdict.path.display(),
                verdict.line,
                verdict.value.verdict,
                verdict.value.stage,
                verdict.value.reason
            );
        }
    }
    match &outcome.comparison {
        Some(comparison) if comparison.agrees() => {
            let _ = writeln!(
                out,
                "recomputed from the log: {}, as the controller judged the same totals",
                outcome.evaluation.verdict
            );
        }
        Some(comparison) => {
            let _ = writeln!(
                out,
                "recomputed from the log: {}: DIFFERS from the controller's evaluation of the same totals (line {}):",
                outcome.evaluation.verdict, comparison.logged.line
            );
            for difference in &comparison.differences {
                let _ = writeln!(out, "  - {difference}");
            }
            let _ = writeln!(
                out,
                "  The controller judged its own history (every tick); the log keeps fewer snapshots (quiet ticks every log interval), so windowed checks can come out otherwise. The controller acted on its evaluation."
            );
        }
        None => {}
    }
    let verdict = outcome.verdict();
    if verdict != outcome.evaluation.verdict {
        let _ = writeln!(
            out,
            "answer: {verdict} (exit {}): the controller's state holds until a person acts",
            exit_code(verdict)
        );
    }
    out
}

/// `x`, a value in `unit`, as the tables show it: a count, minutes, a
/// likelihood ratio (`LR 200`, from its natural log) or a percentage with up
/// to three decimals.
pub(crate) fn format_value(unit: Unit, x: f64) -> String {
    match unit {
        Unit::Count => format!("{x:.0}"),
        Unit::Minutes => format!("{x:.0} min"),
        Unit::LikelihoodRatio => format!("LR {}", evidence_text(x)),
        Unit::Fraction => {
            let text = format!("{:.3}", x * 100.0);
            let text = text.trim_end_matches('0').trim_end_matches('.');
            format!("{text}%")
        }
    }
}

/// A check's observed value as text (`—` when there is none).
pub(crate) fn observed_text(check: &Check) -> String {
    check
        .observed
        .map_or_else(|| "—".to_owned(), |x| format_value(check.unit(), x))
}

/// A check's threshold as text.
pub(crate) fn threshold_text(check: &Check) -> String {
    format_value(check.unit(), check.threshold)
}

/// A check's confidence interval as text (empty when there is none).
pub(crate) fn interval_text(check: &Check) -> String {
    check.interval.map_or_else(String::new, |i| {
        format!(
            "[{}, {}]",
            format_value(Unit::Fraction, i.low),
            format_value(Unit::Fraction, i.high)
        )
    })
}

/// The evaluation as `check` prints it: a table of every check (name, kind,
/// status, observed, threshold, interval, sample size), the details of the
/// checks that did not pass, then the verdict and its reason.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::cli::render_checks;
/// use async_upload_rollout::{Evaluator, History, MetricsSnapshot, RolloutPlan};
///
/// let evaluator = Evaluator::new(RolloutPlan::default())?;
/// let evaluation = evaluator.evaluate(
///     1, &MetricsSnapshot::default(), &History::default(), SystemTime::now())?;
/// let text = render_checks(&evaluation);
/// assert!(text.contains("uploads"));
/// assert!(text.contains("verdict: hold"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn render_checks(evaluation: &Evaluation) -> String {
    let header = [
        "CHECK",
        "KIND",
        "STATUS",
        "OBSERVED",
        "THRESHOLD",
        "INTERVAL",
        "SAMPLE",
    ];
    let rows: Vec<[String; 7]> = evaluation
        .checks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                kind_text(c).to_owned(),
                c.status.to_string(),
                observed_text(c),
                threshold_text(c),
                interval_text(c),
                c.sample_size.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Text columns left-aligned, numbers right-aligned.
    let right = [false, false, false, true, true, false, true];
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    let failing: Vec<&Check> = evaluation.failing().collect();
    if !failing.is_empty() {
        out.push('\n');
        for c in failing {
            let _ = writeln!(out, "{} ({}): {}", c.name, c.status, c.detail);
        }
    }
    let _ = writeln!(
        out,
        "\nstage {} ({}): verdict: {}\nreason: {}",
        evaluation.stage, evaluation.percent, evaluation.verdict, evaluation.reason
    );
    out
}

fn kind_text(check: &Check) -> &'static str {
    match check.kind {
        CheckKind::Criterion => "criterion",
        CheckKind::Review => "review",
        CheckKind::Rollback => "rollback",
    }
}

/// Which bucket and path `upload_id` gets under `salt`, at `percent` when
/// given, else at each of `stages` (the plan's percents): the answer to a
/// support question, computed with [`Rollout::bucket`] and
/// [`Rollout::should_use_async`] themselves.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::cli::describe_bucket;
/// use async_upload_rollout::{Percent, Rollout, RolloutConfig};
///
/// let text = describe_bucket("upload-42", "async-upload", Some(Percent::from_whole(10)?), &[]);
/// let bucket = Rollout::new(RolloutConfig::default()).bucket("upload-42");
/// assert!(text.contains(&format!("bucket:     {bucket}")));
/// assert!(text.contains("threshold 100000 ppm"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn describe_bucket(
    upload_id: &str,
    salt: &str,
    percent: Option<Percent>,
    stages: &[Percent],
) -> String {
    let mut config = RolloutConfig::with_percent(Percent::ZERO);
    config.salt = salt.to_owned();
    let rollout = Rollout::new(config);
    let bucket = rollout.bucket(upload_id);
    let mut out = String::new();
    let _ = writeln!(out, "upload id:  {upload_id}");
    let _ = writeln!(out, "salt:       {salt}");
    let _ = writeln!(out, "bucket:     {bucket} (of 0..{})", Percent::MAX_PPM);
    let first_in = bucket
        .checked_add(1)
        .and_then(|ppm| Percent::from_ppm(ppm).ok())
        .map_or_else(|| "never".to_owned(), |p| p.to_string());
    let _ = writeln!(
        out,
        "async from: {first_in} (async iff bucket < percent in ppm)"
    );
    let percents: Vec<Percent> = percent.map_or_else(|| stages.to_vec(), |p| vec![p]);
    for p in percents {
        rollout.set_percent(p);
        let arm = Arm::from_use_async(rollout.should_use_async(upload_id));
        let cmp = if bucket < p.ppm() { "<" } else { "≥" };
        let _ = writeln!(
            out,
            "at {p}: threshold {} ppm: {} ({bucket} {cmp} {})",
            p.ppm(),
            arm.as_str(),
            p.ppm()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_their_kind() {
        let cases = [
            ("uploads", 2345.0, "2345"),
            ("rollback.critical_errors", 0.0, "0"),
            ("success_rate", 0.99, "99%"),
            ("error_rate", 0.0053, "0.53%"),
            ("review.complaints", 0.0002, "0.02%"),
            ("latency_ratio", 1.0123, "101.23%"),
            ("review.latency_ratio", 31.5, "32 min"),
            ("review.latency_ratio[last 30m]", 1.25, "125%"),
            (
                "rollback.error_rate[sequential]",
                100_000f64.ln(),
                "LR 100000",
            ),
            ("review.success_rate_in_band[sequential]", 0.0, "LR 1.0"),
            (
                "review.success_rate_in_band[sequential, stage]",
                200f64.ln(),
                "LR 200",
            ),
        ];
        for (name, x, want) in cases {
            let check = Check::new(
                &crate::judge::CheckId::parse(name).expect(name),
                crate::judge::CheckStatus::Pass,
                Some(x),
                x,
                0,
                String::new(),
            );
            assert_eq!(observed_text(&check), want, "{name}");
            assert_eq!(threshold_text(&check), want, "{name}");
        }
    }
}

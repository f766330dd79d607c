//! The judge's text: percentages in details, and the one-line reason of a
//! verdict.

use crate::judge::check::{Check, CheckId, CheckKind, CheckStatus, Verdict};

/// A fraction as a percentage with enough digits to see thresholds: `0.99` → `99%`.
pub(crate) fn pct(x: f64) -> String {
    let p = x * 100.0;
    let text = format!("{p:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// One line for `verdict`: the details of the checks that decided it, each
/// said once, or that every criterion is met.
pub(crate) fn reason_of(verdict: Verdict, checks: &[Check]) -> String {
    // Too few uploads makes every rate criterion lack data too: say it once.
    let uploads = |c: &Check| c.kind == CheckKind::Criterion && c.is(&CheckId::Uploads);
    let too_few = checks
        .iter()
        .any(|c| uploads(c) && c.status == CheckStatus::NotEnoughData);
    let decisive: Vec<&str> = checks
        .iter()
        .filter(|c| match verdict {
            Verdict::Rollback => c.kind == CheckKind::Rollback && c.status == CheckStatus::Fail,
            Verdict::ManualReview => c.kind == CheckKind::Review && c.status == CheckStatus::Fail,
            Verdict::Hold => {
                c.kind == CheckKind::Criterion
                    && (c.status == CheckStatus::Fail
                        || (c.status == CheckStatus::NotEnoughData && (!too_few || uploads(c))))
            }
            Verdict::Advance => false,
        })
        .map(|c| c.detail.as_str())
        .collect();
    // Two checks can say the same thing (the success and error triggers'
    // sequential checks, when 1 − min_success_rate = max_error_rate): say it
    // once.
    let mut said: Vec<&str> = Vec::with_capacity(decisive.len());
    for detail in decisive {
        if !said.contains(&detail) {
            said.push(detail);
        }
    }
    let decisive = said;
    if decisive.is_empty() {
        let criteria = checks
            .iter()
            .filter(|c| c.kind == CheckKind::Criterion)
            .count();
        format!("all {criteria} stage criteria met, no trigger fired")
    } else {
        decisive.join("; ")
    }
}

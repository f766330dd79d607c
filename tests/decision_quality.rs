//! Decision quality: how often each mode gets a whole rollout wrong.
//!
//! The short version runs in the default suite and asserts the goals for the
//! guarded mode; `cargo test --release --test decision_quality -- --ignored
//! --nocapture` runs the long version on the plan's real stage durations and
//! prints the table in the README.

mod support;

use support::quality::{GUARDED, LITERAL_0, LITERAL_20, score, table};

#[test]
fn guarded_mode_meets_the_decision_quality_goals() {
    let runs = 40;
    let guarded = score(GUARDED, runs, 0.25);
    let literal = score(LITERAL_0, runs, 0.25);
    println!("{}", table(&[(GUARDED, &guarded), (LITERAL_0, &literal)]));

    // Healthy: wrongly rolled back or reviewed in at most 1% of runs (0 of 40 here).
    assert_eq!(guarded.healthy_wrong, 0, "healthy runs wrongly stopped");
    assert_eq!(
        guarded.healthy_advanced, runs,
        "healthy runs that did not complete"
    );
    // Below target: wrongly advanced in at most 5% of runs.
    assert!(
        guarded.below_target_advanced * 20 <= runs,
        "{} of {runs} advanced",
        guarded.below_target_advanced
    );
    // Severe regression: rolled back every time, median within 100 async uploads.
    assert_eq!(guarded.severe_rolled_back, runs);
    assert!(
        guarded.severe_median() <= 100,
        "median {}",
        guarded.severe_median()
    );
    // Latency +30%: never advances, always caught.
    assert_eq!(guarded.latency_advanced, 0);
    assert_eq!(guarded.latency_caught, runs);
    // And the literal rules really are worse on a healthy path.
    assert!(literal.healthy_wrong > guarded.healthy_wrong);
}

#[test]
#[ignore = "long: about a minute in release; prints the README's table"]
fn decision_quality_table_on_the_real_plan() {
    let runs = 300;
    let rows = [GUARDED, LITERAL_20, LITERAL_0];
    let scores: Vec<_> = rows.iter().map(|&judge| score(judge, runs, 1.0)).collect();
    let table = table(&rows.iter().copied().zip(scores.iter()).collect::<Vec<_>>());
    println!("{table}");
    let guarded = &scores[0];
    assert!(guarded.healthy_wrong * 100 <= runs);
    assert!(guarded.below_target_advanced * 20 <= runs);
    assert_eq!(guarded.severe_rolled_back, runs);
    assert!(guarded.severe_median() <= 100);
    assert_eq!(guarded.latency_advanced, 0);
}

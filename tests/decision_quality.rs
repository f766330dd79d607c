//! Decision quality: how often each mode gets a whole rollout wrong, and how
//! fast it catches regressions.
//!
//! The short versions run in the default suite and assert the guarded
//! mode's goals on enough runs, with enough margin, that a change in how the
//! random numbers are drawn does not flip them; `cargo test --release --test
//! decision_quality -- --ignored --nocapture` runs the long version on the
//! plan's real stage durations and prints the README's tables.
//!
//! Where issue 12 asked for more than 12 async uploads a minute can show
//! (a step to 10% errors rolled back within 5 minutes in 99% of runs; a path
//! at 96% reviewed within an hour in 95% of runs), the assertions hold what
//! is reached; `tests/decision_limits.rs` computes the ceilings no rule can
//! pass (72.1% and 82.7%).

mod support;

use std::time::Duration;

use support::quality::{
    End, GUARDED, LITERAL_0, LITERAL_20, Regressions, Which, count, quantile_time, regressions,
    regressions_table, score, table,
};

const MINUTE: Duration = Duration::from_secs(60);

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
    // 98% success is above the 95–97% band: (almost) never reviewed.
    assert!(
        guarded.below_target_reviewed <= 1,
        "{} of {runs} reviewed",
        guarded.below_target_reviewed
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
fn sudden_regressions_are_rolled_back_within_minutes() {
    // 200 runs: each bound below sits at least 3.5 standard errors from what
    // 300 runs of the long version measure.
    let runs = 200;
    let r = regressions(GUARDED, runs, 0.25, Which::Sudden);
    println!("{}", regressions_table(&[(GUARDED, &r)]));

    // A step to 10% errors at a random time in the 10% stage (12 async
    // uploads a minute): the sequential check, not the stage's totals or
    // the 30-minute window, catches it; median about 11 minutes.
    let within = |limit| count(&r.step, |t| t.within(End::Rollback, limit));
    assert!(
        within(15 * MINUTE) * 100 >= runs * 70,
        "{}",
        within(15 * MINUTE)
    );
    assert!(within(60 * MINUTE) + 1 >= runs, "{}", within(60 * MINUTE));
    let median = quantile_time(&r.step, End::Rollback, 0.5).unwrap();
    assert!(median <= 15 * MINUTE, "median {median:?}");

    // A burst of 50% errors for 3 minutes: rolled back (goal ≥ 99%; ≥ 98%
    // of 200 leaves room for the draw).
    let burst = count(&r.burst, |t| t.end == End::Rollback);
    assert!(burst * 100 >= runs * 98, "{burst} of {runs}");
}

#[test]
fn slow_regressions_are_reviewed_and_steady_paths_are_not() {
    let runs = 200;
    let r = regressions(GUARDED, runs, 0.25, Which::Slow);
    println!("{}", regressions_table(&[(GUARDED, &r)]));

    // 96% success: reviewed (not held forever); about half within an hour
    // (the stage as a whole: no rule passes 82.7% here, see
    // tests/decision_limits.rs), most within 3 hours. Some are rolled back
    // first: 4% failures sometimes cluster past the sequential rollback's bar.
    let hour = count(&r.band, |t| t.within(End::Review, 60 * MINUTE));
    assert!(hour * 100 >= runs * 40, "{hour} of {runs}");
    let reviewed = count(&r.band, |t| t.within(End::Review, 180 * MINUTE));
    assert!(reviewed * 100 >= runs * 80, "{reviewed} of {runs}");
    let rolled_back = count(&r.band, |t| t.end == End::Rollback);
    assert!(rolled_back * 100 <= runs * 25, "{rolled_back} of {runs}");
    let held = count(&r.band, |t| t.end == End::Held);
    assert!(held * 100 <= runs * 3, "{held} of {runs} never stopped");

    // Latency climbing 2% an hour: reviewed before the true ratio reaches
    // 1.25 (goal ≥ 95%).
    let early = count(&r.climb, |t| {
        t.end == End::Review && Regressions::climb_ratio(t).is_some_and(|x| x < 1.25)
    });
    assert!(early * 100 >= runs * 97, "{early} of {runs}");
    // The same paths without the climb: never reviewed or rolled back.
    let flat = count(&r.flat, |t| matches!(t.end, End::Review | End::Rollback));
    assert!(flat <= 1, "{flat} of {runs}");
}

#[test]
#[ignore = "long: about 10 minutes in release; prints the README's tables"]
fn decision_quality_table_on_the_real_plan() {
    let started = std::time::Instant::now();
    let runs = 300;
    let rows = [GUARDED, LITERAL_20, LITERAL_0];
    // One thread per mode: each run is seeded, so the result does not
    // depend on the scheduling.
    let (scores, regressed): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .iter()
            .map(|&judge| {
                scope.spawn(move || {
                    (
                        score(judge, runs, 1.0),
                        regressions(judge, runs, 1.0, Which::All),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .unzip()
    });
    println!(
        "{}",
        table(&rows.iter().copied().zip(scores.iter()).collect::<Vec<_>>())
    );
    println!(
        "{}",
        regressions_table(
            &rows
                .iter()
                .copied()
                .zip(regressed.iter())
                .collect::<Vec<_>>()
        )
    );
    println!(
        "{runs} runs per cell in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let guarded = &scores[0];
    assert!(guarded.healthy_wrong * 100 <= runs);
    assert!(guarded.below_target_advanced * 20 <= runs);
    assert!(guarded.below_target_reviewed * 100 <= runs);
    assert_eq!(guarded.severe_rolled_back, runs);
    assert!(guarded.severe_median() <= 100);
    assert_eq!(guarded.latency_advanced, 0);
    let r = &regressed[0];
    assert!(count(&r.burst, |t| t.end == End::Rollback) * 100 >= runs * 98);
    assert!(
        count(&r.climb, |t| t.end == End::Review
            && Regressions::climb_ratio(t).is_some_and(|x| x < 1.25))
            * 100
            >= runs * 95
    );
}

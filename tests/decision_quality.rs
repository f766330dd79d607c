//! Decision quality: how often each mode gets a whole rollout wrong, and how
//! fast it catches regressions.
//!
//! The short versions run in the default suite and assert the guarded
//! mode's goals on enough runs, with enough margin, that a change in how the
//! random numbers are drawn does not flip them; they run stages a quarter as
//! long as the plan's, so more steps fall in a stage's first hour, before
//! the baseline-aware rollback has a history to lean on, and their bounds
//! are the short stages' own. `cargo test --release --test decision_quality
//! -- --ignored --nocapture` runs the long version on the plan's real stage
//! durations, asserts issue 23's goals there and prints the README's tables.
//!
//! `tests/decision_limits.rs` computes the ceilings no rule can pass at 12
//! async uploads a minute (72.1% of steps from a healthy path within 5
//! minutes; 82.7% of 96% paths reviewed within an hour), and
//! `tests/reference_detector.rs` compares the crate with a reference
//! detector on the same traffic.

mod support;

use std::time::Duration;

use support::quality::{
    End, GUARDED, LITERAL_0, LITERAL_20, Regressions, Timed, Which, count, quantile_time,
    regressions, regressions_on, regressions_table, score, steady_stage_stops, table,
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
    // 98% success is above the 95–97% band: (almost) never reviewed or
    // rolled back, in the stage or in the day it is held past it.
    let stopped = guarded.below_target_reviewed
        + guarded.below_target_rolled_back
        + guarded.below_target_stopped_after;
    assert!(stopped <= 2, "{stopped} of {runs} reviewed or rolled back");
    // Severe regression from the stage's first upload: rolled back every
    // time. It has no history to be judged against, so the absolute checks
    // judge it: a median of about 200 async uploads (17 minutes at 12 a
    // minute; 175 with the absolute bar at 2·10⁶, which rolled back 1.1% of
    // 96% paths before their review). The interval triggers at 95% took 60–80, but rolled back 4–5%
    // of paths at 96% in their first minutes (README, "Sequential rollback").
    assert_eq!(guarded.severe_rolled_back, runs);
    assert!(
        guarded.severe_median() <= 240,
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
    // 1,000 runs of the same short stages measure.
    let runs = 200;
    let r = regressions_on(GUARDED, runs, 0.25, Which::Sudden, 2);
    println!("{}", regressions_table(&[(GUARDED, &r)]));

    // A step to 10% errors at a random minute of a 12-hour 10% stage (12
    // async uploads a minute): the baseline-aware check catches it, against
    // the path's own history, except in the stage's first hour.
    let within = |list: &[Timed], limit| count(list, |t| t.within(End::Rollback, limit));
    let step5 = within(&r.step, 5 * MINUTE);
    assert!(step5 * 100 >= runs * SHORT_STEP_5, "{step5} of {runs}");
    let step15 = within(&r.step, 15 * MINUTE);
    assert!(step15 * 100 >= runs * SHORT_STEP_15, "{step15} of {runs}");
    let median = quantile_time(&r.step, End::Rollback, 0.5).unwrap();
    assert!(median <= 6 * MINUTE, "median {median:?}");
    // At 30 async uploads a minute, and at 60 in the 50% stage.
    let step30 = within(&r.step_30, 5 * MINUTE);
    assert!(step30 * 100 >= runs * SHORT_STEP_30, "{step30} of {runs}");
    let step60 = within(&r.step_60, 5 * MINUTE);
    assert!(step60 * 100 >= runs * SHORT_STEP_60, "{step60} of {runs}");

    // A burst of 50% errors for 3 minutes: rolled back (goal ≥ 99%; ≥ 97%
    // of 200 leaves room for the draw).
    let burst = count(&r.burst, |t| t.end == End::Rollback);
    assert!(burst * 100 >= runs * 97, "{burst} of {runs}");
}

/// Bounds of the short version, percent of runs (see the test's comment).
const SHORT_STEP_5: usize = 40;
const SHORT_STEP_15: usize = 85;
const SHORT_STEP_30: usize = 85;
const SHORT_STEP_60: usize = 95;

#[test]
fn slow_regressions_are_reviewed_and_steady_paths_are_not() {
    let runs = 200;
    let r = regressions_on(GUARDED, runs, 0.25, Which::Slow, 2);
    println!("{}", regressions_table(&[(GUARDED, &r)]));

    // 96% success from the stage's start: the look at 1 hour reviews most
    // (goal ≥ 75%; the Neyman–Pearson ceiling at its size is 80%), nearly
    // all within 3 hours, few are rolled back first.
    let hour = count(&r.band, |t| t.within(End::Review, 60 * MINUTE));
    assert!(hour * 100 >= runs * 64, "{hour} of {runs}");
    let reviewed = count(&r.band, |t| t.within(End::Review, 180 * MINUTE));
    assert!(reviewed * 100 >= runs * 93, "{reviewed} of {runs}");
    let rolled_back = count(&r.band, |t| t.end == End::Rollback);
    assert!(rolled_back * 100 <= runs * 6, "{rolled_back} of {runs}");

    // Latency climbing 2% an hour: reviewed before the true ratio reaches
    // 1.25 (goal ≥ 95%).
    let early = count(&r.climb, |t| {
        t.end == End::Review && Regressions::climb_ratio(t).is_some_and(|x| x < 1.25)
    });
    assert!(early * 100 >= runs * 97, "{early} of {runs}");
    // The same paths without the climb: never reviewed or rolled back.
    let flat = count(&r.flat, |t| matches!(t.end, End::Review | End::Rollback));
    assert!(flat <= 2, "{flat} of {runs}");
}

#[test]
#[ignore = "long: about 40 minutes in release on 2 cores; prints the decision-quality tables"]
fn decision_quality_table_on_the_real_plan() {
    let started = std::time::Instant::now();
    // `DQ_RUNS` and `DQ_GUARDED_RUNS` shorten the run (the README says
    // when its tables came from fewer runs than these defaults).
    let env_runs = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(default)
    };
    let runs = env_runs("DQ_RUNS", 300);
    let rows = [GUARDED, LITERAL_20, LITERAL_0];
    // One thread per mode: each run is seeded, so the result does not
    // depend on the scheduling. The guarded mode's regressions get 1,000
    // runs (two threads), so its goals are read to about ±1.6 points.
    let guarded_runs = env_runs("DQ_GUARDED_RUNS", 1_000);
    let (scores, mut regressed): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .iter()
            .map(|&judge| {
                scope.spawn(move || {
                    let regressed = if judge.name == GUARDED.name {
                        None
                    } else {
                        Some(regressions(judge, runs, 1.0, Which::All))
                    };
                    (score(judge, runs, 1.0), regressed)
                })
            })
            .collect();
        let guarded = regressions_on(GUARDED, guarded_runs, 1.0, Which::All, 2);
        let (scores, mut regressed): (Vec<_>, Vec<_>) = handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .unzip();
        regressed[0] = Some(guarded);
        (scores, regressed)
    });
    let regressed: Vec<Regressions> = regressed.iter_mut().map(|r| r.take().unwrap()).collect();
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
        "{runs} runs per cell ({guarded_runs} for the guarded regressions) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Issue 23's goals, on the real plan.
    let guarded = &scores[0];
    assert!(guarded.healthy_wrong * 100 <= runs);
    assert!(guarded.below_target_advanced * 20 <= runs);
    // Steady 98% paths: wrongly rolled back or reviewed in ≤ 1% of 48-hour
    // 10% stages (the path fails the stage's criteria and holds after that;
    // the day it holds longer is printed in the table, not asserted). The
    // review spends about 0.7 of that 1% (the look at one hour), so the
    // table's `runs` cannot tell the two apart: 2,000 stages of their own
    // (the table's seeds first) read the rate to about ±0.2 points.
    let steady_runs = env_runs("DQ_STEADY_RUNS", 2_000);
    let steady = steady_stage_stops(0.02, steady_runs, 48);
    println!(
        "98% success, 48-hour 10% stages: {steady} of {steady_runs} rolled back or reviewed ({:.2}%)",
        100.0 * steady as f64 / steady_runs as f64
    );
    assert!(steady * 100 <= steady_runs, "{steady} of {steady_runs}");
    assert_eq!(guarded.severe_rolled_back, runs);
    assert_eq!(guarded.latency_advanced, 0);
    let r = &regressed[0];
    let n = guarded_runs;
    let within = |list: &[Timed], limit| count(list, |t| t.within(End::Rollback, limit));
    assert!(within(&r.step, 5 * MINUTE) * 100 >= n * 55);
    assert!(within(&r.step, 15 * MINUTE) * 100 >= n * 97);
    assert!(quantile_time(&r.step, End::Rollback, 0.5).unwrap() <= 5 * MINUTE);
    assert!(within(&r.step_30, 5 * MINUTE) * 100 >= n * 95);
    assert!(within(&r.step_60, 5 * MINUTE) * 100 >= n * 99);
    assert!(count(&r.burst, |t| t.end == End::Rollback) * 100 >= n * 99);
    assert!(count(&r.band, |t| t.within(End::Review, 60 * MINUTE)) * 100 >= n * 75);
    assert!(count(&r.band, |t| t.within(End::Review, 180 * MINUTE)) * 100 >= n * 97);
    assert!(count(&r.band, |t| t.end == End::Rollback) * 100 <= n * 2);
    assert!(
        count(&r.climb, |t| t.end == End::Review
            && Regressions::climb_ratio(t).is_some_and(|x| x < 1.25))
            * 100
            >= n * 95
    );
    assert_eq!(
        count(&r.flat, |t| matches!(t.end, End::Review | End::Rollback)),
        0
    );
}

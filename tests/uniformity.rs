//! Statistical checks of the bucketing: shares, uniformity, salt independence.
//!
//! The ids are deterministic (SplitMix64-generated UUID strings) so these tests
//! never flake; the thresholds are the ones a random sample would have to meet.

use async_upload_rollout::act::simulation::SplitMix64;
use async_upload_rollout::{Percent, Rollout, RolloutConfig};

const N: usize = 200_000;

fn uuid_ids(seed: u64, n: usize) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.uuid()).collect()
}

fn rollout(salt: &str, percent: &str) -> Rollout {
    Rollout::new(RolloutConfig {
        salt: salt.to_owned(),
        ..RolloutConfig::with_percent(percent.parse().unwrap())
    })
}

#[test]
fn share_in_rollout_is_within_four_standard_errors_of_target() {
    let ids = uuid_ids(1, N);
    for percent in ["0.01", "1", "10", "50"] {
        let rollout = rollout("async-upload", percent);
        let p = percent.parse::<Percent>().unwrap().as_ratio();
        let observed = ids
            .iter()
            .filter(|id| rollout.should_use_async(*id))
            .count() as f64
            / N as f64;
        let std_error = (p * (1.0 - p) / N as f64).sqrt();
        let z = (observed - p) / std_error;
        assert!(z.abs() < 4.0, "{percent}%: observed {observed}, z = {z:.2}");
    }
}

#[test]
fn buckets_pass_a_chi_square_test_over_100_ranges() {
    // Critical value of chi-square with 99 degrees of freedom at the 0.001 level.
    const CRITICAL_99_DF_P001: f64 = 148.23;
    for salt in ["async-upload", "other-flag"] {
        let rollout = rollout(salt, "50");
        let mut counts = [0u32; 100];
        for id in uuid_ids(2, N) {
            counts[(rollout.bucket(&id) / 10_000) as usize] += 1;
        }
        let expected = N as f64 / 100.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < CRITICAL_99_DF_P001,
            "salt {salt:?}: chi-square {chi2:.1}"
        );
    }
}

#[test]
fn different_salts_give_independent_cohorts() {
    let ids = uuid_ids(3, N);
    let a = rollout("async-upload", "50");
    let b = rollout("thumbnail-pipeline", "50");
    let both = ids
        .iter()
        .filter(|id| a.should_use_async(*id) && b.should_use_async(*id))
        .count() as f64
        / N as f64;
    assert!((both - 0.25).abs() <= 0.01, "overlap {both}");
}

#[test]
fn sequential_ids_spread_evenly() {
    // Ids that differ in one trailing digit must not cluster.
    let rollout = rollout("async-upload", "10");
    let n = 100_000;
    let in_rollout = (0..n)
        .filter(|i| rollout.should_use_async(&format!("upload-{i}")))
        .count() as f64;
    let share = in_rollout / f64::from(n);
    let std_error = (0.1_f64 * 0.9 / f64::from(n)).sqrt();
    assert!(((share - 0.1) / std_error).abs() < 4.0, "share {share}");
}

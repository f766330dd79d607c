//! 100,000 synthetic upload ids through the rollout stages 1% → 10% → 50% → 100%.
//!
//! For each stage it prints how many uploads take the async path, the expected
//! and observed share, and checks that every id already in stayed in.
//!
//! Run with `cargo run --release --example bucketing`.

use std::time::Instant;

use async_upload_rollout::act::simulation::SplitMix64;
use async_upload_rollout::{Percent, Rollout, RolloutConfig};

const UPLOADS: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // Deterministic UUID-shaped ids, like the ones an upload service hands out.
    let mut rng = SplitMix64::new(2025);
    let ids: Vec<String> = (0..UPLOADS).map(|_| rng.uuid()).collect();
    let rollout = Rollout::new(RolloutConfig::default());

    println!(
        "{UPLOADS} synthetic upload ids, salt {:?}\n",
        rollout.config().salt
    );
    println!(
        "{:>7}  {:>8}  {:>9}  {:>9}  {:>10}  {:>13}",
        "stage", "async", "expected", "observed", "std errors", "kept from prev"
    );

    let mut previous: Vec<bool> = vec![false; UPLOADS];
    for stage in ["1", "10", "50", "100"] {
        let percent: Percent = stage.parse()?;
        rollout.set_percent(percent);
        let current: Vec<bool> = ids.iter().map(|id| rollout.should_use_async(id)).collect();

        let in_now = current.iter().filter(|&&b| b).count();
        let was_in = previous.iter().filter(|&&b| b).count();
        let kept = previous
            .iter()
            .zip(&current)
            .filter(|&(&before, &now)| before && now)
            .count();
        assert_eq!(kept, was_in, "widening to {percent} dropped an id");

        let p = percent.as_ratio();
        let observed = in_now as f64 / UPLOADS as f64;
        let std_error = (p * (1.0 - p) / UPLOADS as f64).sqrt();
        let z = if std_error > 0.0 {
            (observed - p) / std_error
        } else {
            0.0
        };
        println!(
            "{:>7}  {:>8}  {:>8.3}%  {:>8.3}%  {:>+10.2}  {:>6} / {:<6}",
            percent.to_string(),
            in_now,
            p * 100.0,
            observed * 100.0,
            z,
            kept,
            was_in
        );
        previous = current;
    }

    // Rolling back and widening again restores exactly the same cohort.
    rollout.set_percent(Percent::ZERO);
    assert!(ids.iter().all(|id| !rollout.should_use_async(id)));
    rollout.set_percent("10".parse()?);
    let again = ids
        .iter()
        .filter(|id| rollout.should_use_async(*id))
        .count();
    println!("\nrollback to 0%: 0 async; back to 10%: {again} async (the same cohort as before)");
    println!("done in {:.0?}", started.elapsed());
    Ok(())
}

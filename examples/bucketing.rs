//! 100,000 synthetic upload ids through the rollout stages 1% → 10% → 50% → 100%.
//!
//! For each stage it prints how many uploads take the async path, the expected
//! and observed share, and checks that every id already in stayed in.
//!
//! Run with `cargo run --release --example bucketing`.

use std::time::Instant;

use async_upload_rollout::{Percent, Rollout, RolloutConfig};

const UPLOADS: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let ids: Vec<String> = (0..UPLOADS as u64).map(synthetic_uuid).collect();
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

/// A deterministic UUID-shaped id (SplitMix64), like the ids an upload service hands out.
fn synthetic_uuid(n: u64) -> String {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

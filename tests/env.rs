//! Reading the rollout percent from the environment.
//!
//! One test function only: changing the environment is only sound while no
//! other thread reads it, and this test binary runs nothing else.

use async_upload_rollout::{Percent, Rollout, RolloutConfig, decide::ConfigError};

fn set(name: &str, value: &str) {
    // SAFETY: this binary's only test runs on one thread; nothing else reads
    // the environment concurrently.
    unsafe { std::env::set_var(name, value) }
}

#[test]
fn environment_variable_is_read_strictly() {
    const VAR: &str = "ASYNC_UPLOAD_ROLLOUT";
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var(VAR) };
    assert_eq!(
        RolloutConfig::from_env().unwrap().percent,
        Percent::ZERO,
        "unset means 0%"
    );

    for (value, ppm) in [
        ("10", 100_000),
        (" 50% ", 500_000),
        ("0.5", 5_000),
        ("100", 1_000_000),
    ] {
        set(VAR, value);
        assert_eq!(
            RolloutConfig::from_env().unwrap().percent.ppm(),
            ppm,
            "{value:?}"
        );
        assert_eq!(
            Rollout::from_env().unwrap().percent().ppm(),
            ppm,
            "{value:?}"
        );
    }

    for value in [
        "", "  ", "ten", "-5", "+5", "NaN", "1e1", "12.34567", "101", "100.5", "10%%", "0x10",
    ] {
        set(VAR, value);
        let err = RolloutConfig::from_env().unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ConfigError::InvalidPercent { .. }),
            "{value:?}: {err:?}"
        );
        assert!(message.contains(VAR), "{message}");
        assert!(message.contains(&format!("{value:?}")), "{message}");
        assert!(
            Rollout::from_env().is_err(),
            "{value:?} must not build a rollout"
        );
    }

    set("MY_FLAG_ROLLOUT", "25");
    assert_eq!(
        RolloutConfig::from_env_var("MY_FLAG_ROLLOUT")
            .unwrap()
            .percent,
        Percent::from_whole(25).unwrap()
    );
    set("MY_FLAG_ROLLOUT", "bogus");
    let message = RolloutConfig::from_env_var("MY_FLAG_ROLLOUT")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("MY_FLAG_ROLLOUT") && message.contains("\"bogus\""),
        "{message}"
    );
}

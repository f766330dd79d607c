//! `RolloutConfig` from TOML: never panics; an accepted config compiles
//! into a `Rollout` that decides and round-trips through TOML.
#![no_main]

use async_upload_rollout::{Rollout, RolloutConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = toml::from_str::<RolloutConfig>(text) {
        let rollout = Rollout::new(config.clone());
        let _ = rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e");
        let _ = rollout.decide(text.as_bytes());
        let printed = toml::to_string(&config).expect("an accepted config prints");
        let back: RolloutConfig = toml::from_str(&printed).expect("and reads back");
        assert_eq!(back, config);
    }
});

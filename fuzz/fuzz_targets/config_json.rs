//! `RolloutConfig` from JSON: never panics; an accepted config compiles
//! into a `Rollout` that decides and round-trips through JSON.
#![no_main]

use async_upload_rollout::{Rollout, RolloutConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<RolloutConfig>(data) {
        let rollout = Rollout::new(config.clone());
        let _ = rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e");
        let _ = rollout.decide(data);
        let printed = serde_json::to_string(&config).expect("an accepted config prints");
        let back: RolloutConfig = serde_json::from_str(&printed).expect("and reads back");
        assert_eq!(back, config);
    }
});

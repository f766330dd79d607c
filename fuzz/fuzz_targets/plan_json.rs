//! `RolloutPlan` from JSON: never panics; an accepted plan judges and
//! prints back (see plan_common.rs).
#![no_main]

use async_upload_rollout::RolloutPlan;
use libfuzzer_sys::fuzz_target;

#[path = "plan_common.rs"]
mod plan_common;

fuzz_target!(|text: &str| {
    if let Ok(plan) = RolloutPlan::from_json_str(text) {
        plan_common::exercise(plan);
    }
});

//! Shared by the plan targets: an accepted plan judges an empty and a busy
//! stage at every one of its stages without panicking, and prints back.
use std::time::{Duration, UNIX_EPOCH};

use async_upload_rollout::{Arm, Evaluator, History, MetricsSnapshot, Outcome, RolloutPlan};

pub fn exercise(plan: RolloutPlan) {
    let printed = plan.to_toml_string();
    let back = RolloutPlan::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("an accepted plan does not read back: {e}\n{printed}"));
    assert_eq!(back.stages.len(), plan.stages.len());
    let Ok(evaluator) = Evaluator::new(plan.clone()) else {
        return;
    };
    let mut busy = MetricsSnapshot::default();
    for (i, arm) in Arm::ALL.into_iter().enumerate() {
        for n in 0..50u64 {
            let outcome = Outcome::ALL[(n as usize + i) % 4];
            busy.arm_mut(arm)
                .record(outcome, Duration::from_millis(5 + n * (i as u64 + 1)));
        }
        busy.arm_mut(arm).complaints = 3;
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_762_300_800);
    let mut history = History::default();
    history.push(MetricsSnapshot::empty_at(now));
    for stage in 0..plan.stages.len() {
        for totals in [MetricsSnapshot::default(), busy.clone()] {
            let evaluation = evaluator
                .evaluate(stage, &totals, &history, now)
                .expect("a stage of the plan");
            assert_eq!(evaluation.stage, stage);
        }
    }
}

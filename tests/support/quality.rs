//! Decision-quality scenarios: whole rollouts through the real controller.
//!
//! Shared by `tests/decision_quality.rs` (short, asserted in CI) and its
//! `#[ignore]`d long version that produces the README's table.

use std::time::Duration;

use async_upload_rollout::simulation::{PathModel, Simulation, SimulationConfig};
use async_upload_rollout::{Arm, EvaluationMode, RolloutPlan, Verdict};

/// A way of judging: the mode and the rollback triggers' minimum sample.
#[derive(Clone, Copy, Debug)]
pub struct Judge {
    pub name: &'static str,
    pub mode: EvaluationMode,
    pub trigger_min_uploads: u64,
}

pub const GUARDED: Judge = Judge {
    name: "guarded (default)",
    mode: EvaluationMode::Guarded,
    trigger_min_uploads: 20,
};
pub const LITERAL_20: Judge = Judge {
    name: "literal, triggers from 20 uploads",
    mode: EvaluationMode::Literal,
    trigger_min_uploads: 20,
};
pub const LITERAL_0: Judge = Judge {
    name: "literal, as written (no minimum)",
    mode: EvaluationMode::Literal,
    trigger_min_uploads: 0,
};

/// A healthy path without user complaints: the regression scenarios judge
/// one signal each, so a chance complaint does not end them first.
const QUIET: PathModel = PathModel {
    error_rate: 0.005,
    median_latency: Duration::from_millis(180),
    latency_sigma: 0.5,
    complaint_rate: 0.0,
};

/// How long each stage must run, as a fraction of the plan's `min_duration`
/// (1.0 is the real plan; the CI version runs shorter stages).
fn config(judge: Judge, seed: u64, stage_scale: f64) -> SimulationConfig {
    let mut plan = RolloutPlan::default();
    plan.evaluation.mode = judge.mode;
    plan.triggers.min_uploads = judge.trigger_min_uploads;
    for stage in &mut plan.stages {
        stage.criteria.min_duration = stage.criteria.min_duration.mul_f64(stage_scale);
    }
    SimulationConfig {
        plan,
        start_stage: 1, // the 10% stage: week 2 starts here
        seed,
        ..SimulationConfig::default()
    }
}

/// What ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Left the last stage of interest (advanced past it).
    Advanced,
    Rollback,
    Review,
    /// Still holding when the time limit ran out.
    Held,
}

pub struct Run {
    pub end: End,
    /// Async uploads when the run ended.
    pub async_uploads: u64,
}

/// Runs until the controller advances past `last_stage`, rolls back, asks for
/// review, or `limit` of simulated time passes.
fn run(mut config: SimulationConfig, last_stage: usize, limit: Duration) -> Run {
    config.auto_advance = true;
    let mut sim = Simulation::new(config).expect("the default plan is valid");
    let end = loop {
        let tick = sim.step();
        match tick.evaluation.map(|e| e.verdict) {
            Some(Verdict::Rollback) => break End::Rollback,
            Some(Verdict::ManualReview) => break End::Review,
            _ => {}
        }
        if sim
            .controller()
            .stage()
            .is_some_and(|stage| stage > last_stage)
        {
            break End::Advanced;
        }
        if sim.elapsed() >= limit {
            break End::Held;
        }
    };
    Run {
        end,
        async_uploads: sim.uploads(Arm::Async),
    }
}

pub struct Scores {
    pub runs: usize,
    /// Healthy path: runs wrongly rolled back or sent to review across 10% and 50%.
    pub healthy_wrong: usize,
    /// Of those, the ones rolled back.
    pub healthy_rolled_back: usize,
    /// Healthy path: runs that completed both stages.
    pub healthy_advanced: usize,
    /// Below target (98% success at 10%): runs that advanced.
    pub below_target_advanced: usize,
    /// Below target: runs rolled back (an over-reaction: 98% is above the 95% trigger).
    pub below_target_rolled_back: usize,
    /// Severe regression (10% errors): runs rolled back, and the async uploads it took.
    pub severe_rolled_back: usize,
    pub severe_uploads: Vec<u64>,
    /// Latency +30%: runs that advanced, and runs that reached review or rollback.
    pub latency_advanced: usize,
    pub latency_caught: usize,
}

impl Scores {
    pub fn severe_median(&self) -> u64 {
        let mut v = self.severe_uploads.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(u64::MAX)
    }
}

/// Scores `judge` over `runs` seeded runs of each scenario.
pub fn score(judge: Judge, runs: usize, stage_scale: f64) -> Scores {
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let plan_hours = |stage: usize| {
        RolloutPlan::default().stages[stage]
            .criteria
            .min_duration
            .mul_f64(stage_scale)
    };
    let mut s = Scores {
        runs,
        healthy_wrong: 0,
        healthy_rolled_back: 0,
        healthy_advanced: 0,
        below_target_advanced: 0,
        below_target_rolled_back: 0,
        severe_rolled_back: 0,
        severe_uploads: Vec::new(),
        latency_advanced: 0,
        latency_caught: 0,
    };
    for seed in 0..runs as u64 {
        // Healthy: 0.5% errors, same latency, through 10% and 50%.
        let healthy = run(
            config(judge, seed, stage_scale),
            2,
            plan_hours(1) + plan_hours(2) + hours(48),
        );
        match healthy.end {
            End::Rollback => {
                s.healthy_wrong += 1;
                s.healthy_rolled_back += 1;
            }
            End::Review => s.healthy_wrong += 1,
            End::Advanced => s.healthy_advanced += 1,
            End::Held => {}
        }

        // Below target at 10%: 98.0% success.
        let mut below = config(judge, 1_000_000 + seed, stage_scale);
        below.async_path = PathModel {
            error_rate: 0.02,
            ..QUIET
        };
        below.sync = QUIET;
        match run(below, 1, plan_hours(1) + hours(24)).end {
            End::Advanced => s.below_target_advanced += 1,
            End::Rollback => s.below_target_rolled_back += 1,
            End::Review | End::Held => {}
        }

        // Severe regression at 10%: 10% errors from the first upload.
        let mut severe = config(judge, 2_000_000 + seed, stage_scale);
        severe.async_path = PathModel {
            error_rate: 0.10,
            ..QUIET
        };
        severe.sync = QUIET;
        let r = run(severe, 1, hours(24));
        if r.end == End::Rollback {
            s.severe_rolled_back += 1;
            s.severe_uploads.push(r.async_uploads);
        }

        // Latency regression of 30% at 10%.
        let mut slow = config(judge, 3_000_000 + seed, stage_scale);
        slow.async_path = PathModel {
            median_latency: PathModel::default().median_latency.mul_f64(1.3),
            ..QUIET
        };
        slow.sync = QUIET;
        match run(slow, 1, plan_hours(1) + hours(24)).end {
            End::Advanced => s.latency_advanced += 1,
            End::Rollback | End::Review => s.latency_caught += 1,
            End::Held => {}
        }
    }
    s
}

pub fn table(rows: &[(Judge, &Scores)]) -> String {
    let pct = |n: usize, d: usize| format!("{:.1}% ({n}/{d})", 100.0 * n as f64 / d.max(1) as f64);
    let mut out = String::from(
        "| mode | healthy: wrongly rolled back or reviewed | of which rolled back | healthy: completed 10% and 50% | 98% success: wrongly advanced | 98% success: rolled back | 10% errors: rolled back | 10% errors: median async uploads to rollback | latency +30%: advanced | latency +30%: review or rollback |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (judge, s) in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            judge.name,
            pct(s.healthy_wrong, s.runs),
            pct(s.healthy_rolled_back, s.runs),
            pct(s.healthy_advanced, s.runs),
            pct(s.below_target_advanced, s.runs),
            pct(s.below_target_rolled_back, s.runs),
            pct(s.severe_rolled_back, s.runs),
            s.severe_median(),
            pct(s.latency_advanced, s.runs),
            pct(s.latency_caught, s.runs),
        ));
    }
    out
}

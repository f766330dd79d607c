//! The week-2 rollout plan, run by the crate itself in simulated time.
//!
//! Synthetic upload traffic goes through the real decision (`should_use_async`),
//! the real metrics accumulator and the real controller, on a `ManualClock`:
//! 1% (the week-1 stage) → 10% → 50%, advancing when each stage's criteria
//! hold and its minimum duration has passed, and rolling back by itself when a
//! trigger fires. Every tick is appended to `logs/async_upload_rollout/metrics.jsonl`.
//!
//! ```text
//! cargo run --release --example week2_rollout
//! cargo run --release --example week2_rollout -- --fault error-burst --fault-stage 10
//! cargo run --release --example week2_rollout -- --fault latency-creep --fault-stage 50 --mode literal
//! ```
//!
//! Flags:
//! - `--fault <error-burst|latency-creep|critical-error|memory-leak>`: inject a regression
//! - `--fault-stage <percent>`: the stage it starts in (default 10)
//! - `--fault-after <duration>`: how long into that stage (default 2h)
//! - `--mode <guarded|literal>`: how the evaluator judges rates (default guarded)
//! - `--seed <n>`: random seed (default 20251105)
//! - `--log <path>`: where to append the log (default logs/async_upload_rollout/metrics.jsonl)
//! - `--no-log`: do not write a log

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_upload_rollout::simulation::{Fault, Simulation, SimulationConfig};
use async_upload_rollout::{
    Action, Arm, DEFAULT_LOG_PATH, EvaluationMode, JsonlSink, Percent, RolloutStatus, Tick, Verdict,
};

struct Args {
    fault: Option<Fault>,
    fault_stage: Percent,
    fault_after: Duration,
    mode: EvaluationMode,
    seed: u64,
    log: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        fault: None,
        fault_stage: Percent::from_whole(10).map_err(|e| e.to_string())?,
        fault_after: Duration::from_secs(2 * 3600),
        mode: EvaluationMode::Guarded,
        seed: 20_251_105,
        log: Some(DEFAULT_LOG_PATH.to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--fault" => args.fault = Some(value()?.parse()?),
            "--fault-stage" => {
                let v = value()?;
                args.fault_stage = v.parse().map_err(|e| format!("--fault-stage: {e}"))?;
            }
            "--fault-after" => {
                let v = value()?;
                args.fault_after = humantime::parse_duration(&v)
                    .map_err(|e| format!("--fault-after {v:?}: {e}"))?;
            }
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "guarded" => EvaluationMode::Guarded,
                    "literal" => EvaluationMode::Literal,
                    other => return Err(format!("--mode {other:?}: expected guarded or literal")),
                }
            }
            "--seed" => {
                let v = value()?;
                args.seed = v.parse().map_err(|e| format!("--seed {v:?}: {e}"))?;
            }
            "--log" => args.log = Some(value()?),
            "--no-log" => args.log = None,
            "-h" | "--help" => {
                return Err("usage: week2_rollout [--fault KIND] [--fault-stage PERCENT] [--fault-after DURATION] \
                     [--mode guarded|literal] [--seed N] [--log PATH | --no-log]"
                    .into());
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("week2_rollout: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    let args = parse_args()?;
    let mut config = SimulationConfig::default();
    config.plan.evaluation.mode = args.mode;
    config.seed = args.seed;
    config.fault_after = args.fault_after;
    // A tick line is about 20 KiB; over six simulated days, one every 30
    // minutes (plus every action and verdict change) keeps the log to a few MB.
    config.log_interval = Duration::from_secs(30 * 60);
    // The plan stops at 50% for week 2.
    let last_stage = config
        .plan
        .stage_at(Percent::from_whole(50).map_err(|e| e.to_string())?)
        .unwrap_or(2);
    if let Some(fault) = args.fault {
        let stage = config.plan.stage_at(args.fault_stage).ok_or_else(|| {
            format!(
                "--fault-stage {}: the plan has no such stage",
                args.fault_stage
            )
        })?;
        config.fault = Some((fault, stage));
    }
    let sink = match &args.log {
        Some(path) => Some(JsonlSink::open(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let stages: Vec<String> = config
        .plan
        .stages
        .iter()
        .map(|s| s.percent.to_string())
        .collect();
    println!(
        "Week-2 rollout, simulated: {} uploads/min, ticks every {}, plan {} ({} mode), seed {}",
        config.uploads_per_minute,
        humantime::format_duration(config.tick),
        stages.join(" → "),
        match args.mode {
            EvaluationMode::Guarded => "guarded",
            EvaluationMode::Literal => "literal",
        },
        config.seed
    );
    if let Some((fault, stage)) = config.fault {
        println!(
            "Fault: {fault:?} on the async path, {} into the {} stage",
            humantime::format_duration(config.fault_after),
            config.plan.stages[stage].percent
        );
    }
    if let Some(path) = &args.log {
        println!("Log: {path}");
    }
    println!();
    println!(
        "{:>9}  {:>5}  {:>7} {:>8}  {:>8} {:>8}  {:>7}  {:>7}  {:<13}  reason",
        "time", "stage", "async", "sync", "success", "(sync)", "errors", "latency", "verdict"
    );

    let mut sim = Simulation::with_log(config, sink).map_err(|e| e.to_string())?;
    let mut last_printed = Duration::ZERO;
    let mut ticks_after_rollback = 0;
    let limit = Duration::from_secs(14 * 24 * 3600);
    loop {
        let tick = sim.step();
        if let Some(err) = &tick.log_error {
            eprintln!("warning: {err}");
        }
        let hourly = sim.elapsed() - last_printed >= Duration::from_secs(6 * 3600);
        let notable = tick
            .action
            .as_ref()
            .is_some_and(|a| !matches!(a, Action::Ready { .. }))
            || matches!(
                tick.evaluation.as_ref().map(|e| e.verdict),
                Some(Verdict::Rollback | Verdict::ManualReview)
            );
        if hourly || notable || ticks_after_rollback > 0 {
            print_row(&sim, &tick);
            last_printed = sim.elapsed();
        }
        if let Some(action) = &tick.action {
            print_action(action, &tick, &sim);
        }
        match sim.controller().status() {
            Some(RolloutStatus::RolledBack) => {
                ticks_after_rollback += 1;
                if ticks_after_rollback > 2 {
                    let probe = (0..10_000u64)
                        .filter(|i| sim.rollout().should_use_async(&i.to_le_bytes()))
                        .count();
                    println!(
                        "\nRolled back: nothing async ({probe} of 10,000 probe ids on the async path), \
                         until an operator resumes (RolloutController::resume, or \
                         `async-upload-rollout resume` on the state file)."
                    );
                    break;
                }
            }
            Some(RolloutStatus::AwaitingReview) => {
                let reason = sim.controller().state().map(|s| s.reason.clone());
                println!(
                    "\nManual review requested, automatic advancing stopped: {}",
                    reason.unwrap_or_default()
                );
                break;
            }
            _ => {}
        }
        if sim
            .controller()
            .stage()
            .is_some_and(|stage| stage > last_stage)
        {
            println!("\nWeek 2 complete: 10% and 50% validated, ready for Week 3 (100%).");
            break;
        }
        if sim.elapsed() >= limit {
            println!(
                "\nStopped after {} of simulated time.",
                humantime::format_duration(limit)
            );
            break;
        }
    }
    println!(
        "\n{} simulated uploads ({} async) over {} in {:.1?}.",
        sim.uploads(Arm::Async) + sim.uploads(Arm::Sync),
        sim.uploads(Arm::Async),
        humantime::format_duration(sim.elapsed()),
        started.elapsed()
    );
    Ok(())
}

fn print_row(sim: &Simulation, tick: &Tick) {
    let Some(e) = &tick.evaluation else {
        return;
    };
    let Some(totals) = sim.controller().stage_totals() else {
        return;
    };
    let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", v * 100.0));
    let ratio = e.check("latency_ratio").and_then(|c| c.observed);
    let secs = sim.elapsed().as_secs();
    let mut reason = e.reason.clone();
    if reason.chars().count() > 100 {
        reason = reason.chars().take(99).collect::<String>() + "…";
    }
    println!(
        "{:>9}  {:>5}  {:>7} {:>8}  {:>8} {:>8}  {:>7}  {:>7}  {:<13}  {}",
        format!(
            "d{}+{:02}:{:02}",
            secs / 86_400 + 1,
            secs % 86_400 / 3600,
            secs % 3600 / 60
        ),
        e.percent.to_string(),
        totals.uploads(Arm::Async),
        totals.uploads(Arm::Sync),
        rate(totals.success_rate(Arm::Async)),
        rate(totals.success_rate(Arm::Sync)),
        rate(totals.error_rate(Arm::Async)),
        ratio.map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
        e.verdict.to_string(),
        reason
    );
}

fn print_action(action: &Action, tick: &Tick, sim: &Simulation) {
    match action {
        Action::Advance {
            from, to, percent, ..
        } => println!(
            "          ↳ stage {} met its criteria: advancing to {percent} (stage {} → {to})",
            from.map_or("off".to_owned(), |from| sim.controller().plan().stages
                [from]
                .percent
                .to_string()),
            from.map_or("off".to_owned(), |from| from.to_string())
        ),
        Action::Rollback { .. } => println!(
            "          ↳ ROLLBACK: nothing async from this instant (one atomic store): {}",
            reason(tick)
        ),
        Action::ReviewRequested => {
            println!("          ↳ manual review requested: {}", reason(tick));
        }
        _ => {}
    }
}

fn reason(tick: &Tick) -> &str {
    tick.evaluation.as_ref().map_or("", |e| e.reason.as_str())
}

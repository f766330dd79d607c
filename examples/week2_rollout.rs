//! The week-2 rollout plan, run by the crate itself in simulated time.
//!
//! Synthetic upload traffic goes through the real decision (`should_use_async`),
//! the real metrics accumulator and the real controller, on a `ManualClock`:
//! 1% (the week-1 stage) → 10% → 50%, advancing when each stage's criteria
//! hold and its minimum duration has passed, and rolling back by itself when a
//! trigger fires. The plan stops at 50% (100% is Week 3's): when the 50%
//! stage meets its criteria, week 2 is complete. Every tick is appended to
//! `logs/async_upload_rollout/metrics.jsonl`.
//!
//! ```text
//! cargo run --release --example week2_rollout
//! cargo run --release --example week2_rollout -- --fault error-burst --fault-stage 10
//! cargo run --release --example week2_rollout -- --fault latency-creep --fault-stage 50 --mode literal
//! ```
//!
//! Flags (`--help` lists them too):
//! - `--fault <error-burst|latency-creep|critical-error|memory-leak>`: inject a regression
//! - `--fault-stage <percent>`: the stage it starts in: 1, 10 or 50 (default 10)
//! - `--fault-after <duration>`: how long into that stage (default 2h)
//! - `--mode <guarded|literal>`: how the evaluator judges rates (default guarded)
//! - `--seed <n>`: random seed (default 20251105)
//! - `--log <path>`: where to append the log (default logs/async_upload_rollout/metrics.jsonl)
//! - `--no-log`: do not write a log

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_upload_rollout::act::simulation::{Fault, Simulation, SimulationConfig};
use async_upload_rollout::{
    Action, Arm, JsonlSink, Percent, RolloutStatus, Tick, Verdict, act::log::DEFAULT_LOG_PATH,
    judge::EvaluationMode,
};

/// `--help`: every flag, what it does and its default.
pub const HELP: &str = "\
week2_rollout: the week-2 rollout plan (1% → 10% → 50%) run by the crate's real decision,
metrics, evaluator and controller in simulated time, printing a table row every six
simulated hours and at every action.

usage: week2_rollout [FLAGS]

  --fault KIND            inject a regression into the async path: error-burst,
                          latency-creep, critical-error or memory-leak (default: none)
  --fault-stage PERCENT   the stage the fault starts in: 1, 10 or 50 (default 10)
  --fault-after DURATION  how long into that stage it starts (default 2h)
  --mode MODE             how rates are judged: guarded (confidence intervals, the
                          default) or literal (the plan's rules as written)
  --seed N                the random seed: the same seed gives the same run
                          (default 20251105)
  --log PATH              where the controller's JSON-lines log is appended
                          (default logs/async_upload_rollout/metrics.jsonl)
  --no-log                write no log
  -h, --help              print this and exit
";

/// What the command line asks for.
enum Parsed {
    Run(Args),
    Help,
}

struct Args {
    fault: Option<Fault>,
    fault_stage: Percent,
    fault_after: Duration,
    mode: EvaluationMode,
    seed: u64,
    log: Option<String>,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args {
        fault: None,
        fault_stage: Percent::from_whole(10).map_err(|e| e.to_string())?,
        fault_after: Duration::from_secs(2 * 3600),
        mode: EvaluationMode::Guarded,
        seed: 20_251_105,
        log: Some(DEFAULT_LOG_PATH.to_owned()),
    };
    let mut it = argv.into_iter();
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
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    Ok(Parsed::Run(args))
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("week2_rollout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A duration as an operator reads it: `6 days 2 h 17 min`, `45 s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (
            secs / 86_400,
            if secs / 86_400 == 1 { " day" } else { " days" },
        ),
        (secs % 86_400 / 3600, " h"),
        (secs % 3600 / 60, " min"),
        (secs % 60, " s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0 s".to_owned()
    } else {
        text.join(" ")
    }
}

/// Runs the simulation the flags `argv` ask for, printing the table.
///
/// # Errors
///
/// A bad flag, or a log that cannot be opened, in one sentence.
pub fn run(argv: impl IntoIterator<Item = String>) -> Result<(), String> {
    let started = Instant::now();
    let args = match parse_args(argv)? {
        Parsed::Run(args) => args,
        Parsed::Help => {
            print!("{HELP}");
            return Ok(());
        }
    };
    let mut config = SimulationConfig::default();
    config.plan.evaluation.mode = args.mode;
    config.seed = args.seed;
    config.fault_after = args.fault_after;
    // A tick line is about 20 KiB; over six simulated days, one every 30
    // minutes (plus every action and verdict change) keeps the log to a few MB.
    config.log_interval = Duration::from_secs(30 * 60);
    // The plan stops at 50% for week 2: 100% is Week 3's. With 50% as the
    // last stage, meeting its criteria completes the rollout (it does not
    // advance to 100%).
    let fifty = Percent::from_whole(50).map_err(|e| e.to_string())?;
    config.plan.stages.retain(|stage| stage.percent <= fifty);
    let stages: Vec<String> = config
        .plan
        .stages
        .iter()
        .map(|s| s.percent.to_string())
        .collect();
    if let Some(fault) = args.fault {
        let stage = config.plan.stage_at(args.fault_stage).ok_or_else(|| {
            format!(
                "--fault-stage {}: the week-2 simulation runs the stages {} (100% is Week 3's)",
                args.fault_stage,
                stages.join(", ")
            )
        })?;
        config.fault = Some((fault, stage));
    }
    let sink = match &args.log {
        Some(path) => Some(JsonlSink::open(path).map_err(|e| e.to_string())?),
        None => None,
    };
    println!(
        "Week-2 rollout, simulated: {} uploads/min, ticks every {}, plan {} ({} mode), seed {}",
        config.uploads_per_minute,
        human(config.tick),
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
            human(config.fault_after),
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
            Some(RolloutStatus::Complete) => {
                println!("\nWeek 2 complete: 10% and 50% validated, ready for Week 3 (100%).");
                break;
            }
            _ => {}
        }
        if sim.elapsed() >= limit {
            println!("\nStopped after {} of simulated time.", human(limit));
            break;
        }
    }
    println!(
        "\n{} simulated uploads ({} async) over {} in {:.1?}.",
        sim.uploads(Arm::Async) + sim.uploads(Arm::Sync),
        sim.uploads(Arm::Async),
        human(sim.elapsed()),
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
    let mut reason = distinct_parts(&e.reason);
    // An advance verdict before the stage's minimum duration: say what it
    // waits for (the controller advances once it has passed).
    if e.verdict == Verdict::Advance && tick.action.is_none() {
        let state = sim.controller().state();
        let stage = &sim.controller().plan().stages[e.stage];
        let ran = state.map(|s| s.stage_age(sim.now())).unwrap_or_default();
        if let Some(left) = stage.criteria.min_duration.checked_sub(ran) {
            reason = format!(
                "criteria met; waits for the stage's minimum of {} ({} to go)",
                human(stage.criteria.min_duration),
                human(left)
            );
        }
    }
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
        Action::Complete => println!(
            "          ↳ stage {} met its criteria: the last stage of week 2 is complete",
            sim.controller().plan().stages[sim.controller().stage().unwrap_or_default()].percent
        ),
        _ => {}
    }
}

fn reason(tick: &Tick) -> String {
    tick.evaluation
        .as_ref()
        .map_or_else(String::new, |e| distinct_parts(&e.reason))
}

/// `reason` with its `; `-separated parts said once each (two checks, the
/// success and the failure rate, can fire with the same sentence).
fn distinct_parts(reason: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in reason.split("; ") {
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    parts.join("; ")
}

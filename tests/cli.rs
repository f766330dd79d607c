//! The operator's command line, run as a process on logs that the library
//! itself writes (simulated rollouts through a real controller and `JsonlSink`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_upload_rollout::act::simulation::{Fault, Simulation, SimulationConfig};
use async_upload_rollout::cli::{Fleet, InstanceLog, exit_code};
use async_upload_rollout::{
    Arm, Evaluation, JsonlSink, MetricsAccumulator, Outcome, Percent, Rollout, RolloutConfig,
    RolloutPlan, RolloutStatus, Verdict,
    act::log::{LogEvent, LogRecord, read_log},
    clock::ManualClock,
};

const BIN: &str = env!("CARGO_BIN_EXE_async-upload-rollout");

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aur-cli-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a command's output (`out.stdout`, `out.stderr`) says
/// `what`, showing it whole when it does not.
fn assert_says(output: &[u8], what: &str) {
    let said = text(output);
    assert!(said.contains(what), "{what:?} not in:\n{said}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a simulation writing its controller's log to `path`, `ticks` ticks
/// or until `stop` says so (then two more ticks).
fn simulate(
    path: &Path,
    config: SimulationConfig,
    ticks: usize,
    stop: impl Fn(Option<RolloutStatus>) -> bool,
) {
    let sink = JsonlSink::open(path).unwrap();
    let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
    let mut extra = None;
    for _ in 0..ticks {
        let tick = sim.step();
        assert!(tick.log_error.is_none(), "{:?}", tick.log_error);
        if extra.is_none() && stop(sim.controller().status()) {
            extra = Some(2);
        }
        if let Some(n) = &mut extra {
            if *n == 0 {
                break;
            }
            *n -= 1;
        }
    }
}

/// Four simulated hours of a healthy 10% stage.
fn healthy_log(path: &Path, seed: u64) {
    healthy_log_for(path, seed, 240);
}

/// `minutes` simulated minutes of a healthy 10% stage.
fn healthy_log_for(path: &Path, seed: u64, minutes: usize) {
    let config = SimulationConfig {
        start_stage: 1,
        seed,
        ..SimulationConfig::default()
    };
    simulate(path, config, minutes, |_| false);
}

/// The evaluation `check --json` printed, and its exit code.
fn check_json(args: &[&str]) -> (Evaluation, Option<i32>) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    let evaluation = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{err}: {stdout}{}", text(&out.stderr)));
    (evaluation, out.status.code())
}

/// The async path's errors jump to 10% at the start of the 10% stage.
fn error_burst_log(path: &Path) {
    let config = SimulationConfig {
        start_stage: 1,
        fault: Some((Fault::ErrorBurst, 1)),
        fault_after: Duration::ZERO,
        ..SimulationConfig::default()
    };
    simulate(path, config, 600, |s| s == Some(RolloutStatus::RolledBack));
}

/// Async latency creeps up from the start of the 10% stage until the
/// sustained latency trigger asks for review.
fn latency_creep_log(path: &Path) {
    let config = SimulationConfig {
        start_stage: 1,
        fault: Some((Fault::LatencyCreep, 1)),
        fault_after: Duration::ZERO,
        ..SimulationConfig::default()
    };
    simulate(path, config, 600, |s| {
        s == Some(RolloutStatus::AwaitingReview)
    });
}

/// The last tick line of the log at `path`.
fn last_tick(path: &Path) -> LogRecord {
    read_log::<LogRecord>(path)
        .unwrap()
        .records
        .into_iter()
        .rev()
        .find(|r| r.event == LogEvent::Tick)
        .expect("a tick line")
}

/// The cells of the table row of check `name` in `check`'s output.
fn row<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in\n{stdout}"))
}

#[test]
fn a_healthy_stage_exits_0_with_every_check_in_the_table() {
    let dir = TempDir::new("healthy");
    let log = dir.file("metrics.jsonl");
    healthy_log(&log, 1);
    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    let (evaluation, code) = check_json(&[path_str(&log)]);
    assert_eq!(out.status.code(), code, "{stdout}{}", text(&out.stderr));
    assert_eq!(code, Some(i32::from(exit_code(evaluation.verdict))));
    assert!(matches!(code, Some(0 | 4)), "{stdout}");
    let header = row(&stdout, "CHECK");
    assert_eq!(
        header,
        [
            "CHECK",
            "KIND",
            "STATUS",
            "OBSERVED",
            "THRESHOLD",
            "INTERVAL",
            "SAMPLE"
        ]
    );
    let totals = last_tick(&log).snapshot.unwrap();
    let uploads = row(&stdout, "uploads");
    assert_eq!(uploads[1..3], ["criterion", "pass"]);
    assert_eq!(uploads[3], totals.judged(Arm::Async).to_string());
    assert_eq!(uploads[4], "500");
    let success = row(&stdout, "success_rate");
    assert_eq!(success[4], "99%");
    assert_eq!(row(&stdout, "rollback.error_rate[stage]")[2], "pass");
    assert!(
        stdout.contains("verdict: advance") || stdout.contains("verdict: hold"),
        "{stdout}"
    );
}

#[test]
fn an_error_burst_exits_3_naming_the_rollback_triggers() {
    let dir = TempDir::new("burst");
    let log = dir.file("metrics.jsonl");
    error_burst_log(&log);
    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("verdict: rollback"), "{stdout}");
    let failing: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("rollback.") && l.contains("FAIL"))
        .collect();
    assert!(!failing.is_empty(), "{stdout}");
}

#[test]
fn a_sustained_latency_regression_exits_2() {
    let dir = TempDir::new("creep");
    let log = dir.file("metrics.jsonl");
    latency_creep_log(&log);
    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "review.latency_ratio[last 30m]")[2], "FAIL");
    assert!(stdout.contains("verdict: manual review"), "{stdout}");
}

#[test]
fn check_json_prints_the_evaluation_and_the_exit_code_tells_advance_from_hold() {
    let dir = TempDir::new("json");
    // Half an hour of a healthy 10% stage: too few uploads, hold (4).
    let short = dir.file("short.jsonl");
    healthy_log_for(&short, 5, 30);
    let (evaluation, code) = check_json(&[path_str(&short)]);
    assert_eq!(evaluation.verdict, Verdict::Hold, "{}", evaluation.reason);
    assert_eq!(code, Some(4));
    // What the controller logged, field for field.
    same_evaluation(&evaluation, &last_tick(&short).evaluation.unwrap(), "short");
    // Ten healthy hours: every criterion met, advance (0).
    let long = dir.file("long.jsonl");
    healthy_log_for(&long, 5, 600);
    let (evaluation, code) = check_json(&[path_str(&long)]);
    assert_eq!(
        evaluation.verdict,
        Verdict::Advance,
        "{}",
        evaluation.reason
    );
    assert_eq!(code, Some(0));
    // Rollback (3) and review (2) keep their codes in JSON mode too.
    let burst = dir.file("burst.jsonl");
    error_burst_log(&burst);
    let (evaluation, code) = check_json(&[path_str(&burst)]);
    assert_eq!((evaluation.verdict, code), (Verdict::Rollback, Some(3)));
    let creep = dir.file("creep.jsonl");
    latency_creep_log(&creep);
    let (evaluation, code) = check_json(&[path_str(&creep)]);
    assert_eq!((evaluation.verdict, code), (Verdict::ManualReview, Some(2)));
    // Errors stay on stderr with exit code 1 and nothing on stdout.
    let out = run(&["check", "--json", path_str(&dir.file("missing.jsonl"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

/// `a` and `b` agree in everything, floats to 1e-12 (the log's JSON
/// round trip may change the last bit).
fn same_evaluation(a: &Evaluation, b: &Evaluation, what: &str) {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(1.0);
    let close_opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => close(x, y),
        (x, y) => x == y,
    };
    assert_eq!(
        (a.verdict, &a.reason, a.stage, a.percent, a.at_unix_ms),
        (b.verdict, &b.reason, b.stage, b.percent, b.at_unix_ms),
        "{what}"
    );
    assert_eq!(a.checks.len(), b.checks.len(), "{what}");
    for (c, d) in a.checks.iter().zip(&b.checks) {
        assert_eq!(
            (&c.name, c.kind, c.status, c.sample_size, &c.detail),
            (&d.name, d.kind, d.status, d.sample_size, &d.detail),
            "{what}"
        );
        assert!(close_opt(c.observed, d.observed), "{what}: {c:?} vs {d:?}");
        assert!(close(c.threshold, d.threshold), "{what}: {c:?} vs {d:?}");
        assert!(
            close_opt(c.interval.map(|i| i.low), d.interval.map(|i| i.low))
                && close_opt(c.interval.map(|i| i.high), d.interval.map(|i| i.high)),
            "{what}: {c:?} vs {d:?}"
        );
    }
}

#[test]
fn check_reproduces_the_controllers_own_last_evaluation() {
    let dir = TempDir::new("reproduce");
    for (name, make) in [
        ("burst.jsonl", error_burst_log as fn(&Path)),
        ("creep.jsonl", latency_creep_log),
    ] {
        let log = dir.file(name);
        make(&log);
        let fleet = Fleet::new(vec![InstanceLog::read(&log, &mut |_, _| {}).unwrap()]).unwrap();
        let outcome = fleet.check(&RolloutPlan::default(), None).unwrap();
        let logged = last_tick(&log).evaluation.unwrap();
        same_evaluation(&outcome.evaluation, &logged, name);
    }
}

#[test]
fn merging_two_instances_sums_their_counts() {
    let dir = TempDir::new("merge");
    let (a, b) = (dir.file("a.jsonl"), dir.file("b.jsonl"));
    healthy_log(&a, 11);
    healthy_log(&b, 22);
    let (ta, tb) = (
        last_tick(&a).snapshot.unwrap(),
        last_tick(&b).snapshot.unwrap(),
    );
    assert_ne!(
        ta.judged(Arm::Async),
        tb.judged(Arm::Async),
        "different traffic"
    );

    let fleet = Fleet::new(vec![
        InstanceLog::read(&a, &mut |_, _| {}).unwrap(),
        InstanceLog::read(&b, &mut |_, _| {}).unwrap(),
    ])
    .unwrap();
    let outcome = fleet.check(&RolloutPlan::default(), None).unwrap();
    assert_eq!(outcome.totals, ta.merge(&tb));

    let out = run(&["check", path_str(&a), path_str(&b)]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit_code(outcome.evaluation.verdict))),
        "{stdout}{}",
        text(&out.stderr)
    );
    let sum = ta.judged(Arm::Async) + tb.judged(Arm::Async);
    assert_eq!(row(&stdout, "uploads")[3], sum.to_string());
    assert!(stdout.contains("2 instance(s)"), "{stdout}");
}

#[test]
fn a_torn_last_line_is_reported_with_file_and_line_and_skipped() {
    let dir = TempDir::new("torn");
    let log = dir.file("metrics.jsonl");
    error_burst_log(&log);
    let lines = fs::read_to_string(&log).unwrap().lines().count();
    let whole = run(&["check", path_str(&log)]);
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(br#"{"v":1,"at_unix_ms":17623"#)
        .unwrap();
    let torn = run(&["check", path_str(&log)]);
    let stderr = text(&torn.stderr);
    assert!(stderr.contains(path_str(&log)), "{stderr}");
    assert!(stderr.contains(&format!("line {}", lines + 1)), "{stderr}");
    assert!(stderr.contains("torn"), "{stderr}");
    assert_eq!(torn.status.code(), whole.status.code());
    assert_eq!(text(&torn.stdout), text(&whole.stdout));
}

#[test]
fn usage_and_input_errors_exit_1_naming_the_file_and_line() {
    // No subcommand, no log, unknown flag: usage errors are 1, not clap's 2.
    for args in [&[][..], &["check"], &["check", "x.jsonl", "--frobnicate"]] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));

    let dir = TempDir::new("errors");
    let missing = dir.file("missing.jsonl");
    let out = run(&["check", path_str(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(path_str(&missing)));

    // A corrupt line that is not the last one.
    let log = dir.file("corrupt.jsonl");
    healthy_log(&log, 3);
    let mut lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[2] = "{not json".to_owned();
    fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = run(&["check", path_str(&log)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(path_str(&log)) && stderr.contains("line 3"),
        "{stderr}"
    );

    // --stage outside the plan.
    healthy_log(&dir.file("ok.jsonl"), 4);
    let out = run(&["check", path_str(&dir.file("ok.jsonl")), "--stage", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "--stage 9");
}

#[test]
fn snapshot_only_logs_are_judged_at_the_stage_given() {
    let dir = TempDir::new("snapshots");
    let log = dir.file("metrics.jsonl");
    let clock = ManualClock::default();
    let metrics = MetricsAccumulator::with_clock(std::sync::Arc::new(clock.clone()));
    let mut sink = JsonlSink::open(&log).unwrap();
    for minute in 0..60 {
        for i in 0..30 {
            let outcome = if i == 0 && minute % 3 == 0 {
                Outcome::Error
            } else {
                Outcome::Success
            };
            metrics.record(Arm::Async, outcome, Duration::from_millis(100));
            metrics.record(Arm::Sync, Outcome::Success, Duration::from_millis(100));
        }
        clock.advance(Duration::from_secs(60));
        sink.append(&LogRecord::snapshot(metrics.snapshot()))
            .unwrap();
    }
    // No stage or percent in plain snapshot lines: the stage must be given.
    let out = run(&["check", path_str(&log)]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "--stage");

    let out = run(&["check", path_str(&log), "--stage", "1"]);
    let stdout = text(&out.stdout);
    // 98.9% success, under the 99% target: hold.
    assert_eq!(out.status.code(), Some(4), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "uploads")[3], "1800");
    assert_says(&out.stderr, "cumulative");
    // No controller state: the headline is the recomputed verdict.
    assert!(
        stdout.starts_with("stage 1 (10%): verdict hold"),
        "{stdout}"
    );

    // The report draws them too: a point a minute, in 1-minute bins.
    let html_path = dir.file("report.html");
    let out = run(&["report", path_str(&log), "-o", path_str(&html_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(&html_path).unwrap();
    let drawn = points_in(figure(&html, "chart-success-rate"), "stroke=\"#1F77B4\"").len();
    assert!(drawn >= 50, "{drawn} points");
}

#[test]
fn plan_prints_the_effective_plan_and_names_file_and_field_of_errors() {
    let out = run(&["plan"]);
    assert_eq!(out.status.code(), Some(0));
    let printed = RolloutPlan::from_toml_str(&text(&out.stdout)).unwrap();
    assert_eq!(printed, RolloutPlan::default());

    let dir = TempDir::new("plan");
    let invalid = dir.file("invalid.toml");
    let mut plan = RolloutPlan::default();
    plan.stages[1].criteria.min_success_rate = 1.5;
    fs::write(&invalid, plan.to_toml_string()).unwrap();
    let out = run(&["plan", "--plan", path_str(&invalid)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(path_str(&invalid)), "{stderr}");
    assert!(
        stderr.contains("stages[1].criteria.min_success_rate"),
        "{stderr}"
    );

    let unparsable = dir.file("unknown.toml");
    fs::write(
        &unparsable,
        "[evaluation]\nmode = \"guarded\"\nspeed = 3\n\n[[stages]]\npercent = 5\n",
    )
    .unwrap();
    let out = run(&["plan", "--plan", path_str(&unparsable)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(path_str(&unparsable)), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("speed"),
        "{stderr}"
    );

    // check uses the same loader.
    let log = dir.file("metrics.jsonl");
    healthy_log(&log, 5);
    let out = run(&["check", path_str(&log), "--plan", path_str(&invalid)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stages[1].criteria.min_success_rate"));
}

#[test]
fn bucket_matches_rollout_bucket_and_the_decision() {
    for (id, salt) in [
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "async-upload"),
        ("upload-42", "async-upload"),
        ("upload-42", "another-flag"),
    ] {
        let mut config = RolloutConfig::with_percent(Percent::from_whole(10).unwrap());
        config.salt = salt.to_owned();
        let rollout = Rollout::new(config);
        let out = run(&["bucket", id, "--salt", salt, "--percent", "10"]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let bucket: u32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("bucket:"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(bucket, rollout.bucket(id), "{id} {salt}");
        let path = if rollout.should_use_async(id) {
            "async"
        } else {
            "sync"
        };
        assert!(
            stdout.contains(&format!("at 10%: threshold 100000 ppm: {path} (")),
            "{stdout}"
        );
    }
}

/// The part of `html` inside the figure with id `id`.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure class=\"chart\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = start + html[start..].find("</figure>").unwrap();
    &html[start..end]
}

#[test]
fn report_writes_one_html_file_with_charts_thresholds_and_verdicts() {
    let dir = TempDir::new("report");
    let log = dir.file("metrics.jsonl");
    error_burst_log(&log);
    let html_path = dir.file("report.html");
    let out = run(&["report", path_str(&log), "-o", path_str(&html_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(&html_path).unwrap();

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "self-contained and static");
    assert!(!html.contains("src=\"http"), "no external resources");
    for id in [
        "chart-percent",
        "chart-success-rate",
        "chart-error-rate",
        "chart-latency-ratio",
        "chart-latency",
    ] {
        assert!(figure(&html, id).contains("<svg"), "{id} has no SVG");
    }
    // Thresholds: the stage criterion (green) and the rollback trigger (red).
    let success = figure(&html, "chart-success-rate");
    assert!(success.contains("stroke=\"#2CA02C\""), "no criterion line");
    assert!(success.contains("stroke=\"#D62728\""), "no trigger line");
    assert!(success.contains("rollback below") && success.contains("stage criterion (min)"));
    // The rollback is marked on the percent chart.
    assert!(
        figure(&html, "chart-percent").contains("\nrollback\n</text>"),
        "no rollback mark"
    );

    // The verdict table has rows, the rollback among them.
    assert!(html.contains("<table class=\"verdicts\">"));
    assert!(html.contains("<span class=\"verdict rollback\">rollback</span>"));
    assert!(html.contains("action: rollback"));
    // Reasons are escaped: "success_rate < 95% rolls back".
    assert!(html.contains("&lt; 95% rolls back"));
    assert!(!html.contains("< 95% rolls back"));
}

// ---------------------------------------------------------------------------
// Issue 21: `check` and `report` tell the controller's truth, at the size of
// a real log.
// ---------------------------------------------------------------------------

/// The log `examples/week2_rollout.rs` writes with `--fault KIND
/// --fault-stage PERCENT` (or no fault): the same simulation settings (the
/// default plan and seed, ticks every simulated minute, quiet ticks logged
/// every 30 minutes, the fault 2 h into its stage) and the same stopping
/// rules (two ticks after a rollback, at a review, or once past the 50%
/// stage), through the real controller and `JsonlSink`.
fn week2_example_log(path: &Path, fault: Option<(Fault, Percent)>) {
    let mut config = SimulationConfig {
        log_interval: Duration::from_secs(30 * 60),
        ..SimulationConfig::default()
    };
    if let Some((fault, percent)) = fault {
        let stage = config.plan.stage_at(percent).expect("a stage of the plan");
        config.fault = Some((fault, stage));
    }
    let last_stage = config
        .plan
        .stage_at(Percent::from_whole(50).unwrap())
        .unwrap();
    let sink = JsonlSink::open(path).unwrap();
    let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
    let mut after_rollback = 0;
    for _ in 0..14 * 24 * 60 {
        assert!(sim.step().log_error.is_none());
        match sim.controller().status() {
            Some(RolloutStatus::RolledBack) => {
                after_rollback += 1;
                if after_rollback > 2 {
                    break;
                }
            }
            Some(RolloutStatus::AwaitingReview) => break,
            _ => {}
        }
        if sim.controller().stage().is_some_and(|s| s > last_stage) {
            break;
        }
    }
}

/// The controller's last logged state in the log at `path`.
fn last_state(path: &Path) -> async_upload_rollout::RolloutState {
    read_log::<LogRecord>(path)
        .unwrap()
        .records
        .into_iter()
        .rev()
        .find_map(|r| r.state)
        .expect("a controller state")
}

/// `check --json`'s `controller` member.
fn check_controller_json(log: &Path) -> (serde_json::Value, Option<i32>) {
    let out = run(&["check", "--json", path_str(log)]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", text(&out.stderr)));
    (value["controller"].clone(), out.status.code())
}

#[test]
fn check_answers_with_the_controllers_held_state_on_the_week2_example_logs() {
    let dir = TempDir::new("week2");
    let ten = Percent::from_whole(10).unwrap();
    let fifty = Percent::from_whole(50).unwrap();
    let mut seen = Vec::new();
    for (fault, percent) in [
        (Fault::ErrorBurst, ten),
        (Fault::ErrorBurst, fifty),
        (Fault::LatencyCreep, ten),
        (Fault::LatencyCreep, fifty),
        (Fault::CriticalError, ten),
        (Fault::CriticalError, fifty),
        (Fault::MemoryLeak, ten),
        (Fault::MemoryLeak, fifty),
    ] {
        let what = format!("--fault {fault:?} --fault-stage {percent}");
        let log = dir.file(&format!("{fault:?}-{}.jsonl", percent.ppm()));
        week2_example_log(&log, Some((fault, percent)));
        let state = last_state(&log);
        let (headline, code) = match state.status {
            RolloutStatus::RolledBack => ("ROLLED BACK at stage", 3),
            RolloutStatus::AwaitingReview => ("AWAITING REVIEW at stage", 2),
            other => panic!("{what}: the controller ended {other}, not held"),
        };
        seen.push(state.status);
        let out = run(&["check", path_str(&log)]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{what}:\n{stdout}");
        let first = stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{headline} {}", state.stage.unwrap())),
            "{what}: {first}"
        );
        // The controller's state and last verdict are shown, and whether
        // the recomputation agrees with its verdict on the same totals.
        assert!(stdout.contains("controller's state ("), "{what}:\n{stdout}");
        let logged = last_tick(&log).evaluation.unwrap();
        assert!(
            stdout.contains(&format!("controller's last verdict ({}", path_str(&log))),
            "{what}:\n{stdout}"
        );
        let (controller, json_code) = check_controller_json(&log);
        assert_eq!(json_code, Some(code), "{what}");
        assert_eq!(
            controller["state"]["status"],
            state.status.as_str(),
            "{what}"
        );
        assert_eq!(
            controller["verdict"],
            serde_json::to_value(logged.verdict).unwrap(),
            "{what}"
        );
        let agrees = controller["agrees"].as_bool().expect("compared");
        assert_eq!(
            agrees,
            !stdout.contains("DIFFERS from the controller's"),
            "{what}:\n{stdout}"
        );
    }
    assert!(seen.contains(&RolloutStatus::RolledBack), "{seen:?}");
    assert!(seen.contains(&RolloutStatus::AwaitingReview), "{seen:?}");

    // Healthy: the example stops on the tick that starts 100%; that run
    // has no tick yet, so it is judged on no data: hold, not the 50%
    // stage's advance that the controller already acted on.
    let log = dir.file("healthy.jsonl");
    week2_example_log(&log, None);
    assert_eq!(last_state(&log).stage, Some(3));
    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.starts_with("RUNNING at stage 3 (100%): verdict hold"),
        "{stdout}"
    );
    assert_says(&out.stderr, "logged no tick in it yet");
}

#[test]
fn a_sparse_latency_review_is_answered_as_the_controller_logged_it() {
    // The issue's case: on this log the recomputation from 30-minute
    // snapshots says hold where the controller asked for a review.
    let dir = TempDir::new("creep50");
    let log = dir.file("metrics.jsonl");
    week2_example_log(
        &log,
        Some((Fault::LatencyCreep, Percent::from_whole(50).unwrap())),
    );
    assert_eq!(last_state(&log).status, RolloutStatus::AwaitingReview);
    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.starts_with("AWAITING REVIEW at stage 2 (50%)"),
        "{stdout}"
    );
    let (controller, _) = check_controller_json(&log);
    assert_eq!(controller["answer"], "manual_review");
    assert_eq!(controller["verdict"], "manual_review");
    // The report's badge is the controller's state too.
    let html_path = dir.file("report.html");
    let out = run(&["report", path_str(&log), "-o", path_str(&html_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains(
            "<span class=\"verdict manual_review\" id=\"state-badge\">AWAITING REVIEW</span>"
        ),
        "no state badge"
    );
}

#[test]
fn a_completed_multi_day_log_is_judged_complete_with_the_carried_sync_baseline() {
    let dir = TempDir::new("complete");
    let log = dir.file("metrics.jsonl");
    // The default plan to its end (1% a day, 10% two, 50% three, then 100%),
    // quiet ticks logged every 30 minutes; half a day at 100%.
    let config = SimulationConfig {
        log_interval: Duration::from_secs(30 * 60),
        ..SimulationConfig::default()
    };
    let sink = JsonlSink::open(&log).unwrap();
    let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
    let mut complete_for = 0;
    for _ in 0..10 * 24 * 60 {
        assert!(sim.step().log_error.is_none());
        if sim.controller().status() == Some(RolloutStatus::Complete) {
            complete_for += 1;
            if complete_for >= 12 * 60 {
                break;
            }
        }
    }
    assert_eq!(complete_for, 12 * 60, "the rollout completes");
    let logged = last_tick(&log).evaluation.unwrap();
    assert_eq!((logged.stage, logged.verdict), (3, Verdict::Advance));

    let out = run(&["check", path_str(&log)]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("COMPLETE at stage 3 (100%): verdict advance"),
        "{stdout}"
    );
    // The 100% stage has no sync traffic: the latency criterion compares
    // with the sync arm carried from the 50% stage, as the controller did.
    assert!(
        !stdout.contains("no carried sync baseline"),
        "the carried baseline was not rebuilt:\n{stdout}"
    );
    assert!(
        stderr.contains("sync baseline carried from an earlier run"),
        "{stderr}"
    );
    let (evaluation, code) = check_json(&[path_str(&log)]);
    assert_eq!(code, Some(0));
    assert_eq!(evaluation.verdict, logged.verdict);
    assert_eq!(
        evaluation.check("latency_ratio").map(|c| c.status),
        logged.check("latency_ratio").map(|c| c.status)
    );
}

#[test]
fn logs_at_different_stages_or_runs_are_not_merged_unless_a_stage_is_picked() {
    let dir = TempDir::new("mixed");
    // Rolled back at 10%, and running at 50%.
    let burst = dir.file("burst.jsonl");
    error_burst_log(&burst);
    let fifty = dir.file("fifty.jsonl");
    simulate(
        &fifty,
        SimulationConfig {
            start_stage: 2,
            ..SimulationConfig::default()
        },
        120,
        |_| false,
    );
    let out = run(&["check", path_str(&burst), path_str(&fifty)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("cannot merge logs at different stages"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: stage 1 (10%)", path_str(&burst)))
            && stderr.contains(&format!("{}: stage 2 (50%)", path_str(&fifty))),
        "{stderr}"
    );
    assert!(stderr.contains("rolled_back"), "{stderr}");
    // --stage picks one: the 50% log is judged, the other left out.
    let out = run(&["check", path_str(&burst), path_str(&fifty), "--stage", "2"]);
    let stdout = text(&out.stdout);
    assert_ne!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        stdout.contains("judged stage 2 (50%), from --stage; 2 instance(s)"),
        "{stdout}"
    );
    assert_says(&out.stderr, &format!("{}: left out", path_str(&burst)));

    // The same stage in different runs (one resumed after a rollback).
    let resumed = dir.file("resumed.jsonl");
    {
        let config = SimulationConfig {
            start_stage: 1,
            fault: Some((Fault::ErrorBurst, 1)),
            fault_after: Duration::ZERO,
            ..SimulationConfig::default()
        };
        let sink = JsonlSink::open(&resumed).unwrap();
        let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
        for _ in 0..600 {
            assert!(sim.step().log_error.is_none());
            if sim.controller().status() == Some(RolloutStatus::RolledBack) {
                break;
            }
        }
        sim.controller_mut().resume("fixed").unwrap();
        for _ in 0..5 {
            assert!(sim.step().log_error.is_none());
        }
    }
    let healthy = dir.file("healthy.jsonl");
    healthy_log_for(&healthy, 9, 30);
    let out = run(&["check", path_str(&healthy), path_str(&resumed)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: stage 1 (10%), run of epoch",
            path_str(&healthy)
        )) && stderr.contains(&format!(
            "{}: stage 1 (10%), run of epoch",
            path_str(&resumed)
        )),
        "{stderr}"
    );
}

#[test]
fn stage_errors_name_the_plans_stage_indices() {
    let dir = TempDir::new("range");
    let log = dir.file("metrics.jsonl");
    healthy_log_for(&log, 4, 30);
    let out = run(&["check", path_str(&log), "--stage", "9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("--stage 9: the plan has 4 stages (0 to 3)"),
        "{stderr}"
    );
    assert!(!stderr.contains("0..4"), "{stderr}");
}

/// The points drawn in color `color` in `svg`: every polyline's points and
/// every marker's centre, as `(x, y)` pixels.
fn points_in(svg: &str, color: &str) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for element in svg.split('<').filter(|e| e.contains(color)) {
        if element.starts_with("polyline") {
            let list = element
                .split("points=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default();
            for pair in list.split_whitespace() {
                let (x, y) = pair.split_once(',').unwrap();
                points.push((x.parse().unwrap(), y.parse().unwrap()));
            }
        } else if element.starts_with("circle") {
            let attr = |name: &str| -> f64 {
                element
                    .split(&format!(" {name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            points.push((attr("cx"), attr("cy")));
        }
    }
    points
}

#[test]
fn report_draws_every_chart_on_a_sparse_log_and_the_percent_drops_at_a_rollback() {
    // The README's own `--fault error-burst --fault-stage 10` log: a day
    // at 1% logged every 30 minutes, then 10% until the rollback.
    let dir = TempDir::new("sparse");
    let log = dir.file("metrics.jsonl");
    week2_example_log(
        &log,
        Some((Fault::ErrorBurst, Percent::from_whole(10).unwrap())),
    );
    let html_path = dir.file("report.html");
    let out = run(&["report", path_str(&log), "-o", path_str(&html_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(&html_path).unwrap();
    let async_color = "stroke=\"#1F77B4\"";
    let sync_color = "stroke=\"#7F7F7F\"";
    // Over a day at 1% (48 ticks 30 minutes apart), each chart of the
    // uploads per bin has most of its points: bins are never narrower than
    // the ticks.
    for id in [
        "chart-success-rate",
        "chart-error-rate",
        "chart-latency-ratio",
        "chart-latency",
    ] {
        let svg = figure(&html, id);
        let drawn = points_in(svg, async_color).len();
        assert!(drawn >= 30, "{id}: {drawn} async points");
        if id != "chart-latency-ratio" {
            let drawn = points_in(svg, sync_color).len();
            assert!(drawn >= 30, "{id}: {drawn} sync points");
        }
    }
    // The percent in force: 1%, 10%, then 0 from the rollback on.
    let percent = points_in(figure(&html, "chart-percent"), async_color);
    let ys: Vec<f64> = percent.iter().map(|p| p.1).collect();
    let (one, last) = (ys[0], ys[ys.len() - 1]);
    assert!(ys.iter().any(|&y| y < one), "10% is above 1%: {ys:?}");
    assert!(
        last > one,
        "after the rollback the line is below 1%: {ys:?}"
    );
    // The rollback is not the chart's right edge: 0% is drawn after it.
    let (x_rollback, x_end) = (percent[percent.len() - 2].0, percent[percent.len() - 1].0);
    assert!(x_end - x_rollback >= 10.0, "{percent:?}");
    assert!(html.contains("id=\"state-badge\">ROLLED BACK</span>"));
}

#[test]
fn a_lone_point_is_drawn_as_a_marker() {
    // One tick line per stage run: nothing to join, a marker each.
    let dir = TempDir::new("lone");
    let log = dir.file("metrics.jsonl");
    let config = SimulationConfig {
        start_stage: 2,
        uploads_per_minute: 6000,
        log_interval: Duration::from_secs(24 * 3600),
        ..SimulationConfig::default()
    };
    simulate(&log, config, 3, |_| false);
    // A first start logs its state and start lines; then the first tick
    // (no data yet) and the one whose verdict changed: one point with data.
    let ticks = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"tick\""))
        .count();
    assert!(ticks <= 2, "{ticks} tick lines");
    let html_path = dir.file("report.html");
    let out = run(&["report", path_str(&log), "-o", path_str(&html_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(&html_path).unwrap();
    let svg = figure(&html, "chart-success-rate");
    assert!(
        svg.contains("<circle") && svg.contains("fill=\"#1F77B4\""),
        "no marker for the lone async point"
    );
}

/// The environment variable that makes this test binary the small process
/// that runs the CLI binary for [`run_peak`].
const PEAK_ARGS: &str = "CLI_TEST_PEAK_ARGS";

/// Runs the binary with `args` to its end: its exit code and its peak
/// resident set in bytes.
///
/// The peak is `ru_maxrss` of `wait4`, which on Linux also counts the
/// memory of the process that spawned the binary (`posix_spawn` shares the
/// parent's address space until `exec`, and the kernel keeps the larger of
/// the two high-water marks). This test process is large (it simulates logs
/// in memory, several tests at once), so a small process started for the
/// purpose spawns and measures the binary: this test binary again, running
/// only [`child_measures_the_binarys_peak`].
fn run_peak(args: &[&str]) -> (Option<i32>, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_measures_the_binarys_peak", "--nocapture"])
        .env(PEAK_ARGS, args.join("\u{1f}"))
        .output()
        .expect("run the measuring process");
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .unwrap_or_else(|| panic!("no peak measured: {stdout}{}", text(&out.stderr)));
    let mut words = line.split(' ');
    let code = words.next().and_then(|c| c.parse().ok());
    let peak = words.next().and_then(|p| p.parse().ok()).unwrap();
    (code, peak)
}

/// Not a test of its own: in the small process [`run_peak`] starts, runs
/// the binary and prints `peak <exit code> <bytes>`.
#[test]
#[expect(clippy::zombie_processes, reason = "wait4 reaps the child")]
fn child_measures_the_binarys_peak() {
    let Ok(args) = std::env::var(PEAK_ARGS) else {
        return;
    };
    let child = Command::new(BIN)
        .args(args.split('\u{1f}'))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the binary");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: `rusage` is plain data; all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals; the
    // `Child` is not waited on again.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(waited, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // Linux counts ru_maxrss in KiB.
    let peak = u64::try_from(usage.ru_maxrss).unwrap() * 1024;
    println!("peak {} {peak}", code.map_or(-1, |c| c));
}

/// `days` of a rollout from the 1% stage (or of the 10% stage only, with
/// `stay`), the controller ticking every `tick` and logging quiet ticks
/// every `log_every`.
fn long_log(path: &Path, days: u64, tick: Duration, log_every: Duration, stay: bool) -> u64 {
    let mut config = SimulationConfig {
        tick,
        log_interval: log_every,
        ..SimulationConfig::default()
    };
    if stay {
        config.start_stage = 1;
        config.plan.stages[1].criteria.min_duration = Duration::from_secs(90 * 24 * 3600);
    }
    let sink = JsonlSink::open(path).unwrap();
    let mut sim = Simulation::with_log(config, Some(sink)).unwrap();
    while sim.elapsed() < Duration::from_secs(days * 24 * 3600) {
        assert!(sim.step().log_error.is_none());
    }
    fs::metadata(path).unwrap().len()
}

const MIB: u64 = 1024 * 1024;

/// `check` and `report` on `log`: their peak resident sets.
fn peaks(dir: &TempDir, log: &Path) -> (u64, u64) {
    let (code, check) = run_peak(&["check", path_str(log)]);
    assert!(matches!(code, Some(0 | 2 | 3 | 4)), "check: {code:?}");
    let html = dir.file("report.html");
    let (code, report) = run_peak(&["report", path_str(log), "-o", path_str(&html)]);
    assert_eq!(code, Some(0), "report");
    (check, report)
}

#[test]
fn check_and_report_memory_does_not_grow_with_the_log() {
    // One and three days of the 10% stage, every tick of a minute logged:
    // about 35 MB a day. Keeping the lines would take about that much more
    // memory per day.
    let dir = TempDir::new("memory");
    let (one, two) = (dir.file("one.jsonl"), dir.file("three.jsonl"));
    let minute = Duration::from_secs(60);
    let size_one = long_log(&one, 1, minute, Duration::ZERO, true);
    let size_two = long_log(&two, 3, minute, Duration::ZERO, true);
    assert!(
        size_two - size_one > 60 * MIB,
        "{size_one} → {size_two} bytes"
    );
    let (check_one, report_one) = peaks(&dir, &one);
    let (check_two, report_two) = peaks(&dir, &two);
    let what = format!(
        "logs of {} and {} MiB: check {} → {} MiB, report {} → {} MiB",
        size_one / MIB,
        size_two / MIB,
        check_one / MIB,
        check_two / MIB,
        report_one / MIB,
        report_two / MIB
    );
    eprintln!("{what}");
    for peak in [check_one, check_two, report_one, report_two] {
        assert!(peak < 64 * MIB, "{what}");
    }
    // Two days more of log (over 60 MiB) cost a few MiB at most: the
    // history and the bins fill up within hours, then only their
    // histograms widen a little (a run's totals reach more buckets).
    let grown = (size_two - size_one) / 6;
    assert!(check_two < check_one + grown, "{what}");
    assert!(report_two < report_one + grown, "{what}");
}

#[test]
#[ignore = "writes a log of about 330 MB (10 simulated days): cargo test --features cli --test cli -- --ignored"]
fn check_and_report_stay_under_64_mib_on_a_log_of_a_few_hundred_mb() {
    let dir = TempDir::new("memory-long");
    let log = dir.file("metrics.jsonl");
    // Ticks every 10 s, quiet ones logged once a minute, as a real service.
    let size = long_log(
        &log,
        10,
        Duration::from_secs(10),
        Duration::from_secs(60),
        false,
    );
    assert!(size > 300_000_000, "{size} bytes");
    let (check, report) = peaks(&dir, &log);
    eprintln!(
        "{} MB log: check peak {:.1} MiB, report peak {:.1} MiB",
        size / 1_000_000,
        check as f64 / MIB as f64,
        report as f64 / MIB as f64
    );
    assert!(check < 64 * MIB, "check: {check} bytes");
    assert!(report < 64 * MIB, "report: {report} bytes");
}

#[test]
fn config_set_writes_a_config_file_whole_and_config_show_reads_it() {
    let dir = TempDir::new("config");
    let path = dir.file("rollout.toml");
    fs::write(&path, "# a comment\npercent = 10\nforce_sync = [\"vip\"]\n").unwrap();
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&path),
        "--kill-switch",
        "on",
        "--force-async",
        "load-1, load-2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let absolute = std::path::absolute(&path).unwrap();
    assert!(
        stdout.contains(&format!("to config file {}", absolute.display())),
        "{stdout}"
    );
    assert!(stdout.contains("pass --state FILE"), "{stdout}");
    // Written whole (parsed back), the fields not given kept, no temp file.
    let config: RolloutConfig = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert!(config.kill_switch);
    assert_eq!(config.force_async, ["load-1", "load-2"]);
    assert_eq!(config.force_sync, ["vip"]);
    assert_eq!(
        config.percent,
        Percent::from_whole(10).unwrap(),
        "the starting percent"
    );
    let leftovers: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = run(&["config", "show", "--config", path_str(&path), "--json"]);
    assert!(out.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["config"]["kill_switch"], true);
    assert_eq!(shown["fingerprint"], config.fingerprint());

    // A file that does not exist, or cannot be read: refused, naming it.
    let missing = dir.file("other.toml");
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&missing),
        "--kill-switch",
        "on",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "other.toml");
    assert!(!missing.exists());
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&missing),
        "--kill-switch",
        "on",
        "--create",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::write(&path, "percent = 10\nkill_switch = maybe\n").unwrap();
    let out = run(&["config", "show", "--config", path_str(&path)]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stdout, "CONFIG ERROR");
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&path),
        "--kill-switch",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "--overwrite");
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&path),
        "--kill-switch",
        "off",
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["config", "set", "--config", path_str(&path)]);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "nothing to set");
}

#[test]
fn operator_commands_name_the_store_and_refuse_what_an_unreadable_state_does_not_allow() {
    let dir = TempDir::new("operate");
    let state = dir.file("state.json");
    // Nothing stored: refused, the path named, nothing created.
    for command in ["rollback", "resume", "advance", "pause"] {
        let out = run(&[command, "--state", path_str(&state), "--reason", "x"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(path_str(&state)) && stderr.contains("--create"),
            "{stderr}"
        );
        assert!(!state.exists(), "{command} created the file");
    }
    let out = run(&[
        "advance",
        "--state",
        path_str(&state),
        "--create",
        "--reason",
        "go",
        "--wait",
        "0s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&out.stdout, "stored epoch 1 in state file");
    // A state cut short: only a rollback, above the epoch it still shows.
    fs::write(&state, "{\"epoch\": 41, \"stage\": 0, \"sta").unwrap();
    for command in ["resume", "advance", "pause"] {
        let out = run(&[command, "--state", path_str(&state), "--reason", "x"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert_says(&out.stderr, "Only a rollback is accepted");
    }
    let out = run(&["status", "--state", path_str(&state)]);
    assert!(out.status.success());
    assert_says(&out.stdout, "STATE ERROR");
    let out = run(&[
        "rollback",
        "--state",
        path_str(&state),
        "--reason",
        "pager",
        "--wait",
        "0s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&out.stdout, "stored epoch 42");
    let out = run(&["status", "--state", path_str(&state), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"]["status"], "rolled_back");
    assert_eq!(status["state"]["epoch"], 42);
    assert_eq!(status["percent"], 0);
}

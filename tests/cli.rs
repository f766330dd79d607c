//! The operator's command line, run as a process on logs that the library
//! itself writes (simulated rollouts through a real controller and `JsonlSink`).
#![cfg(feature = "cli")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_upload_rollout::cli::{Fleet, InstanceLog, exit_code};
use async_upload_rollout::simulation::{Fault, Simulation, SimulationConfig};
use async_upload_rollout::{
    Arm, Evaluation, JsonlSink, LogEvent, LogRecord, ManualClock, MetricsAccumulator, Outcome,
    Percent, Rollout, RolloutConfig, RolloutPlan, RolloutStatus, Verdict, read_log,
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
    assert!(
        text(&out.stderr).contains("--stage 9"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stderr).contains("--stage"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["check", path_str(&log), "--stage", "1"]);
    let stdout = text(&out.stdout);
    // 98.9% success, under the 99% target: hold.
    assert_eq!(out.status.code(), Some(4), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "uploads")[3], "1800");
    assert!(
        text(&out.stderr).contains("cumulative"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stderr).contains("other.toml"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stdout).contains("CONFIG ERROR"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&[
        "config",
        "set",
        "--config",
        path_str(&path),
        "--kill-switch",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--overwrite"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stderr).contains("nothing to set"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stdout).contains("stored epoch 1 in state file"),
        "{}",
        text(&out.stdout)
    );
    // A state cut short: only a rollback, above the epoch it still shows.
    fs::write(&state, "{\"epoch\": 41, \"stage\": 0, \"sta").unwrap();
    for command in ["resume", "advance", "pause"] {
        let out = run(&[command, "--state", path_str(&state), "--reason", "x"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            text(&out.stderr).contains("Only a rollback is accepted"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = run(&["status", "--state", path_str(&state)]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("STATE ERROR"),
        "{}",
        text(&out.stdout)
    );
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
    assert!(
        text(&out.stdout).contains("stored epoch 42"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["status", "--state", path_str(&state), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"]["status"], "rolled_back");
    assert_eq!(status["state"]["epoch"], 42);
    assert_eq!(status["percent"], 0);
}

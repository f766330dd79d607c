//! The week2_rollout example as a process: `--help`, a refused fault stage,
//! and what its table says on a healthy run and an automatic rollback.
//!
//! The example's code is compiled in (`#[path]`) and run by this test binary
//! started again as a child process with the example's flags in an
//! environment variable, so exit codes and output are a process's.

#[allow(dead_code)] // `main` is the example binary's; `run` is used here.
#[path = "../examples/week2_rollout.rs"]
mod week2;

use std::process::{Command, Output};

const CHILD_ARGS: &str = "WEEK2_ROLLOUT_TEST_CHILD_ARGS";

/// Not a test of its own: the entry point of the child processes.
#[test]
fn child_process_runs_the_example() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args: Vec<String> = args.split('\u{1f}').map(str::to_owned).collect();
    match week2::run(args) {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            eprintln!("week2_rollout: {err}");
            std::process::exit(1);
        }
    }
}

fn example(args: &[&str]) -> (Output, String, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_runs_the_example", "--nocapture"])
        .env(CHILD_ARGS, args.join("\u{1f}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn help_exits_0_and_describes_every_flag() {
    let (output, stdout, _) = example(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    for flag in [
        "--fault ",
        "--fault-stage",
        "--fault-after",
        "--mode",
        "--seed",
        "--log ",
        "--no-log",
        "--help",
    ] {
        assert!(stdout.contains(flag), "{flag} is not described:\n{stdout}");
    }
}

#[test]
fn a_fault_in_a_stage_the_week_does_not_run_is_refused() {
    let (output, _, stderr) =
        example(&["--no-log", "--fault", "error-burst", "--fault-stage", "100"]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--fault-stage 100%"), "{stderr}");
    assert!(stderr.contains("100% is Week 3's"), "{stderr}");
}

#[test]
fn a_healthy_week_completes_at_50_percent_and_says_what_each_stage_waits_for() {
    let (output, stdout, stderr) = example(&["--no-log"]);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("Week 2 complete"), "{stdout}");
    assert!(!stdout.contains("advancing to 100%"), "{stdout}");
    assert!(
        stdout.contains("criteria met; waits for the stage's minimum of 2 days"),
        "{stdout}"
    );
    // Durations as words, not `6days`.
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("simulated uploads"))
        .unwrap();
    assert!(summary.contains("over 6 days"), "{summary}");
    assert!(
        !stdout.contains("days2") && !stdout.contains("6days"),
        "{stdout}"
    );
}

#[test]
fn the_rollback_line_says_its_reason_once() {
    let (output, stdout, stderr) =
        example(&["--no-log", "--fault", "error-burst", "--fault-stage", "10"]);
    assert!(output.status.success(), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("ROLLBACK"))
        .unwrap_or_else(|| panic!("no rollback:\n{stdout}"));
    let reason = line.split("(one atomic store): ").nth(1).unwrap();
    let parts: Vec<&str> = reason.split("; ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[..i].contains(part), "said twice: {part}\n{line}");
    }
}

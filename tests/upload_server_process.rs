//! The upload_server example as real processes: killed with SIGKILL and
//! started again on the same state file, started with
//! `ASYNC_UPLOAD_ROLLOUT=0`, a corrupt state file, and reached by the
//! operator's command line.
//!
//! Each server is this test binary started again as a child process (the
//! example's code is compiled in with `#[path]`), running only
//! [`child_process_runs_the_server`] with its flags in an environment
//! variable. It listens on `127.0.0.1:0` and prints its address on stderr;
//! every child is killed when its test ends, and every test is bounded.
#![cfg(all(feature = "prometheus", feature = "tower"))]

#[allow(dead_code)] // the in-process helpers are for tests/upload_server.rs
#[path = "../examples/upload_server.rs"]
mod server;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use support::child::{ServerProcess, ids, path_str, run_if_child, status_of, wait_until};

/// Not a test of its own: the entry point of the child processes the other
/// tests start (it returns at once when run as a normal test).
#[test]
fn child_process_runs_the_server() {
    run_if_child(server::run);
}

#[test]
fn restart_after_rollback_stays_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\nforce_async = [\"load-test-1\"]\n").unwrap();
    let flags = ["--config", path_str(&config)];

    let server = ServerProcess::start(dir.path(), Some("10"), &flags);
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 10.0);
    let all = ids("before", 200);
    let reference = Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).unwrap(),
    ));
    let expected = all
        .iter()
        .filter(|id| reference.should_use_async(*id))
        .count();
    assert_eq!(server.upload(&all), expected);
    assert_eq!(
        server.upload(&["load-test-1".to_owned()]),
        1,
        "force-listed"
    );

    let (status, body) = server.operate("rollback", "error spike after deploy 4512");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.upload(&all), 0);
    assert_eq!(
        server.upload(&["load-test-1".to_owned()]),
        0,
        "force-listed ids too"
    );
    server.kill();

    // Killed, started again with the same environment and state file.
    let server = ServerProcess::start(dir.path(), Some("10"), &flags);
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "rolled_back", "{rollout}");
    assert_eq!(rollout["percent"], 0.0);
    assert_eq!(rollout["halted"], true);
    assert_eq!(rollout["state"]["reason"], "error spike after deploy 4512");
    assert_eq!(server.upload(&all), 0, "nothing async after the restart");
    assert_eq!(server.upload(&["load-test-1".to_owned()]), 0);

    // A config change does not bring it back either.
    std::fs::write(
        &config,
        "percent = 50\nforce_async = [\"load-test-1\", \"x\"]\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // past one config poll
    assert_eq!(server.get_rollout()["percent"], 0.0);
    assert_eq!(server.upload(&all), 0);

    // Advancing is refused until someone resumes.
    let (status, body) = server.operate("advance", "skip it");
    assert_eq!(status, 409, "{body}");
    let (status, body) = server.operate("resume", "fixed in 4513");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.upload(&all), expected);
}

#[test]
fn async_upload_rollout_zero_serves_nothing_async() {
    let dir = tempfile::tempdir().unwrap();
    for percent in [Some("0"), None] {
        let _ = std::fs::remove_file(dir.path().join("state.json"));
        let server = ServerProcess::start(dir.path(), percent, &[]);
        let rollout = server.get_rollout();
        assert_eq!(status_of(&rollout), "off", "{percent:?}: {rollout}");
        assert_eq!(rollout["percent"], 0.0);
        assert_eq!(rollout["state"]["stage"], serde_json::Value::Null);
        assert_eq!(server.upload(&ids("off", 300)), 0, "{percent:?}");
    }
}

#[test]
fn a_corrupt_state_file_serves_on_the_sync_path_and_reports_state_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), "{\"epoch\": 9, \"stat").unwrap();
    let mut server = ServerProcess::start(dir.path(), Some("50"), &[]);
    let rollout = server.get_rollout();
    let error = rollout["state_error"].as_str().expect("state_error is set");
    assert!(error.contains("state.json"), "{error}");
    assert_eq!(rollout["state"], serde_json::Value::Null);
    assert_eq!(rollout["percent"], 0.0);
    let all = ids("corrupt", 200);
    assert_eq!(server.upload(&all), 0, "every upload on the sync path");
    wait_until("the uploads to be stored", || {
        all.iter()
            .all(|id| dir.path().join("uploads").join(id).exists())
    });
    let stderr = server.stderr_text();
    assert!(stderr.contains("STATE ERROR"), "loud at start:\n{stderr}");

    // Removing the bad file lets the service start from its environment.
    std::fs::remove_file(dir.path().join("state.json")).unwrap();
    wait_until("the state to be known again", || {
        server.get_rollout()["state_error"].is_null()
    });
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 50.0);
}

#[cfg(feature = "cli")]
#[test]
fn the_clis_rollback_on_the_state_file_reaches_a_running_server_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let server = ServerProcess::start(dir.path(), Some("10"), &[]);
    assert_eq!(status_of(&server.get_rollout()), "running");

    let output = Command::new(env!("CARGO_BIN_EXE_async-upload-rollout"))
        .args([
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager: 5xx spike",
        ])
        .output()
        .unwrap();
    let written = Instant::now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let took = wait_until("the server to roll back", || {
        status_of(&server.get_rollout()) == "rolled_back"
    });
    assert!(
        written.elapsed() < Duration::from_secs(2),
        "seen after {took:?}"
    );
    assert_eq!(server.get_rollout()["percent"], 0.0);
    assert_eq!(server.upload(&ids("after-cli", 200)), 0);

    // `status` shows what the server runs on.
    let output = Command::new(env!("CARGO_BIN_EXE_async-upload-rollout"))
        .args(["status", "--state", path_str(&state), "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["state"]["status"], "rolled_back");
    assert_eq!(status["state"]["reason"], "pager: 5xx spike");
    assert_eq!(status["halted"], true);
}

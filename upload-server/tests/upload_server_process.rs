//! The upload server binary as real processes: killed with SIGKILL and
//! started again on the same state file, started with
//! `ASYNC_UPLOAD_ROLLOUT=0`, a corrupt state file, and reached by the
//! operator's command line.
//!
//! Each server is the `upload_server` binary cargo built for these tests,
//! listening on `127.0.0.1:0` and printing its address on stderr; every
//! child is killed when its test ends, and every test is bounded.

mod support;

use std::process::Command;
use std::time::Duration;

use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use support::{SERVER, ServerProcess, ids, path_str, status_of, wait_until};

#[test]
fn restart_after_rollback_stays_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\nforce_async = [\"load-test-1\"]\n").unwrap();
    let flags = ["--config", path_str(&config)];

    let server = ServerProcess::start(SERVER, dir.path(), Some("10"), &flags);
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 10.0);
    let all = ids("before", 200);
    assert_eq!(server.upload(&all), on_async(&all, 10));
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
    let server = ServerProcess::start(SERVER, dir.path(), Some("10"), &flags);
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
    assert_eq!(server.upload(&all), on_async(&all, 10));
}

/// How many of `ids` take the async path at `percent` (the crate's own
/// bucketing, as every service computes it).
fn on_async(ids: &[String], percent: u32) -> usize {
    let reference = Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(percent).unwrap(),
    ));
    ids.iter()
        .filter(|id| reference.should_use_async(id.as_str()))
        .count()
}

#[test]
fn async_upload_rollout_zero_serves_nothing_async() {
    for percent in [Some("0"), None] {
        // A store of its own each time: a state file removed beside its
        // high-water mark (`state.json.epoch`) is a rollout that had a
        // state, which the environment does not start again.
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(SERVER, dir.path(), percent, &[]);
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
    let server = ServerProcess::start(SERVER, dir.path(), Some("50"), &[]);
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
    let server = ServerProcess::start(SERVER, dir.path(), Some("10"), &[]);
    assert_eq!(status_of(&server.get_rollout()), "running");

    let (code, _, stderr) = cli(
        &[
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager: 5xx spike",
        ],
        dir.path(),
    );
    let written = std::time::Instant::now();
    assert_eq!(code, 0, "{stderr}");
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
    let (_, status) = status_json(&state, None);
    assert_eq!(status["state"]["status"], "rolled_back");
    assert_eq!(status["state"]["reason"], "pager: 5xx spike");
    assert_eq!(status["halted"], true);
}

/// The command line, run to its end in `cwd`: `(exit code, stdout,
/// stderr)`.
#[cfg(feature = "cli")]
fn cli(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    support::output_of(support::cli_command().args(args).current_dir(cwd))
}

/// `status --state STATE [--config CONFIG] --json`, run beside the state
/// file: its exit code and its JSON.
#[cfg(feature = "cli")]
fn status_json(
    state: &std::path::Path,
    config: Option<&std::path::Path>,
) -> (i32, serde_json::Value) {
    let mut args = vec!["status", "--state", path_str(state)];
    if let Some(config) = config {
        args.extend(["--config", path_str(config)]);
    }
    args.push("--json");
    let (code, stdout, stderr) = cli(&args, state.parent().unwrap());
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {stdout}{stderr}"));
    (code, json)
}

#[test]
fn upload_server_help_exits_0_and_describes_every_flag() {
    let output = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--admin-token",
        "--state",
        "--config",
        "--log ",
        "--tick",
        "--log-interval",
        "--store-dir",
        "--plan",
        "--auto-advance",
        "--memory-warmup",
        "--stale-after",
        "--etcd",
        "--etcd-ca",
        "--etcd-cert",
        "--etcd-key",
        "--etcd-user",
        "ETCD_PASSWORD",
        "--name",
        "--replica",
        "--inject-async-error-rate",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag} is not described:\n{help}");
    }
}

#[cfg(feature = "cli")]
#[test]
fn a_rollback_on_a_wrong_state_path_changes_nothing_and_exits_non_zero_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(SERVER, dir.path(), Some("10"), &[]);
    assert_eq!(status_of(&server.get_rollout()), "running");

    // A mistyped --state: the path is named (absolute), nothing is created.
    let typo = dir.path().join("stat.json");
    let (code, stdout, stderr) = cli(
        &[
            "rollback",
            "--state",
            path_str(&typo),
            "--reason",
            "pager: 5xx",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(&typo.display().to_string()), "{stderr}");
    assert!(stderr.contains("--create"), "{stderr}");
    assert!(!typo.exists(), "no state file was started");

    // The wrong directory: the default path, resolved there, is named.
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, _, stderr) = cli(&["rollback", "--reason", "pager: 5xx"], elsewhere.path());
    assert_eq!(code, 1);
    let default = elsewhere
        .path()
        .join("logs/async_upload_rollout/state.json");
    assert!(stderr.contains(&default.display().to_string()), "{stderr}");
    assert!(!elsewhere.path().join("logs").exists(), "no folders either");

    // The service never saw a thing.
    std::thread::sleep(Duration::from_millis(300));
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 10.0);
}

#[cfg(feature = "cli")]
#[test]
fn create_starts_a_state_file_and_success_names_the_store_and_the_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("new").join("state.json");
    let (code, stdout, stderr) = cli(
        &[
            "advance",
            "--state",
            path_str(&state),
            "--create",
            "--reason",
            "first stage",
            "--wait",
            "0s",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("stored epoch 1 in state file {}", state.display())),
        "{stdout}"
    );
    assert!(stdout.contains("--wait 0s"), "{stdout}");
    assert!(state.is_file());

    // A service on it serves the stage the file holds, and acknowledges it.
    let server = ServerProcess::start(
        SERVER,
        dir.path(),
        Some("50"),
        &["--state", path_str(&state), "--replica", "web-1"],
    );
    let rollout = server.get_rollout();
    assert_eq!(rollout["state"]["stage"], 0, "{rollout}");
    assert_eq!(rollout["percent"], 1.0);
    let (code, stdout, stderr) = cli(
        &[
            "advance",
            "--state",
            path_str(&state),
            "--reason",
            "1% validated",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("stored epoch 2"), "{stdout}");
    assert!(
        stdout.contains("confirmed: 1 service(s) applied epoch 2") && stdout.contains("web-1"),
        "{stdout}"
    );
}

/// Waits until `status --json` lists `n` live services on the stored epoch.
#[cfg(feature = "cli")]
fn wait_for_services(state: &std::path::Path, n: usize) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until("the services' acknowledgements", || {
        last = status_json(state, None).1;
        last["services"].as_array().is_some_and(|s| {
            s.iter()
                .filter(|s| s["live"] == true && s["current"] == true)
                .count()
                == n
        })
    });
    last
}

#[cfg(feature = "cli")]
#[test]
fn rollback_wait_names_a_stopped_service_and_says_none_seen_when_no_service_answers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let a = ServerProcess::start(SERVER, dir.path(), Some("10"), &["--replica", "svc-a"]);
    let b_dir = tempfile::tempdir().unwrap();
    let b = ServerProcess::start(
        SERVER,
        b_dir.path(),
        Some("10"),
        &["--state", path_str(&state), "--replica", "svc-b"],
    );
    let status = wait_for_services(&state, 2);
    let services = status["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["svc-a", "svc-b"]);
    for service in services {
        assert_eq!(service["epoch"], status["state"]["epoch"]);
        assert!(service["pid"].as_u64().is_some());
        assert!(service["at"].as_str().is_some());
    }

    // svc-b hangs (SIGSTOP): the rollback is stored, svc-a applies it, and
    // the command names svc-b and exits 5.
    b.signal("STOP");
    let (code, stdout, stderr) = cli(
        &[
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager",
            "--wait",
            "2s",
        ],
        dir.path(),
    );
    b.signal("CONT");
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(stdout.contains("stored epoch 2"), "{stdout}");
    assert!(
        stderr.contains("NOT CONFIRMED: 1 of 2 service(s)"),
        "{stderr}"
    );
    let missing = stderr.split("confirmed by").next().unwrap();
    assert!(
        missing.contains("svc-b") && !missing.contains("svc-a"),
        "{stderr}"
    );
    assert!(missing.contains(&format!("pid {}", b.pid())), "{stderr}");
    assert_eq!(status_of(&a.get_rollout()), "rolled_back");
    // Once running again it applies it too.
    wait_until("svc-b to roll back", || {
        status_of(&b.get_rollout()) == "rolled_back"
    });
    a.kill();
    b.kill();

    // No service left: the acknowledgements expire, and a command says so
    // (exit 6) after storing its change.
    std::thread::sleep(async_upload_rollout::act::ACK_TTL + Duration::from_millis(500));
    let (code, stdout, stderr) = cli(
        &[
            "resume",
            "--state",
            path_str(&state),
            "--reason",
            "all clear",
            "--wait",
            "1s",
        ],
        dir.path(),
    );
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains("stored epoch 3"), "{stdout}");
    assert!(stderr.contains("NONE SEEN"), "{stderr}");
}

#[cfg(feature = "cli")]
#[test]
fn a_rollback_over_a_corrupt_state_file_is_stored_and_nothing_is_async_until_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let server = ServerProcess::start(SERVER, dir.path(), Some("50"), &["--replica", "web-1"]);
    let all = ids("corrupt-rollback", 200);
    assert_eq!(server.upload(&all), on_async(&all, 50));
    // Epoch 1 stored and acknowledged; then the file is cut short.
    wait_for_services(&state, 1);
    std::fs::write(&state, "{\"epoch\": 1, \"stage\": 2, \"stat").unwrap();
    wait_until("the server to fail closed", || {
        server.get_rollout()["state_error"].is_string()
    });
    assert_eq!(server.upload(&all), 0);

    // Other operations are refused, saying a rollback is always allowed.
    let (code, _, stderr) = cli(
        &["resume", "--state", path_str(&state), "--reason", "x"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("Only a rollback is accepted"), "{stderr}");

    let (code, stdout, stderr) = cli(
        &[
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager: corrupt state",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let stored: async_upload_rollout::RolloutState =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        stored.status,
        async_upload_rollout::RolloutStatus::RolledBack
    );
    assert_eq!(stored.epoch, 2, "above every epoch seen");
    assert_eq!(stored.stage, Some(2), "the stage read from the cut file");
    assert!(
        stdout.contains("confirmed: 1 service(s) applied epoch 2"),
        "{stdout}"
    );
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "rolled_back");
    assert!(rollout["state_error"].is_null(), "{rollout}");
    assert_eq!(server.upload(&all), 0, "nothing async until a resume");
    let stderr = server.stderr_text();
    assert!(
        stderr.contains("STATE ERROR") && stderr.contains("state now epoch 2"),
        "{stderr}"
    );

    let (code, stdout, stderr) = cli(
        &[
            "resume",
            "--state",
            path_str(&state),
            "--reason",
            "repaired",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let after = ids("after-resume", 200);
    assert_eq!(server.upload(&after), on_async(&after, 50));

    // The admin route too: a rollback over garbage is 200 and stored.
    std::fs::write(&state, "garbage").unwrap();
    wait_until("the server to fail closed again", || {
        server.get_rollout()["state_error"].is_string()
    });
    let (status, body) = server.operate("advance", "no");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("only a rollback"), "{body}");
    let (status, body) = server.operate("rollback", "pager: garbage");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["store"],
        format!("state file {}", state.display()),
        "the answer names the store"
    );
    assert_eq!(answer["state"]["epoch"], 4, "and the new epoch");
    let stored: async_upload_rollout::RolloutState =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        stored.status,
        async_upload_rollout::RolloutStatus::RolledBack
    );
    assert_eq!(stored.epoch, 4, "above the epoch the service had seen (3)");
    assert_eq!(stored.stage, Some(2), "the stage the service had seen");
    // The log has it once, as an action line with exactly what was stored.
    let log =
        async_upload_rollout::act::log::read_log::<async_upload_rollout::act::log::LogRecord>(
            dir.path().join("metrics.jsonl"),
        )
        .unwrap();
    let rollbacks: Vec<_> = log
        .records
        .iter()
        .filter(|r| r.event == async_upload_rollout::act::log::LogEvent::Action)
        .filter(|r| r.state.as_ref().is_some_and(|s| s.epoch == 4))
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert_eq!(rollbacks[0].state.as_ref(), Some(&stored));
    // A second rollback changes nothing, and is logged as a no-op.
    let (status, body) = server.operate("rollback", "pager: again");
    assert_eq!(status, 200, "{body}");
    let log =
        async_upload_rollout::act::log::read_log::<async_upload_rollout::act::log::LogRecord>(
            dir.path().join("metrics.jsonl"),
        )
        .unwrap();
    let last = log
        .records
        .iter()
        .rev()
        .find(|r| r.no_op.is_some())
        .expect("a no-op line");
    assert_eq!(last.reason.as_deref(), Some("pager: again"));
    assert_eq!(last.state.as_ref(), Some(&stored));

    // Garbage with no stage in it, rolled back from the command line: the
    // stage comes from the service's acknowledgement.
    let (code, stdout, stderr) = cli(
        &[
            "resume",
            "--state",
            path_str(&state),
            "--reason",
            "repaired again",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::write(&state, "\0\0").unwrap();
    let (code, stdout, stderr) = cli(
        &[
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager: binary junk",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let stored: async_upload_rollout::RolloutState =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!((stored.epoch, stored.stage), (6, Some(2)), "{stored:?}");
}

#[cfg(feature = "cli")]
#[test]
fn the_kill_switch_reads_zero_in_every_view_and_a_bad_config_is_reported_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\n").unwrap();
    let server = ServerProcess::start(
        SERVER,
        dir.path(),
        Some("10"),
        &["--config", path_str(&config), "--replica", "web-1"],
    );
    assert_eq!(server.get_rollout()["percent"], 10.0);

    // The kill switch through the admin route: written to the config file.
    let reply = server.request(
        "PUT",
        "/rollout",
        &[("Authorization", &format!("Bearer {}", support::TOKEN))],
        br#"{"kill_switch": true}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = reply.json();
    assert!(
        reply["config_written_to"]
            .as_str()
            .unwrap()
            .contains("rollout.toml")
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("kill_switch = true")
    );
    let rollout = server.get_rollout();
    assert_eq!(rollout["percent"], 0.0, "{rollout}");
    assert_eq!(rollout["kill_switch"], true);
    assert_eq!(
        rollout["state"]["status"], "running",
        "the state is untouched"
    );
    let metrics = support::http::get(server.addr, "/metrics").body;
    assert!(
        metrics.contains("\nasync_upload_rollout_percent 0.0\n"),
        "{metrics}"
    );
    let (code, status) = status_json(&state, Some(&config));
    assert_eq!(code, 0);
    assert_eq!(status["percent"], 0.0, "{status}");
    assert_eq!(status["kill_switch"], true);
    wait_until("the service to acknowledge 0%", || {
        let (_, status) = status_json(&state, None);
        status["services"][0]["percent"] == 0.0
    });
    let (_, text, _) = cli(
        &[
            "status",
            "--state",
            path_str(&state),
            "--config",
            path_str(&config),
        ],
        dir.path(),
    );
    assert!(
        text.contains("nothing async: the kill switch is on"),
        "{text}"
    );

    // A half-written config: the last good one stays, and every view says so.
    std::fs::write(&config, "percent = 10\nkill_switch = fal").unwrap();
    wait_until("config_error in GET /rollout", || {
        server.get_rollout()["config_error"].is_string()
    });
    let error = server.get_rollout()["config_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("rollout.toml, line 2"), "{error}");
    assert_eq!(
        server.get_rollout()["kill_switch"],
        true,
        "the last good config"
    );
    let metrics = support::http::get(server.addr, "/metrics").body;
    assert!(
        metrics.contains("\nasync_upload_rollout_config_error 1\n"),
        "{metrics}"
    );
    let (_, status) = status_json(&state, Some(&config));
    assert!(
        status["config_error"]
            .as_str()
            .unwrap()
            .contains("rollout.toml"),
        "{status}"
    );
    wait_until("the service's acknowledgement to carry it", || {
        let (_, status) = status_json(&state, None);
        status["services"][0]["config_error"].is_string()
    });
    // A rollback is written while the config cannot be read.
    let (code, stdout, stderr) = cli(
        &["rollback", "--state", path_str(&state), "--reason", "pager"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(status_of(&server.get_rollout()), "rolled_back");
    // Said once on stderr, however many polls saw it.
    std::thread::sleep(Duration::from_millis(500));
    let stderr = server.stderr_text();
    assert_eq!(stderr.matches("CONFIG ERROR").count(), 1, "{stderr}");

    // Fixed: the error goes.
    std::fs::write(&config, "percent = 10\nkill_switch = false\n").unwrap();
    wait_until("config_error to clear", || {
        server.get_rollout()["config_error"].is_null()
    });
    let metrics = support::http::get(server.addr, "/metrics").body;
    assert!(
        metrics.contains("\nasync_upload_rollout_config_error 0\n"),
        "{metrics}"
    );
}

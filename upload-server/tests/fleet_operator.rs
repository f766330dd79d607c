//! An operator's view of a fleet, on a real etcd: the config set through
//! one replica's `PUT /rollout` (or `config set`) reaches every replica; a
//! rollback over a corrupt state key is stored and holds until a resume; a
//! corrupt config key is reported by every replica and never stops a
//! rollback. Replicas are the upload server binary (as in fleet.rs); no
//! controller runs, so the states are written here, as an operator would.

mod support;

use std::time::{Duration, Instant};

use async_upload_rollout::fleet::EtcdStateStore;
use async_upload_rollout::{RolloutState, RolloutStatus, StateStore, act::ChangedBy};
use support::fleet::replica;
use support::servers::{Etcd, wait_until};
use support::{ServerProcess, TOKEN, run_cli, status_of};

const NAME: &str = "operator-test";
const WITHIN: Duration = Duration::from_secs(30);

fn replicas(etcd: &Etcd, dirs: &[tempfile::TempDir]) -> Vec<ServerProcess> {
    dirs.iter()
        .enumerate()
        .map(|(i, dir)| replica(dir.path(), &etcd.url, NAME, &format!("r{i}"), &[]))
        .collect()
}

/// Writes `value` under the rollout's key `key` as is (garbage included).
fn put_raw(etcd: &Etcd, key: &str, value: &str) {
    support::fleet::raw(&etcd.url, NAME, key, Some(value));
}

/// The command line against the fleet: `(exit code, stdout, stderr)`.
fn cli(etcd: &Etcd, args: &[&str]) -> (i32, String, String) {
    let mut args = args.to_vec();
    args.extend(["--etcd", &etcd.url, "--name", NAME]);
    run_cli(&args, &[])
}

/// Writes the 10% stage at `epoch` as the fleet's state and waits until
/// every replica serves it.
fn start_at_ten_percent(store: &EtcdStateStore, replicas: &[ServerProcess], epoch: u64) {
    let mut state = RolloutState::running(
        1,
        std::time::SystemTime::now(),
        ChangedBy::Operator,
        "start",
    );
    state.epoch = epoch;
    state.run_epoch = epoch;
    let expected = store.load().unwrap().map(|s| s.revision);
    store.compare_and_swap(expected, &state).unwrap();
    wait_until("every replica at 10%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 10.0)
    });
}

#[test]
fn a_kill_switch_set_through_one_replicas_put_reaches_every_replica_within_two_seconds() {
    let etcd = Etcd::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas = replicas(&etcd, &dirs);
    let operator =
        EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "operator").unwrap();
    start_at_ten_percent(&operator, &replicas, 1);

    let reply = replicas[0].request(
        "PUT",
        "/rollout",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        br#"{"kill_switch": true}"#,
    );
    let written = Instant::now();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = reply.json();
    let to = reply["config_written_to"].as_str().unwrap();
    assert!(to.contains(&etcd.url) && to.contains(NAME), "{to}");
    assert_eq!(reply["percent"], 0.0, "{reply}");
    let took = wait_until("every replica to apply the kill switch", WITHIN, || {
        replicas.iter().all(|r| {
            let rollout = r.get_rollout();
            rollout["kill_switch"] == true && rollout["percent"] == 0.0
        })
    });
    assert!(
        written.elapsed() < Duration::from_secs(2),
        "reached the last replica after {took:?}"
    );
    for r in &replicas {
        assert!(
            (0..100).all(|i| !r.decide(&format!("killed-{i}"))),
            "{}",
            r.addr
        );
        assert_eq!(
            status_of(&r.get_rollout()),
            "running",
            "the state is untouched"
        );
    }

    // `config show` and `config set` on the same key; set waits for every
    // replica to acknowledge the new config.
    let (code, stdout, _) = cli(&etcd, &["config", "show"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("kill switch: ON"), "{stdout}");
    let (code, stdout, stderr) = cli(&etcd, &["config", "set", "--kill-switch", "off"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("confirmed: 3 service(s) applied config"),
        "{stdout}"
    );
    wait_until("every replica back at 10%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 10.0)
    });
}

#[test]
fn a_rollback_over_a_corrupt_state_key_is_stored_and_a_corrupt_config_key_stops_nothing() {
    let etcd = Etcd::start();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = replicas(&etcd, &dirs);
    let operator =
        EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "operator").unwrap();
    start_at_ten_percent(&operator, &replicas, 5);

    // The state key turns to garbage: every replica fails closed.
    put_raw(&etcd, "state", "{\"epoch\": 5, \"stage\": 1, \"sta");
    wait_until("every replica to fail closed", WITHIN, || {
        replicas
            .iter()
            .all(|r| r.get_rollout()["state_error"].is_string())
    });
    let (code, _, stderr) = cli(&etcd, &["resume", "--reason", "x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Only a rollback is accepted"), "{stderr}");

    let (code, stdout, stderr) = cli(&etcd, &["rollback", "--reason", "pager: garbage in etcd"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "stored epoch 6 in etcd {} rollout {NAME}",
            etcd.url
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("confirmed: 2 service(s) applied epoch 6"),
        "{stdout}"
    );
    let stored = operator.load().unwrap().unwrap().state;
    assert_eq!(
        (stored.status, stored.epoch, stored.stage),
        (RolloutStatus::RolledBack, 6, Some(1))
    );
    for r in &replicas {
        assert_eq!(status_of(&r.get_rollout()), "rolled_back");
        assert!((0..100).all(|i| !r.decide(&format!("held-{i}"))));
    }
    let (code, stdout, stderr) = cli(&etcd, &["resume", "--reason", "repaired"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_until("every replica back at 10%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 10.0)
    });

    // The config key turns to garbage: the last good config stays, every
    // view says so, once on stderr; a rollback is still written.
    put_raw(&etcd, "config", "{\"kill_switch\": tr");
    wait_until("every replica to report it", WITHIN, || {
        replicas
            .iter()
            .all(|r| r.get_rollout()["config_error"].is_string())
    });
    let metrics = support::http::get(replicas[1].addr, "/metrics").body;
    assert!(
        metrics.contains("\nasync_upload_rollout_config_error 1\n"),
        "{metrics}"
    );
    let (code, stdout, _) = cli(&etcd, &["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        status["config_error"].as_str().unwrap().contains("config"),
        "{status}"
    );
    assert_eq!(status["services"].as_array().unwrap().len(), 2, "{status}");
    let (code, stdout, stderr) = cli(&etcd, &["rollback", "--reason", "pager: both broken"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for r in &replicas {
        assert_eq!(status_of(&r.get_rollout()), "rolled_back");
    }
    std::thread::sleep(Duration::from_millis(500));
    for r in &mut replicas {
        let stderr = r.stderr_text();
        assert_eq!(stderr.matches("CONFIG ERROR").count(), 1, "{stderr}");
    }
    let (code, _, stderr) = cli(&etcd, &["config", "set", "--kill-switch", "off"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--overwrite"), "{stderr}");
    let (code, stdout, stderr) = cli(
        &etcd,
        &["config", "set", "--kill-switch", "off", "--overwrite"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_until("the config error to clear", WITHIN, || {
        replicas
            .iter()
            .all(|r| r.get_rollout()["config_error"].is_null())
    });
}

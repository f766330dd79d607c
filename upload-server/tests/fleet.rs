//! Fleet mode end to end: three upload-server replicas and two controllers
//! on a real etcd and a real Prometheus (scraping every second), all on
//! loopback with temporary data directories.
//!
//! One test walks the fleet through its life, in order: the first state
//! reaches every replica; every replica sends the same id down the same
//! path; an operator's rollback through etcd reaches every replica (and
//! each acknowledges it); the leading controller is killed with SIGKILL and
//! the other takes over within the lease and continues the stage; a
//! replica cut off from etcd fails closed within `stale_after`; an async
//! fault on one replica rolls the whole fleet back. The leadership fence
//! itself (a controller that lost its lease cannot write) is pinned by
//! tests/etcd_store.rs against the same real etcd.

mod support;

use std::time::{Duration, Instant};

use async_upload_rollout::fleet::EtcdStateStore;
use async_upload_rollout::{Percent, Rollout, RolloutConfig, StateStore};
use support::fleet::{Controller, operator, replica};
use support::servers::{Etcd, Prometheus, Proxy, wait_until};
use support::status_of;

const NAME: &str = "fleet-test";
/// The controllers' lease: a dead leader is replaced within it.
const LEASE_TTL: u64 = 2;

#[test]
fn a_fleet_of_three_replicas_and_two_controllers_acts_as_one() {
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.addr);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |i: usize, etcd_url: &str, extra: &[&str]| {
        let mut flags = vec!["--log-interval", "0s", "--stale-after", "3s"];
        flags.extend_from_slice(extra);
        replica(dirs[i].path(), etcd_url, NAME, &format!("r{i}"), &flags)
    };
    // r1 fails half of its async uploads on purpose; r2 reaches etcd
    // through a proxy the test can cut.
    let replicas = [
        start(0, &etcd.url, &[]),
        start(1, &etcd.url, &["--inject-async-error-rate", "0.5"]),
        start(2, &proxy.url(), &[]),
    ];
    for r in &replicas {
        let rollout = r.get_rollout();
        assert_eq!(
            rollout["state"],
            serde_json::Value::Null,
            "no state yet: {rollout}"
        );
        assert_eq!(
            rollout["halted"], true,
            "nothing async before the first state"
        );
    }
    let targets: Vec<_> = replicas.iter().map(|r| r.addr).collect();
    let prometheus = Prometheus::start(&targets, Duration::from_secs(1));
    let controllers = [
        Controller::start(&etcd.url, &prometheus.url, NAME, "c0", LEASE_TTL),
        Controller::start(&etcd.url, &prometheus.url, NAME, "c1", LEASE_TTL),
    ];
    let observer =
        EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "observer").unwrap();
    let within = Duration::from_secs(30);

    // 1. The leader writes the first state (ASYNC_UPLOAD_ROLLOUT=10: the
    // 10% stage); every replica applies and acknowledges it.
    wait_until("every replica at 10%", within, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 10.0)
    });
    // The observer's store reads through its own watch, which may see the
    // leader's write a moment after the replicas did.
    let mut first = None;
    wait_until("the observer sees the first state", within, || {
        first = observer.load().unwrap();
        first.is_some()
    });
    let first = first.unwrap().state;
    wait_until("every replica's ack", within, || {
        let acks = observer.acknowledgements().unwrap().unwrap();
        acks.len() == 3 && acks.iter().all(|ack| ack.applied.epoch == first.epoch)
    });
    let leaders: Vec<&Controller> = controllers.iter().filter(|c| c.said("leading")).collect();
    assert_eq!(leaders.len(), 1, "one leader");

    // 2. The same id takes the same path on every replica.
    let reference = Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).unwrap(),
    ));
    for i in 0..200 {
        let id = format!("same-path-{i}");
        let want = reference.should_use_async(&id);
        for r in &replicas {
            assert_eq!(r.decide(&id), want, "{id} on {}", r.addr);
        }
    }

    // 3. An operator's rollback through etcd reaches every replica.
    let written = Instant::now();
    operator(&etcd.url, NAME, "rollback", "pager: checking the fleet");
    wait_until("every replica rolled back", within, || {
        replicas
            .iter()
            .all(|r| status_of(&r.get_rollout()) == "rolled_back")
    });
    let rolled_back = observer.load().unwrap().unwrap().state;
    wait_until("every replica's ack of the rollback", within, || {
        observer
            .acknowledgements()
            .unwrap()
            .unwrap()
            .iter()
            .filter(|ack| ack.applied.epoch == rolled_back.epoch)
            .count()
            == 3
    });
    let acked = written.elapsed();
    assert!(acked < Duration::from_secs(5), "acked after {acked:?}");
    assert!((0..100).all(|i| replicas.iter().all(|r| !r.decide(&format!("x{i}")))));
    operator(&etcd.url, NAME, "resume", "all clear");
    wait_until("every replica back at 10%", within, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 10.0)
    });

    // 4. The leader dies: the other takes over within the lease and
    // continues the stage (same stage start, same run).
    let before = observer.load().unwrap().unwrap().state;
    let leader_id = observer.leader().unwrap().expect("a leader");
    let (mut dead, survivor): (Vec<_>, Vec<_>) =
        controllers.into_iter().partition(|c| c.id == leader_id);
    let killed = Instant::now();
    drop(dead.pop()); // SIGKILL
    let survivor = survivor.into_iter().next().unwrap();
    let took = wait_until("the other controller to lead", within, || {
        observer.leader().unwrap().as_deref() == Some(survivor.id.as_str())
    });
    assert!(
        took <= Duration::from_secs(LEASE_TTL + 2),
        "took over {:?} after the kill",
        killed.elapsed()
    );
    wait_until("the new leader to say so", within, || {
        survivor.said("leading")
    });
    std::thread::sleep(Duration::from_secs(2)); // a couple of its ticks
    let after = observer.load().unwrap().unwrap().state;
    assert_eq!(
        after.stage_started_at, before.stage_started_at,
        "the stage continues"
    );
    assert_eq!(after.run_epoch, before.run_epoch, "the run continues");
    assert_eq!(after.stage, before.stage);

    // 5. A replica cut off from etcd fails closed within stale_after.
    proxy.cut();
    let cut = Instant::now();
    wait_until("r2 to fail closed", within, || {
        let rollout = replicas[2].get_rollout();
        rollout["halted"] == true && rollout["stale"] == true
    });
    assert!(
        cut.elapsed() < Duration::from_secs(3 + 3),
        "{:?}",
        cut.elapsed()
    );
    assert!(replicas[2].get_rollout()["state_error"].is_string());
    assert!((0..100).all(|i| !replicas[2].decide(&format!("cut-{i}"))));
    assert_eq!(
        replicas[0].get_rollout()["percent"],
        10.0,
        "the others serve on"
    );
    proxy.restore();
    wait_until("r2 back", within, || {
        replicas[2].get_rollout()["percent"] == 10.0
    });

    // 6. An async fault on one replica rolls the whole fleet back.
    let ids: Vec<String> = (0..3000).map(|i| format!("fault-{i}")).collect();
    let first_bad = Instant::now();
    let mut rolled_back_at = None;
    for chunk in ids.chunks(50) {
        replicas[1].upload(chunk);
        if replicas
            .iter()
            .all(|r| status_of(&r.get_rollout()) == "rolled_back")
        {
            rolled_back_at = Some(first_bad.elapsed());
            break;
        }
    }
    if rolled_back_at.is_none() {
        wait_until("the fleet to roll back", within, || {
            replicas
                .iter()
                .all(|r| status_of(&r.get_rollout()) == "rolled_back")
        });
    }
    let state = observer.load().unwrap().unwrap().state;
    assert_eq!(
        state.status,
        async_upload_rollout::RolloutStatus::RolledBack
    );
    assert!(
        state.reason.contains("rolls back"),
        "a rollback trigger: {}",
        state.reason
    );
    for r in &replicas {
        assert_eq!(r.upload(&["after-fault".to_owned()]), 0);
    }
    drop(prometheus);
}

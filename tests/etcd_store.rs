//! `EtcdStateStore` against a real etcd on loopback: compare-and-swap,
//! the watch, the fleet's config, acknowledgements bound to leases, and
//! leadership fencing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use async_upload_rollout::act::{Acknowledgement, Applied, ChangedBy, Operation, Revision, Stored};
use async_upload_rollout::fleet::{self, EtcdStateStore};
use async_upload_rollout::*;
use support::servers::{Etcd, Proxy, wait_until};

fn store(etcd: &Etcd, name: &str, replica: &str) -> EtcdStateStore {
    EtcdStateStore::connect(std::slice::from_ref(&etcd.url), name, replica).unwrap()
}

fn running(stage: usize) -> RolloutState {
    RolloutState::running(stage, SystemTime::now(), ChangedBy::Config, "start")
}

#[test]
fn writers_racing_on_etcd_exactly_one_wins_the_others_get_conflict() {
    let etcd = Etcd::start();
    let first = store(&etcd, "race", "setup");
    assert!(first.load().unwrap().is_none());
    let mut revision = first.compare_and_swap(None, &running(1)).unwrap();
    assert!(
        first
            .compare_and_swap(None, &running(1))
            .unwrap_err()
            .is_conflict()
    );
    let plan = RolloutPlan::default();
    let writers: Vec<EtcdStateStore> = (0..4)
        .map(|i| store(&etcd, "race", &format!("w{i}")))
        .collect();
    for round in 0..10 {
        // Another store's write reaches `first` through its watch: bounded.
        let mut current = None;
        wait_until(
            "the last round's write to reach the first store",
            Duration::from_secs(5),
            || {
                current = first.load().unwrap();
                current.as_ref().is_some_and(|c| c.revision == revision)
            },
        );
        let current = current.unwrap();
        let barrier = Arc::new(Barrier::new(writers.len()));
        let wins = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(i, writer)| {
                let (writer, barrier, wins) =
                    (writer.clone(), Arc::clone(&barrier), Arc::clone(&wins));
                let op = if i % 2 == 0 {
                    Operation::Pause
                } else {
                    Operation::Rollback
                };
                let next = current
                    .state
                    .apply(op, &plan, SystemTime::now(), ChangedBy::Operator, "race")
                    .unwrap()
                    .unwrap();
                let expected = current.revision;
                std::thread::spawn(move || {
                    barrier.wait();
                    match writer.compare_and_swap(Some(expected), &next) {
                        Ok(_) => {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err) => assert!(err.is_conflict(), "{err}"),
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
        // Back to running for the next round.
        let stored = wait_for_revision_change(&first, revision);
        let resumed = stored
            .state
            .apply(
                Operation::Resume,
                &plan,
                SystemTime::now(),
                ChangedBy::Operator,
                "next",
            )
            .unwrap()
            .unwrap();
        revision = first
            .compare_and_swap(Some(stored.revision), &resumed)
            .unwrap();
    }
}

fn wait_for_revision_change(store: &EtcdStateStore, from: Revision) -> Stored {
    let mut seen = None;
    wait_until("the watch to see the write", Duration::from_secs(5), || {
        seen = store.load().unwrap().filter(|s| s.revision != from);
        seen.is_some()
    });
    seen.unwrap()
}

#[test]
fn another_processes_write_is_seen_through_the_watch_within_milliseconds() {
    let etcd = Etcd::start();
    let reader = store(&etcd, "watch", "reader");
    let writer = store(&etcd, "watch", "writer");
    let revision = writer.compare_and_swap(None, &running(2)).unwrap();
    let took = wait_until("the first state", Duration::from_secs(5), || {
        reader.load().unwrap().is_some()
    });
    assert_eq!(reader.load().unwrap().unwrap().revision, revision);
    let mut slowest = took;
    for i in 0..20 {
        let current = reader.load().unwrap().unwrap();
        let next = RolloutState {
            epoch: current.state.epoch + 1,
            reason: format!("change {i}"),
            ..current.state.clone()
        };
        let written = Instant::now();
        writer
            .compare_and_swap(Some(current.revision), &next)
            .unwrap();
        wait_until("the change", Duration::from_secs(5), || {
            reader
                .load()
                .unwrap()
                .is_some_and(|s| s.state.reason == next.reason)
        });
        slowest = slowest.max(written.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest change seen after {slowest:?}"
    );
}

#[test]
fn the_fleets_config_is_shared_and_a_bad_one_is_an_error_naming_the_key() {
    let etcd = Etcd::start();
    let a = store(&etcd, "config", "a");
    let b = store(&etcd, "config", "b");
    assert_eq!(a.load_config().unwrap(), None);
    let config = RolloutConfig {
        force_sync: vec!["vip".into()],
        kill_switch: true,
        ..RolloutConfig::default()
    };
    a.put_config(&config).unwrap();
    wait_until("b to see the config", Duration::from_secs(5), || {
        b.load_config().unwrap().as_ref() == Some(&config)
    });
    // Written by hand, and broken: an error that names the key.
    put_raw(
        &etcd,
        "/async-upload-rollout/config/config",
        "{\"kill_switch\": \"maybe\"}",
    );
    wait_until("the bad config", Duration::from_secs(5), || {
        b.load_config().err().is_some_and(|e| {
            e.to_string()
                .contains("/async-upload-rollout/config/config")
        })
    });
}

/// Writes `value` at `key` through etcd's own HTTP gateway (`/v3/kv/put`),
/// as an operator with etcdctl would.
fn put_raw(etcd: &Etcd, key: &str, value: &str) {
    let b64 = |text: &str| base64(text.as_bytes());
    let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
    ureq::post(&format!("{}/v3/kv/put", etcd.url))
        .send(body.as_bytes())
        .expect("etcd's gateway takes the put");
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Each acknowledgement's service and epoch.
fn epochs(acks: &[Acknowledgement]) -> Vec<(String, u64)> {
    acks.iter()
        .map(|ack| (ack.service.clone(), ack.applied.epoch))
        .collect()
}

#[test]
fn an_acknowledgement_disappears_with_its_replica() {
    let etcd = Etcd::start();
    let observer = store(&etcd, "acks", "observer");
    let replica = store(&etcd, "acks", "replica-1");
    // Written by the store's own task: acknowledge() never blocks.
    replica
        .acknowledge(&Applied::new(7, Percent::from_whole(10).unwrap()).with_config("abc"))
        .unwrap();
    wait_until("the ack to be written", Duration::from_secs(5), || {
        !observer.acknowledgements().unwrap().unwrap().is_empty()
    });
    let acks = observer.acknowledgements().unwrap().unwrap();
    assert_eq!(epochs(&acks), [("replica-1".to_owned(), 7)]);
    assert_eq!(acks[0].pid, std::process::id());
    assert_eq!(acks[0].applied.config.as_deref(), Some("abc"));
    assert!(acks[0].is_live(SystemTime::now()));
    drop(replica); // its lease is no longer kept alive
    let gone = wait_until("the ack to expire", Duration::from_secs(15), || {
        observer.acknowledgements().unwrap().unwrap().is_empty()
    });
    assert!(
        gone <= Duration::from_secs(
            u64::try_from(async_upload_rollout::fleet::DEFAULT_LEASE_TTL).unwrap() + 3
        )
    );
}

#[test]
fn a_controller_that_lost_its_leadership_cannot_write() {
    let etcd = Etcd::start();
    let plan = RolloutPlan::default();
    let b = store(&etcd, "fence", "controller-b");
    // Controller C reaches etcd through a proxy the test can cut.
    let proxy = Proxy::start(etcd.addr);
    let c = EtcdStateStore::connect(&[proxy.url()], "fence", "controller-c").unwrap();
    let leadership_c = c.campaign(2).unwrap().expect("c leads");
    assert!(b.campaign(2).unwrap().is_none(), "one leader at a time");
    assert_eq!(b.leader().unwrap().as_deref(), Some("controller-c"));
    let revision = c.compare_and_swap(None, &running(1)).unwrap();
    let judged = c.load().unwrap().unwrap();

    // C is partitioned: its lease runs out, B takes over and decides.
    proxy.cut();
    let mut leadership_b = None;
    wait_until(
        "b to take over once c's lease expired",
        Duration::from_secs(20),
        || {
            leadership_b = b.campaign(2).ok().flatten();
            leadership_b.is_some()
        },
    );
    wait_until("c to notice", Duration::from_secs(10), || {
        leadership_c.is_lost()
    });
    let current = b.load().unwrap().unwrap();
    assert_eq!(
        current.revision, revision,
        "b continues from the stored state"
    );
    let decided = current
        .state
        .apply(
            Operation::Pause,
            &plan,
            SystemTime::now(),
            ChangedBy::Controller,
            "b decided",
        )
        .unwrap()
        .unwrap();
    let b_revision = b.compare_and_swap(Some(revision), &decided).unwrap();

    // C comes back and writes what it judged before the partition: refused,
    // whether it names the revision it judged or the newest one.
    proxy.restore();
    let stale = judged
        .state
        .apply(
            Operation::Rollback,
            &plan,
            SystemTime::now(),
            ChangedBy::Controller,
            "c's old view",
        )
        .unwrap()
        .unwrap();
    for expected in [revision, b_revision] {
        let err = c.compare_and_swap(Some(expected), &stale).unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    }
    wait_until("the state to read back", Duration::from_secs(5), || {
        b.load()
            .unwrap()
            .is_some_and(|s| s.state.reason == "b decided")
    });
    drop(leadership_b);
}

#[test]
fn a_follower_applies_the_fleets_state_and_config_and_acknowledges_each_epoch() {
    let etcd = Etcd::start();
    let leader = store(&etcd, "follow", "leader");
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(50).unwrap(),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let mut replica = fleet::replica(
        RolloutController::builder(rollout.clone(), metrics).state_store(Arc::new(store(
            &etcd,
            "follow",
            "replica-a",
        ))),
    )
    .build()
    .unwrap();
    assert!(
        rollout.is_halted(),
        "nothing async before the fleet's first state"
    );
    assert!(
        replica.state_error().unwrap().contains("waiting"),
        "{:?}",
        replica.state_error()
    );
    assert!(
        leader.load().unwrap().is_none(),
        "a follower never writes the first state"
    );

    leader.compare_and_swap(None, &running(1)).unwrap();
    leader
        .put_config(&RolloutConfig {
            force_sync: vec!["vip".into()],
            ..RolloutConfig::default()
        })
        .unwrap();
    wait_until(
        "the replica to apply the state",
        Duration::from_secs(5),
        || {
            let _ = replica.refresh();
            rollout.percent() == Percent::from_whole(10).unwrap()
        },
    );
    wait_until("the config", Duration::from_secs(5), || {
        let _ = replica.refresh();
        rollout.config().force_sync == ["vip"]
    });
    assert_eq!(replica.state_error(), None);
    wait_until("the ack", Duration::from_secs(5), || {
        epochs(&leader.acknowledgements().unwrap().unwrap()) == [("replica-a".to_owned(), 1)]
    });
}

#[test]
fn the_confirmed_contact_ages_on_a_silent_connection_and_load_never_blocks() {
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.addr);
    let writer = store(&etcd, "contact", "writer");
    writer.compare_and_swap(None, &running(1)).unwrap();
    let replica = EtcdStateStore::connect(&[proxy.url()], "contact", "replica").unwrap();
    wait_until("the first read", Duration::from_secs(10), || {
        replica.load().is_ok_and(|s| s.is_some())
    });
    // While etcd answers, the contact is confirmed every 200 ms or so.
    std::thread::sleep(Duration::from_millis(600));
    let age = replica.contact_age().unwrap();
    assert!(age < Duration::from_millis(500), "{age:?}");

    proxy.silence();
    let silenced = Instant::now();
    // Nothing answers and nothing is refused: the contact ages from the
    // last request answered, and load answers at once (an error after
    // CONTACT_TIMEOUT), never waiting on etcd.
    let mut slowest = Duration::ZERO;
    while silenced.elapsed() < async_upload_rollout::fleet::CONTACT_TIMEOUT + Duration::from_secs(1)
    {
        let asked = Instant::now();
        let _ = replica.load();
        let _ = replica.load_config();
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(slowest < Duration::from_millis(50), "load took {slowest:?}");
    let age = replica.contact_age().unwrap();
    assert!(
        age >= silenced
            .elapsed()
            .saturating_sub(Duration::from_millis(500)),
        "the contact is {age:?} old after {:?} of silence",
        silenced.elapsed()
    );
    let err = replica.load().unwrap_err();
    assert!(err.to_string().contains("no confirmed contact"), "{err}");

    proxy.restore();
    let restored = Instant::now();
    wait_until(
        "the contact to be confirmed again",
        Duration::from_secs(10),
        || replica.contact_age().unwrap() < restored.elapsed(),
    );
    let took = restored.elapsed();
    eprintln!("contact confirmed again {took:?} after the proxy forwarded again");
    assert!(
        took < Duration::from_secs(3),
        "confirmed again after {took:?}"
    );
    assert!(replica.load().unwrap().is_some());
}

#[test]
fn a_deleted_state_key_keeps_its_high_water_mark_and_no_write_goes_below_it() {
    let etcd = Etcd::start();
    let a = store(&etcd, "epochs", "a");
    let mut state = running(1);
    state.epoch = 20;
    state.run_epoch = 20;
    a.compare_and_swap(None, &state).unwrap();
    assert_eq!(a.high_water().unwrap(), 20);
    delete_raw(&etcd, "/async-upload-rollout/epochs/state");
    let b = store(&etcd, "epochs", "b");
    assert!(b.load().unwrap().is_none(), "the state is gone");
    assert_eq!(b.high_water().unwrap(), 20, "its mark is not");
    // A first state at epoch 1 is refused; above the mark it is written.
    let err = b.compare_and_swap(None, &running(1)).unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let mut above = running(1);
    above.epoch = 21;
    above.run_epoch = 21;
    b.compare_and_swap(None, &above).unwrap();
    assert_eq!(b.high_water().unwrap(), 21);
    // Garbage, then a rollback over it: above the mark, whatever the
    // garbage says.
    put_raw(
        &etcd,
        "/async-upload-rollout/epochs/state",
        "{\"epoch\": 3, \"sta",
    );
    let c = store(&etcd, "epochs", "c");
    assert!(c.load().unwrap_err().is_corrupt());
    let plan = RolloutPlan::default();
    let stored = c
        .replace_unreadable(&mut |salvaged| {
            RolloutState::rolled_back_over(
                salvaged,
                &plan,
                0,
                SystemTime::now(),
                ChangedBy::Operator,
                "pager",
            )
        })
        .unwrap();
    assert_eq!(stored.state.epoch, 22);
    assert_eq!(c.high_water().unwrap(), 22);
}

/// Deletes `key` through etcd's own HTTP gateway (`/v3/kv/deleterange`).
fn delete_raw(etcd: &Etcd, key: &str) {
    let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
    ureq::post(&format!("{}/v3/kv/deleterange", etcd.url))
        .send(body.as_bytes())
        .expect("etcd's gateway takes the delete");
}

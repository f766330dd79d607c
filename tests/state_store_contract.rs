//! One contract for every [`StateStore`]: the file store, the memory store
//! and (feature `etcd`) the etcd store each run the same checks, so a
//! controller can count on the same answers whichever it is given.
//!
//! The contract: an empty store loads `None` with a high-water mark of 0; a
//! compare-and-swap writes only against the revision it read (`None` for
//! an empty store), and a stale revision is a [`StoreError::Conflict`] that
//! writes nothing; epochs only grow (a write at or below the stored epoch is
//! a conflict too); what was written is what loads; the high-water mark is
//! at least every epoch written; `replace_unreadable` refuses a readable
//! state; a store names itself for messages; and a store that keeps
//! acknowledgements shows the one written.

mod support;

use std::time::SystemTime;

use async_upload_rollout::act::{Applied, ChangedBy};
use async_upload_rollout::*;

fn state(epoch: u64, status: RolloutStatus, stage: usize) -> RolloutState {
    let mut state = RolloutState::running(stage, SystemTime::now(), ChangedBy::Operator, "test");
    state.epoch = epoch;
    state.status = status;
    state
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

/// Every check of the contract, on an empty `store`; `settle` waits until a
/// condition holds (at once for stores that write synchronously).
fn contract(store: &dyn StateStore, settle: &dyn Fn(&str, &dyn Fn() -> bool)) {
    assert!(!store.describe().is_empty(), "a store names itself");

    // Empty.
    assert!(store.load().unwrap().is_none(), "an empty store loads None");
    assert_eq!(store.high_water().unwrap(), 0, "an empty store's mark");
    assert_conflict(
        store.replace_unreadable(&mut |_| state(9, RolloutStatus::RolledBack, 1)),
        "replace_unreadable on an empty store",
    );
    assert!(
        store.load().unwrap().is_none(),
        "the refused replace wrote nothing"
    );

    // The first write, against "nothing stored".
    let first = state(1, RolloutStatus::Running, 1);
    let r1 = store.compare_and_swap(None, &first).unwrap();
    let loaded = store.load().unwrap().expect("the first write loads");
    assert_eq!(loaded.revision, r1);
    assert_eq!(loaded.state, first, "what was written is what loads");

    // A second writer that also read "nothing stored" loses.
    assert_conflict(
        store.compare_and_swap(None, &state(2, RolloutStatus::Running, 2)),
        "a write against None over a stored state",
    );
    assert_eq!(
        store.load().unwrap().unwrap().state,
        first,
        "nothing written"
    );

    // The next write, against the revision read.
    let second = state(2, RolloutStatus::RolledBack, 1);
    let r2 = store.compare_and_swap(Some(r1), &second).unwrap();
    assert_ne!(r1, r2, "a write moves the revision");
    assert_eq!(store.load().unwrap().unwrap().state, second);

    // A writer still holding the older revision loses.
    assert_conflict(
        store.compare_and_swap(Some(r1), &state(3, RolloutStatus::Running, 2)),
        "a write against a stale revision",
    );
    // Epochs only grow, even against the current revision.
    assert_conflict(
        store.compare_and_swap(Some(r2), &state(2, RolloutStatus::Running, 3)),
        "a write at the stored epoch",
    );
    assert_conflict(
        store.compare_and_swap(Some(r2), &state(1, RolloutStatus::Running, 3)),
        "a write below the stored epoch",
    );
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(
        (loaded.revision, &loaded.state),
        (r2, &second),
        "refused writes left the rollback in place"
    );
    assert!(
        store.high_water().unwrap() >= 2,
        "the mark covers every epoch written"
    );
    assert_conflict(
        store.replace_unreadable(&mut |_| state(9, RolloutStatus::RolledBack, 1)),
        "replace_unreadable over a readable state",
    );
    assert_eq!(store.load().unwrap().unwrap().state, second);

    // Acknowledgements, where the store keeps them.
    store.acknowledge(&Applied::new(2, Percent::ZERO)).unwrap();
    if store.acknowledgements().unwrap().is_some() {
        settle("the acknowledgement to be kept", &|| {
            store
                .acknowledgements()
                .unwrap()
                .unwrap()
                .iter()
                .any(|ack| ack.applied.epoch == 2)
        });
    }
}

fn at_once(what: &str, condition: &dyn Fn() -> bool) {
    assert!(condition(), "{what}");
}

#[test]
fn the_memory_store_keeps_the_contract() {
    contract(&MemoryStateStore::new(), &at_once);
}

#[test]
fn the_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path().join("state.json")).with_service("contract");
    contract(&store, &at_once);
}

#[cfg(feature = "etcd")]
#[test]
fn the_etcd_store_keeps_the_contract() {
    use std::time::Duration;

    use async_upload_rollout::fleet::EtcdStateStore;
    use support::servers::{Etcd, wait_until};

    let etcd = Etcd::start();
    let store =
        EtcdStateStore::connect(std::slice::from_ref(&etcd.url), "contract", "replica-1").unwrap();
    contract(&store, &|what, condition| {
        wait_until(what, Duration::from_secs(10), condition);
    });
}

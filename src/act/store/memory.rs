//! [`MemoryStateStore`]: a [`StateStore`] in memory.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::act::state::RolloutState;
use crate::act::store::{Revision, StateStore, StoreError, Stored};

/// A [`StateStore`] in this process's memory, for tests, simulations and
/// services that need no persistence: its state is gone with the process.
///
/// Share it as `Arc<MemoryStateStore>` to let several controllers (or a
/// controller and a test playing the operator) race on one state. Revisions
/// count writes from 1.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    stored: Mutex<Option<Stored>>,
}

impl MemoryStateStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryStateStore {
        MemoryStateStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Stored>> {
        // A plain Option: no panic can leave it half-written.
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for MemoryStateStore {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        Ok(self.lock().clone())
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        let mut stored = self.lock();
        let found = stored.as_ref().map(|s| s.revision);
        if found != expected {
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found,
            });
        }
        // Epochs only grow, as in every store (the contract's test in
        // tests/state_store_contract.rs): a write that does not move past
        // the stored epoch comes from a writer that read an older state.
        if let Some(current) = stored.as_ref()
            && state.epoch <= current.state.epoch
        {
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found,
            });
        }
        let revision = Revision(found.map_or(1, |r| r.0.saturating_add(1)));
        *stored = Some(Stored {
            state: state.clone(),
            revision,
        });
        Ok(revision)
    }

    fn describe(&self) -> String {
        "in-memory state".to_owned()
    }
}

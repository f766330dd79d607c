//! [`StateStore`]: where the [`RolloutState`] lives, with compare-and-swap.
//!
//! A store holds one state and a [`Revision`] that changes on every write.
//! Writers read, decide, and write with
//! [`compare_and_swap`](StateStore::compare_and_swap) on the revision they
//! read: a writer that lost a race gets [`StoreError::Conflict`] and never
//! overwrites the newer state. Readers see changes made by others by calling
//! [`load`](StateStore::load) again (the controller does, every poll).
//!
//! The trait is written for a store that is remote, slow and can fail (etcd
//! in fleet mode): every call returns a `Result`, nothing is cached behind
//! the caller's back, and an error says whether the store could not be
//! reached ([`StoreError::Unavailable`], [`StoreError::Io`]: try again) or
//! holds something that cannot be believed ([`StoreError::Corrupt`]: a
//! person must fix it). A remote implementation should answer `load` from a
//! watch it keeps, so polling it is cheap.
//!
//! Implementations here: [`FileStateStore`] (one JSON file, the embedded
//! default, shared with the operator's command line) and [`MemoryStateStore`]
//! (tests, simulations, a process that needs no persistence).
//!
//! Beside the state, a store keeps the services' [`Acknowledgement`]s (see
//! [`ack`](self::ack)): which epoch and config each live service applied,
//! so that an operator's command can wait for them.

pub(crate) mod ack;
pub(crate) mod durable;
mod file;
mod memory;

use std::fmt;
use std::io;
use std::sync::Weak;
use std::time::Duration;

use crate::act::state::RolloutState;
use crate::decide::config::RolloutConfig;

pub use crate::act::salvage::Salvaged;
pub use ack::{ACK_REFRESH, ACK_TTL, Acknowledgement, Applied, default_service_id};
pub use file::{DEFAULT_STATE_PATH, FileStateStore};
pub use memory::MemoryStateStore;

/// A store's version of its content: it changes on every successful write.
///
/// Opaque: compare revisions for equality only. ([`FileStateStore`] uses the
/// state's epoch; a remote store uses its own counter.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A state as read from a store, with the revision to write against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The state.
    pub state: RolloutState,
    /// Its revision in the store.
    pub revision: Revision,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer changed the state since `expected` was read: read
    /// again, and decide again on what is there now.
    #[error(
        "{store}: the state changed under this write (expected {}, found {}): another writer got in first",
        show(*.expected),
        show(*.found)
    )]
    Conflict {
        /// The store.
        store: String,
        /// The revision the writer read.
        expected: Option<Revision>,
        /// The revision stored now.
        found: Option<Revision>,
    },
    /// The stored content cannot be believed (it does not parse, or breaks
    /// an invariant). Nothing async runs until a person fixes it.
    #[error("{store}: {message}")]
    Corrupt {
        /// The store (for a file, its path).
        store: String,
        /// What is wrong, naming the line or field where known.
        message: String,
    },
    /// An I/O error reading or writing the store.
    #[error("{store}: {source}")]
    Io {
        /// The store (for a file, its path).
        store: String,
        /// The error.
        source: io::Error,
    },
    /// The write was refused because the writer no longer leads (its
    /// leadership lease expired or another controller took over): stop
    /// acting at once.
    #[error("{store}: not the leader any more: {message}")]
    Fenced {
        /// The store.
        store: String,
        /// What the fence found.
        message: String,
    },
    /// A remote store could not be reached in time.
    #[error("{store}: unavailable: {message}")]
    Unavailable {
        /// The store.
        store: String,
        /// What failed.
        message: String,
    },
}

fn show(revision: Option<Revision>) -> String {
    revision.map_or_else(|| "no state".to_owned(), |r| r.to_string())
}

impl StoreError {
    /// Whether this is a [`Conflict`](StoreError::Conflict).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether this is [`Corrupt`](StoreError::Corrupt): the stored content
    /// cannot be believed (only a rollback may be written over it).
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// Where the rollout's state lives: load, and compare-and-swap on a revision.
///
/// Written for a store that is remote, slow and can fail: every call returns
/// a `Result`; [`StoreError::Conflict`] means another writer got in first
/// (read again, decide again); [`StoreError::Corrupt`] means the content
/// cannot be believed (fail closed); [`StoreError::Io`] and
/// [`StoreError::Unavailable`] mean try again. A remote implementation
/// should answer `load` from a watch it keeps, so polling it is cheap.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::{MemoryStateStore, RolloutState, StateStore, act::ChangedBy};
///
/// let store = MemoryStateStore::new();
/// assert!(store.load()?.is_none());
/// let first = RolloutState::off(SystemTime::now(), ChangedBy::Config, "not started");
/// let revision = store.compare_and_swap(None, &first)?;
///
/// // A second writer that read "nothing stored" loses.
/// let err = store.compare_and_swap(None, &first).unwrap_err();
/// assert!(err.is_conflict());
/// assert_eq!(store.load()?.unwrap().revision, revision);
/// # Ok::<(), async_upload_rollout::StoreError>(())
/// ```
pub trait StateStore: Send + Sync {
    /// The stored state and its revision; `Ok(None)` when nothing is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for content that cannot be believed;
    /// [`StoreError::Io`] or [`StoreError::Unavailable`] when the store
    /// cannot be read now.
    fn load(&self) -> Result<Option<Stored>, StoreError>;

    /// Writes `state` if the stored revision is still `expected` (`None`:
    /// nothing is stored), and returns the new revision.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the revision moved on (nothing is
    /// written); the other errors of [`load`](StateStore::load).
    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError>;

    /// Where the store is, for messages: a path, a URL and key.
    fn describe(&self) -> String;

    /// The rollout config (salt, kill switch, id lists) the store holds for
    /// every process on it, if it holds one: a fleet's shared config. Its
    /// percent is ignored (the state decides). The default holds none: a
    /// single service takes its config from a file or the environment.
    ///
    /// # Errors
    ///
    /// As [`load`](StateStore::load).
    fn load_config(&self) -> Result<Option<RolloutConfig>, StoreError> {
        Ok(None)
    }

    /// Records what this process now applies (its epoch, percent in force,
    /// config fingerprint and errors) as its [`Acknowledgement`], replacing
    /// its previous one. Services call it whenever that changes and every
    /// [`ACK_REFRESH`]. The default records nothing.
    ///
    /// # Errors
    ///
    /// As [`load`](StateStore::load).
    fn acknowledge(&self, applied: &Applied) -> Result<(), StoreError> {
        let _ = applied;
        Ok(())
    }

    /// Every service's latest acknowledgement, live or not (see
    /// [`Acknowledgement::is_live`]); `Ok(None)` when this store keeps none.
    ///
    /// # Errors
    ///
    /// As [`load`](StateStore::load).
    fn acknowledgements(&self) -> Result<Option<Vec<Acknowledgement>>, StoreError> {
        Ok(None)
    }

    /// Removes this process's acknowledgement (it stops serving). The
    /// default does nothing.
    ///
    /// # Errors
    ///
    /// As [`load`](StateStore::load).
    fn withdraw(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The largest epoch this store has ever held, as far as it can tell:
    /// also after its state was deleted or overwritten with something that
    /// cannot be read (a high-water mark kept beside the state and written
    /// with every state: `<state file>.epoch`, or the `epoch` key of a
    /// fleet). 0 when it never held a state.
    ///
    /// A write at or below it is refused as a [`StoreError::Conflict`]:
    /// epochs never go back, so a service never takes an older decision for
    /// a newer one. A controller writes every state above it, and never
    /// starts a store whose high-water mark is above 0 again from its
    /// environment or a file (only an operator's `--create` starts a new
    /// state there).
    ///
    /// The default (a store that keeps no mark): the stored state's epoch,
    /// 0 when nothing readable is stored.
    ///
    /// # Errors
    ///
    /// As [`load`](StateStore::load), [`StoreError::Corrupt`] excepted.
    fn high_water(&self) -> Result<u64, StoreError> {
        match self.load() {
            Ok(stored) => Ok(stored.map_or(0, |s| s.state.epoch)),
            Err(err) if err.is_corrupt() => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// How long ago this store last *confirmed* that what
    /// [`load`](StateStore::load) answers is current: the time a request was
    /// **sent** whose answer has arrived since (an answer proves the backend
    /// answered after that moment, not after the moment it arrived; an
    /// answer served from a cache proves nothing). A controller serves
    /// nothing async once this passes its `stale_after`, even while a call
    /// to the store is blocked. Must not block.
    ///
    /// `None` (the default) for a store that answers `load` by reading where
    /// the state lives (a file, memory): a controller then counts from its
    /// last successful `load`.
    fn contact_age(&self) -> Option<Duration> {
        None
    }

    /// Calls `listener` whenever the store learns that what it holds (the
    /// state, the shared config) changed, so that a monitor applies the
    /// change at once instead of at its next poll. The store keeps it
    /// weakly: dropping the listener's last `Arc` unsubscribes it. A store
    /// that cannot tell (the default) never calls it: readers poll.
    fn listen(&self, listener: Weak<dyn Fn() + Send + Sync>) {
        let _ = listener;
    }

    /// Replaces a stored state that cannot be read ([`load`](StateStore::load)
    /// answers [`StoreError::Corrupt`]) with `build(what could be read of
    /// it)`, atomically: the one write made without a revision, used by a
    /// rollback, which is always accepted. Returns what was stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the stored state can be read now, or
    /// nothing is stored (nothing is written: read again and decide again);
    /// the errors of [`load`](StateStore::load) otherwise. The default
    /// (a store whose content is always readable) answers with the result of
    /// `load`: a conflict, or its error.
    fn replace_unreadable(
        &self,
        build: &mut dyn FnMut(&Salvaged) -> RolloutState,
    ) -> Result<Stored, StoreError> {
        let _ = build;
        let found = self.load()?.map(|stored| stored.revision);
        Err(StoreError::Conflict {
            store: self.describe(),
            expected: None,
            found,
        })
    }
}

impl<S: StateStore + ?Sized> StateStore for std::sync::Arc<S> {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        (**self).load()
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        (**self).compare_and_swap(expected, state)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn load_config(&self) -> Result<Option<RolloutConfig>, StoreError> {
        (**self).load_config()
    }

    fn acknowledge(&self, applied: &Applied) -> Result<(), StoreError> {
        (**self).acknowledge(applied)
    }

    fn acknowledgements(&self) -> Result<Option<Vec<Acknowledgement>>, StoreError> {
        (**self).acknowledgements()
    }

    fn withdraw(&self) -> Result<(), StoreError> {
        (**self).withdraw()
    }

    fn replace_unreadable(
        &self,
        build: &mut dyn FnMut(&Salvaged) -> RolloutState,
    ) -> Result<Stored, StoreError> {
        (**self).replace_unreadable(build)
    }

    fn high_water(&self) -> Result<u64, StoreError> {
        (**self).high_water()
    }

    fn contact_age(&self) -> Option<Duration> {
        (**self).contact_age()
    }

    fn listen(&self, listener: Weak<dyn Fn() + Send + Sync>) {
        (**self).listen(listener);
    }
}

//! [`FileStateStore`]: the rollout's state in one JSON file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::act::state::RolloutState;
use crate::act::store::{Revision, StateStore, StoreError, Stored};

/// Where the state lives by default, beside the metrics log:
/// `logs/async_upload_rollout/state.json` (relative to the working directory).
pub const DEFAULT_STATE_PATH: &str = "logs/async_upload_rollout/state.json";

/// The [`RolloutState`] in one JSON file: the embedded default store, shared
/// by a service's controller and the operator's command line.
///
/// - **Reads** parse the whole file; a missing file is "nothing stored", an
///   empty or unparsable one, or one that breaks the state's invariants, is
///   [`StoreError::Corrupt`] naming the path (and line and column).
/// - **Writes** are compare-and-swap on the state's epoch (the file's
///   [`Revision`]), under an exclusive lock on `<path>.lock` (an OS file lock,
///   released if the writer dies), so writers in several processes cannot
///   interleave. The new content goes to a temporary file in the same
///   directory, which is fsynced, renamed over the file, and the directory
///   fsynced: a crash leaves the old state or the new one, never a mix.
/// - **Changes by others** (an operator's `async-upload-rollout rollback`)
///   are seen by reading again: the controller polls every second by default.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::{ChangedBy, FileStateStore, RolloutState, StateStore};
///
/// # let dir = tempfile::tempdir()?;
/// let store = FileStateStore::new(dir.path().join("state.json"));
/// let state = RolloutState::running(1, SystemTime::now(), ChangedBy::Config, "from ASYNC_UPLOAD_ROLLOUT=10");
/// let revision = store.compare_and_swap(None, &state)?;
/// let stored = store.load()?.expect("just written");
/// assert_eq!((stored.state, stored.revision), (state, revision));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FileStateStore {
    /// The store in the file at `path` (created, with its directory, by the
    /// first write).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> FileStateStore {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        FileStateStore {
            path,
            lock_path: lock_path.into(),
        }
    }

    /// The store at [`DEFAULT_STATE_PATH`].
    #[must_use]
    pub fn open_default() -> FileStateStore {
        FileStateStore::new(DEFAULT_STATE_PATH)
    }

    /// The state file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.describe(),
            source,
        }
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            store: self.describe(),
            message,
        }
    }

    fn read(&self) -> Result<Option<Stored>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.io(err)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(self.corrupt(
                "the state file is empty; restore it, or remove it to start from the environment"
                    .to_owned(),
            ));
        }
        let state: RolloutState = serde_json::from_slice(&bytes).map_err(|err| {
            self.corrupt(format!(
                "not a rollout state: {err} (fix the file, or remove it to start from the environment)"
            ))
        })?;
        state
            .validate_shape()
            .map_err(|err| self.corrupt(err.to_string()))?;
        let revision = Revision(state.epoch);
        Ok(Some(Stored { state, revision }))
    }

    /// Writes `state` durably: temp file, fsync, rename, fsync of the directory.
    fn write(&self, state: &RolloutState) -> io::Result<()> {
        static TEMP: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        text.push(b'\n');
        let mut temp = self.path.clone().into_os_string();
        temp.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = PathBuf::from(temp);
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

impl StateStore for FileStateStore {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        self.read()
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| self.io(e))?;
        // Held until `lock` drops at the end of this call (or the process
        // dies): one writer at a time, across processes.
        lock.lock().map_err(|e| self.io(e))?;
        let found = self.read()?.map(|stored| stored.revision);
        // Epochs only grow: a write that does not move past the stored epoch
        // comes from a writer that read an older state.
        if found != expected || found.is_some_and(|r| state.epoch <= r.0) {
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found,
            });
        }
        self.write(state).map_err(|e| self.io(e))?;
        Ok(Revision(state.epoch))
    }

    fn describe(&self) -> String {
        format!("state file {}", self.path.display())
    }
}

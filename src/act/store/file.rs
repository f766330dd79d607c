//! [`FileStateStore`]: the rollout's state in one JSON file.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::act::state::RolloutState;
use crate::act::store::ack::{Acknowledgement, Applied, default_service_id};
use crate::act::store::{Revision, Salvaged, StateStore, StoreError, Stored, durable};

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
/// - **Acknowledgements**: each service on the file keeps one small JSON
///   file, `<path>.acks/<service>.json` ([`Acknowledgement`]: its id, host,
///   pid, the epoch and config it applies, and when), written whole and
///   again every few seconds; one older than
///   [`ACK_TTL`](crate::act::ACK_TTL) no longer counts, and a service that stops
///   cleanly removes its own. The service's id is
///   [`with_service`](FileStateStore::with_service)'s, by default
///   `<host>-<pid>`.
/// - **A rollback over an unreadable file**
///   ([`replace_unreadable`](StateStore::replace_unreadable)) is written
///   under the same lock, only while the file still cannot be read.
/// - **The high-water mark** ([`high_water`](StateStore::high_water)):
///   `<path>.epoch` holds the largest epoch ever written (written before the
///   state, durably, under the same lock). A write must go above it, so a
///   state file that was removed, or restored from an old copy, never sends
///   the epoch back; and a service that starts on a store that held a state
///   does not start it again from its environment. Remove both files to
///   start a rollout afresh.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::{FileStateStore, RolloutState, StateStore, act::ChangedBy};
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
    epoch_path: PathBuf,
    acks_dir: PathBuf,
    service: String,
    /// Whether old acknowledgement files were swept (once per process).
    swept: Arc<AtomicBool>,
}

/// Acknowledgement files older than this are removed when a service writes
/// its first one: services that are long gone.
const ACK_SWEEP_AFTER: Duration = Duration::from_secs(3600);

impl FileStateStore {
    /// The store in the file at `path` (created, with its directory, by the
    /// first write).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> FileStateStore {
        let path = path.into();
        let beside = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        FileStateStore {
            lock_path: beside(".lock"),
            epoch_path: beside(".epoch"),
            acks_dir: beside(".acks"),
            path,
            service: default_service_id(),
            swept: Arc::default(),
        }
    }

    /// Names this process `service` in its acknowledgements (default:
    /// `<host>-<pid>`). Characters other than `A-Z a-z 0-9 . _ -` become
    /// `_` in the file name.
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> FileStateStore {
        self.service = service.into();
        self
    }

    /// The directory of the services' acknowledgement files:
    /// `<path>.acks`.
    #[must_use]
    pub fn acks_dir(&self) -> &Path {
        &self.acks_dir
    }

    /// Whether the state file exists now (an operator's command on a path
    /// that does not exist has missed: no service reads it).
    #[must_use]
    pub fn exists(&self) -> bool {
        self.path.exists()
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

    /// The high-water mark's file: `<path>.epoch`.
    #[must_use]
    pub fn epoch_path(&self) -> &Path {
        &self.epoch_path
    }

    /// The largest epoch in the high-water file (0 when there is none; the
    /// largest number in it when it holds something else).
    fn read_high_water(&self) -> Result<u64, StoreError> {
        let bytes = durable::read_if_any(&self.epoch_path).map_err(|source| StoreError::Io {
            store: format!("high-water file {}", self.epoch_path.display()),
            source,
        })?;
        Ok(bytes.map_or(0, |bytes| {
            bytes
                .split(|b| !b.is_ascii_digit())
                .filter_map(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        }))
    }

    fn read(&self) -> Result<Option<Stored>, StoreError> {
        match self.read_bytes()? {
            None => Ok(None),
            Some(bytes) => parse(&bytes).map(Some).map_err(|m| self.corrupt(m)),
        }
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        durable::read_if_any(&self.path).map_err(|e| self.io(e))
    }

    /// Takes the writers' lock (creating the directory): held until the
    /// returned file drops (or the process dies).
    fn lock(&self) -> Result<File, StoreError> {
        durable::lock(&self.path, &self.lock_path).map_err(|e| self.io(e))
    }

    fn ack_path(&self) -> PathBuf {
        let mut name: String = self
            .service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.is_empty() || name.starts_with('.') {
            name.insert(0, '_');
        }
        self.acks_dir.join(format!("{name}.json"))
    }

    /// Removes acknowledgement files nobody has written for an hour.
    fn sweep_acks(&self) {
        let Ok(entries) = fs::read_dir(&self.acks_dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).unwrap_or_default() > ACK_SWEEP_AFTER);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes `state` durably (temp file, fsync, rename, fsync of the
    /// directory), its epoch to the high-water file first when it is above
    /// `high_water`: a crash between the two leaves the mark above the
    /// state, never below.
    fn write(&self, state: &RolloutState, high_water: u64) -> io::Result<()> {
        if state.epoch > high_water {
            durable::write_whole(&self.epoch_path, format!("{}\n", state.epoch).as_bytes())?;
        }
        let mut text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        text.push(b'\n');
        durable::write_whole(&self.path, &text)
    }
}

/// The state in `bytes`, or why it cannot be believed.
fn parse(bytes: &[u8]) -> Result<Stored, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "the state file is empty; restore or remove it (a rollback is always accepted over it)"
                .to_owned(),
        );
    }
    let state: RolloutState = serde_json::from_slice(bytes).map_err(|err| {
        format!(
            "not a rollout state: {err} (fix or remove the file; a rollback is always accepted over it)"
        )
    })?;
    state.validate_shape().map_err(|err| err.to_string())?;
    let revision = Revision(state.epoch);
    Ok(Stored { state, revision })
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
        // Held until `_lock` drops at the end of this call (or the process
        // dies): one writer at a time, across processes.
        let _lock = self.lock()?;
        let found = self.read()?.map(|stored| stored.revision);
        let high_water = self.read_high_water()?;
        // Epochs only grow: a write that does not move past the stored epoch
        // and the high-water mark comes from a writer that read an older
        // state (the conflict names the mark when it is what was in the way).
        if found != expected {
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found,
            });
        }
        let floor = found.map_or(0, |r| r.0).max(high_water);
        if state.epoch <= floor {
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found: Some(Revision(floor)),
            });
        }
        self.write(state, high_water).map_err(|e| self.io(e))?;
        Ok(Revision(state.epoch))
    }

    fn high_water(&self) -> Result<u64, StoreError> {
        let stored = match self.read() {
            Ok(stored) => stored.map_or(0, |s| s.state.epoch),
            Err(err) if err.is_corrupt() => 0,
            Err(err) => return Err(err),
        };
        Ok(stored.max(self.read_high_water()?))
    }

    fn describe(&self) -> String {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("state file {}", path.display())
    }

    fn replace_unreadable(
        &self,
        build: &mut dyn FnMut(&Salvaged) -> RolloutState,
    ) -> Result<Stored, StoreError> {
        let _lock = self.lock()?;
        let conflict = |found| StoreError::Conflict {
            store: self.describe(),
            expected: None,
            found,
        };
        let Some(bytes) = self.read_bytes()? else {
            return Err(conflict(None));
        };
        let problem = match parse(&bytes) {
            Ok(stored) => return Err(conflict(Some(stored.revision))),
            Err(problem) => problem,
        };
        let high_water = self.read_high_water()?;
        let mut salvaged = Salvaged::scan(&bytes, problem);
        if high_water > 0 {
            salvaged.epoch = Some(salvaged.epoch.unwrap_or(0).max(high_water));
        }
        let state = build(&salvaged);
        state
            .validate_shape()
            .map_err(|err| self.corrupt(format!("refusing to write an invalid state: {err}")))?;
        if state.epoch <= high_water {
            return Err(conflict(Some(Revision(high_water))));
        }
        self.write(&state, high_water).map_err(|e| self.io(e))?;
        Ok(Stored {
            revision: Revision(state.epoch),
            state,
        })
    }

    fn acknowledge(&self, applied: &Applied) -> Result<(), StoreError> {
        let ack =
            Acknowledgement::of_this_process(&self.service, applied.clone(), SystemTime::now());
        let io = |source: io::Error| StoreError::Io {
            store: format!("acknowledgement directory {}", self.acks_dir.display()),
            source,
        };
        fs::create_dir_all(&self.acks_dir).map_err(io)?;
        if !self.swept.swap(true, Ordering::AcqRel) {
            self.sweep_acks();
        }
        let path = self.ack_path();
        let temp = durable::temp_beside(&path);
        let mut text = serde_json::to_vec(&ack).map_err(|e| io(io::Error::other(e)))?;
        text.push(b'\n');
        let written = fs::write(&temp, &text).and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(io)
    }

    fn acknowledgements(&self) -> Result<Option<Vec<Acknowledgement>>, StoreError> {
        let io = |source: io::Error| StoreError::Io {
            store: format!("acknowledgement directory {}", self.acks_dir.display()),
            source,
        };
        let entries = match fs::read_dir(&self.acks_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(err) => return Err(io(err)),
        };
        let mut acks = Vec::new();
        for entry in entries {
            let path = entry.map_err(io)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a temporary file being written
            }
            let Ok(bytes) = fs::read(&path) else {
                continue; // removed since the listing (a service stopped)
            };
            match serde_json::from_slice::<Acknowledgement>(&bytes) {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    // Written whole by rename, so never torn; shown, not
                    // believed: it acknowledges nothing.
                    let service = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let at = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    let mut applied = Applied::new(0, crate::decide::Percent::ZERO);
                    applied.state_error = Some(format!(
                        "unreadable acknowledgement file {}: {err}",
                        path.display()
                    ));
                    let mut ack = Acknowledgement::of_this_process(&service, applied, at);
                    ack.host = String::new();
                    ack.pid = 0;
                    acks.push(ack);
                }
            }
        }
        acks.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(Some(acks))
    }

    fn withdraw(&self) -> Result<(), StoreError> {
        match fs::remove_file(self.ack_path()) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
                store: format!("acknowledgement directory {}", self.acks_dir.display()),
                source: err,
            }),
            _ => Ok(()),
        }
    }
}

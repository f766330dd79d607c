//! [`ConfigStore`]: where the config every service of a rollout applies
//! (salt, kill switch, id lists) is kept, with compare-and-swap, so that an
//! operator changes it for all of them at once: [`ConfigFile`] (the file
//! each service's [`ConfigWatcher`](crate::act::ConfigWatcher) reads), or a
//! fleet's config key in etcd (`fleet::EtcdStateStore`, feature `etcd`).
//!
//! The command line's `config show` and `config set`, and the upload
//! server's `PUT /rollout`, go through it: read the config and its
//! [`Revision`], change it, write it back only if nobody wrote in between
//! (else read again and change again). The percent in a config file is only
//! the starting request (the state decides the percent in force); a write
//! keeps it as it is.

use std::fs::File;
use std::hash::Hasher as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::act::source::{ConfigFormat, SourceError, parse_file};
use crate::act::store::{Revision, StoreError, durable};
use crate::decide::config::RolloutConfig;

/// Where a rollout's shared config lives: load it with its revision, and
/// write it with a compare-and-swap on that revision.
pub trait ConfigStore: Send + Sync {
    /// The stored config and its revision; `Ok(None)` when none is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the stored config cannot be read (it is
    /// left as it is: fix it, or replace it whole with
    /// [`replace_config`](ConfigStore::replace_config)); [`StoreError::Io`]
    /// or [`StoreError::Unavailable`] when the store cannot be reached.
    fn load_config_revision(&self) -> Result<Option<(RolloutConfig, Revision)>, StoreError>;

    /// Writes `config` whole if the stored revision is still `expected`
    /// (`None`: nothing stored), and returns the new revision.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when someone wrote in between (nothing is
    /// written); the errors of
    /// [`load_config_revision`](ConfigStore::load_config_revision).
    fn compare_and_swap_config(
        &self,
        expected: Option<Revision>,
        config: &RolloutConfig,
    ) -> Result<Revision, StoreError>;

    /// Writes `config` whole whatever is stored (a config that cannot be
    /// read included), and returns the new revision.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] or [`StoreError::Unavailable`].
    fn replace_config(&self, config: &RolloutConfig) -> Result<Revision, StoreError>;

    /// Where the config is, for messages: a path, an endpoint and key.
    fn describe_config(&self) -> String;
}

/// A rollout config file (TOML or JSON, as
/// [`ConfigWatcher`](crate::act::ConfigWatcher) reads it) as a [`ConfigStore`].
///
/// Its revision is a hash of its bytes. Writes take an OS lock on
/// `<path>.lock`, check the revision, and replace the file whole: a
/// temporary file in the same directory, fsynced, renamed over it, and the
/// directory fsynced, so a watcher never reads half a file. Comments in the
/// file are not kept.
///
/// ```
/// use async_upload_rollout::{RolloutConfig, act::{ConfigFile, ConfigStore}};
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("rollout.toml");
/// std::fs::write(&path, "percent = 10\n")?;
/// let file = ConfigFile::new(&path)?;
/// let (mut config, revision) = file.load_config_revision()?.expect("a config");
/// config.kill_switch = true;
/// file.compare_and_swap_config(Some(revision), &config)?;
/// // A writer that read the old revision loses.
/// assert!(file.compare_and_swap_config(Some(revision), &config).unwrap_err().is_conflict());
/// assert!(std::fs::read_to_string(&path)?.contains("kill_switch = true"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    format: ConfigFormat,
    lock_path: PathBuf,
}

impl ConfigFile {
    /// The config file at `path`, in the format its extension names.
    ///
    /// # Errors
    ///
    /// [`SourceError::UnknownFormat`] for an extension other than `.toml`
    /// or `.json`.
    pub fn new(path: impl Into<PathBuf>) -> Result<ConfigFile, SourceError> {
        let path = path.into();
        let Some(format) = ConfigFormat::from_path(&path) else {
            return Err(SourceError::UnknownFormat { path });
        };
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        Ok(ConfigFile {
            path,
            format,
            lock_path: lock_path.into(),
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.describe_config(),
            source,
        }
    }

    fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        durable::read_if_any(&self.path).map_err(|e| self.io(e))
    }

    fn lock(&self) -> Result<File, StoreError> {
        durable::lock(&self.path, &self.lock_path).map_err(|e| self.io(e))
    }

    /// The file's text for `config`.
    fn render(&self, config: &RolloutConfig) -> Result<Vec<u8>, StoreError> {
        let text = match self.format {
            ConfigFormat::Toml => toml::to_string(config).map_err(|e| e.to_string()),
            ConfigFormat::Json => serde_json::to_string_pretty(config)
                .map(|json| json + "\n")
                .map_err(|e| e.to_string()),
        };
        text.map(String::into_bytes)
            .map_err(|message| self.io(io::Error::other(message)))
    }

    /// Replaces the file with `bytes`: temporary file, fsync, rename, fsync
    /// of the directory.
    fn write(&self, bytes: &[u8]) -> Result<(), StoreError> {
        durable::write_whole(&self.path, bytes).map_err(|e| self.io(e))
    }
}

/// A file's revision: SipHash-1-3 of its bytes.
fn revision_of(bytes: &[u8]) -> Revision {
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    hasher.write(bytes);
    Revision(hasher.finish())
}

impl ConfigStore for ConfigFile {
    fn load_config_revision(&self) -> Result<Option<(RolloutConfig, Revision)>, StoreError> {
        let Some(bytes) = self.read()? else {
            return Ok(None);
        };
        let config =
            parse_file(&self.path, self.format, &bytes).map_err(|err| StoreError::Corrupt {
                store: self.describe_config(),
                message: err.to_string(),
            })?;
        Ok(Some((config, revision_of(&bytes))))
    }

    fn compare_and_swap_config(
        &self,
        expected: Option<Revision>,
        config: &RolloutConfig,
    ) -> Result<Revision, StoreError> {
        let _lock = self.lock()?;
        let found = self.read()?.map(|bytes| revision_of(&bytes));
        if found != expected {
            return Err(StoreError::Conflict {
                store: self.describe_config(),
                expected,
                found,
            });
        }
        let bytes = self.render(config)?;
        self.write(&bytes)?;
        Ok(revision_of(&bytes))
    }

    fn replace_config(&self, config: &RolloutConfig) -> Result<Revision, StoreError> {
        let _lock = self.lock()?;
        let bytes = self.render(config)?;
        self.write(&bytes)?;
        Ok(revision_of(&bytes))
    }

    fn describe_config(&self) -> String {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("config file {}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_file_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.json");
        let file = ConfigFile::new(&path).unwrap();
        assert!(file.load_config_revision().unwrap().is_none());
        let config = RolloutConfig {
            force_sync: vec!["vip-1".into()],
            ..RolloutConfig::default()
        };
        let revision = file.compare_and_swap_config(None, &config).unwrap();
        let (read, again) = file.load_config_revision().unwrap().unwrap();
        assert_eq!((read, again), (config.clone(), revision));
        std::fs::write(&path, "{\"percent\": 10, \"kill_sw").unwrap();
        let err = file.load_config_revision().unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        assert!(err.to_string().contains("rollout.json"), "{err}");
        file.replace_config(&config).unwrap();
        assert!(file.load_config_revision().unwrap().is_some());
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}

//! [`ConfigWatcher`]: the [`RolloutConfig`] from a file, reloaded live.
//!
//! The file holds a `RolloutConfig` in TOML or JSON (chosen by its extension,
//! or by [`ConfigWatcher::with_format`]):
//!
//! ```toml
//! percent = 10
//! salt = "async-upload"
//! kill_switch = false
//! force_async = ["load-test-1"]
//! force_sync = []
//! ```
//!
//! `percent` is required, so that an empty or half-written file (an editor
//! that truncates before it writes) is an error rather than a config; the
//! other fields are optional (missing ones take [`RolloutConfig::default`]'s
//! values) and unknown fields are errors.
//!
//! # The file changes the config, never the percent
//!
//! The percent in force belongs to the
//! [`RolloutController`](crate::RolloutController): it is a function of the
//! rollout's stored state and the plan. A poll stores the file's salt, kill
//! switch and id lists with [`Rollout::update`], which keeps the percent in
//! force (and a [halt](Rollout::halt): a reload cannot undo a rollback). The
//! file's `percent` is the *starting request*: [`PollOutcome::Applied`]
//! returns it, and a service hands it to the controller, which uses it only
//! when no state is stored. A change to the percent alone is logged (with a
//! note saying so) and changes nothing.
//!
//! # Polling
//!
//! Each [`poll_once`](ConfigWatcher::poll_once) reads the file through its
//! path, following symlinks afresh, and never keeps a file handle or inode
//! between polls. So a Kubernetes ConfigMap update, which repoints a `..data`
//! symlink at a new directory, is seen like any edit. The bytes (and the
//! environment override, below) are hashed; when the hash is the one the last
//! poll saw, nothing else happens. When it differs, the text is parsed and,
//! if the config differs from the last one this watcher applied, stored with
//! [`Rollout::update`]: one atomic swap that every decision sees whole.
//!
//! A config equal to the last one applied is not stored again, so rewriting
//! the file, or editing a comment, stores nothing.
//!
//! # Errors keep the last good config
//!
//! A file that is missing, unreadable or invalid changes nothing that is
//! running. The poll that first sees the problem returns it as a
//! [`SourceError`] naming the file (and, for a parse error, the line and
//! column), adds one to [`errors`](ConfigWatcher::errors), keeps its message
//! in [`last_error`](ConfigWatcher::last_error) and, with a
//! [`log`](ConfigWatcher::with_log), appends a `"config"` line. Later polls
//! that see the same unchanged problem return [`PollOutcome::Unchanged`]:
//! each bad version of the file is reported once, not once per poll.
//!
//! # The environment variable wins over the file's percent
//!
//! When the environment variable `ASYNC_UPLOAD_ROLLOUT` ([`ROLLOUT_ENV_VAR`])
//! is set, its percent replaces the file's `percent` as the starting
//! request; the salt, kill switch and lists still come from the file. Set to
//! something that is not a percent, it is an error like a bad file, and
//! nothing changes. The variable is read at every poll; choose another one,
//! or none, with [`with_env_override`](ConfigWatcher::with_env_override).
//!
//! One concept in one file of about 758 lines (27 of them its unit tests, 198
//! docs): watching one config file: reading, validating and reloading it.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::act::log::JsonlSink;
use crate::act::record::{LogEvent, LogRecord};
use crate::act::trace::{self, Severity};
use crate::decide::config::{ConfigError, ROLLOUT_ENV_VAR, RolloutConfig, parse_percent_var};
use crate::decide::rollout::Rollout;

/// The syntax of a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigFormat {
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl ConfigFormat {
    /// The format a file's extension names (`toml` or `json`, any case).
    #[must_use]
    pub fn from_path(path: &Path) -> Option<ConfigFormat> {
        let extension = path.extension()?.to_str()?;
        if extension.eq_ignore_ascii_case("toml") {
            Some(ConfigFormat::Toml)
        } else if extension.eq_ignore_ascii_case("json") {
            Some(ConfigFormat::Json)
        } else {
            None
        }
    }
}

/// What one [`poll_once`](ConfigWatcher::poll_once) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a poll reports whether the config changed"]
pub enum PollOutcome {
    /// Nothing to do: the file (and the environment override) is as the
    /// last poll saw it, or it parses to the config applied last, or only
    /// its percent changed (which is logged: the percent is the controller's).
    /// This includes a problem already reported by an earlier poll.
    Unchanged,
    /// The file's config: its salt, kill switch and lists were stored in the
    /// rollout; its `percent` (after the environment override) is the
    /// starting request for a controller, not applied.
    Applied(RolloutConfig),
}

/// A config file that could not be used. The config in force stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file does not exist (deleted, or a symlink pointing nowhere).
    /// Restore it; the last good config runs meanwhile.
    #[error("rollout config file {} is missing; keeping the config in force", path.display())]
    Missing {
        /// The file's path.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, an I/O error).
    #[error("cannot read rollout config file {}: {source}; keeping the config in force", path.display())]
    Read {
        /// The file's path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The text is not a rollout config: bad syntax, an unknown field, a
    /// wrong type or an invalid percent. Fix the line named.
    #[error(
        "invalid rollout config file {}{}: {message}; keeping the config in force",
        path.display(),
        location(*line, *column)
    )]
    Parse {
        /// The file's path.
        path: PathBuf,
        /// The 1-based line of the error, when the parser gives one.
        line: Option<usize>,
        /// The 1-based column (in characters) of the error, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The environment override is set but is not a percent (the error names
    /// the variable and its value). Fix or unset it.
    #[error("rollout config file {}: {source}; keeping the config in force", path.display())]
    Env {
        /// The file's path.
        path: PathBuf,
        /// What is wrong with the variable.
        source: ConfigError,
    },
    /// The file's extension names no known format: use `.toml` or `.json`,
    /// or say which with [`ConfigWatcher::with_format`].
    #[error("rollout config file {}: unknown format (expected a .toml or .json extension)", path.display())]
    UnknownFormat {
        /// The file's path.
        path: PathBuf,
    },
}

impl SourceError {
    /// The config file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            SourceError::Missing { path }
            | SourceError::Read { path, .. }
            | SourceError::Parse { path, .. }
            | SourceError::Env { path, .. }
            | SourceError::UnknownFormat { path } => path,
        }
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(", line {line}, column {column}"),
        (Some(line), None) => format!(", line {line}"),
        _ => String::new(),
    }
}

/// Watches a config file and stores each new valid version's salt, kill
/// switch and id lists in a [`Rollout`] (never its percent).
///
/// The module docs describe polling, error handling and the environment
/// override.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use async_upload_rollout::{Rollout, RolloutConfig, act::{ConfigWatcher, PollOutcome}};
///
/// # let dir = std::env::temp_dir().join(format!("aur-source-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("rollout.toml");
/// std::fs::write(&path, "percent = 10\nforce_sync = [\"vip-1\"]\n")?;
///
/// let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
/// let mut watcher = ConfigWatcher::new(&path, rollout.clone())?.with_env_override(None);
/// let PollOutcome::Applied(config) = watcher.poll_once()? else { unreachable!() };
/// assert_eq!(config.percent.to_string(), "10%"); // the starting request...
/// assert_eq!(rollout.percent().to_string(), "0%"); // ...is the controller's to apply
/// assert_eq!(rollout.config().force_sync, ["vip-1"]);
///
/// // A bad edit is reported and changes nothing.
/// std::fs::write(&path, "percent = 10\nkill_switch = maybe\n")?;
/// let err = watcher.poll_once().unwrap_err();
/// assert!(err.to_string().contains("rollout.toml, line 2"), "{err}");
/// assert_eq!(rollout.config().force_sync, ["vip-1"]);
/// assert_eq!(watcher.errors(), 1);
///
/// // So is a half-written one: a whole config says its percent.
/// std::fs::write(&path, "")?;
/// assert!(watcher.poll_once().unwrap_err().to_string().contains("`percent`"));
///
/// // In production: poll every 10 s on a background thread until dropped.
/// let handle = watcher.spawn(std::time::Duration::from_secs(10));
/// drop(handle);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConfigWatcher {
    path: PathBuf,
    format: ConfigFormat,
    rollout: Arc<Rollout>,
    env_var: Option<String>,
    sink: Option<JsonlSink>,
    /// What the previous poll saw.
    seen: Option<Seen>,
    /// The config this watcher stored last.
    applied: Option<RolloutConfig>,
    stats: Arc<Stats>,
}

/// The state of the file (and override) a poll saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Readable, with this hash of its bytes and the override's value.
    Content(u64),
    /// Not there.
    Missing,
    /// There but unreadable.
    Unreadable,
}

/// Counters shared with a [`WatcherHandle`].
#[derive(Debug, Default)]
struct Stats {
    applied: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn last_error(&self) -> Option<String> {
        self.lock_last_error().clone()
    }

    fn lock_last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A plain Option<String>: a panic elsewhere cannot leave it torn.
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConfigWatcher {
    /// A watcher of the file at `path` (TOML or JSON by its extension) that
    /// stores into `rollout`, with the [`ROLLOUT_ENV_VAR`] override and no
    /// log. Nothing is read until the first poll.
    ///
    /// # Errors
    ///
    /// [`SourceError::UnknownFormat`] when the extension is neither `.toml`
    /// nor `.json` (use [`with_path_and_format`](ConfigWatcher::with_path_and_format)
    /// for other names).
    pub fn new(path: impl Into<PathBuf>, rollout: Arc<Rollout>) -> Result<Self, SourceError> {
        let path = path.into();
        match ConfigFormat::from_path(&path) {
            Some(format) => Ok(ConfigWatcher::with_path_and_format(path, format, rollout)),
            None => Err(SourceError::UnknownFormat { path }),
        }
    }

    /// A watcher of the file at `path` in `format`, whatever its name.
    #[must_use]
    pub fn with_path_and_format(
        path: impl Into<PathBuf>,
        format: ConfigFormat,
        rollout: Arc<Rollout>,
    ) -> Self {
        ConfigWatcher {
            path: path.into(),
            format,
            rollout,
            env_var: Some(ROLLOUT_ENV_VAR.to_owned()),
            sink: None,
            seen: None,
            applied: None,
            stats: Arc::default(),
        }
    }

    /// Reads the file as `format` instead.
    #[must_use]
    pub fn with_format(mut self, format: ConfigFormat) -> Self {
        self.format = format;
        self.seen = None;
        self
    }

    /// The environment variable whose percent wins over the file's:
    /// `Some(name)`, or `None` for no override. The default is
    /// [`ROLLOUT_ENV_VAR`] (`ASYNC_UPLOAD_ROLLOUT`).
    #[must_use]
    pub fn with_env_override(mut self, var: Option<&str>) -> Self {
        self.env_var = var.map(str::to_owned);
        self.seen = None;
        self
    }

    /// Appends a `"config"` line to `sink` for every config applied and every
    /// problem reported. A failed log write is not an error of the poll (the
    /// poll's result and the counters still say what happened).
    #[must_use]
    pub fn with_log(mut self, sink: JsonlSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The watched file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many configs this watcher stored (changes of the percent alone
    /// are not stored, so not counted).
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.stats.applied()
    }

    /// How many problems were reported (each bad version of the file, each
    /// disappearance, once).
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.stats.errors()
    }

    /// The message of the problem in force: set when a poll reports one,
    /// cleared when a poll finds a valid config again.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.stats.last_error()
    }

    /// Reads the file once and stores its config if it changed.
    ///
    /// # Errors
    ///
    /// The first poll to see a problem returns it, and the config in force
    /// stays: [`SourceError::Missing`] (no file), [`SourceError::Read`]
    /// (unreadable), [`SourceError::Parse`] (not a valid config; line and
    /// column when the parser gives them), [`SourceError::Env`] (the override
    /// variable is set but not a percent).
    pub fn poll_once(&mut self) -> Result<PollOutcome, SourceError> {
        let result = self.poll();
        match &result {
            Ok(PollOutcome::Applied(config)) => {
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                *self.stats.lock_last_error() = None;
                let reason = format!(
                    "applied rollout config file {}: kill switch {}, {} force_async and {} force_sync ids (its percent {} is a starting request; the percent in force is the controller's)",
                    self.path.display(),
                    if config.kill_switch { "on" } else { "off" },
                    config.force_async.len(),
                    config.force_sync.len(),
                    config.percent,
                );
                trace::config(Severity::Info, &self.path, &reason);
                self.log(reason);
            }
            Ok(PollOutcome::Unchanged) => {}
            Err(err) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let message = err.to_string();
                *self.stats.lock_last_error() = Some(message.clone());
                trace::config(
                    Severity::Warn,
                    &self.path,
                    &format!("{message} (the config in force stays)"),
                );
                self.log(message);
            }
        }
        result
    }

    fn poll(&mut self) -> Result<PollOutcome, SourceError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) => {
                let (seen, err) = if err.kind() == io::ErrorKind::NotFound {
                    let path = self.path.clone();
                    (Seen::Missing, SourceError::Missing { path })
                } else {
                    let path = self.path.clone();
                    (Seen::Unreadable, SourceError::Read { path, source: err })
                };
                return self
                    .saw(seen)
                    .map_or(Ok(PollOutcome::Unchanged), |()| Err(err));
            }
        };
        let env = self
            .env_var
            .clone()
            .map(|name| (std::env::var(&name), name));
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        if let Some((value, name)) = &env {
            name.hash(&mut hasher);
            format!("{value:?}").hash(&mut hasher);
        }
        if self.saw(Seen::Content(hasher.finish())).is_none() {
            return Ok(PollOutcome::Unchanged);
        }

        let mut config = parse_file(&self.path, self.format, &bytes)?;
        if let Some((value, name)) = env {
            match value {
                Ok(value) => {
                    config.percent =
                        parse_percent_var(&name, &value).map_err(|source| SourceError::Env {
                            path: self.path.clone(),
                            source,
                        })?;
                }
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(value)) => {
                    return Err(SourceError::Env {
                        path: self.path.clone(),
                        source: ConfigError::NotUnicode {
                            var: name,
                            value: value.to_string_lossy().into_owned(),
                        },
                    });
                }
            }
        }
        let previous = self.applied.replace(config.clone());
        if previous.as_ref() == Some(&config) {
            *self.stats.lock_last_error() = None;
            return Ok(PollOutcome::Unchanged);
        }
        if let Some(previous) = previous
            && (RolloutConfig {
                percent: config.percent,
                ..previous.clone()
            }) == config
        {
            *self.stats.lock_last_error() = None;
            self.log(format!(
                "rollout config file {}: percent {} -> {} ignored: the percent in force is the controller's (use its advance, rollback, resume or pause); the file's percent is only the starting request when no state is stored",
                self.path.display(),
                previous.percent,
                config.percent
            ));
            return Ok(PollOutcome::Unchanged);
        }
        // One atomic swap of everything but the percent (and any halt).
        self.rollout.update(|current| {
            current.salt.clone_from(&config.salt);
            current.kill_switch = config.kill_switch;
            current.force_async.clone_from(&config.force_async);
            current.force_sync.clone_from(&config.force_sync);
        });
        Ok(PollOutcome::Applied(config))
    }

    /// Records what this poll saw; `Some(())` when it differs from the last.
    fn saw(&mut self, seen: Seen) -> Option<()> {
        (self.seen.replace(seen) != Some(seen)).then_some(())
    }

    fn log(&mut self, reason: String) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut record = LogRecord::new(LogEvent::Config, now);
        record.percent = Some(self.rollout.percent());
        record.reason = Some(reason);
        // Documented on `with_log`: the poll's result already says what happened.
        let _ = sink.append(&record);
    }

    /// Polls now and then every `interval` on a background thread, until the
    /// returned handle is dropped (which wakes the thread at once; it does not
    /// wait out the interval).
    ///
    /// Problems are reported as for [`poll_once`](ConfigWatcher::poll_once),
    /// through the counters, [`WatcherHandle::last_error`] and the log.
    pub fn spawn(self, interval: Duration) -> WatcherHandle {
        let stats = Arc::clone(&self.stats);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let path = self.path.clone();
        let mut watcher = self;
        let thread = thread::Builder::new()
            .name("rollout-config-watcher".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                loop {
                    // Reported through the counters, last_error and the log.
                    let _ = watcher.poll_once();
                    let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                    let (guard, _) = wake
                        .wait_timeout_while(guard, interval, |stopped| !*stopped)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                }
            });
        WatcherHandle {
            path,
            stats,
            stop,
            thread: thread.ok(),
        }
    }
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("env_var", &self.env_var)
            .field("applied", &self.applied())
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

/// Parses a config file's bytes: a whole config (it names its `percent`),
/// in `format`; errors name `path`, and the line and column when known.
pub(crate) fn parse_file(
    path: &Path,
    format: ConfigFormat,
    bytes: &[u8],
) -> Result<RolloutConfig, SourceError> {
    let parse_error = |line, column, message| SourceError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let valid = &bytes[..err.valid_up_to()];
        let (line, column) = line_and_column(
            // The prefix is valid UTF-8 by definition of valid_up_to.
            std::str::from_utf8(valid).unwrap_or_default(),
            valid.len(),
        );
        parse_error(Some(line), Some(column), "not valid UTF-8".to_owned())
    })?;
    /// Which fields the text names (a whole config names its percent).
    #[derive(serde::Deserialize)]
    struct Named {
        percent: Option<serde::de::IgnoredAny>,
    }
    let named: Result<Named, SourceError> = match format {
        ConfigFormat::Toml => {
            toml::from_str(text).map_err(|_| parse_error(None, None, String::new()))
        }
        ConfigFormat::Json => {
            serde_json::from_str(text).map_err(|_| parse_error(None, None, String::new()))
        }
    };
    let config = parse_config(path, format, text)?;
    if !matches!(named, Ok(Named { percent: Some(_) })) {
        let what = if text.trim().is_empty() {
            "the file is empty"
        } else {
            "no `percent` field"
        };
        return Err(parse_error(
            None,
            None,
            format!(
                "{what}: a config is applied only whole, and a whole one names its `percent` (a file being written?)"
            ),
        ));
    }
    Ok(config)
}

fn parse_config(
    path: &Path,
    format: ConfigFormat,
    text: &str,
) -> Result<RolloutConfig, SourceError> {
    let parse_error = |line, column, message| SourceError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    match format {
        ConfigFormat::Toml => toml::from_str(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map(|span| line_and_column(text, span.start))
                .unzip();
            parse_error(line, column, err.message().to_owned())
        }),
        ConfigFormat::Json => serde_json::from_str(text).map_err(|err| {
            // serde_json's message ends in " at line L column C"; keep
            // the location in the fields only.
            let message = err.to_string();
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
            let known = err.line() > 0;
            parse_error(
                known.then_some(err.line()),
                known.then_some(err.column()),
                message,
            )
        }),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The background watcher started by [`ConfigWatcher::spawn`].
///
/// Dropping it stops the thread promptly and joins it.
#[must_use = "dropping the handle stops the watcher"]
pub struct WatcherHandle {
    path: PathBuf,
    stats: Arc<Stats>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WatcherHandle {
    /// How many configs the watcher stored.
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.stats.applied()
    }

    /// How many problems the watcher reported.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.stats.errors()
    }

    /// The message of the problem in force, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.stats.last_error()
    }

    /// Whether the watcher thread is running (it could not start if the OS
    /// refused a thread).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for WatcherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatcherHandle")
            .field("path", &self.path)
            .field("applied", &self.applied())
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        // 'x' follows "bé = ", five characters (six bytes).
        assert_eq!(line_and_column(text, 6 + 6), (2, 6));
    }

    #[test]
    fn format_follows_the_extension() {
        let cases: &[(&str, Option<ConfigFormat>)] = &[
            ("rollout.toml", Some(ConfigFormat::Toml)),
            ("rollout.TOML", Some(ConfigFormat::Toml)),
            ("dir/rollout.json", Some(ConfigFormat::Json)),
            ("rollout.yaml", None),
            ("rollout", None),
        ];
        for &(path, format) in cases {
            assert_eq!(ConfigFormat::from_path(Path::new(path)), format, "{path}");
        }
    }
}

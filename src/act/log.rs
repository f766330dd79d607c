//! The JSON-lines metrics log: [`JsonlSink`] appends, [`read_log`] reads back.
//!
//! One JSON object per line, each ending in `\n`, written with one `write`
//! call and never rewritten. A crash can leave at most the last line torn
//! (without its `\n`); [`read_log`] returns every whole record and reports
//! the torn one, and [`JsonlSink::open`] cuts such a fragment off before
//! appending, so a torn line never ends up in the middle of the log. A
//! *whole* line (ending in `\n`) that is not a valid record is an error,
//! wherever it is: it was written or edited wrong, not cut short. The line
//! schema is in `docs/log-schema.md` and on [`LogRecord`].
//!
//! # Rotation
//!
//! [`JsonlSink::rotate_at`] bounds the log: when the next line would take
//! `metrics.jsonl` past the limit, it becomes `metrics.jsonl.1` (the older
//! ones move up to `.2`, `.3`, …, the oldest beyond the number kept is
//! deleted) and a new `metrics.jsonl` is started. [`read_log`] reads the
//! whole set as one log, oldest first ([`log_files`] lists it).

pub use super::record::{Action, LOG_SCHEMA_VERSION, LogEvent, LogRecord, NoOp};

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the rollout plan says to look: `logs/async_upload_rollout/metrics.jsonl`
/// (relative to the working directory).
pub const DEFAULT_LOG_PATH: &str = "logs/async_upload_rollout/metrics.jsonl";

/// Longest preview of a torn line kept in a [`TornLine`], in bytes.
const PREVIEW_BYTES: usize = 120;

/// The reader's buffer: a few log lines.
const READ_BUFFER_BYTES: usize = 128 * 1024;

/// Longest line [`read_log`] reads, in bytes (4 MiB): a log line of this
/// crate is a few kilobytes (a snapshot's non-empty buckets and an
/// evaluation), so a longer one is corrupt, and reading stops there instead
/// of buffering it whole.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// The metrics log could not be opened, written or read. Every variant names
/// the log's path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The log's directory is missing and could not be created. Check the
    /// path and the permissions of its nearest existing ancestor.
    #[error("cannot create directory {} for the metrics log {}: {source}", dir.display(), path.display())]
    CreateDir {
        /// The log file's path.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The log file could not be opened for appending (or repaired).
    #[error("cannot open the metrics log {} for appending: {source}", path.display())]
    Open {
        /// The log file's path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A record could not be written. Metrics recording goes on; the next
    /// append first cuts off whatever part of this line reached the file.
    #[error("cannot write to the metrics log {}: {source}", path.display())]
    Write {
        /// The log file's path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A record could not be turned into JSON (for example a map with
    /// non-string keys). Nothing was written.
    #[error("cannot serialize a record for the metrics log {}: {source}", path.display())]
    Serialize {
        /// The log file's path.
        path: PathBuf,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// The log file could not be read.
    #[error("cannot read the metrics log {}: {source}", path.display())]
    Read {
        /// The log file's path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A whole line (one that ends in `\n`, or one followed by another) is
    /// not a valid record: the log was edited or corrupted, not merely cut
    /// short by a crash. `field` names the part to blame.
    #[error("metrics log {}, line {line}, field `{field}`: not a valid record: {source}", path.display())]
    BadLine {
        /// The log file's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The path of the field where reading failed (`snapshot.async.latency`),
        /// `.` for the line as a whole.
        field: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A line is longer than [`MAX_LINE_BYTES`]: no record of this crate
    /// is, so the log is corrupt there. Nothing after it was read.
    #[error("metrics log {}, line {line}: longer than {limit} bytes, not a record of this log", path.display())]
    LineTooLong {
        /// The log file's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The limit, [`MAX_LINE_BYTES`].
        limit: usize,
    },
    /// A record is valid alone but not where it stands (a counter that
    /// went down within one stage run, a field that contradicts another).
    #[error("metrics log {}, line {line}, field `{field}`: {reason}", path.display())]
    Inconsistent {
        /// The log file's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The field to blame (`snapshot.async.success`).
        field: String,
        /// What is wrong, naming the earlier line it contradicts if any.
        reason: String,
    },
    /// A rotated file (`metrics.jsonl.1`, …) ends in an unfinished line.
    /// Only the current file can: rotation happens between whole lines.
    #[error("metrics log {}, line {line}: unfinished line in a rotated file: {reason}", path.display())]
    TornRotated {
        /// The rotated file's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// Why it is not a record.
        reason: String,
    },
}

impl LogError {
    /// The log file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            LogError::CreateDir { path, .. }
            | LogError::Open { path, .. }
            | LogError::Write { path, .. }
            | LogError::Serialize { path, .. }
            | LogError::Read { path, .. }
            | LogError::BadLine { path, .. }
            | LogError::LineTooLong { path, .. }
            | LogError::Inconsistent { path, .. }
            | LogError::TornRotated { path, .. } => path,
        }
    }
}

/// An unfinished last line, as a crash leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornLine {
    /// Its 1-based line number.
    pub line: usize,
    /// Its length in bytes, without a final `\n`.
    pub bytes: usize,
    /// Its first bytes (up to 120), as text with invalid UTF-8 replaced.
    pub preview: String,
    /// Why it is not a record (the parser's message).
    pub reason: String,
}

impl TornLine {
    fn new(line: usize, bytes: &[u8], reason: String) -> TornLine {
        let preview =
            String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW_BYTES)]).into_owned();
        TornLine {
            line,
            bytes: bytes.len(),
            preview,
            reason,
        }
    }
}

/// What [`read_log`] found: every whole record, and the torn last line if any.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRead<T> {
    /// The records, in file order.
    pub records: Vec<T>,
    /// The last line, when it is not a record (a crash cut it short).
    pub torn_tail: Option<TornLine>,
}

/// Appends records to a JSON-lines file, one line each.
///
/// Each record is serialized to memory first, then written with a single
/// `write` call to a file opened in append mode (so lines of concurrent
/// writers do not interleave on local file systems) and flushed; earlier lines
/// are never rewritten. A failed write (a full disk, say) is returned to the
/// caller and counted ([`write_errors`](JsonlSink::write_errors),
/// [`last_error`](JsonlSink::last_error)); the
/// [`MetricsAccumulator`](crate::MetricsAccumulator) goes on counting
/// regardless, and the next snapshot carries the counts the failed line had.
/// The next append reopens the file by its path and cuts off whatever part
/// of the failed line reached it, so logging resumes by itself once the
/// disk has room again.
///
/// [`rotate_at`](JsonlSink::rotate_at) bounds the log's size on disk.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::{JsonlSink, MetricsAccumulator, act::log::{read_log, LogRecord}};
///
/// # let dir = std::env::temp_dir().join(format!("aur-doc-{}", std::process::id()));
/// let path = dir.join("logs/async_upload_rollout/metrics.jsonl");
/// let metrics = MetricsAccumulator::new();
/// let mut log = JsonlSink::open(&path)?; // creates the directories
/// log.append(&LogRecord::snapshot(metrics.snapshot()))?;
///
/// let read = read_log::<LogRecord>(&path)?;
/// assert_eq!(read.records.len(), 1);
/// assert!(read.torn_tail.is_none());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    line: Vec<u8>,
    repaired: Option<TornLine>,
    /// A write failed: reopen the file and cut off what part of a line
    /// reached it before the next one.
    needs_repair: bool,
    /// The current file's length as far as this sink knows.
    size: u64,
    /// `(max bytes, rotated files kept)` when rotating.
    rotation: Option<(u64, usize)>,
    write_errors: u64,
    last_error: Option<String>,
}

impl JsonlSink {
    /// Opens (creating it and its missing parent directories) the log at
    /// `path` for appending.
    ///
    /// If the file ends in an unfinished line (a crash during a write), that
    /// fragment is cut off so new lines start clean; a fragment that is
    /// already a whole JSON value only gets its missing `\n`. What was cut is
    /// reported by [`repaired_tail`](JsonlSink::repaired_tail). Whole lines
    /// are never touched.
    ///
    /// # Errors
    ///
    /// [`LogError::CreateDir`] when a missing directory cannot be created,
    /// [`LogError::Open`] when the file cannot be opened or repaired.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonlSink, LogError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
                path: path.clone(),
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let file = open_append(&path).map_err(|source| LogError::Open {
            path: path.clone(),
            source,
        })?;
        let mut sink = JsonlSink {
            path,
            file,
            line: Vec::with_capacity(4096),
            repaired: None,
            needs_repair: false,
            size: 0,
            rotation: None,
            write_errors: 0,
            last_error: None,
        };
        sink.repaired = sink.repair_tail().map_err(|source| LogError::Open {
            path: sink.path.clone(),
            source,
        })?;
        Ok(sink)
    }

    /// Rotates the log by size: when the next line would take the file past
    /// `max_bytes`, it is renamed `<path>.1` (older ones move up to `.2`,
    /// …, keeping `keep_files` of them; the oldest is replaced) and a new
    /// file is started. With `keep_files` 0 the old lines are deleted. The
    /// log then takes at most about `(keep_files + 1) × max_bytes` on disk
    /// (a single line longer than `max_bytes` still gets a file of its own).
    /// [`read_log`] and the command line read the set as one log.
    ///
    /// ```
    /// use async_upload_rollout::JsonlSink;
    /// # let dir = std::env::temp_dir().join(format!("aur-doc-rotate-{}", std::process::id()));
    /// // At most 10 MiB now and 5 × 10 MiB before: metrics.jsonl, metrics.jsonl.1, … .5
    /// let log = JsonlSink::open(dir.join("metrics.jsonl"))?.rotate_at(10 << 20, 5);
    /// # drop(log);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "rotate_at returns the sink that rotates"]
    pub fn rotate_at(mut self, max_bytes: u64, keep_files: usize) -> JsonlSink {
        self.rotation = Some((max_bytes.max(1), keep_files));
        self
    }

    /// How many appends failed to reach the file since it was opened
    /// (write, flush or rotation errors; serialization errors are not
    /// counted: nothing was written).
    #[must_use]
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// The operating system's message for the latest failed append, if any
    /// failed (it stays after logging resumes; compare
    /// [`write_errors`](Self::write_errors) to tell).
    #[must_use]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Opens the log at [`DEFAULT_LOG_PATH`].
    ///
    /// # Errors
    ///
    /// As [`open`](JsonlSink::open).
    pub fn open_default() -> Result<JsonlSink, LogError> {
        JsonlSink::open(DEFAULT_LOG_PATH)
    }

    /// The log file's path, as given to [`open`](JsonlSink::open).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The unfinished last line that [`open`](JsonlSink::open) (or recovery
    /// after a failed write) cut off, if any.
    #[must_use]
    pub fn repaired_tail(&self) -> Option<&TornLine> {
        self.repaired.as_ref()
    }

    /// Appends `record` as one JSON line and flushes it.
    ///
    /// # Errors
    ///
    /// [`LogError::Serialize`] when `record` cannot be serialized (nothing is
    /// written), [`LogError::Write`] when the file cannot be written.
    pub fn append<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), LogError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(|source| LogError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        // Compact JSON escapes newlines inside strings: one record, one line.
        self.line.push(b'\n');
        self.write_line().map_err(|source| {
            self.needs_repair = true;
            self.write_errors = self.write_errors.saturating_add(1);
            self.last_error = Some(source.to_string());
            self.write_error(source)
        })
    }

    /// Writes `self.line`: first recovers from an earlier failure, then
    /// rotates if the line would not fit.
    fn write_line(&mut self) -> io::Result<()> {
        if self.needs_repair {
            // Reopen by path: the old handle may be what failed.
            self.file = open_append(&self.path)?;
            let repaired = self.repair_tail()?;
            if repaired.is_some() {
                self.repaired = repaired;
            }
            self.needs_repair = false;
        }
        let len = self.line.len() as u64;
        if let Some((max, keep)) = self.rotation
            && self.size > 0
            && self.size.saturating_add(len) > max
        {
            self.rotate(keep)?;
        }
        self.file.write_all(&self.line)?;
        self.file.flush()?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    /// `path.(keep-1)` → `path.keep`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        if keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..keep).rev() {
                match fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Asks the operating system to put everything appended so far on disk
    /// (`fsync`). [`append`](JsonlSink::append) already hands each line to
    /// the OS, which survives a crash of the process but not of the machine.
    ///
    /// # Errors
    ///
    /// [`LogError::Write`] when the file system reports a failure.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: io::Error) -> LogError {
        LogError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Makes the file end with `\n` (or be empty), cutting off an unfinished
    /// last line; returns what was cut.
    fn repair_tail(&mut self) -> io::Result<Option<TornLine>> {
        let len = self.file.metadata()?.len();
        self.size = len;
        if len == 0 || last_byte(&mut self.file, len)? == b'\n' {
            return Ok(None);
        }
        // Rare: find where the last line starts, counting lines on the way.
        self.file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(&mut self.file);
        let (mut lines, mut line_start, mut offset) = (0usize, 0u64, 0u64);
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' {
                    lines += 1;
                    line_start = offset + i as u64 + 1;
                }
            }
            let n = buf.len();
            offset += n as u64;
            reader.consume(n);
        }
        let mut fragment = Vec::new();
        self.file.seek(SeekFrom::Start(line_start))?;
        (&mut self.file)
            .take(len - line_start)
            .read_to_end(&mut fragment)?;
        match serde_json::from_slice::<serde_json::Value>(&fragment) {
            Ok(_) => {
                // Only the newline is missing: finish the line, keep the record.
                self.file.write_all(b"\n")?;
                self.size = len + 1;
                Ok(None)
            }
            Err(error) => {
                self.file.set_len(line_start)?;
                self.size = line_start;
                Ok(Some(TornLine::new(lines + 1, &fragment, error.to_string())))
            }
        }
    }
}

impl fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.path)
            .field("repaired", &self.repaired)
            .field("rotation", &self.rotation)
            .field("write_errors", &self.write_errors)
            .finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

fn last_byte(file: &mut File, len: u64) -> io::Result<u8> {
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// The files of the log at `path`, oldest first: the rotated ones that
/// exist (`path.N`, …, `path.1`, see [`JsonlSink::rotate_at`]) and then
/// `path` itself. Numbering stops at the first gap.
#[must_use]
pub fn log_files(path: impl AsRef<Path>) -> Vec<PathBuf> {
    let path = path.as_ref();
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.is_file())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// `path` with `.n` appended: `metrics.jsonl.3`.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Reads every record of the JSON-lines log at `path`, and of its rotated
/// files before it (oldest first, see [`log_files`]).
///
/// Blank lines are skipped. Only the current file's last line may be
/// unfinished (no `\n`: a crash cut it short): if it is not a record it is
/// reported in [`LogRead::torn_tail`], not as an error; if it is, it is a
/// whole record. Every line that ends in `\n` must be a valid record.
///
/// # Errors
///
/// [`LogError::Read`] when a file cannot be read, [`LogError::BadLine`]
/// (naming the file, line and field) when a whole line is not a valid `T`,
/// [`LogError::LineTooLong`] for a line over [`MAX_LINE_BYTES`], and
/// [`LogError::TornRotated`] for an unfinished line in a rotated file.
pub fn read_log<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<LogRead<T>, LogError> {
    let files = log_files(path);
    let mut records = Vec::new();
    let mut torn_tail = None;
    for (i, file) in files.iter().enumerate() {
        let torn = for_each_record::<T>(file, &mut |_, _| {}, &mut |_, record| {
            records.push(record);
            Ok(())
        })?;
        if i + 1 < files.len() {
            check_not_torn(file, torn.as_ref())?;
        }
        torn_tail = torn;
    }
    Ok(LogRead { records, torn_tail })
}

/// The error for a rotated `file` that ends in a torn line.
pub(crate) fn check_not_torn(file: &Path, torn: Option<&TornLine>) -> Result<(), LogError> {
    match torn {
        Some(torn) => Err(LogError::TornRotated {
            path: file.to_path_buf(),
            line: torn.line,
            reason: torn.reason.clone(),
        }),
        None => Ok(()),
    }
}

/// Parses one line as a `T`; on failure, the path of the field to blame.
///
/// The plain typed parse first: naming the field (`serde_path_to_error`)
/// costs about as much as the parse itself, so it is done only for a line
/// that failed, by parsing it again. Both parses run the same deserializer
/// over the same bytes, so they fail alike.
pub(crate) fn parse_line<T: DeserializeOwned>(
    line: &[u8],
) -> Result<T, (String, serde_json::Error)> {
    // The whole line's UTF-8 checked at once (vectorised) is cheaper than
    // string by string; a line that is not UTF-8 is parsed as bytes, so
    // that the error names the field holding the bad bytes.
    let parsed = match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(line),
    };
    parsed.map_err(|first| field_of_failure::<T>(line).unwrap_or_else(|| (".".to_owned(), first)))
}

/// Parses `line` again, tracking the path to the field where it fails:
/// `None` if it does not fail this time.
fn field_of_failure<T: DeserializeOwned>(line: &[u8]) -> Option<(String, serde_json::Error)> {
    let mut de = serde_json::Deserializer::from_slice(line);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => Some((e.path().to_string(), e.into_inner())),
        Ok(_) => de.end().err().map(|e| (".".to_owned(), e)),
    }
}

/// Reads one file of a log (no rotated ones) line by line, without keeping
/// them: calls `progress(lines, bytes)` after every line read and
/// `on_record(line number, record)` for every whole record, in file order,
/// stopping at the first error either returns. Returns the torn last line,
/// if any (see [`read_log`]).
///
/// # Errors
///
/// As [`read_log`], and whatever `on_record` returns.
pub(crate) fn for_each_record<T: DeserializeOwned>(
    path: &Path,
    progress: &mut dyn FnMut(usize, u64),
    on_record: &mut dyn FnMut(usize, T) -> Result<(), LogError>,
) -> Result<Option<TornLine>, LogError> {
    let read_error = |source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Lines are ~20 KiB: a larger buffer than the default 8 KiB saves reads.
    let mut reader =
        BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path).map_err(read_error)?);
    let mut torn_tail = None;
    let mut buf = Vec::new();
    let mut number = 0usize;
    let mut bytes = 0u64;
    loop {
        buf.clear();
        // One byte over the limit tells a line at the limit from a longer one.
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(read_error)?;
        if n == 0 {
            break;
        }
        number += 1;
        bytes += n as u64;
        progress(number, bytes);
        let whole = buf.last() == Some(&b'\n');
        if !whole && buf.len() > MAX_LINE_BYTES {
            return Err(LogError::LineTooLong {
                path: path.to_path_buf(),
                line: number,
                limit: MAX_LINE_BYTES,
            });
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line::<T>(line) {
            Ok(record) => on_record(number, record)?,
            // No `\n`: the end of the file, cut short by a crash.
            Err((_, source)) if !whole => {
                torn_tail = Some(TornLine::new(number, line, source.to_string()));
            }
            Err((field, source)) => {
                return Err(LogError::BadLine {
                    path: path.to_path_buf(),
                    line: number,
                    field,
                    source,
                });
            }
        }
    }
    Ok(torn_tail)
}

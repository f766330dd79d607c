//! The JSON-lines metrics log: [`JsonlSink`] appends, [`read_log`] reads back.
//!
//! One JSON object per line, each ending in `\n`, written with one `write`
//! call and never rewritten. A crash can leave at most the last line torn;
//! [`read_log`] returns every whole record and reports the torn one, and
//! [`JsonlSink::open`] cuts such a fragment off before appending, so a torn
//! line never ends up in the middle of the log. The line schema is in the
//! README and on [`LogRecord`].

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
    /// A line that is not the last one is not a valid record: the log was
    /// edited or corrupted, not merely cut short by a crash.
    #[error("metrics log {}, line {line}: not a valid record: {source}", path.display())]
    BadLine {
        /// The log file's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
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
            | LogError::BadLine { path, .. } => path,
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
/// are never rewritten. A failed write is returned to the caller; the
/// [`MetricsAccumulator`](crate::MetricsAccumulator) goes on counting
/// regardless, and the next snapshot carries the counts the failed line had.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::{read_log, JsonlSink, LogRecord, MetricsAccumulator};
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
    /// A write failed: part of a line may have reached the file.
    needs_repair: bool,
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
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|source| LogError::Open {
                path: path.clone(),
                source,
            })?;
        let mut sink = JsonlSink {
            path,
            file,
            line: Vec::with_capacity(4096),
            repaired: None,
            needs_repair: false,
        };
        sink.repaired = sink.repair_tail().map_err(|source| LogError::Open {
            path: sink.path.clone(),
            source,
        })?;
        Ok(sink)
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
        if self.needs_repair {
            self.repaired = self
                .repair_tail()
                .map_err(|source| self.write_error(source))?;
            self.needs_repair = false;
        }
        let written = self
            .file
            .write_all(&self.line)
            .and_then(|()| self.file.flush());
        written.map_err(|source| {
            self.needs_repair = true;
            self.write_error(source)
        })
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
                Ok(None)
            }
            Err(error) => {
                self.file.set_len(line_start)?;
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
            .finish_non_exhaustive()
    }
}

fn last_byte(file: &mut File, len: u64) -> io::Result<u8> {
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// Reads every record of the JSON-lines log at `path`.
///
/// Blank lines are skipped. The last line may be unfinished or unparsable (a
/// crash cut it short): it is reported in [`LogRead::torn_tail`], not as an
/// error. A last line that parses but lacks its `\n` is a whole record.
///
/// # Errors
///
/// [`LogError::Read`] when the file cannot be read, and
/// [`LogError::BadLine`] (with the line number) when a line other than the
/// last is not a `T`.
pub fn read_log<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<LogRead<T>, LogError> {
    let read = read_log_numbered(path.as_ref(), &mut |_, _| {})?;
    Ok(LogRead {
        records: read.records.into_iter().map(|(_, record)| record).collect(),
        torn_tail: read.torn_tail,
    })
}

/// As [`read_log`], keeping each record's 1-based line number (so later
/// errors can name it) and calling `progress(lines, bytes)` after every line
/// read (the command line shows it on a terminal).
///
/// # Errors
///
/// As [`read_log`].
pub(crate) fn read_log_numbered<T: DeserializeOwned>(
    path: &Path,
    progress: &mut dyn FnMut(usize, u64),
) -> Result<LogRead<(usize, T)>, LogError> {
    let read_error = |source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut records = Vec::new();
    // A bad line is an error only once another non-blank line follows it.
    let mut pending: Option<(usize, Vec<u8>, serde_json::Error)> = None;
    let mut buf = Vec::new();
    let mut number = 0usize;
    let mut bytes = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        number += 1;
        bytes += n as u64;
        progress(number, bytes);
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some((line, _, source)) = pending.take() {
            return Err(LogError::BadLine {
                path: path.to_path_buf(),
                line,
                source,
            });
        }
        match serde_json::from_slice::<T>(line) {
            Ok(record) => records.push((number, record)),
            Err(source) => pending = Some((number, line.to_vec(), source)),
        }
    }
    let torn_tail =
        pending.map(|(line, bytes, source)| TornLine::new(line, &bytes, source.to_string()));
    Ok(LogRead { records, torn_tail })
}

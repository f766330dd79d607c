//! Files that writers replace whole, under an OS lock: the state file and
//! the config file share how they are read, locked and written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary name beside `path`, unique in this process and across
/// processes: `<path>.<pid>.<n>.tmp`.
pub(crate) fn temp_beside(path: &Path) -> PathBuf {
    static TEMP: AtomicU64 = AtomicU64::new(0);
    let mut temp = path.to_path_buf().into_os_string();
    temp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(temp)
}

/// The file at `path`, or `None` when there is none.
pub(crate) fn read_if_any(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Takes the writers' lock of the file at `path` on `lock_path` (creating
/// `path`'s directory): held until the returned file drops, or the process
/// dies.
pub(crate) fn lock(path: &Path, lock_path: &Path) -> io::Result<File> {
    fs::create_dir_all(dir_of(path))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    lock.lock()?;
    Ok(lock)
}

/// Writes `bytes` at `path` whole: a temporary file in the same directory,
/// fsynced, renamed over `path`, and the directory fsynced. A reader sees
/// the old file or the new one, never a torn one; a failed write leaves no
/// temporary file behind.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_beside(path);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir_of(path))?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

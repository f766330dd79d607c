//! Durable upload files: written whole or not at all, and the leftovers
//! of a crash swept at the next start.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;

/// The prefix and suffix of a temporary upload file: `.<id>.<n>.part`.
const PART_SUFFIX: &str = ".part";

/// Stores `body` as `dir/id` durably: written to a temporary name, fsynced,
/// renamed into place, and the directory fsynced, so a stored upload is
/// whole and survives a crash. A later upload with the same id replaces it.
///
/// The work runs on a blocking thread to its end even when the request is
/// cancelled (the client went away), so the temporary file is always
/// either renamed into place or removed; one left by a crash is removed at
/// the next start ([`sweep_partial_uploads`]).
pub async fn store(dir: &Path, id: &str, body: &Bytes) -> io::Result<()> {
    let (dir, id, body) = (dir.to_path_buf(), id.to_owned(), body.clone());
    tokio::task::spawn_blocking(move || store_now(&dir, &id, &body))
        .await
        .map_err(io::Error::other)?
}

fn store_now(dir: &Path, id: &str, body: &[u8]) -> io::Result<()> {
    use std::io::Write as _;

    static TEMP: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{id}.{}{PART_SUFFIX}",
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(id))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Removes the temporary files of uploads that never finished (a crash, a
/// `kill -9`): `.<id>.<n>.part` in `dir`. Returns how many. Only this
/// process writes there, so at start none is in progress.
pub fn sweep_partial_uploads(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with('.') && name.ends_with(PART_SUFFIX)
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

//! Memory: [`process_memory_bytes`] reads this process's resident set size;
//! `MemoryCells` keep the accumulator's samples of it (baseline, current,
//! peak) for snapshots.

#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

#[cfg(loom)]
use loom::sync::atomic::AtomicU64;

use super::snapshot::MemoryStats;

/// The resident set size of this process in bytes, or `None` where it cannot
/// be read.
///
/// On Linux: the second field of `/proc/self/statm` (resident pages) times
/// the page size, which comes from the kernel's auxiliary vector
/// (`/proc/self/auxv`, `AT_PAGESZ`); if that cannot be read, the `VmRSS` line
/// of `/proc/self/status`. Elsewhere: `None`. It costs a few system calls
/// (open, read, close), so sample it periodically, not per upload, and feed
/// it to [`MetricsAccumulator::record_memory`](crate::MetricsAccumulator::record_memory).
#[must_use]
pub fn process_memory_bytes() -> Option<u64> {
    imp::resident_bytes()
}

/// The accumulator's memory samples: the baseline (the first sample after
/// creation or a reset), the latest and the peak.
pub(super) struct MemoryCells {
    /// `NO_SAMPLE` until the first sample after a reset.
    baseline: AtomicU64,
    current: AtomicU64,
    peak: AtomicU64,
}

const NO_SAMPLE: u64 = u64::MAX;

impl MemoryCells {
    pub(super) fn new() -> MemoryCells {
        MemoryCells {
            baseline: AtomicU64::new(NO_SAMPLE),
            current: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// See [`MetricsAccumulator::record_memory`](crate::MetricsAccumulator::record_memory).
    pub(super) fn record(&self, bytes: u64) {
        self.current.store(bytes, Relaxed);
        self.peak.fetch_max(bytes, Relaxed);
        // Publishes `current` and `peak` to a snapshot that sees the baseline.
        let _ = self
            .baseline
            .compare_exchange(NO_SAMPLE, bytes, Release, Relaxed);
    }

    /// Forgets the samples: the next one is the new baseline.
    pub(super) fn reset(&self) {
        // Baseline first: a snapshot that sees no baseline reports no memory,
        // whatever `current` and `peak` hold in between.
        self.baseline.store(NO_SAMPLE, Release);
        self.current.store(0, Relaxed);
        self.peak.store(0, Relaxed);
    }

    /// The samples since the last reset; `None` before the first.
    pub(super) fn read(&self) -> Option<MemoryStats> {
        let baseline = self.baseline.load(Acquire);
        if baseline == NO_SAMPLE {
            return None;
        }
        let current = self.current.load(Relaxed);
        let peak = self.peak.load(Relaxed).max(current).max(baseline);
        Some(MemoryStats {
            baseline,
            current,
            peak,
        })
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs;
    use std::sync::OnceLock;

    pub(super) fn resident_bytes() -> Option<u64> {
        let from_statm = page_size().and_then(|page| {
            let statm = fs::read_to_string("/proc/self/statm").ok()?;
            Some(parse_statm_resident(&statm)?.saturating_mul(page))
        });
        from_statm.or_else(|| parse_status_vm_rss(&fs::read_to_string("/proc/self/status").ok()?))
    }

    fn page_size() -> Option<u64> {
        static PAGE: OnceLock<Option<u64>> = OnceLock::new();
        *PAGE.get_or_init(|| parse_auxv_page_size(&fs::read("/proc/self/auxv").ok()?))
    }

    /// `AT_PAGESZ` from the auxiliary vector: native-endian `usize` pairs
    /// `(type, value)` ending with `AT_NULL`.
    pub(super) fn parse_auxv_page_size(auxv: &[u8]) -> Option<u64> {
        const AT_NULL: u64 = 0;
        const AT_PAGESZ: u64 = 6;
        const WORD: usize = size_of::<usize>();
        let word = |chunk: &[u8]| -> u64 {
            let mut bytes = [0u8; WORD];
            bytes.copy_from_slice(chunk);
            usize::from_ne_bytes(bytes) as u64
        };
        for pair in auxv.chunks_exact(2 * WORD) {
            match word(&pair[..WORD]) {
                AT_NULL => break,
                AT_PAGESZ => return Some(word(&pair[WORD..])).filter(|&p| p > 0),
                _ => {}
            }
        }
        None
    }

    /// Resident pages: the second number of `statm`.
    pub(super) fn parse_statm_resident(statm: &str) -> Option<u64> {
        statm.split_ascii_whitespace().nth(1)?.parse().ok()
    }

    /// `VmRSS:    1234 kB` from `/proc/self/status`, in bytes.
    pub(super) fn parse_status_vm_rss(status: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
        let kib: u64 = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then(|| kib.saturating_mul(1024))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn resident_bytes() -> Option<u64> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::*;
    use super::process_memory_bytes;

    #[test]
    fn parsers_read_the_kernel_formats() {
        assert_eq!(parse_statm_resident("2386 512 300 1 0 400 0\n"), Some(512));
        assert_eq!(parse_statm_resident("2386"), None);
        assert_eq!(
            parse_status_vm_rss("Name:\tx\nVmRSS:\t    2048 kB\nVmData: 1 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_status_vm_rss("Name:\tx\n"), None);

        let word = |v: usize| v.to_ne_bytes().to_vec();
        let auxv = [word(33), word(7), word(6), word(16384), word(0), word(0)].concat();
        assert_eq!(parse_auxv_page_size(&auxv), Some(16384));
        let no_page = [word(33), word(7), word(0), word(0), word(6), word(4096)].concat();
        assert_eq!(parse_auxv_page_size(&no_page), None, "stops at AT_NULL");
    }

    #[test]
    fn this_process_has_a_plausible_resident_set() {
        let bytes = process_memory_bytes().expect("Linux exposes /proc/self/statm");
        assert!(bytes > 64 * 1024, "{bytes}");
        assert!(bytes < 1 << 40, "{bytes}");
    }
}

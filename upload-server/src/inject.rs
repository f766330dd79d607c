//! Async uploads failed on purpose (`--inject-async-error-rate`), for tests
//! and demonstrations: evenly spread, a share in every million.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which async uploads fail on purpose: `ppm` in every million, evenly
/// spread.
pub(crate) struct InjectedFailures {
    /// Async uploads to fail on purpose, per million.
    ppm: u64,
    /// Async uploads asked about so far.
    seen: AtomicU64,
}

impl InjectedFailures {
    /// Fails `rate` of the async uploads (clamped to `0..=1`).
    pub(crate) fn at_rate(rate: f64) -> InjectedFailures {
        InjectedFailures {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
            ppm: (rate.clamp(0.0, 1.0) * 1e6) as u64,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether this async upload fails on purpose.
    pub(crate) fn next_fails(&self) -> bool {
        if self.ppm == 0 {
            return false;
        }
        // Spread evenly: the n-th upload fails when the running count of
        // failures due, n × rate, passes a whole number.
        let n = self.seen.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        (n + 1) * self.ppm / 1_000_000 > n * self.ppm / 1_000_000
    }
}

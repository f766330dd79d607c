//! [`Clock`]: where metrics get their time, so tests and simulations never sleep.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Snapshots are stamped with [`now`](Clock::now) and windows are cut by
/// comparing stamps, so everything time-based in this crate runs on a
/// [`ManualClock`] in tests, with no sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share one time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_upload_rollout::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::default();
/// let handle = clock.clone();
/// let start = clock.now();
/// handle.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().duration_since(start)?, Duration::from_secs(60));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// The start of [`ManualClock::default`]: 2025-11-05T00:00:00Z, the first
    /// day of the week-2 rollout plan, as seconds since the Unix epoch.
    pub const DEFAULT_START_UNIX_SECS: u64 = 1_762_300_800;

    /// A clock showing `start` until moved.
    #[must_use]
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    /// Sets the clock (and every clone of it) to `to`, which may be earlier.
    pub fn set(&self, to: SystemTime) {
        *self.lock() = to;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SystemTime> {
        // A panic while holding this lock cannot leave a half-written
        // `SystemTime`, so a poisoned lock is still a good one.
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    /// A clock at 2025-11-05T00:00:00Z ([`ManualClock::DEFAULT_START_UNIX_SECS`]).
    fn default() -> ManualClock {
        ManualClock::new(UNIX_EPOCH + Duration::from_secs(Self::DEFAULT_START_UNIX_SECS))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.lock()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("unix_ms", &unix_ms(self.now()))
            .finish()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Milliseconds since the Unix epoch; times before it count as 0 and times
/// beyond `u64::MAX` ms (half a billion years) saturate.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `SystemTime` of a count of milliseconds since the Unix epoch,
/// saturating at the latest time the platform can hold (never a panic, for
/// any `ms` read from a file).
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(|| {
            // Halve until it fits: at most 64 steps.
            let mut ms = ms;
            loop {
                ms /= 2;
                if let Some(time) = UNIX_EPOCH.checked_add(Duration::from_millis(ms)) {
                    return time;
                }
            }
        })
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_time() {
        let a = ManualClock::default();
        let b = a.clone();
        b.advance(Duration::from_millis(1500));
        assert_eq!(
            unix_ms(a.now()),
            ManualClock::DEFAULT_START_UNIX_SECS * 1000 + 1500
        );
        a.set(UNIX_EPOCH);
        assert_eq!(unix_ms(b.now()), 0);
    }

    #[test]
    fn unix_ms_round_trips_and_clamps_before_the_epoch() {
        let cases: &[(SystemTime, u64)] = &[
            (UNIX_EPOCH, 0),
            (
                UNIX_EPOCH + Duration::from_millis(1_762_300_800_123),
                1_762_300_800_123,
            ),
            (UNIX_EPOCH - Duration::from_secs(1), 0),
        ];
        for &(time, ms) in cases {
            assert_eq!(unix_ms(time), ms, "{time:?}");
        }
        assert_eq!(unix_ms(from_unix_ms(42)), 42);
    }

    #[test]
    fn arc_of_a_clock_is_a_clock() {
        let manual = ManualClock::default();
        let shared: Arc<dyn Clock> = Arc::new(manual.clone());
        let twice = Arc::new(Arc::clone(&shared));
        manual.advance(Duration::from_secs(1));
        assert_eq!(twice.now(), manual.now());
    }
}

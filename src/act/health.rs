//! [`MonitorHealth`]: the counters a controller and its monitor share, and
//! what [`MonitorHandle::health`](crate::MonitorHandle::health) reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::act::log::LogError;
use crate::act::outage::OutageLog;
use crate::act::trace::{self, Severity};
use crate::clock::{from_unix_ms, unix_ms};

/// How the background monitor is doing, from
/// [`MonitorHandle::health`](crate::MonitorHandle::health).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorHealth {
    /// Whether the monitor thread is alive.
    pub running: bool,
    /// When the last tick finished (the controller's clock).
    pub last_tick: Option<SystemTime>,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that failed (a log or store error) or panicked, in total.
    pub failures: u64,
    /// Failed ticks in a row up to now (0 after a good tick).
    pub consecutive_failures: u64,
    /// Ticks that panicked (each one halted the rollout until the next good
    /// tick).
    pub panics: u64,
    /// Times the watchdog found the monitor stuck and halted the rollout.
    pub stalls: u64,
    /// The latest failure's message.
    pub last_error: Option<String>,
}

/// Counters the controller and the monitor share.
#[derive(Debug, Default)]
pub(crate) struct Health {
    last_tick_ms: AtomicU64,
    ticks: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU64,
    panics: AtomicU64,
    stalls: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Thins the trace lines of failures that repeat (every poll while a
    /// store is down); every failure is still counted.
    outage: Mutex<OutageLog>,
}

/// The [`OutageLog`] kind of a tick or poll that failed and is retried.
const RETRIED: &str = "tick or poll failed";

impl Health {
    pub(crate) fn ticked(&self, now: SystemTime) {
        self.last_tick_ms.store(unix_ms(now), Ordering::Relaxed);
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn log_failed(&self, err: &LogError) {
        self.set_error(err.to_string());
    }

    pub(crate) fn failed(&self, severity: Severity, message: String) {
        if severity == Severity::Warn {
            let line = self
                .outage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failed(RETRIED, &message, SystemTime::now());
            if let Some(line) = line {
                trace::monitor(severity, &line);
            }
        } else {
            trace::monitor(severity, &message);
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.set_error(message);
    }

    /// A tick panicked: a failure that closes the rollout, then counted as
    /// a panic, so that a report that counts the panic also holds its
    /// failure and message ([`report`](Self::report) reads the count first).
    pub(crate) fn panicked(&self, message: String) {
        self.failed(Severity::FailClosed, message);
        self.panics.fetch_add(1, Ordering::Release);
    }

    /// The watchdog found the monitor stuck: a failure that closes the
    /// rollout, then counted as a stall (as [`panicked`](Self::panicked)).
    pub(crate) fn stalled(&self, message: String) {
        self.failed(Severity::FailClosed, message);
        self.stalls.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn succeeded(&self) {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0 {
            let summary = self
                .outage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recovered(RETRIED, SystemTime::now());
            if let Some(summary) = summary {
                trace::monitor(Severity::Info, &format!("ticks succeed again ({summary})"));
            }
        }
    }

    fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }

    pub(crate) fn report(&self, running: bool) -> MonitorHealth {
        // The counts first: what they count was recorded before them.
        let panics = self.panics.load(Ordering::Acquire);
        let stalls = self.stalls.load(Ordering::Acquire);
        let last_tick = match self.last_tick_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(from_unix_ms(ms)),
        };
        MonitorHealth {
            running,
            last_tick,
            ticks: self.ticks.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            panics,
            stalls,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

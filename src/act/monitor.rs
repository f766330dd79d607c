//! [`MonitorHandle`]: the controller ticking on a background thread, and
//! how it fails safe.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::act::controller::{ControllerView, DEFAULT_STATE_POLL, RolloutController};
use crate::act::health::{Health, MonitorHealth};
use crate::act::trace::{self, Severity};
use crate::decide::rollout::Rollout;

impl RolloutController {
    /// Runs [`tick`](Self::tick) every `interval` on a background thread,
    /// and reads the store for changes every [`DEFAULT_STATE_POLL`] between
    /// ticks. See [`MonitorHandle`] for how it fails safe.
    pub fn spawn(self, interval: Duration) -> MonitorHandle {
        MonitorHandle::spawn(self, interval, DEFAULT_STATE_POLL)
    }

    /// As [`spawn`](Self::spawn), reading the store every `poll`.
    pub fn spawn_with_poll(self, interval: Duration, poll: Duration) -> MonitorHandle {
        MonitorHandle::spawn(self, interval, poll)
    }
}

struct Shared {
    controller: Mutex<RolloutController>,
    rollout: Arc<Rollout>,
    view: Arc<ArcSwap<ControllerView>>,
    health: Arc<Health>,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Milliseconds since `started` at the end of the monitor's last loop.
    heartbeat_ms: AtomicU64,
    started: Instant,
    /// Whether the watchdog has halted the rollout for a stall (cleared by
    /// the next loop, whose tick or poll applies the state again).
    stalled: AtomicBool,
}

/// The background monitor started by [`RolloutController::spawn`].
///
/// The thread ticks the controller every `interval` and reads the state
/// store for changes every poll between ticks (a command line's rollback
/// reaches the service within one poll).
///
/// It fails safe:
/// - a tick that **panics** is caught and counted ([`health`](Self::health)),
///   the rollout is halted (nothing async) and the next good tick applies
///   the state again; a tick that fails (a log or store error) is counted,
///   with its message;
/// - a **watchdog** thread halts the rollout when the monitor has not
///   finished a loop for `3 × interval + 5 s` (a tick stuck on a hung store
///   or disk): no automatic rollback could happen meanwhile;
/// - when the monitor **stops** (the handle is dropped, or the thread could
///   not start), the rollout is halted: without a monitor nothing would roll
///   it back.
///
/// Readers that must not wait for a tick (HTTP handlers, exporters) use
/// [`view`](Self::view), a lock-free load; [`lock`](Self::lock) is for
/// operator actions and waits for a tick in progress.
#[must_use = "dropping the handle stops the monitor (and halts the rollout)"]
pub struct MonitorHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl MonitorHandle {
    pub(crate) fn spawn(
        controller: RolloutController,
        interval: Duration,
        poll: Duration,
    ) -> MonitorHandle {
        let shared = Arc::new(Shared {
            rollout: Arc::clone(controller.rollout()),
            view: controller.view_cell(),
            health: controller.health(),
            controller: Mutex::new(controller),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            stalled: AtomicBool::new(false),
        });
        let poll = poll.max(Duration::from_millis(1)).min(interval);
        let mut threads = Vec::with_capacity(2);
        let worker = Arc::clone(&shared);
        match thread::Builder::new()
            .name("rollout-monitor".into())
            .spawn(move || worker.run(interval, poll))
        {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                shared.rollout.halt();
                shared.health.failed(
                    Severity::FailClosed,
                    format!("cannot start the monitor thread: {err}"),
                );
            }
        }
        let stuck_after = interval.saturating_mul(3) + Duration::from_secs(5);
        let watchdog = Arc::clone(&shared);
        if let Ok(thread) = thread::Builder::new()
            .name("rollout-watchdog".into())
            .spawn(move || watchdog.watch(stuck_after))
        {
            threads.push(thread);
        }
        MonitorHandle { shared, threads }
    }

    /// The controller, locked between ticks: for operator actions. Waits
    /// for a tick in progress; HTTP handlers and exporters should read
    /// [`view`](Self::view) instead.
    pub fn lock(&self) -> MutexGuard<'_, RolloutController> {
        self.shared.lock_controller()
    }

    /// What the controller shows (state, percent in force, state error, last
    /// evaluation), without waiting for a tick.
    #[must_use]
    pub fn view(&self) -> Arc<ControllerView> {
        self.shared.view.load_full()
    }

    /// How the monitor is doing: last tick, failures, panics, stalls.
    #[must_use]
    pub fn health(&self) -> MonitorHealth {
        self.shared.health.report(self.is_running())
    }

    /// Whether the monitor thread is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.threads.first().is_some_and(|t| !t.is_finished())
    }
}

impl Shared {
    fn run(&self, interval: Duration, poll: Duration) {
        let mut next_tick = Instant::now() + interval;
        loop {
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(poll);
            let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, wait, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
            drop(stop);
            let now = Instant::now();
            let ticking = now >= next_tick;
            if ticking {
                next_tick = now + interval;
            }
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let mut controller = self.lock_controller();
                if ticking {
                    let tick = controller.tick();
                    match (tick.log_error, tick.store_error) {
                        (None, None) => None,
                        (Some(err), _) => Some(err.to_string()),
                        (None, Some(err)) => Some(err.to_string()),
                    }
                } else {
                    controller.refresh().err().map(|err| err.to_string())
                }
            }));
            match outcome {
                Ok(None) if ticking => self.health.succeeded(),
                Ok(None) => {}
                Ok(Some(message)) => self.health.failed(Severity::Warn, message),
                Err(payload) => {
                    // Nothing async until a tick completes again.
                    self.rollout.halt();
                    self.health.panicked();
                    self.health.failed(
                        Severity::FailClosed,
                        format!("a tick panicked: {}", panic_message(&*payload)),
                    );
                }
            }
            self.beat();
        }
    }

    fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Release);
        self.stalled.store(false, Ordering::Release);
    }

    /// Halts the rollout while the monitor has not finished a loop for
    /// `stuck_after`.
    fn watch(&self, stuck_after: Duration) {
        let every = (stuck_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, every, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
            drop(stop);
            let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Acquire));
            let silent = self.started.elapsed().saturating_sub(beat);
            if silent > stuck_after && !self.stalled.swap(true, Ordering::AcqRel) {
                self.rollout.halt();
                self.health.stalled();
                self.health.failed(Severity::FailClosed, format!(
                    "the monitor has not finished a tick or poll for {}: nothing is async until it does",
                    humantime::format_duration(Duration::from_secs(silent.as_secs()))
                ));
            }
        }
    }

    fn lock_controller(&self) -> MutexGuard<'_, RolloutController> {
        // A panic inside a tick leaves the controller as consistent as
        // between any two steps of a tick (every change is applied whole);
        // keep using it.
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // No monitor, no automatic rollback: nothing async.
        self.shared.rollout.halt();
        // This process serves nothing from now on: its acknowledgement goes.
        self.shared.lock_controller().withdraw();
        trace::monitor(
            Severity::Info,
            "the monitor stopped (its handle was dropped): nothing is async",
        );
    }
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

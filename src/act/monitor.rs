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
use crate::act::store::StateStore;
use crate::act::trace::{self, Severity};
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;

/// How often the watchdog checks a store's confirmed contact against
/// `stale_after` (a store that keeps one: see
/// [`StateStore::contact_age`]).
const DEADLINE_CHECK: Duration = Duration::from_millis(100);

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
    /// The rollout it halts when in doubt; `None` for a controller that
    /// serves no uploads.
    rollout: Option<Arc<Rollout>>,
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
    /// The controller's store: the watchdog reads its confirmed contact
    /// without waiting for the monitor (which may be blocked in a call).
    store: Arc<dyn StateStore>,
    /// The controller's `stale_after`.
    stale_after: Duration,
    /// Set by the store when what it holds changed: the monitor reads it at
    /// once instead of at its next poll.
    changed: AtomicBool,
    /// Whether the watchdog has closed the rollout for a store past its
    /// deadline (cleared when the contact is confirmed again).
    past_deadline: AtomicBool,
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
/// - the same watchdog halts it, every 100 ms, while a store that confirms
///   its contact ([`StateStore::contact_age`], etcd) has not for longer than
///   the controller's `stale_after`, also while the monitor is blocked in a
///   call to that store, and shows it in [`view`](Self::view) (`stale`);
///   the monitor applies the state again once the store answers;
/// - a store that says when what it holds changed
///   ([`StateStore::listen`]) wakes the monitor at once: a change is applied
///   when the store learns of it, not at the next poll;
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
    /// What the store calls when what it holds changed (it keeps it
    /// weakly: dropping the handle unsubscribes).
    _listener: Arc<dyn Fn() + Send + Sync>,
}

impl MonitorHandle {
    pub(crate) fn spawn(
        controller: RolloutController,
        interval: Duration,
        poll: Duration,
    ) -> MonitorHandle {
        let shared = Arc::new(Shared {
            rollout: controller.rollout().cloned(),
            view: controller.view_cell(),
            health: controller.health(),
            store: Arc::clone(controller.state_store()),
            stale_after: controller.stale_after(),
            controller: Mutex::new(controller),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            stalled: AtomicBool::new(false),
            changed: AtomicBool::new(false),
            past_deadline: AtomicBool::new(false),
        });
        let poked = Arc::clone(&shared);
        let listener: Arc<dyn Fn() + Send + Sync> = Arc::new(move || poked.poke());
        shared.store.listen(Arc::downgrade(&listener));
        let poll = poll.max(Duration::from_millis(1)).min(interval);
        let mut threads = Vec::with_capacity(2);
        let worker = Arc::clone(&shared);
        match thread::Builder::new()
            .name("rollout-monitor".into())
            .spawn(move || worker.run(interval, poll))
        {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                shared.halt();
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
        MonitorHandle {
            shared,
            threads,
            _listener: listener,
        }
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
                .wait_timeout_while(stop, wait, |stop| {
                    !*stop && !self.changed.load(Ordering::Acquire)
                })
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
            drop(stop);
            self.changed.store(false, Ordering::Release);
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
                    self.halt();
                    self.health
                        .panicked(format!("a tick panicked: {}", panic_message(&*payload)));
                }
            }
            self.beat();
        }
    }

    /// Nothing async from this instant (when it serves uploads).
    fn halt(&self) {
        if let Some(rollout) = &self.rollout {
            rollout.halt();
        }
    }

    /// The store learned of a change: wake the monitor.
    fn poke(&self) {
        self.changed.store(true, Ordering::Release);
        // Under the lock the monitor waits with: the wake-up cannot fall
        // between its check of `changed` and its wait.
        let _stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Release);
        self.stalled.store(false, Ordering::Release);
    }

    /// Halts the rollout while the monitor has not finished a loop for
    /// `stuck_after`, and while the store's confirmed contact is older than
    /// `stale_after`.
    fn watch(&self, stuck_after: Duration) {
        let mut every = (stuck_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        if self.store.contact_age().is_some() {
            every = every.min(DEADLINE_CHECK);
        }
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
                self.halt();
                self.health.stalled(format!(
                    "the monitor has not finished a tick or poll for {}: nothing is async until it does",
                    humantime::format_duration(Duration::from_secs(silent.as_secs()))
                ));
            }
            self.check_deadline();
        }
    }

    /// Closes the rollout (and says so in the view) while the store's
    /// confirmed contact is older than `stale_after`: nothing here waits on
    /// the store, so a monitor blocked in a call to it cannot delay this.
    fn check_deadline(&self) {
        let Some(age) = self.store.contact_age() else {
            return;
        };
        if age <= self.stale_after {
            self.past_deadline.store(false, Ordering::Release);
            return;
        }
        // Level-triggered: a monitor that applied the state an instant
        // before the deadline is overruled at the next check.
        if self
            .rollout
            .as_ref()
            .is_some_and(|rollout| !rollout.is_halted())
        {
            self.halt();
        }
        let view = self.view.load();
        if view.stale && view.halted {
            self.past_deadline.store(true, Ordering::Release);
            return;
        }
        let message = format!(
            "no confirmed contact with the state store {} for more than {}: nothing is async until it answers",
            self.store.describe(),
            humantime::format_duration(self.stale_after)
        );
        if !self.past_deadline.swap(true, Ordering::AcqRel) {
            self.health.failed(Severity::FailClosed, message.clone());
        }
        let mut closed = ControllerView::clone(&view);
        closed.stale = true;
        closed.halted = true;
        closed.percent = Percent::ZERO;
        closed.run = None;
        closed.state_error = Some(message);
        self.view.store(Arc::new(closed));
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
        self.shared.halt();
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

//! `tracing` events from the controller's background monitor (feature
//! `tracing`): an automatic rollback made on the monitor's thread, and the
//! monitor stopping, reach a process-wide subscriber.
//!
//! The monitor's threads do not see a subscriber set with `with_default` on
//! the test's thread, so this binary installs one globally, as a service
//! does; it holds this one test, so no other test's events mix in.

#[path = "support/capture.rs"]
mod capture;

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use async_upload_rollout::*;
use capture::{Capture, Captured};
use tracing::Level;

const CONTROLLER: &str = "async_upload_rollout::controller";
const MONITOR: &str = "async_upload_rollout::monitor";
const MS: Duration = Duration::from_millis(100);
/// No wait in this file is longer than this.
const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn the_monitors_rollback_and_its_stop_reach_a_global_subscriber() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone())
        .expect("the only subscriber of this binary");
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).expect("a percent"),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let handle = RolloutController::builder(Arc::clone(&rollout), Arc::clone(&metrics))
        .build()
        .expect("a controller on the default plan")
        .spawn(Duration::from_millis(20));

    // Half the async uploads fail, from now on; the monitor ticks every
    // 20 ms and rolls back on its own thread.
    let started = Instant::now();
    let rollbacks = loop {
        for _ in 0..20 {
            metrics.record(Arm::Async, Outcome::Success, MS);
            metrics.record(Arm::Async, Outcome::Error, MS);
            metrics.record(Arm::Sync, Outcome::Success, MS);
        }
        let rollbacks = capture.with_field("action", "rollback");
        if !rollbacks.is_empty() {
            break rollbacks;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no rollback event: {:#?}",
            capture.events()
        );
        sleep(Duration::from_millis(10));
    };
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    let rollback = &rollbacks[0];
    assert_eq!(rollback.level, Level::ERROR);
    assert_eq!(rollback.target, CONTROLLER);
    assert_eq!(rollback.field("manual"), Some("false"));
    assert_eq!(rollback.thread.as_deref(), Some("rollout-monitor"));
    assert!(!rollout.should_use_async(b"any upload"));

    // Dropping the handle stops the monitor: one event, on the monitor's
    // target, from the thread that dropped it.
    drop(handle);
    let stops: Vec<Captured> = capture
        .events()
        .into_iter()
        .filter(|e| e.target == MONITOR)
        .collect();
    assert_eq!(stops.len(), 1, "{stops:#?}");
    assert_eq!(stops[0].level, Level::INFO);
    assert!(
        stops[0]
            .field("detail")
            .is_some_and(|d| d.contains("handle was dropped")),
        "{stops:#?}"
    );
    assert_eq!(
        stops[0].thread.as_deref(),
        std::thread::current().name(),
        "{stops:#?}"
    );
}

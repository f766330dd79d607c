//! The controller tests' fixture: a rollout, its metrics and a manual clock,
//! and minutes of made-up traffic (`tests/controller.rs`,
//! `tests/tracing.rs`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::clock::ManualClock;
use async_upload_rollout::{
    Arm, MetricsAccumulator, Outcome, Percent, Rollout, RolloutConfig, RolloutController,
    RolloutControllerBuilder,
};

/// Every made-up upload's latency.
const MS: Duration = Duration::from_millis(100);

/// A rollout at a percent, its metrics, and the clock both read.
pub struct Setup {
    pub clock: ManualClock,
    pub rollout: Arc<Rollout>,
    pub metrics: Arc<MetricsAccumulator>,
    /// How many of each minute's 200 sync uploads fail (the first ones).
    pub sync_errors: u64,
}

impl Setup {
    /// The rollout at `percent`, healthy sync traffic.
    pub fn new(percent: u32) -> Setup {
        let clock = ManualClock::default();
        Setup {
            rollout: Arc::new(Rollout::new(RolloutConfig::with_percent(
                Percent::from_whole(percent).unwrap(),
            ))),
            metrics: Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone()))),
            clock,
            sync_errors: 0,
        }
    }

    /// A controller's builder on this rollout, metrics and clock.
    pub fn controller(&self) -> RolloutControllerBuilder {
        RolloutController::builder(self.rollout.clone(), self.metrics.clone())
            .clock(Arc::new(self.clock.clone()))
    }

    /// One minute of traffic: `async_ok`/`async_err` async uploads and 200
    /// sync ones ([`Setup::sync_errors`] of them failed), then the clock
    /// moves on a minute.
    pub fn minute(&self, async_ok: u64, async_err: u64) {
        for _ in 0..async_ok {
            self.metrics.record(Arm::Async, Outcome::Success, MS);
        }
        for _ in 0..async_err {
            self.metrics.record(Arm::Async, Outcome::Error, MS);
        }
        for i in 0..200 {
            let outcome = if i < self.sync_errors {
                Outcome::Error
            } else {
                Outcome::Success
            };
            self.metrics.record(Arm::Sync, outcome, MS);
        }
        self.clock.advance(Duration::from_secs(60));
    }
}

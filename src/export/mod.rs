//! Exporting the rollout's state to monitoring systems.
//!
//! Exporters read at scrape time (from [`MetricsAccumulator::snapshot`],
//! [`Rollout::config`] and a pushed controller status), so they add nothing
//! to the hot path: [`Rollout::should_use_async`] and
//! [`MetricsAccumulator::record`] stay as they are.
//!
//! [`MetricsAccumulator::snapshot`]: crate::MetricsAccumulator::snapshot
//! [`MetricsAccumulator::record`]: crate::MetricsAccumulator::record
//! [`Rollout::config`]: crate::Rollout::config
//! [`Rollout::should_use_async`]: crate::Rollout::should_use_async

#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "prometheus")]
pub mod runs;

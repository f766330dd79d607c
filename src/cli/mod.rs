//! What the operator's command line (`async-upload-rollout`, feature `cli`)
//! does, as a library so that it can be tested without a process.
//!
//! - [`InstanceLog`] reads one instance's `metrics.jsonl` (every record with
//!   its line number; a torn last line is kept aside, not fatal).
//! - [`Fleet`] puts several instances' logs together: the current stage, the
//!   merged stage totals, and a [`History`](crate::History) rebuilt from the
//!   logged snapshots, so [`Fleet::check`] judges exactly as the
//!   controller's evaluator does.
//! - [`render_checks`] prints an [`Evaluation`](crate::Evaluation) as the
//!   table `check` shows, [`render_json`] as the line `check --json`
//!   prints; [`exit_code`] maps its verdict to the exit code.
//! - [`report_html`] builds the status dashboard and daily report: one
//!   self-contained HTML file with SVG charts drawn by `plotters`.
//! - [`plan_at_traffic`] tells what each rollback trigger of a plan can
//!   show at a service's traffic (`plan --traffic`); [`render_traffic`]
//!   prints it.
//! - [`describe_bucket`] answers "which path does this upload take?".
//! - [`operate`] and [`StatusReport`] are the operator's `rollback`,
//!   `resume`, `advance`, `pause` and `status` on the rollout's state store.
//!
//! # Merging several instances
//!
//! Each instance's controller logs its own stage totals on every tick. The
//! merged totals are the [`merge`](crate::MetricsSnapshot::merge) of every
//! instance's latest totals: counts and histogram buckets add, so the result
//! is exact. The merged history has one entry at every time at which some
//! instance logged (from the first time at which all have): the merge of each
//! instance's newest snapshot at or before that time. A window of it is then
//! the sum of each instance's exact window between its own ticks, whose edges
//! lag the merged window's by at most one tick interval.

mod check;
mod error;
mod fleet;
mod operate;
mod report;
mod traffic;

pub use check::{describe_bucket, exit_code, render_checks, render_json};
pub use error::CliError;
pub use fleet::{CheckOutcome, Fleet, InstanceLog, StageSource};
pub use operate::{Operated, StatusReport, operate};
pub use report::{ReportOptions, report_html};
pub use traffic::{
    InvalidTraffic, METHODS, Methods, PLAN_ROLLBACK_WITHIN, StageReport, Traffic, TrafficOptions,
    TrafficReport, TriggerReport, plan_at_traffic, render_traffic,
};

//! What the operator's command line (`async-upload-rollout`, feature `cli`)
//! does, as a library so that it can be tested without a process.
//!
//! **Not part of the crate's API.** This module is hidden from the docs and
//! carries no semver promise: it is public only for the binary
//! (`src/bin/async-upload-rollout.rs`), the tests, `benches/log_size.rs` and
//! the fuzz targets. Use the binary; its commands, flags, output and exit
//! codes are the contract (`docs/cli.md`).
//!
//! - [`InstanceLog`] reads one instance's `metrics.jsonl` in one pass,
//!   validating every line alone and against the one before, and keeps only
//!   what the judgement and the report need (its memory does not grow with
//!   the log; a torn last line is kept aside, not fatal).
//! - [`Fleet`] puts several instances' logs together: the current run (its
//!   stage, merged totals, and a [`History`](crate::History) rebuilt from the
//!   logged snapshots), the sync baseline the controller carried from earlier
//!   runs, and each controller's own last logged state and verdict, so
//!   [`Fleet::check`] judges as the controller's evaluator does and puts the
//!   controller's answer beside it ([`CheckOutcome`]). Logs at different
//!   stages or runs are not merged.
//! - [`render_checks`] prints an [`Evaluation`](crate::Evaluation) as the
//!   table `check` shows, [`render_controller`] the controller's answer
//!   beside it, [`render_outcome_json`] the line `check --json` prints
//!   ([`render_json`]: the evaluation alone); [`exit_code`] maps a verdict
//!   to the exit code, [`CheckOutcome::exit_code`] gives `check`'s (which
//!   follows a `rolled_back` or `awaiting_review` state).
//! - [`report_html`] builds the status dashboard and daily report: one
//!   self-contained HTML file with SVG charts drawn by `plotters`.
//! - [`plan_at_traffic`] tells what each rollback trigger of a plan can
//!   show at a service's traffic (`plan --traffic`); [`render_traffic`]
//!   prints it.
//! - [`describe_bucket`] answers "which path does this upload take?".
//! - [`operate`](fn@operate) and [`StatusReport`] are the operator's `rollback`,
//!   `resume`, `advance`, `pause` and `status` on the rollout's state store;
//!   [`wait_for_acks`] waits until every live service applied a change.
//! - [`ConfigReport`] and [`set_config`] are `config show` and `config set`
//!   on the shared config (a config file, or a fleet's etcd).
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
mod config;
mod error;
mod fleet;
mod operate;
mod read;
mod report;
mod timeline;
mod traffic;

pub use crate::act::validate::lines::{LATENCY_SLACK, LATENCY_SLACK_PER_MILLE};
pub use check::{
    describe_bucket, render_checks, render_controller, render_json, render_outcome_json,
};
pub use config::{ConfigChange, ConfigReport, set_config};
pub use error::{CliError, exit_code};
pub use fleet::{CheckOutcome, Comparison, ControllerAnswer, Fleet, StageSource};
pub use operate::{
    Confirmation, Confirmed, Create, EXIT_NONE_SEEN, EXIT_NOT_CONFIRMED, Operated, ServiceStatus,
    StatusReport, live_acks, operate, wait_for, wait_for_acks,
};
pub use read::{InstanceLog, Logged, ReadOptions};
pub use report::{ReportOptions, report_html};
pub use traffic::{
    InvalidTraffic, METHODS, Methods, PLAN_ROLLBACK_WITHIN, StageReport, Traffic, TrafficOptions,
    TrafficReport, TriggerReport, plan_at_traffic, render_traffic,
};

//! The user guide: one chapter a layer, beside the API reference (documentation only, no code).
//!
//! The flow of a rollout is decide → metrics → judge → act; each chapter explains one step in
//! depth, with the reasons behind its numbers:
//!
//! - [`deciding`]: how an upload's path is decided, and the guarantees behind it.
//! - [`metrics`]: what the upload handler records, and the rate definitions.
//! - [`judging`]: the plan, the literal and guarded modes, the sequential rollback and sustained
//!   reviews, the 100% stage.
//! - [`controller`]: the controller's tick, and the rollout's state it alone writes.
//! - [`integrations`]: the tower layer, Prometheus export, the OpenFeature provider, config files
//!   reloaded live, tracing events.
//!
//! Documents for operators live in the repository's `docs/` folder: `cli.md` (the command line),
//! `fleet.md` (fleet operations), `upload-server.md` (the example service), `performance.md`,
//! `decision-quality.md`, `log-schema.md`, `robustness.md` and `status.md`.

#[doc = include_str!("deciding.md")]
pub mod deciding {}

#[doc = include_str!("metrics.md")]
pub mod metrics {}

#[doc = include_str!("judging.md")]
pub mod judging {}

#[doc = include_str!("controller.md")]
pub mod controller {}

#[doc = include_str!("integrations.md")]
pub mod integrations {}

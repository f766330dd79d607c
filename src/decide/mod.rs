//! Decide: which path one upload takes.
//!
//! [`Percent`] (parts per million), the bucket hash (SipHash-1-3 keyed from
//! the salt), [`RolloutConfig`] and its environment parsing, and [`Rollout`],
//! the atomically swappable compiled config that answers
//! [`should_use_async`](Rollout::should_use_async). Nothing here depends on
//! the rest of the crate.

pub(crate) mod bucket;
pub(crate) mod config;
pub(crate) mod overrides;
pub(crate) mod percent;
pub(crate) mod rollout;
pub(crate) mod snapshot;

pub use config::{ConfigError, DEFAULT_SALT, ROLLOUT_ENV_VAR, RolloutConfig};
pub use percent::{ParsePercentError, ParsePercentErrorKind, Percent, PercentOutOfRange};
pub use rollout::{Decision, DecisionReason, Rollout, RolloutHandle};

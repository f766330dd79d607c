//! Judge: pure functions from metrics to a verdict.
//!
//! [`RolloutPlan`] holds the stages, their criteria and the rollback
//! triggers; [`Evaluator`] turns a stage's metrics into an [`Evaluation`]
//! with every [`Check`] behind it, using the interval statistics in `stats`.

pub(crate) mod band;
pub(crate) mod criteria;
// The exact false-alarm computation is read by `plan --traffic` only.
#[cfg(any(feature = "cli", test))]
pub(crate) mod exact;
pub(crate) mod plan;
pub(crate) mod sequential;
pub(crate) mod stats;

pub use criteria::{Check, CheckKind, CheckStatus, Evaluation, Evaluator, UnknownStage, Verdict};
pub use plan::{
    EvaluationMode, EvaluationSettings, LatencyStatistic, PlanError, ReviewLook, RollbackTriggers,
    RolloutPlan, Stage, StageCriteria,
};
pub use stats::{Interval, mixture_likelihood_ratio, wilson, z_for_confidence};

//! Judge: pure functions from metrics to a verdict.
//!
//! [`RolloutPlan`] holds the stages, their criteria and the rollback
//! triggers; [`Evaluator`] turns a stage's metrics into an [`Evaluation`]
//! with every [`Check`] behind it, using the interval statistics in `stats`.

pub(crate) mod band;
pub(crate) mod criteria;
pub(crate) mod exact;
pub(crate) mod plan;
pub(crate) mod sequential;
pub mod stats;

pub use criteria::{Check, CheckKind, CheckStatus, Evaluation, Evaluator, UnknownStage, Verdict};
pub use plan::{
    EvaluationMode, EvaluationSettings, LatencyStatistic, PlanError, ReviewLook, RollbackTriggers,
    RolloutPlan, Stage, StageCriteria,
};

//! Judge: pure functions from metrics to a verdict.
//!
//! [`RolloutPlan`] holds the stages, their criteria and the rollback
//! triggers; [`Evaluator`] turns a stage's metrics into an [`Evaluation`]
//! with every [`Check`] behind it, using the interval statistics in `stats`.
//!
//! | file | what it owns |
//! | --- | --- |
//! | `check.rs` | the result model: [`Verdict`], [`Check`] with its [`CheckId`] and [`Unit`], [`Evaluation`] |
//! | `evaluator.rs` | [`Evaluator`]: one evaluation, in a fixed order of rule families; the carried sync baseline as its input |
//! | `judging.rs` | what an evaluation judges with (plan, z scores, carried baseline) and the latency comparison |
//! | `criteria.rs`, `rollback.rs`, `review.rs` | the rule families: stage criteria, rollback triggers, review triggers |
//! | `sequential.rs`, `band.rs`, `exact.rs` | guarded mode's sequential evidence (CUSUM over whole minutes, the success band's views) |
//! | `streak.rs` | literal mode's sustained conditions |
//! | `text.rs` | percentages and the verdict's reason |
//! | `plan.rs`, `stats.rs` | the plan and its validation; interval statistics |

pub(crate) mod band;
pub(crate) mod check;
pub(crate) mod criteria;
pub(crate) mod evaluator;
// The exact false-alarm computation is read by `plan --traffic` only.
#[cfg(any(feature = "cli", test))]
pub(crate) mod exact;
pub(crate) mod judging;
pub(crate) mod plan;
pub(crate) mod review;
pub(crate) mod rollback;
pub(crate) mod sequential;
pub mod stats;
pub(crate) mod streak;
pub(crate) mod text;

pub use check::{Check, CheckId, CheckKind, CheckStatus, Evaluation, Unit, Verdict};
pub use evaluator::{Evaluator, UnknownStage};
pub use plan::{
    EvaluationMode, EvaluationSettings, LatencyStatistic, PlanError, ReviewLook, RollbackTriggers,
    RolloutPlan, Stage, StageCriteria,
};

//! The starting request of a controller: the first state, used only when
//! the store never held one.

use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;

/// The starting request: used only when no state is stored.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) stage: Option<usize>,
    pub(crate) reason: String,
}

impl Request {
    /// The starting request for `percent`: 0% is off; another percent
    /// starts the plan's largest stage at or below it (never more async than
    /// asked), or off when every stage is above it.
    pub(crate) fn for_percent(plan: &RolloutPlan, percent: Percent) -> Request {
        if percent == Percent::ZERO {
            return Request {
                stage: None,
                reason: format!("the requested percent is {percent}: off"),
            };
        }
        let stage = plan
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.percent <= percent)
            .max_by_key(|(_, s)| s.percent)
            .map(|(i, _)| i);
        let reason = match stage {
            Some(i) => format!(
                "requested {percent}: starting stage {i} ({})",
                plan.stages[i].percent
            ),
            None => format!("requested {percent}, below every stage: off"),
        };
        Request { stage, reason }
    }
}

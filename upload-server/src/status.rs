//! `GET /rollout` (the rollout as this service applies it) and
//! `GET /rollout/decide/{upload_id}` (the path one id takes now).

use async_upload_rollout::{Arm, Evaluation, Percent, RolloutConfig, RolloutState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// The body of `GET /rollout` (and of a successful admin request).
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutBody {
    /// The percent in force: 0 whenever nothing is async (the kill switch,
    /// a rollback, off, a state unknown or stale).
    pub percent: Percent,
    /// Why that percent, in words: the stage it comes from, or why nothing
    /// is async.
    #[serde(default)]
    pub in_force: String,
    /// The rollout's state as stored; `null` while it cannot be read.
    pub state: Option<RolloutState>,
    /// Where the state is stored: the state file's absolute path, or the
    /// fleet's etcd endpoint and rollout name.
    #[serde(default)]
    pub store: String,
    /// Why the state cannot be read or written; absent when all is well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// Why the config (the config file, the fleet's config key) cannot be
    /// read, keeping the last good one; `null` when all is well.
    #[serde(default)]
    pub config_error: Option<String>,
    /// Whether nothing is async because of the state, force lists included.
    pub halted: bool,
    /// Whether the kill switch is on (nothing async, whatever the state).
    #[serde(default)]
    pub kill_switch: bool,
    /// Whether the state store has not answered for longer than
    /// `--stale-after` (nothing async until it does).
    #[serde(default)]
    pub stale: bool,
    /// The config in force (its percent is the percent in force).
    pub config: RolloutConfig,
    /// The plan's stage percents.
    pub stages: Vec<Percent>,
    /// The latest evaluation; `null` before the first judged tick.
    pub last_evaluation: Option<Evaluation>,
    /// After `PUT /rollout`: where the change was written (the fleet's
    /// etcd, the config file, or this process only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_written_to: Option<String>,
}

impl RolloutBody {
    /// Read without the controller's lock: a tick in progress never delays it.
    pub(crate) fn of(state: &AppState) -> RolloutBody {
        let view = state.inner.monitor.view();
        let mut config = RolloutConfig::clone(&state.inner.rollout.config());
        // The config is read now; the view at the last poll: the kill switch
        // counts as soon as it is set.
        let kill_switch = config.kill_switch;
        let percent = if kill_switch {
            Percent::ZERO
        } else {
            view.percent
        };
        config.percent = percent;
        let in_force = if kill_switch {
            "nothing async: the kill switch is on".to_owned()
        } else if view.stale {
            "nothing async: the state store has not answered for too long".to_owned()
        } else {
            match (&view.state, &view.state_error) {
                (None, _) if !view.halted => {
                    format!("{percent}: the first state, not stored yet (its write is retried)")
                }
                (None, Some(_)) => "nothing async: the state cannot be read".to_owned(),
                (None, None) => "nothing async: no state yet".to_owned(),
                (Some(state), _) if view.halted => format!(
                    "nothing async: the rollout is {} (epoch {})",
                    state.status, state.epoch
                ),
                (Some(state), _) => format!(
                    "{percent}: stage {} {} (epoch {})",
                    state.stage.unwrap_or_default(),
                    state.status,
                    state.epoch
                ),
            }
        };
        RolloutBody {
            percent,
            in_force,
            state: view.state.clone(),
            store: state.inner.store_name.clone(),
            state_error: view.state_error.clone(),
            config_error: view.config_error.clone(),
            halted: view.halted,
            kill_switch,
            stale: view.stale,
            config,
            stages: view.stages.clone(),
            last_evaluation: view.last_evaluation.clone(),
            config_written_to: None,
        }
    }
}

pub(crate) async fn rollout_status(State(state): State<AppState>) -> Response {
    axum::Json(RolloutBody::of(&state)).into_response()
}

/// `GET /rollout/decide/{upload_id}`: the path an upload id takes now, and
/// the rule that decided (support questions; uploads nothing).
pub(crate) async fn decide(
    State(state): State<AppState>,
    axum::extract::Path(upload_id): axum::extract::Path<String>,
) -> Response {
    let decision = state.inner.rollout.decide(&upload_id);
    axum::Json(serde_json::json!({
        "upload_id": upload_id,
        "use_async": decision.use_async,
        "arm": Arm::from_use_async(decision.use_async).as_str(),
        "reason": format!("{:?}", decision.reason),
        "bucket": decision.bucket,
    }))
    .into_response()
}

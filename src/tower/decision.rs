//! What the layer tells the handler (the decision, in the request's
//! extensions) and what the handler can tell the layer (an outcome, in the
//! response's extensions).

use std::time::Instant;

use http::StatusCode;

use crate::decide::DecisionReason;
use crate::metrics::{Arm, Outcome};

/// The path a request takes, decided once by [`RolloutLayer`] and put into
/// the request's extensions before the inner service sees it.
///
/// With axum, take it as `Extension(decision): Extension<RolloutDecision>`;
/// elsewhere, `request.extensions().get::<RolloutDecision>()`. It is `Copy`:
/// a few words, no reference to the layer.
///
/// [`RolloutLayer`]: crate::tower::RolloutLayer
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutDecision {
    /// The path to take: the arm the layer records the request on.
    pub arm: Arm,
    /// The id's bucket in `0..1_000_000` when the bucket decided; `None`
    /// when a rule above it did (halted, kill switch, a force list) or the
    /// request had no id.
    pub bucket: Option<u32>,
    /// The rule that decided; `None` when the request had no id (then
    /// [`arm`](Self::arm) is [`Arm::Sync`] and the layer's
    /// [`LayerCounts::no_id`](crate::tower::LayerCounts::no_id) counted it).
    pub reason: Option<DecisionReason>,
    pub(crate) started: Instant,
}

impl RolloutDecision {
    /// Whether the request takes the async path.
    #[must_use]
    pub const fn use_async(&self) -> bool {
        matches!(self.arm, Arm::Async)
    }

    /// Whether the request carried an upload id.
    #[must_use]
    pub const fn has_id(&self) -> bool {
        self.reason.is_some()
    }

    /// When the layer received the request: the start of the latency it
    /// records.
    #[must_use]
    pub const fn started(&self) -> Instant {
        self.started
    }
}

/// The outcome a handler wants recorded for its response, instead of the
/// classifier's reading of the status: put it into the response's
/// extensions (with axum, return `(Extension(RecordAs(Outcome::Critical)),
/// ...)`).
///
/// The layer removes it from the response before passing the response on.
/// The latency is still measured to the end of the body; a body that fails
/// turns a `Success` or `Rejected` into an `Error` (a `Critical` stays
/// `Critical`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAs(pub Outcome);

/// The default classifier: 5xx is [`Outcome::Error`], 4xx
/// [`Outcome::Rejected`] (the client's doing: not judged), anything else
/// [`Outcome::Success`].
///
/// A custom classifier ([`RolloutLayerBuilder::classify`]) can fall back to
/// it for the statuses it does not care about.
///
/// ```
/// use async_upload_rollout::Outcome;
/// use async_upload_rollout::tower::classify_status;
/// use http::StatusCode;
///
/// assert_eq!(classify_status(StatusCode::CREATED), Outcome::Success);
/// assert_eq!(classify_status(StatusCode::PAYLOAD_TOO_LARGE), Outcome::Rejected);
/// assert_eq!(classify_status(StatusCode::BAD_GATEWAY), Outcome::Error);
/// ```
///
/// [`RolloutLayerBuilder::classify`]: crate::tower::RolloutLayerBuilder::classify
#[must_use]
pub fn classify_status(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::Error
    } else if status.is_client_error() {
        Outcome::Rejected
    } else {
        Outcome::Success
    }
}

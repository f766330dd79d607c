//! [`replica`]: the fleet's replica part, the controller of a process that
//! serves uploads in a fleet.
//!
//! A fleet is one leading [`FleetController`](super::FleetController) and
//! any number of replicas. The leader owns the state: it writes the first
//! state, every stage and every review. A replica applies what is stored and
//! tells the fleet it did; of its own accord it writes nothing but a
//! rollback (the local fuse), so a bad path that only one replica sees still
//! stops the whole fleet within a tick.

use crate::act::controller::builder::RolloutControllerBuilder;
use crate::act::policy::Authority;

/// Makes `builder` (from [`RolloutController::builder`](crate::RolloutController::builder),
/// with the fleet's [`EtcdStateStore`](super::EtcdStateStore) as its state
/// store) a fleet replica's controller.
///
/// A replica applies the stored state and the store's config to its
/// rollout, acknowledges every epoch it applies
/// ([`StateStore::acknowledge`](crate::StateStore::acknowledge)), and acts
/// on its own metrics only through the immediate rollback triggers (the
/// local fuse: one replica's critical error rolls the whole fleet back,
/// written with a compare-and-swap on the revision it judged). It never
/// advances, asks for review or writes the first state: the leading
/// controller does. With no state stored yet it serves nothing async, and
/// a state that vanishes is the leader's to write again.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use async_upload_rollout::fleet::{self, EtcdStateStore};
/// use async_upload_rollout::{MetricsAccumulator, Rollout, RolloutConfig, RolloutController};
///
/// let store = EtcdStateStore::connect(&["http://127.0.0.1:2379".to_owned()], "uploads", "replica-a")?;
/// let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
/// let metrics = Arc::new(MetricsAccumulator::new());
/// let controller = fleet::replica(
///     RolloutController::builder(rollout, metrics).state_store(Arc::new(store)),
/// )
/// .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replica(builder: RolloutControllerBuilder) -> RolloutControllerBuilder {
    builder.authority(Authority::Fuse)
}

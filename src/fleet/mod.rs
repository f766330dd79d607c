//! Fleet mode (feature `etcd`): one rollout across many replicas.
//!
//! - [`EtcdStateStore`]: the [`RolloutState`](crate::RolloutState), the
//!   fleet's config, the leading controller and the replicas'
//!   acknowledgements in etcd, behind the same
//!   [`StateStore`](crate::StateStore) trait as the state file.

pub mod etcd;

pub use etcd::{
    CALL_TIMEOUT, CONTACT_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_ROLLOUT_NAME, EtcdStateStore,
    Leadership, key_prefix,
};

//! Fleet mode (feature `etcd`): one rollout across many replicas.
//!
//! - [`EtcdStateStore`]: the [`RolloutState`](crate::RolloutState), the
//!   fleet's config, the leading controller and the replicas'
//!   acknowledgements in etcd, behind the same
//!   [`StateStore`](crate::StateStore) trait as the state file.
//! - [`PrometheusSource`]: a run's totals summed over every replica by
//!   Prometheus, the [`MetricsSource`](crate::MetricsSource) of the fleet's
//!   controller.

pub mod etcd;
mod prometheus;

pub use etcd::{
    CALL_TIMEOUT, CONTACT_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_ROLLOUT_NAME, EtcdStateStore,
    Leadership, key_prefix,
};
pub use prometheus::{PrometheusSource, QUERY_TIMEOUT};

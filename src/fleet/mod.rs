//! Fleet mode (feature `etcd`): one rollout across many replicas.
//!
//! - [`EtcdStateStore`]: the [`RolloutState`](crate::RolloutState), the
//!   fleet's config, the leading controller and the replicas'
//!   acknowledgements in etcd, behind the same
//!   [`StateStore`](crate::StateStore) trait as the state file.
//! - [`PrometheusSource`]: a run's totals summed over every replica by
//!   Prometheus, the [`MetricsSource`](crate::act::MetricsSource) of the fleet's
//!   controller.
//! - [`FleetController`], the leader's part: any number may run; one leads
//!   (elected on an etcd lease), judges the fleet from Prometheus, and
//!   writes every change fenced on its leadership. It serves no uploads.
//! - [`replica`], the replicas' part: a serving process's controller that
//!   applies the fleet's state and config, acknowledges them, and acts on
//!   its own metrics only through the immediate rollback triggers.
//! - For a production etcd and Prometheus: [`EtcdStateStore::builder`] with
//!   [`EtcdTls`] (a CA, a client certificate and key) and an [`EtcdUser`]
//!   (its password from [`ETCD_PASSWORD_ENV`]), and
//!   [`PrometheusSource::with_auth`] with a [`PrometheusAuth`] (a bearer
//!   token file, or basic auth from [`PROMETHEUS_USER_ENV`] and
//!   [`PROMETHEUS_PASSWORD_ENV`]); a bad or unreadable file is a
//!   [`ConnectError`] naming it.

pub mod etcd;
mod leader;
mod prometheus;
mod replica;
mod security;

pub use leader::{FleetController, FleetControllerConfig, FleetEvent};
pub use replica::replica;

pub use etcd::{
    CALL_TIMEOUT, CONTACT_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_ROLLOUT_NAME, EtcdStateStore,
    EtcdStateStoreBuilder, Leadership, key_prefix,
};
pub use prometheus::{PrometheusSource, QUERY_TIMEOUT};
pub use security::{
    ConnectError, CredentialFile, ETCD_PASSWORD_ENV, EtcdTls, EtcdUser, PROMETHEUS_PASSWORD_ENV,
    PROMETHEUS_USER_ENV, PrometheusAuth,
};

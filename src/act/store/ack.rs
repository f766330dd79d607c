//! Acknowledgements: every service says which state (epoch) and config it
//! applied, so that an operator's command can confirm a change reached every
//! live service, or name the ones it did not.
//!
//! A service's controller writes one [`Acknowledgement`] through its
//! [`StateStore`](crate::StateStore) whenever what it applies changes, and
//! again every [`ACK_REFRESH`] as a heartbeat. An acknowledgement older than
//! [`ACK_TTL`] no longer counts: its service is taken as gone (stopped,
//! killed, or hung). A service that stops cleanly withdraws its own.
//!
//! Where they are kept:
//!
//! - [`FileStateStore`](crate::FileStateStore): one small JSON file per
//!   service in the directory `<state file>.acks/` beside the state file
//!   (`state.json.acks/web-1.json`), written whole (temporary file and
//!   rename).
//! - `fleet::EtcdStateStore` (feature `etcd`): the key `acks/<replica>`
//!   under the rollout's prefix, bound to the replica's lease.
//! - [`MemoryStateStore`](crate::MemoryStateStore): in memory.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::decide::percent::Percent;

/// How long an acknowledgement counts after it was written: a service whose
/// latest acknowledgement is older is taken as gone.
pub const ACK_TTL: Duration = Duration::from_secs(10);

/// How often a running service writes its acknowledgement again when
/// nothing changed (its heartbeat): well inside [`ACK_TTL`].
pub const ACK_REFRESH: Duration = Duration::from_secs(3);

/// What a service applies now: the content of its next acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Applied {
    /// The epoch of the state it serves; 0 while it knows no state (the
    /// state cannot be read, is stale, or was never written).
    pub epoch: u64,
    /// The stage of that state (`None` when off or unknown): what a rollback
    /// over an unreadable state keeps when the state itself does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// The percent in force in it (0% when nothing is async).
    #[serde(default)]
    pub percent: Percent,
    /// The fingerprint of the config it applies
    /// ([`RolloutConfig::fingerprint`](crate::RolloutConfig::fingerprint)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Why its config source cannot be read, while that lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Why its state cannot be read, while that lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
}

impl Applied {
    /// A service serving the state of `epoch` at `percent`, with no config
    /// fingerprint and no errors.
    #[must_use]
    pub fn new(epoch: u64, percent: Percent) -> Applied {
        Applied {
            epoch,
            stage: None,
            percent,
            config: None,
            config_error: None,
            state_error: None,
        }
    }

    /// At `stage` (its state's stage).
    #[must_use]
    pub fn at_stage(mut self, stage: Option<usize>) -> Applied {
        self.stage = stage;
        self
    }

    /// With the fingerprint of the config applied.
    #[must_use]
    pub fn with_config(mut self, fingerprint: impl Into<String>) -> Applied {
        self.config = Some(fingerprint.into());
        self
    }
}

/// One service's acknowledgement, as a store keeps it.
///
/// ```json
/// {"service":"web-1","host":"web-1.internal","pid":4242,"epoch":7,"percent":0,
///  "config":"5c1f0a2e9b7d4413","at":"2026-12-02T11:42:10.250Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Acknowledgement {
    /// The service's id (a replica's `--replica`, by default host name and
    /// process id).
    pub service: String,
    /// The host it runs on.
    #[serde(default)]
    pub host: String,
    /// Its process id (0 when unknown).
    #[serde(default)]
    pub pid: u32,
    /// What it applies.
    #[serde(flatten)]
    pub applied: Applied,
    /// When it wrote this.
    #[serde(with = "crate::act::state::rfc3339")]
    pub at: SystemTime,
}

impl Acknowledgement {
    /// This process's acknowledgement of `applied` as service `service`, now.
    #[must_use]
    pub fn of_this_process(service: &str, applied: Applied, at: SystemTime) -> Acknowledgement {
        Acknowledgement {
            service: service.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            applied,
            at: crate::clock::from_unix_ms(crate::clock::unix_ms(at)),
        }
    }

    /// Whether it still counts at `now`: written at most [`ACK_TTL`] ago
    /// (a clock behind `at` counts as fresh).
    #[must_use]
    pub fn is_live(&self, now: SystemTime) -> bool {
        now.duration_since(self.at).unwrap_or_default() <= ACK_TTL
    }

    /// How long ago it was written, at `now`.
    #[must_use]
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.at).unwrap_or_default()
    }
}

/// This host's name: `/proc/sys/kernel/hostname`, `/etc/hostname` or
/// `$HOSTNAME`, else `localhost`.
#[must_use]
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The default id of this process as a service: `<host>-<pid>`.
#[must_use]
pub fn default_service_id() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_round_trips_as_flat_json_and_expires_after_the_ttl() {
        let at = crate::clock::from_unix_ms(1_764_000_000_000);
        let ack = Acknowledgement::of_this_process(
            "web-1",
            Applied::new(7, Percent::ZERO).with_config("abc"),
            at,
        );
        let json = serde_json::to_string(&ack).unwrap();
        assert!(json.contains(r#""epoch":7"#), "{json}");
        assert!(
            json.contains(r#""at":"2025-11-24T16:00:00.000Z""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Acknowledgement>(&json).unwrap(), ack);
        assert!(ack.is_live(at + ACK_TTL));
        assert!(!ack.is_live(at + ACK_TTL + Duration::from_millis(1)));
    }

    #[test]
    fn an_older_acknowledgement_without_the_new_fields_still_reads() {
        // What fleet replicas wrote before services said more than the epoch.
        let ack: Acknowledgement =
            serde_json::from_str(r#"{"service":"r1","epoch":3,"at":"2025-11-24T16:00:00.000Z"}"#)
                .unwrap();
        assert_eq!((ack.applied.epoch, ack.pid), (3, 0));
    }
}

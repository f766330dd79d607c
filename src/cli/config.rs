//! The operator's `config show` and `config set`: the config every service
//! of a rollout applies (salt, kill switch, id lists), in a config file or a
//! fleet's etcd, changed with a compare-and-swap through a [`ConfigStore`].

use std::fmt::Write as _;

use serde::Serialize;

use crate::act::config_store::ConfigStore;
use crate::act::store::Revision;
use crate::cli::error::CliError;
use crate::cli::operate::Create;
use crate::decide::config::RolloutConfig;

/// How many times `config set` reads again after losing a race.
const ATTEMPTS: usize = 5;

/// A change of the shared config: the fields to set, the others kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// The kill switch.
    pub kill_switch: Option<bool>,
    /// The whole `force_async` list.
    pub force_async: Option<Vec<String>>,
    /// The whole `force_sync` list.
    pub force_sync: Option<Vec<String>>,
    /// The salt (changing it moves ids between paths).
    pub salt: Option<String>,
}

impl ConfigChange {
    /// Whether it sets nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == ConfigChange::default()
    }

    /// `config` with this change (its percent, the starting request, kept).
    #[must_use]
    pub fn applied_to(&self, config: &RolloutConfig) -> RolloutConfig {
        let mut next = config.clone();
        if let Some(on) = self.kill_switch {
            next.kill_switch = on;
        }
        if let Some(ids) = &self.force_async {
            next.force_async.clone_from(ids);
        }
        if let Some(ids) = &self.force_sync {
            next.force_sync.clone_from(ids);
        }
        if let Some(salt) = &self.salt {
            next.salt.clone_from(salt);
        }
        next
    }
}

/// What `config show` prints (`--json`), and what `config set` wrote.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ConfigReport {
    /// Where the config is.
    pub store: String,
    /// Its revision there; `null` when none is stored.
    pub revision: Option<u64>,
    /// The config; `null` when none is stored or it cannot be read.
    pub config: Option<RolloutConfig>,
    /// Its fingerprint, as services acknowledge it.
    pub fingerprint: Option<String>,
    /// Why it cannot be read, if it cannot.
    pub error: Option<String>,
}

impl ConfigReport {
    /// What `store` holds. A config that cannot be read is reported, not an
    /// error.
    ///
    /// # Errors
    ///
    /// [`CliError::State`] when the store cannot be reached.
    pub fn read(store: &dyn ConfigStore) -> Result<ConfigReport, CliError> {
        let (loaded, error) = match store.load_config_revision() {
            Ok(loaded) => (loaded, None),
            Err(err) if err.is_corrupt() => (None, Some(err.to_string())),
            Err(err) => return Err(err.into()),
        };
        Ok(ConfigReport::of(store, loaded, error))
    }

    fn of(
        store: &dyn ConfigStore,
        loaded: Option<(RolloutConfig, Revision)>,
        error: Option<String>,
    ) -> ConfigReport {
        ConfigReport {
            store: store.describe_config(),
            revision: loaded.as_ref().map(|(_, r)| r.0),
            fingerprint: loaded.as_ref().map(|(c, _)| c.fingerprint()),
            config: loaded.map(|(c, _)| c),
            error,
        }
    }

    /// The report as an operator reads it.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:>16}: {}", "config", self.store);
        if let Some(error) = &self.error {
            let _ = writeln!(
                out,
                "{:>16}: {error}\n{:>16}  services keep their last good config",
                "CONFIG ERROR", ""
            );
            return out;
        }
        let Some(config) = &self.config else {
            let _ = writeln!(out, "{:>16}: none stored", "config");
            return out;
        };
        let list = |ids: &[String]| {
            if ids.is_empty() {
                "(none)".to_owned()
            } else {
                ids.join(", ")
            }
        };
        let rows = [
            (
                "kill switch",
                if config.kill_switch {
                    "ON: nothing async".to_owned()
                } else {
                    "off".to_owned()
                },
            ),
            ("salt", format!("{:?}", config.salt)),
            ("force_async", list(&config.force_async)),
            ("force_sync", list(&config.force_sync)),
            ("fingerprint", self.fingerprint.clone().unwrap_or_default()),
            (
                "revision",
                self.revision.map_or_else(String::new, |r| r.to_string()),
            ),
            (
                "starting percent",
                format!(
                    "{} (used only when no state is stored; the state decides the percent in force)",
                    config.percent
                ),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "{name:>16}: {value}");
        }
        out
    }
}

/// Applies `change` to the config in `store` with a compare-and-swap,
/// reading again and changing again up to five times when another writer
/// gets in first. Returns what was written.
///
/// No config stored: refused unless `create` ([`Create::Yes`]: the change
/// applies to the default config, starting percent 0). A config that cannot
/// be read: refused unless `overwrite` (the change applies to the default
/// config and replaces it whole).
///
/// # Errors
///
/// [`CliError::Usage`] for an empty change, [`CliError::NoConfig`],
/// [`CliError::UnreadableConfig`], [`CliError::State`] when the store cannot
/// be reached or kept losing races.
pub fn set_config(
    store: &dyn ConfigStore,
    change: &ConfigChange,
    create: Create,
    overwrite: bool,
) -> Result<ConfigReport, CliError> {
    if change.is_empty() {
        return Err(CliError::Usage(
            "config set: nothing to set: give --kill-switch, --force-async, --force-sync or --salt"
                .to_owned(),
        ));
    }
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let written = match store.load_config_revision() {
            Ok(Some((config, revision))) => {
                let next = change.applied_to(&config);
                store
                    .compare_and_swap_config(Some(revision), &next)
                    .map(|r| (next, r))
            }
            Ok(None) if create == Create::Yes => {
                let next = change.applied_to(&RolloutConfig::default());
                store
                    .compare_and_swap_config(None, &next)
                    .map(|r| (next, r))
            }
            Ok(None) => {
                return Err(CliError::NoConfig {
                    store: store.describe_config(),
                });
            }
            Err(err) if err.is_corrupt() && overwrite => {
                let next = change.applied_to(&RolloutConfig::default());
                store.replace_config(&next).map(|r| (next, r))
            }
            Err(err) if err.is_corrupt() => return Err(CliError::UnreadableConfig { source: err }),
            Err(err) => return Err(err.into()),
        };
        match written {
            Ok(loaded) => return Ok(ConfigReport::of(store, Some(loaded), None)),
            Err(err) if err.is_conflict() => last_conflict = Some(err),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last_conflict.map_or_else(
        || CliError::Raced {
            store: store.describe_config(),
        },
        CliError::State,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::config_store::ConfigFile;

    #[test]
    fn set_changes_only_the_fields_given_and_keeps_the_starting_percent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.toml");
        std::fs::write(&path, "percent = 10\nforce_sync = [\"vip\"]\n").unwrap();
        let file = ConfigFile::new(&path).unwrap();
        let change = ConfigChange {
            kill_switch: Some(true),
            ..ConfigChange::default()
        };
        let report = set_config(&file, &change, Create::No, false).unwrap();
        assert!(report.render().contains("starting percent"));
        let config = report.config.unwrap();
        assert!(config.kill_switch);
        assert_eq!(config.force_sync, ["vip"]);
        assert_eq!(config.percent.to_string(), "10%");
    }

    #[test]
    fn a_missing_or_unreadable_config_is_refused_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.json");
        let file = ConfigFile::new(&path).unwrap();
        let change = ConfigChange {
            force_async: Some(vec!["a".into()]),
            ..ConfigChange::default()
        };
        let err = set_config(&file, &change, Create::No, false).unwrap_err();
        assert!(matches!(err, CliError::NoConfig { .. }), "{err}");
        assert!(!path.exists(), "nothing written");
        std::fs::write(&path, "{\"perc").unwrap();
        let err = set_config(&file, &change, Create::Yes, false).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert!(ConfigReport::read(&file).unwrap().error.is_some());
        let report = set_config(&file, &change, Create::No, true).unwrap();
        assert_eq!(report.config.unwrap().force_async, ["a"]);
        let err = set_config(&file, &ConfigChange::default(), Create::No, false).unwrap_err();
        assert!(err.to_string().contains("nothing to set"), "{err}");
    }
}

//! [`RolloutConfig`]: what a rollout should do, as plain data.

use std::env::{self, VarError};

use serde::{Deserialize, Serialize};

use crate::decide::percent::{ParsePercentError, Percent};

/// The environment variable the operating plan uses: `ASYNC_UPLOAD_ROLLOUT=10`.
pub const ROLLOUT_ENV_VAR: &str = "ASYNC_UPLOAD_ROLLOUT";

/// The salt used when none is given: the flag's name.
pub const DEFAULT_SALT: &str = "async-upload";

/// What a rollout should do. Plain data: build it, load it with serde, compare
/// it, then hand it to [`Rollout::new`](crate::Rollout::new) or
/// [`Rollout::store`](crate::Rollout::store), which compile it once for the hot path.
///
/// Every value of this type is valid: the percent is a validated [`Percent`]
/// and any salt (even an empty one) and any id lists are allowed.
///
/// Precedence of one decision, strongest first:
/// 1. `kill_switch`: every upload takes the sync path;
/// 2. `force_sync`: listed ids take the sync path (deny wins over allow);
/// 3. `force_async`: listed ids take the async path;
/// 4. the id's bucket against `percent`.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::{Percent, RolloutConfig};
///
/// let config: RolloutConfig = serde_json::from_str(
///     r#"{ "percent": 10, "force_async": ["load-test-1"] }"#,
/// )?;
/// assert_eq!(config.percent, Percent::from_whole(10)?);
/// assert_eq!(config.salt, "async-upload");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Share of uploads that take the async path.
    pub percent: Percent,
    /// The flag's name, hashed with each id. Different salts give independent
    /// cohorts; changing the salt reshuffles everybody.
    pub salt: String,
    /// Forces every decision to the sync path, whatever else is set.
    pub kill_switch: bool,
    /// Upload ids that always take the async path (unless the kill switch is on
    /// or they are also in `force_sync`).
    pub force_async: Vec<String>,
    /// Upload ids that always take the sync path.
    pub force_sync: Vec<String>,
}

impl Default for RolloutConfig {
    /// 0% with the default salt: the safe state.
    fn default() -> RolloutConfig {
        RolloutConfig::with_percent(Percent::ZERO)
    }
}

impl RolloutConfig {
    /// A config at `percent` with the default salt and no overrides.
    #[must_use]
    pub fn with_percent(percent: Percent) -> RolloutConfig {
        RolloutConfig {
            percent,
            salt: DEFAULT_SALT.to_owned(),
            kill_switch: false,
            force_async: Vec::new(),
            force_sync: Vec::new(),
        }
    }

    /// A short, stable name of everything but the percent (salt, kill
    /// switch, id lists): 16 hex digits of SipHash-1-3 with zero keys over
    /// their JSON. Services acknowledge the config they apply with it, so an
    /// operator can see that every one applies the same config; equal
    /// configs have equal fingerprints on every platform and release.
    ///
    /// ```
    /// use async_upload_rollout::RolloutConfig;
    ///
    /// let mut config = RolloutConfig::default();
    /// let before = config.fingerprint();
    /// config.percent = "10".parse()?; // the percent is not part of it
    /// assert_eq!(config.fingerprint(), before);
    /// config.kill_switch = true;
    /// assert_ne!(config.fingerprint(), before);
    /// assert_eq!(before.len(), 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fingerprint(&self) -> String {
        use std::hash::Hasher as _;
        let text = serde_json::json!([
            self.salt,
            self.kill_switch,
            self.force_async,
            self.force_sync
        ])
        .to_string();
        let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
        hasher.write(text.as_bytes());
        format!("{:016x}", hasher.finish())
    }

    /// Reads the percent from `ASYNC_UPLOAD_ROLLOUT`.
    ///
    /// Unset means 0%: the safe default. Everything else is default.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPercent`] when the variable is set but is not a
    /// percent (an invalid value is never silently taken as 0%), and
    /// [`ConfigError::NotUnicode`] when it is not valid Unicode.
    pub fn from_env() -> Result<RolloutConfig, ConfigError> {
        RolloutConfig::from_env_var(ROLLOUT_ENV_VAR)
    }

    /// Like [`from_env`](RolloutConfig::from_env), reading the variable `name`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](RolloutConfig::from_env).
    pub fn from_env_var(name: &str) -> Result<RolloutConfig, ConfigError> {
        let percent = match env::var(name) {
            Err(VarError::NotPresent) => Percent::ZERO,
            Err(VarError::NotUnicode(value)) => {
                return Err(ConfigError::NotUnicode {
                    var: name.to_owned(),
                    value: value.to_string_lossy().into_owned(),
                });
            }
            Ok(value) => parse_percent_var(name, &value)?,
        };
        Ok(RolloutConfig::with_percent(percent))
    }
}

/// Parses the value of variable `name` as a percent.
pub(crate) fn parse_percent_var(name: &str, value: &str) -> Result<Percent, ConfigError> {
    value.parse().map_err(|source| ConfigError::InvalidPercent {
        var: name.to_owned(),
        source,
    })
}

/// A rollout configuration that could not be read. Nothing running changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is set but is not a percent. Fix the value (for example
    /// `10`, `10%` or `0.5`) or unset it for 0%.
    #[error("environment variable {var}: {source}")]
    InvalidPercent {
        /// The variable's name.
        var: String,
        /// The parse failure, which quotes the value.
        source: ParsePercentError,
    },
    /// The variable is set to bytes that are not valid Unicode.
    #[error("environment variable {var} is not valid Unicode: {value:?}")]
    NotUnicode {
        /// The variable's name.
        var: String,
        /// The value, with invalid bytes replaced by U+FFFD.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_name_the_variable_and_the_value() {
        for value in ["", "abc", "-5", "NaN", "1e2", "101", "0.00001", "10%%"] {
            let err = parse_percent_var("MY_ROLLOUT", value).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("MY_ROLLOUT"), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<RolloutConfig>(r#"{"percnt": 10}"#).unwrap_err();
        assert!(err.to_string().contains("percnt"), "{err}");
    }

    #[test]
    fn serde_round_trip() {
        let config = RolloutConfig {
            percent: "12.3456".parse().unwrap(),
            salt: "s".into(),
            kill_switch: true,
            force_async: vec!["a".into()],
            force_sync: vec!["b".into()],
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<RolloutConfig>(&json).unwrap(),
            config
        );
    }
}

//! [`RolloutProvider`]: a [`Rollout`] as an OpenFeature provider.
//!
//! Applications that ask their flags through the OpenFeature API get the same
//! answer as [`Rollout::should_use_async`]: one boolean flag (by default
//! [`DEFAULT_FLAG_NAME`], `async-upload`), evaluated for the upload id given
//! as the evaluation context's **targeting key**.
//!
//! # Resolution
//!
//! | rule that decided ([`DecisionReason`]) | value | reason | variant |
//! | --- | --- | --- | --- |
//! | rollout halted (rolled back, off, state unknown) | `false` | `DISABLED` | `sync` |
//! | kill switch on | `false` | `DISABLED` | `sync` |
//! | id in `force_sync` | `false` | `TARGETING_MATCH` | `sync` |
//! | id in `force_async` | `true` | `TARGETING_MATCH` | `async` |
//! | the id's bucket against the percent | `bucket < ppm` | `SPLIT` | `async` or `sync` |
//!
//! 0% and 100% are reported as `SPLIT`, not `DISABLED`: the bucket still
//! decides (nobody's bucket is below 0 ppm, everybody's is below 1,000,000),
//! and widening from 0% brings ids in by the same rule. `DISABLED` means the
//! kill switch, or a halted rollout ([`Rollout::halt`](crate::Rollout::halt):
//! a rollback by the [`RolloutController`](crate::RolloutController), a
//! rollout that is off, or one whose state cannot be read), and only those.
//!
//! Flag metadata: `rule` (`halted`, `kill_switch`, `force_sync`, `force_async` or
//! `bucket`, telling the two `TARGETING_MATCH`es apart) and, when the bucket
//! decided, `bucket` (an integer in `0..1_000_000`; the id is in iff it is
//! below the percent in parts per million).
//!
//! # Errors
//!
//! - No targeting key, or an empty one: `TARGETING_KEY_MISSING`. The client
//!   then returns the error, never a silent default.
//! - Any other flag name, of any type: `FLAG_NOT_FOUND`.
//! - This flag asked as an integer, float, string or struct: `TYPE_MISMATCH`.

use std::sync::Arc;

use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult,
    FlagMetadata, StructValue,
};

use crate::decide::rollout::{DecisionReason, Rollout};

/// The flag name a [`RolloutProvider`] serves unless told otherwise.
pub const DEFAULT_FLAG_NAME: &str = "async-upload";

/// The provider's name in its OpenFeature metadata.
pub const PROVIDER_NAME: &str = "async-upload-rollout";

/// An OpenFeature provider whose one boolean flag is
/// [`Rollout::should_use_async`] of the targeting key.
///
/// It reads the rollout's config at every evaluation (no cache), so a new
/// percent, kill switch or list is seen by the next evaluation. The module
/// docs give the reasons, metadata and errors.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use async_upload_rollout::openfeature::RolloutProvider;
/// use async_upload_rollout::{Percent, Rollout, RolloutConfig};
/// use open_feature::{EvaluationContext, EvaluationReason, OpenFeature};
///
/// let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(Percent::from_whole(10)?)));
/// let upload_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// # runtime.block_on(async {
/// let mut api = OpenFeature::singleton_mut().await;
/// api.set_provider(RolloutProvider::new(rollout.clone())).await;
/// let client = api.create_client();
/// drop(api);
///
/// let context = EvaluationContext::default().with_targeting_key(upload_id);
/// let details = client
///     .get_bool_details("async-upload", Some(&context), None)
///     .await
///     .map_err(|e| e.code)?; // the code is a std::error::Error, the error is not
/// assert_eq!(details.value, rollout.should_use_async(upload_id));
/// assert_eq!(details.reason, Some(EvaluationReason::Split));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RolloutProvider {
    rollout: Arc<Rollout>,
    flag: String,
    metadata: ProviderMetadata,
}

impl RolloutProvider {
    /// A provider serving [`DEFAULT_FLAG_NAME`] from `rollout`.
    #[must_use]
    pub fn new(rollout: Arc<Rollout>) -> RolloutProvider {
        RolloutProvider {
            rollout,
            flag: DEFAULT_FLAG_NAME.to_owned(),
            metadata: ProviderMetadata::new(PROVIDER_NAME),
        }
    }

    /// Serves the flag under `name` instead of [`DEFAULT_FLAG_NAME`].
    #[must_use]
    pub fn with_flag_name(mut self, name: impl Into<String>) -> RolloutProvider {
        self.flag = name.into();
        self
    }

    /// The name of the flag served.
    #[must_use]
    pub fn flag_name(&self) -> &str {
        &self.flag
    }

    /// Resolves the boolean flag `flag_key` for `context`'s targeting key,
    /// without an async runtime (what
    /// [`resolve_bool_value`](FeatureProvider::resolve_bool_value) calls).
    ///
    /// # Errors
    ///
    /// `FLAG_NOT_FOUND` when `flag_key` is not this provider's flag, and
    /// `TARGETING_KEY_MISSING` when the context has no targeting key or an
    /// empty one.
    pub fn resolve_bool(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        if flag_key != self.flag {
            return Err(self.not_found(flag_key));
        }
        let upload_id = match context.targeting_key.as_deref() {
            Some(key) if !key.is_empty() => key,
            _ => {
                return Err(error(
                    EvaluationErrorCode::TargetingKeyMissing,
                    format!(
                        "flag {flag_key:?} needs the upload id as the evaluation context's \
                         targeting key, and it is missing or empty"
                    ),
                ));
            }
        };
        let decision = self.rollout.decide(upload_id);
        let (reason, rule) = match decision.reason {
            DecisionReason::Halted => (EvaluationReason::Disabled, "halted"),
            DecisionReason::KillSwitch => (EvaluationReason::Disabled, "kill_switch"),
            DecisionReason::ForceSync => (EvaluationReason::TargetingMatch, "force_sync"),
            DecisionReason::ForceAsync => (EvaluationReason::TargetingMatch, "force_async"),
            DecisionReason::Bucket => (EvaluationReason::Split, "bucket"),
        };
        let mut metadata = FlagMetadata::default().with_value("rule", rule);
        if let Some(bucket) = decision.bucket {
            metadata.add_value("bucket", bucket);
        }
        Ok(ResolutionDetails {
            value: decision.use_async,
            variant: Some(if decision.use_async { "async" } else { "sync" }.to_owned()),
            reason: Some(reason),
            flag_metadata: Some(metadata),
        })
    }

    /// The error for asking `flag_key` as a type other than boolean.
    fn not_boolean(&self, flag_key: &str, asked: &str) -> EvaluationError {
        if flag_key == self.flag {
            error(
                EvaluationErrorCode::TypeMismatch,
                format!("flag {flag_key:?} is a boolean flag, asked as {asked}"),
            )
        } else {
            self.not_found(flag_key)
        }
    }

    fn not_found(&self, flag_key: &str) -> EvaluationError {
        error(
            EvaluationErrorCode::FlagNotFound,
            format!(
                "flag {flag_key:?} not found: this provider serves only {:?}",
                self.flag
            ),
        )
    }
}

fn error(code: EvaluationErrorCode, message: String) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message),
    }
}

impl std::fmt::Debug for RolloutProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutProvider")
            .field("flag", &self.flag)
            .field("rollout", &self.rollout)
            .finish()
    }
}

#[open_feature::async_trait]
impl FeatureProvider for RolloutProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve_bool(flag_key, evaluation_context)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        Err(self.not_boolean(flag_key, "an integer"))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        Err(self.not_boolean(flag_key, "a float"))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        Err(self.not_boolean(flag_key, "a string"))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        Err(self.not_boolean(flag_key, "a struct"))
    }
}

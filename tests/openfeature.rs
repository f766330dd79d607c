//! The OpenFeature provider, driven through the OpenFeature API and client.

use std::future::Future;
use std::sync::Arc;

use async_upload_rollout::openfeature::{DEFAULT_FLAG_NAME, RolloutProvider};
use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use open_feature::{
    Client, EvaluationContext, EvaluationErrorCode, EvaluationReason, FlagMetadataValue,
    OpenFeature, StructValue,
};

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

fn rollout(config: RolloutConfig) -> Arc<Rollout> {
    Arc::new(Rollout::new(config))
}

fn percent(whole: u32) -> RolloutConfig {
    RolloutConfig::with_percent(Percent::from_whole(whole).unwrap())
}

/// A client bound to `provider` under a domain of its own: the OpenFeature
/// API is a process-wide singleton and the tests run in parallel.
async fn client(domain: &str, provider: RolloutProvider) -> Client {
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(domain, provider).await;
    api.create_named_client(domain)
}

fn id(key: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(key)
}

#[test]
fn bucketed_decisions_are_splits_that_match_should_use_async() {
    let rollout = rollout(percent(37));
    run(async {
        let client = client("split", RolloutProvider::new(rollout.clone())).await;
        let mut seen = [false; 2];
        for i in 0..300 {
            let key = format!("upload-{i}");
            let details = client
                .get_bool_details(DEFAULT_FLAG_NAME, Some(&id(&key)), None)
                .await
                .unwrap();
            let expected = rollout.should_use_async(&key);
            seen[usize::from(expected)] = true;
            assert_eq!(details.value, expected, "{key}");
            assert_eq!(details.reason, Some(EvaluationReason::Split), "{key}");
            assert_eq!(
                details.variant.as_deref(),
                Some(if expected { "async" } else { "sync" })
            );
            let metadata = &details.flag_metadata.values;
            assert_eq!(
                metadata.get("bucket"),
                Some(&FlagMetadataValue::Int(i64::from(rollout.bucket(&key))))
            );
            assert_eq!(
                metadata.get("rule"),
                Some(&FlagMetadataValue::String("bucket".into()))
            );
        }
        assert_eq!(seen, [true, true], "both answers occur at 37%");
    });
}

#[test]
fn force_lists_are_targeting_matches_and_the_kill_switch_is_disabled() {
    let mut config = percent(50);
    config.force_async = vec!["vip".into()];
    config.force_sync = vec!["blocked".into()];
    let rollout = rollout(config);
    run(async {
        let client = client("targeting", RolloutProvider::new(rollout.clone())).await;
        let get = |key: &'static str| {
            let client = &client;
            async move {
                client
                    .get_bool_details(DEFAULT_FLAG_NAME, Some(&id(key)), None)
                    .await
                    .unwrap()
            }
        };
        let vip = get("vip").await;
        assert!(vip.value);
        assert_eq!(vip.reason, Some(EvaluationReason::TargetingMatch));
        assert_eq!(
            vip.flag_metadata.values.get("rule"),
            Some(&FlagMetadataValue::String("force_async".into()))
        );
        assert_eq!(vip.flag_metadata.values.get("bucket"), None);

        let blocked = get("blocked").await;
        assert!(!blocked.value);
        assert_eq!(blocked.reason, Some(EvaluationReason::TargetingMatch));

        rollout.set_kill_switch(true);
        for key in ["vip", "blocked", "anyone"] {
            let details = get(key).await;
            assert!(!details.value, "{key}");
            assert_eq!(details.reason, Some(EvaluationReason::Disabled), "{key}");
        }
    });
}

#[test]
fn zero_percent_is_a_split_not_disabled() {
    let rollout = rollout(percent(0));
    run(async {
        let client = client("zero", RolloutProvider::new(rollout.clone())).await;
        let details = client
            .get_bool_details(DEFAULT_FLAG_NAME, Some(&id("u-1")), None)
            .await
            .unwrap();
        assert!(!details.value);
        assert_eq!(details.reason, Some(EvaluationReason::Split));

        // The provider reads the config at every evaluation.
        rollout.set_percent(Percent::HUNDRED);
        let details = client
            .get_bool_details(DEFAULT_FLAG_NAME, Some(&id("u-1")), None)
            .await
            .unwrap();
        assert!(details.value);
        assert_eq!(details.reason, Some(EvaluationReason::Split));
    });
}

#[test]
fn a_missing_targeting_key_is_an_error_not_a_default() {
    let rollout = rollout(percent(100));
    run(async {
        let client = client("no-key", RolloutProvider::new(rollout)).await;
        for context in [
            None,
            Some(EvaluationContext::default()),
            Some(id("")),
            Some(EvaluationContext::default().with_custom_field("upload", "u-1")),
        ] {
            let err = client
                .get_bool_details(DEFAULT_FLAG_NAME, context.as_ref(), None)
                .await
                .unwrap_err();
            assert_eq!(
                err.code,
                EvaluationErrorCode::TargetingKeyMissing,
                "{context:?}"
            );
            assert!(err.message.unwrap().contains("targeting key"));
            let value = client
                .get_bool_value(DEFAULT_FLAG_NAME, context.as_ref(), None)
                .await;
            assert!(value.is_err(), "{context:?} gave {value:?}");
        }
    });
}

#[test]
fn an_unknown_flag_is_not_found_whatever_its_type() {
    let rollout = rollout(percent(100));
    run(async {
        let client = client("unknown", RolloutProvider::new(rollout)).await;
        let ctx = id("u-1");
        let codes = [
            client
                .get_bool_value("new-checkout", Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_int_value("new-checkout", Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_float_value("new-checkout", Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_string_value("new-checkout", Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_struct_value::<StructValue>("new-checkout", Some(&ctx), None)
                .await
                .map(drop),
        ];
        for result in codes {
            let err = result.unwrap_err();
            assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);
            let message = err.message.unwrap();
            assert!(message.contains("new-checkout"), "{message}");
            assert!(message.contains(DEFAULT_FLAG_NAME), "{message}");
        }
    });
}

#[test]
fn the_flag_asked_as_another_type_is_a_type_mismatch() {
    let rollout = rollout(percent(100));
    run(async {
        let client = client("mismatch", RolloutProvider::new(rollout)).await;
        let ctx = id("u-1");
        let results = [
            client
                .get_int_value(DEFAULT_FLAG_NAME, Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_float_value(DEFAULT_FLAG_NAME, Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_string_value(DEFAULT_FLAG_NAME, Some(&ctx), None)
                .await
                .map(drop),
            client
                .get_struct_value::<StructValue>(DEFAULT_FLAG_NAME, Some(&ctx), None)
                .await
                .map(drop),
        ];
        for result in results {
            assert_eq!(result.unwrap_err().code, EvaluationErrorCode::TypeMismatch);
        }
    });
}

#[test]
fn the_flag_name_is_configurable() {
    let rollout = rollout(percent(100));
    let provider = RolloutProvider::new(rollout).with_flag_name("uploads.async");
    assert_eq!(provider.flag_name(), "uploads.async");
    run(async {
        let client = client("renamed", provider).await;
        let ctx = id("u-1");
        assert_eq!(
            client
                .get_bool_value("uploads.async", Some(&ctx), None)
                .await,
            Ok(true)
        );
        let err = client
            .get_bool_value(DEFAULT_FLAG_NAME, Some(&ctx), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);
    });
}

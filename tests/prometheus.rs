//! The Prometheus / OpenMetrics exposition, checked line by line.

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::clock::ManualClock;
use async_upload_rollout::export::prometheus::{ControllerStatus, PrometheusExporter};
use async_upload_rollout::*;
use prometheus_client::registry::Registry;

fn setup(percent: u32) -> (Arc<Rollout>, Arc<MetricsAccumulator>, PrometheusExporter) {
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(percent).unwrap(),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let exporter = PrometheusExporter::new(rollout.clone(), metrics.clone());
    (rollout, metrics, exporter)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The value of the one sample line starting with `series ` (name and labels).
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    let mut found = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    let value = found.next();
    assert!(found.next().is_none(), "{series} appears twice");
    value
}

#[test]
fn counters_show_the_recorded_outcomes_exactly() {
    let (_, metrics, exporter) = setup(10);
    for _ in 0..3 {
        metrics.record(Arm::Async, Outcome::Success, ms(80));
    }
    metrics.record(Arm::Async, Outcome::Error, ms(900));
    metrics.record(Arm::Async, Outcome::Rejected, ms(2));
    metrics.record(Arm::Sync, Outcome::Success, ms(50));
    metrics.record(Arm::Sync, Outcome::Critical, ms(50));
    metrics.record_complaint(Arm::Sync);

    let text = exporter.encode();
    let expected = [
        r#"async_upload_rollout_uploads_total{arm="async",outcome="success"} 3"#,
        r#"async_upload_rollout_uploads_total{arm="async",outcome="error"} 1"#,
        r#"async_upload_rollout_uploads_total{arm="async",outcome="critical"} 0"#,
        r#"async_upload_rollout_uploads_total{arm="async",outcome="rejected"} 1"#,
        r#"async_upload_rollout_uploads_total{arm="sync",outcome="success"} 1"#,
        r#"async_upload_rollout_uploads_total{arm="sync",outcome="error"} 0"#,
        r#"async_upload_rollout_uploads_total{arm="sync",outcome="critical"} 1"#,
        r#"async_upload_rollout_uploads_total{arm="sync",outcome="rejected"} 0"#,
        r#"async_upload_rollout_decisions_total{arm="async"} 5"#,
        r#"async_upload_rollout_decisions_total{arm="sync"} 2"#,
        r#"async_upload_rollout_complaints_total{arm="async"} 0"#,
        r#"async_upload_rollout_complaints_total{arm="sync"} 1"#,
    ];
    for line in expected {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // The Prometheus 0.0.4 form has the same samples.
    let old = exporter.encode_prometheus_text();
    for line in expected {
        assert!(old.lines().any(|l| l == line), "missing {line}\n{old}");
    }
}

#[test]
fn latency_histogram_is_cumulative_with_exact_count_and_sum() {
    let (_, metrics, exporter) = setup(10);
    for latency in [ms(3), ms(80), ms(80), ms(2_000)] {
        metrics.record(Arm::Async, Outcome::Success, latency);
    }
    metrics.record(Arm::Async, Outcome::Error, ms(400_000)); // above every bound
    metrics.record(Arm::Async, Outcome::Rejected, ms(1)); // no latency recorded
    let text = exporter.encode();
    let name = "async_upload_rollout_upload_latency_seconds";

    assert_eq!(
        sample(&text, &format!(r#"{name}_count{{arm="async"}}"#)),
        Some("5")
    );
    assert_eq!(
        sample(&text, &format!(r#"{name}_sum{{arm="async"}}"#)),
        Some("402.163")
    );
    assert_eq!(
        sample(&text, &format!(r#"{name}_count{{arm="sync"}}"#)),
        Some("0")
    );

    let bounds = exporter.latency_bounds();
    assert_eq!(bounds.len(), 15);
    let mut previous = 0;
    let mut buckets = Vec::new();
    for bound in &bounds {
        let le = bound.as_secs_f64();
        let series = format!(r#"{name}_bucket{{le="{le}",arm="async"}}"#);
        let count: u64 = sample(&text, &series)
            .unwrap_or_else(|| panic!("missing {series}\n{text}"))
            .parse()
            .unwrap();
        assert!(count >= previous, "not cumulative at {le}");
        previous = count;
        buckets.push((*bound, count));
    }
    let inf = format!(r#"{name}_bucket{{le="+Inf",arm="async"}}"#);
    assert_eq!(sample(&text, &inf), Some("5"));

    // Each bucket holds exactly the latencies at or below its bound.
    let recorded = [ms(3), ms(80), ms(80), ms(2_000), ms(400_000)];
    for (bound, count) in buckets {
        let expected = recorded.iter().filter(|&&l| l <= bound).count() as u64;
        assert_eq!(count, expected, "le {bound:?}");
    }
    // Spot checks against the nominal bounds.
    assert_eq!(
        sample(
            &text,
            &format!(r#"{name}_bucket{{le="0.005013503",arm="async"}}"#)
        ),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{name}_bucket{{le="0.100139007",arm="async"}}"#)
        ),
        Some("3")
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{name}_bucket{{le="2.516582399",arm="async"}}"#)
        ),
        Some("4")
    );
}

#[test]
fn percent_and_kill_switch_gauges_follow_the_rollout() {
    let (rollout, _, exporter) = setup(10);
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("10.0")
    );

    rollout.set_percent(Percent::from_whole(50).unwrap());
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("50.0")
    );

    rollout.set_percent("0.5".parse().unwrap());
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("0.5")
    );

    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_kill_switch"),
        Some("0")
    );
    rollout.set_kill_switch(true);
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_kill_switch"),
        Some("1")
    );
    // Nothing is async under the kill switch: the percent in force is 0.
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("0.0")
    );
    rollout.set_kill_switch(false);
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("0.5")
    );
}

#[test]
fn stage_and_verdict_appear_only_with_a_status() {
    let (_, _, exporter) = setup(10);
    let text = exporter.encode();
    assert!(!text.contains("async_upload_rollout_stage"), "{text}");
    assert!(!text.contains("async_upload_rollout_verdict"), "{text}");

    exporter.set_status(ControllerStatus {
        stage: Some(2),
        verdict: Some(Verdict::ManualReview),
        ..ControllerStatus::default()
    });
    let text = exporter.encode();
    assert_eq!(sample(&text, "async_upload_rollout_stage"), Some("2"));
    for (verdict, value) in [
        ("advance", "0"),
        ("hold", "0"),
        ("manual_review", "1"),
        ("rollback", "0"),
    ] {
        let series = format!(r#"async_upload_rollout_verdict{{verdict="{verdict}"}}"#);
        assert_eq!(sample(&text, &series), Some(value), "{verdict}");
    }

    exporter.set_status(ControllerStatus {
        stage: Some(0),
        verdict: None,
        ..ControllerStatus::default()
    });
    let text = exporter.encode();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("async_upload_rollout_verdict{") && l.ends_with(" 0"))
            .count(),
        4,
        "no verdict yet: every verdict series is 0\n{text}"
    );

    exporter.clear_status();
    assert!(!exporter.encode().contains("async_upload_rollout_stage"));
}

#[test]
fn status_of_a_controller_reports_its_rollback() {
    let clock = ManualClock::default();
    let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
    let metrics = Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone())));
    let mut controller = RolloutController::builder(rollout.clone(), metrics.clone())
        .clock(Arc::new(clock.clone()))
        .start_stage(0)
        .build()
        .unwrap();
    let exporter = PrometheusExporter::new(rollout.clone(), metrics.clone());
    exporter.set_status(ControllerStatus::of(&controller.view()));
    assert_eq!(
        exporter.status(),
        Some(ControllerStatus {
            stage: Some(0),
            verdict: None,
            epoch: Some(1),
            status: Some(RolloutStatus::Running),
            state_error: false,
            config_error: false,
        })
    );
    assert_eq!(
        sample(&exporter.encode(), "async_upload_rollout_percent"),
        Some("1.0")
    );

    for _ in 0..100 {
        metrics.record(Arm::Async, Outcome::Error, ms(80));
    }
    clock.advance(Duration::from_secs(10));
    let _ = controller.tick();
    exporter.set_status(ControllerStatus::of(&controller.view()));
    let text = exporter.encode();
    assert_eq!(sample(&text, "async_upload_rollout_percent"), Some("0.0"));
    assert_eq!(sample(&text, "async_upload_rollout_halted"), Some("1"));
    assert_eq!(sample(&text, "async_upload_rollout_state_epoch"), Some("2"));
    assert_eq!(
        sample(
            &text,
            r#"async_upload_rollout_status{status="rolled_back"}"#
        ),
        Some("1")
    );
    assert_eq!(
        sample(&text, r#"async_upload_rollout_status{status="running"}"#),
        Some("0")
    );
    assert_eq!(sample(&text, "async_upload_rollout_state_error"), Some("0"));
    assert_eq!(
        sample(&text, r#"async_upload_rollout_verdict{verdict="rollback"}"#),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            r#"async_upload_rollout_uploads_total{arm="async",outcome="error"}"#
        ),
        Some("100")
    );
}

#[test]
fn names_and_units_follow_prometheus_conventions() {
    let (_, metrics, exporter) = setup(10);
    metrics.record(Arm::Async, Outcome::Success, ms(80));
    exporter.set_status(ControllerStatus {
        stage: Some(0),
        verdict: Some(Verdict::Hold),
        ..ControllerStatus::default()
    });
    let text = exporter.encode();
    assert!(text.ends_with("# EOF\n"));

    let valid_name = |name: &str| {
        name.starts_with("async_upload_rollout_")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut types = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.push((name.to_owned(), kind.to_owned()));
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(valid_name(name), "{line}");
        }
    }
    let expected = [
        ("async_upload_rollout_uploads", "counter"),
        ("async_upload_rollout_decisions", "counter"),
        ("async_upload_rollout_complaints", "counter"),
        ("async_upload_rollout_upload_latency_seconds", "histogram"),
        ("async_upload_rollout_percent", "gauge"),
        ("async_upload_rollout_kill_switch", "gauge"),
        ("async_upload_rollout_halted", "gauge"),
        ("async_upload_rollout_stage", "gauge"),
        ("async_upload_rollout_status", "gauge"),
        ("async_upload_rollout_state_error", "gauge"),
        ("async_upload_rollout_config_error", "gauge"),
        ("async_upload_rollout_verdict", "gauge"),
    ];
    let types: Vec<(&str, &str)> = types
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_str()))
        .collect();
    assert_eq!(types, expected);
    // OpenMetrics: counter samples carry `_total`, the histogram its unit.
    assert!(text.contains("# UNIT async_upload_rollout_upload_latency_seconds seconds\n"));
    for line in text
        .lines()
        .filter(|l| l.starts_with("async_upload_rollout_uploads"))
    {
        assert!(
            line.starts_with("async_upload_rollout_uploads_total{"),
            "{line}"
        );
    }

    // Prometheus 0.0.4: the counters' family names end in `_total`, no EOF.
    let old = exporter.encode_prometheus_text();
    assert!(old.contains("# TYPE async_upload_rollout_uploads_total counter\n"));
    assert!(old.contains("# TYPE async_upload_rollout_upload_latency_seconds histogram\n"));
    assert!(!old.contains("# EOF"));
}

#[test]
fn registering_into_an_application_registry_shares_the_status() {
    let (_, metrics, exporter) = setup(25);
    metrics.record(Arm::Sync, Outcome::Success, ms(10));
    let mut registry = Registry::default();
    exporter.register(&mut registry);
    exporter.set_status(ControllerStatus {
        stage: Some(1),
        verdict: Some(Verdict::Advance),
        ..ControllerStatus::default()
    });
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert_eq!(sample(&text, "async_upload_rollout_percent"), Some("25.0"));
    assert_eq!(sample(&text, "async_upload_rollout_stage"), Some("1"));
    assert_eq!(
        sample(
            &text,
            r#"async_upload_rollout_uploads_total{arm="sync",outcome="success"}"#
        ),
        Some("1")
    );
}

#[test]
fn custom_latency_bounds_are_rounded_up_to_layout_edges() {
    let (_, _, exporter) = setup(10);
    let exporter = exporter.with_latency_bounds([ms(1_000), ms(100)]);
    let bounds = exporter.latency_bounds();
    assert_eq!(bounds.len(), 2);
    assert!(bounds[0] >= ms(100) && bounds[0] <= ms(100) + ms(100) / 64);
    assert!(bounds[1] >= ms(1_000) && bounds[1] <= ms(1_000) + ms(1_000) / 64);
}

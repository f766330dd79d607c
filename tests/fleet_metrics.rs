//! Fleet-wide metrics: three replicas' per-run series scraped by a real
//! Prometheus on loopback, added up by `PrometheusSource`, equal to the
//! merge of the same replicas' totals, and judged to the same verdict as
//! the command line's merge of their JSON-lines logs.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_upload_rollout::cli::{Fleet, InstanceLog};
use async_upload_rollout::export::prometheus::PrometheusExporter;
use async_upload_rollout::fleet::PrometheusSource;
use async_upload_rollout::*;
use async_upload_rollout::{
    act::log::{LogEvent, LogRecord},
    act::{ChangedBy, MetricsSource, RunView},
};
use support::servers::{Prometheus, serve_metrics, wait_until};

struct Replica {
    metrics: Arc<MetricsAccumulator>,
    run: RunView,
}

impl Replica {
    /// A replica that joined the run after recording some earlier traffic
    /// (which must not count).
    fn new(epoch: u64) -> Replica {
        let metrics = Arc::new(MetricsAccumulator::new());
        metrics.record(Arm::Async, Outcome::Error, Duration::from_millis(5));
        let run = RunView::new(epoch, metrics.snapshot(), None);
        Replica { metrics, run }
    }

    fn totals(&self) -> MetricsSnapshot {
        self.run.totals(&self.metrics.snapshot())
    }
}

#[test]
fn the_fleets_totals_from_prometheus_equal_the_merge_and_judge_the_same() {
    let name = "fleet-test";
    let epoch = 7;
    let started = SystemTime::now();
    let state = RolloutState {
        epoch,
        run_epoch: epoch,
        ..RolloutState::running(1, started, ChangedBy::Controller, "run")
    };
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::new(epoch)).collect();
    // Different traffic on each: 3% to 12% async errors, varied latency,
    // complaints, rejections; the sync path healthy.
    for (i, replica) in replicas.iter().enumerate() {
        let m = &replica.metrics;
        for n in 0..400u64 {
            let latency = Duration::from_micros(80_000 + (n * 997 + i as u64 * 13_001) % 150_000);
            let outcome = if n % (33 - 8 * i as u64) == 0 {
                Outcome::Error
            } else if n % 97 == 0 {
                Outcome::Rejected
            } else {
                Outcome::Success
            };
            m.record(Arm::Async, outcome, latency);
            m.record(Arm::Sync, Outcome::Success, latency.mul_f64(0.97));
        }
        for _ in 0..(i + 1) {
            m.record_complaint(Arm::Async);
        }
        m.record(
            Arm::Async,
            Outcome::Critical,
            Duration::from_millis(900 + i as u64),
        );
    }
    let targets: Vec<SocketAddr> = replicas
        .iter()
        .map(|r| {
            let exporter = PrometheusExporter::new(
                Arc::new(Rollout::new(RolloutConfig::default())),
                Arc::clone(&r.metrics),
            )
            .with_rollout_name(name);
            exporter.set_run(Some(r.run.clone()));
            serve_metrics(move || exporter.encode_prometheus_text())
        })
        .collect();
    let prometheus = Prometheus::start(&targets, Duration::from_secs(1));

    let expected = replicas
        .iter()
        .map(Replica::totals)
        .reduce(|a, b| a.merge(&b))
        .unwrap();
    let mut source = PrometheusSource::new(&prometheus.url, name);
    let mut totals = None;
    wait_until(
        "Prometheus to scrape all three",
        Duration::from_secs(60),
        || match source.run_totals(&state, SystemTime::now()) {
            Ok(t) if t.uploads(Arm::Async) == expected.uploads(Arm::Async) => {
                totals = Some(t);
                true
            }
            _ => false,
        },
    );
    let totals = totals.unwrap();
    for arm in Arm::ALL {
        assert_eq!(totals.arm(arm), expected.arm(arm), "{}", arm.as_str());
    }
    // Another rollout's or another run's series are not counted.
    let other_run = RolloutState {
        run_epoch: 6,
        ..state.clone()
    };
    assert_eq!(
        source
            .run_totals(&other_run, SystemTime::now())
            .unwrap()
            .uploads(Arm::Async),
        0
    );
    let mut other = PrometheusSource::new(&prometheus.url, "someone-else");
    assert_eq!(
        other
            .run_totals(&state, SystemTime::now())
            .unwrap()
            .uploads(Arm::Async),
        0
    );

    // The verdict from Prometheus equals the one from merging the replicas'
    // logs (each replica's tick line with its run totals).
    let plan = RolloutPlan::default();
    let evaluator = Evaluator::new(plan.clone()).unwrap();
    let mut history = History::default();
    history.push(totals.clone());
    let from_prometheus = evaluator
        .evaluate(1, &totals, &history, SystemTime::now())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let instances: Vec<InstanceLog> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = dir.path().join(format!("replica-{i}.jsonl"));
            let mut sink = JsonlSink::open(&path).unwrap();
            let mut line = LogRecord::new(LogEvent::Tick, totals.at_unix_ms);
            let mut snapshot = r.totals();
            snapshot.at_unix_ms = totals.at_unix_ms;
            line.snapshot = Some(snapshot);
            line.stage = Some(1);
            line.state = Some(state.clone());
            sink.append(&line).unwrap();
            InstanceLog::read(&path, &mut |_, _| {}).unwrap()
        })
        .collect();
    let from_logs = Fleet::new(instances)
        .unwrap()
        .check(&plan, Some(1))
        .unwrap();
    assert_eq!(from_logs.totals.arm(Arm::Async), totals.arm(Arm::Async));
    assert_eq!(from_prometheus.verdict, from_logs.evaluation.verdict);
    assert_eq!(
        from_prometheus.verdict,
        Verdict::Rollback,
        "{}",
        from_prometheus.reason
    );
    assert_eq!(from_prometheus.reason, from_logs.evaluation.reason);
}

#[test]
fn no_data_is_not_enough_data_and_a_dead_prometheus_is_an_error() {
    let prometheus = Prometheus::start(&[], Duration::from_secs(1));
    let state = RolloutState::running(1, SystemTime::now(), ChangedBy::Config, "run");
    let mut source = PrometheusSource::new(&prometheus.url, "empty");
    let totals = source.run_totals(&state, SystemTime::now()).unwrap();
    assert_eq!(totals.uploads(Arm::Async), 0);
    let evaluation = Evaluator::new(RolloutPlan::default())
        .unwrap()
        .evaluate(1, &totals, &History::default(), SystemTime::now())
        .unwrap();
    assert_eq!(evaluation.verdict, Verdict::Hold, "{}", evaluation.reason);

    let url = prometheus.url.clone();
    drop(prometheus);
    let mut dead = PrometheusSource::new(&url, "empty");
    let err = dead.run_totals(&state, SystemTime::now()).unwrap_err();
    assert!(err.contains(&url), "{err}");
}

//! Fleet mode's timings on loopback, with real etcd and Prometheus:
//!
//! 1. a rollback written to etcd → the last of 3, and of 12, replicas
//!    acknowledges it (median and p99 over 25 trials): a replica applies a
//!    change when its store's watch learns of it, then acknowledges it;
//! 2. the first bad upload on one replica → the whole fleet at 0%, with a
//!    1 s scrape and a 5 s tick;
//! 3. leader fail-over: the leading controller killed with SIGKILL → the
//!    other leads (lease TTL 5 s, the default, and 2 s);
//! 4. the controller's tick cost (the Prometheus queries that build the
//!    fleet's totals, and the evaluation) with 3 and with 30 replicas'
//!    series.
//!
//! `cargo bench --workspace --all-features --bench fleet` (needs `etcd`
//! and `prometheus` installed: `apt-get install etcd-server prometheus`).
//! The replicas are the `upload_server` binary; the controllers, the
//! library's `async-upload-rollout` built beside it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_upload_rollout::act::{ChangedBy, MetricsSource, Operation, RunView};
use async_upload_rollout::export::prometheus::PrometheusExporter;
use async_upload_rollout::fleet::{EtcdStateStore, PrometheusSource};
use async_upload_rollout::*;
use test_support::process::{ServerProcess, built_beside, status_of};
use test_support::servers::{Etcd, Prometheus, cpu_name, serve_metrics, wait_until};

const NAME: &str = "bench";
const WITHIN: Duration = Duration::from_secs(120);

/// The upload server binary, built by cargo for this bench.
const SERVER: &str = env!("CARGO_BIN_EXE_upload_server");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    println!(
        "fleet bench on {} ({} CPUs), etcd and Prometheus on loopback\n",
        cpu_name(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // `cargo bench ... --bench fleet -- ack` runs only the parts whose
    // name holds `ack` (ack, failover, bad_upload, tick).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |part: &str| only.as_deref().is_none_or(|only| part.contains(only));
    if run("ack") {
        ack_latency(3);
        ack_latency(12);
    }
    if run("failover") {
        failover(5);
        failover(2);
    }
    if run("bad_upload") {
        bad_upload_to_fleet_rollback();
    }
    if run("tick") {
        tick_cost(3);
        tick_cost(30);
    }
}

fn replicas(
    etcd: &Etcd,
    dirs: &[tempfile::TempDir],
    tick: &str,
    extra: &[&[&str]],
) -> Vec<ServerProcess> {
    dirs.iter()
        .enumerate()
        .map(|(i, dir)| {
            let id = format!("r{i}");
            let mut flags = vec![
                "--etcd",
                &etcd.url,
                "--name",
                NAME,
                "--replica",
                &id,
                "--tick",
                tick,
            ];
            flags.extend_from_slice(extra.get(i).copied().unwrap_or(&[]));
            ServerProcess::start(SERVER, dir.path(), None, &flags)
        })
        .collect()
}

fn controller(etcd: &Etcd, prometheus: &str, id: &str, ttl: u64, tick: &str, start: &str) -> Child {
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(built_beside(SERVER, "async-upload-rollout", &library))
        .args([
            "controller",
            "--etcd",
            &etcd.url,
            "--prometheus",
            prometheus,
            "--name",
            NAME,
            "--tick",
            tick,
            "--lease-ttl",
            &ttl.to_string(),
            "--id",
            id,
        ])
        .env("ASYNC_UPLOAD_ROLLOUT", start)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the CLI binary (feature cli) runs")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ack_latency(count: usize) {
    let etcd = Etcd::start();
    let dirs: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let fleet = replicas(&etcd, &dirs, "1s", &[]);
    let operator = EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "bench").unwrap();
    let plan = RolloutPlan::default();
    let first = RolloutState::running(1, SystemTime::now(), ChangedBy::Operator, "bench");
    operator.compare_and_swap(None, &first).unwrap();
    let all_acked = |epoch: u64| {
        let acks = operator
            .acknowledgements()
            .ok()
            .flatten()
            .unwrap_or_default();
        acks.len() == count && acks.iter().all(|ack| ack.applied.epoch == epoch)
    };
    wait_until("the first acks", WITHIN, || all_acked(1));
    let mut times = Vec::new();
    for trial in 0..25 {
        for operation in [Operation::Rollback, Operation::Resume] {
            let stored = operator.load().unwrap().unwrap();
            let next = stored
                .state
                .apply(
                    operation,
                    &plan,
                    SystemTime::now(),
                    ChangedBy::Operator,
                    "bench",
                )
                .unwrap()
                .unwrap();
            let written = Instant::now();
            operator
                .compare_and_swap(Some(stored.revision), &next)
                .unwrap();
            // Checked every millisecond (the observer reads its own watch
            // cache): the figure is the replicas', not this loop's.
            while !all_acked(next.epoch) {
                assert!(written.elapsed() < WITHIN, "the acks of {}", next.epoch);
                std::thread::sleep(Duration::from_millis(1));
            }
            if operation == Operation::Rollback {
                times.push(written.elapsed());
            }
        }
        let _ = trial;
    }
    times.sort();
    println!(
        "rollback written -> last of {count} replicas acknowledged: median {:.0?}, p99 {:.0?}, max {:.0?} ({} trials)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap(),
        times.len()
    );
    drop(fleet);
}

fn failover(ttl: u64) {
    let etcd = Etcd::start();
    let prometheus = Prometheus::start(&[], Duration::from_secs(1));
    let observer = EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "bench").unwrap();
    let mut times = Vec::new();
    let mut controllers: Vec<(String, Child)> = ["c0", "c1"]
        .iter()
        .map(|id| {
            (
                (*id).to_owned(),
                controller(&etcd, &prometheus.url, id, ttl, "5s", "10"),
            )
        })
        .collect();
    for trial in 0..5 {
        wait_until("a leader", WITHIN, || {
            observer.leader().ok().flatten().is_some()
        });
        let leader = observer.leader().unwrap().unwrap();
        let at = controllers
            .iter()
            .position(|(id, _)| *id == leader)
            .unwrap();
        let (id, mut child) = controllers.remove(at);
        let killed = Instant::now();
        let _ = child.kill();
        let _ = child.wait();
        let survivor = controllers[0].0.clone();
        wait_until("the other to lead", WITHIN, || {
            observer.leader().ok().flatten().as_deref() == Some(survivor.as_str())
        });
        times.push(killed.elapsed());
        // Start the dead one again, as a follower now.
        let id = format!("{id}-{trial}");
        controllers.push((
            id.clone(),
            controller(&etcd, &prometheus.url, &id, ttl, "5s", "10"),
        ));
    }
    for (_, mut child) in controllers {
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    println!(
        "leader fail-over (SIGKILL -> the other leads), lease TTL {ttl} s: median {:.2?}, max {:.2?} ({} trials)",
        percentile(&times, 0.5),
        times.last().unwrap(),
        times.len()
    );
}

fn bad_upload_to_fleet_rollback() {
    let etcd = Etcd::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let fleet = replicas(
        &etcd,
        &dirs,
        "5s",
        &[&[], &["--inject-async-error-rate", "0.5"], &[]],
    );
    let targets: Vec<SocketAddr> = fleet.iter().map(|r| r.addr).collect();
    let prometheus = Prometheus::start(&targets, Duration::from_secs(1));
    let mut leader = controller(&etcd, &prometheus.url, "c0", 5, "5s", "50");
    wait_until("the 50% stage everywhere", WITHIN, || {
        fleet.iter().all(|r| r.get_rollout()["percent"] == 50.0)
    });
    let first_bad = Instant::now();
    let mut sent = 0;
    while !fleet
        .iter()
        .all(|r| status_of(&r.get_rollout()) == "rolled_back")
    {
        let ids: Vec<String> = (sent..sent + 20).map(|i| format!("bad-{i}")).collect();
        fleet[1].upload(&ids);
        sent += 20;
        assert!(first_bad.elapsed() < WITHIN, "never rolled back");
    }
    let took = first_bad.elapsed();
    let reason = EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "bench")
        .unwrap()
        .load()
        .unwrap()
        .unwrap()
        .state;
    println!(
        "first bad upload on one replica -> fleet-wide 0% (1 s scrape, 5 s tick, 50% async errors on that replica): {took:.2?} after {sent} uploads to it ({}: {})",
        reason.changed_by, reason.reason
    );
    let _ = leader.kill();
    let _ = leader.wait();
}

fn tick_cost(replicas: usize) {
    let epoch = 3;
    let state = RolloutState {
        epoch,
        run_epoch: epoch,
        ..RolloutState::running(1, SystemTime::now(), ChangedBy::Controller, "bench")
    };
    let mut buckets = 0;
    let targets: Vec<SocketAddr> = (0..replicas)
        .map(|r| {
            let metrics = Arc::new(MetricsAccumulator::new());
            // A day of a busy replica's latencies: log-normal around 180 ms.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ r as u64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                #[allow(clippy::cast_precision_loss)]
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                let latency = Duration::from_secs_f64(0.18 * (2.0 * (u - 0.5)).exp());
                let arm = if x.is_multiple_of(10) {
                    Arm::Async
                } else {
                    Arm::Sync
                };
                metrics.record(arm, Outcome::Success, latency);
            }
            buckets = metrics.snapshot().arm(Arm::Sync).latency.buckets().len();
            let exporter = PrometheusExporter::new(
                Arc::new(Rollout::new(RolloutConfig::default())),
                Arc::clone(&metrics),
            )
            .with_rollout_name(NAME);
            exporter.set_run(Some(RunView::new(epoch, MetricsSnapshot::default(), None)));
            serve_metrics(move || exporter.encode_prometheus_text())
        })
        .collect();
    let prometheus = Prometheus::start(&targets, Duration::from_secs(1));
    let mut source = PrometheusSource::new(&prometheus.url, NAME);
    wait_until("every replica scraped", WITHIN, || {
        source
            .run_totals(&state, SystemTime::now())
            .is_ok_and(|t| t.uploads(Arm::Async) + t.uploads(Arm::Sync) == 20_000 * replicas as u64)
    });
    let evaluator = Evaluator::new(RolloutPlan::default()).unwrap();
    let (mut queries, mut evaluations) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let started = Instant::now();
        let totals = source.run_totals(&state, SystemTime::now()).unwrap();
        queries.push(started.elapsed());
        let started = Instant::now();
        let mut history = History::default();
        history.push(totals.clone());
        let _ = evaluator.evaluate(1, &totals, &history, SystemTime::now());
        evaluations.push(started.elapsed());
    }
    queries.sort();
    evaluations.sort();
    println!(
        "controller tick with {replicas} replicas' series (~{buckets} latency buckets per arm each): Prometheus queries median {:.1?} (max {:.1?}), evaluation median {:.2?}",
        percentile(&queries, 0.5),
        queries.last().unwrap(),
        percentile(&evaluations, 0.5)
    );
}

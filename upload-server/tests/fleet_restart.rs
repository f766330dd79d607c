//! A replica's share of the run survives its restart.
//!
//! Two upload server replicas (the binary) on fixed loopback ports, a real etcd holding the
//! 50% stage, and a real Prometheus scraping both every half second. After
//! each replica's uploads are scraped, both are killed with SIGKILL and
//! started again on the same ports: one without its log (a new machine, a
//! wiped disk), one with it (it recovers its run totals for its own
//! judgement). Meanwhile the fleet's totals, as the leading controller
//! reads them (`PrometheusSource`), are sampled every 100 ms: they never go
//! down, and once the restarted replicas' new uploads are scraped they equal
//! every upload made, on each path, exactly: nothing lost, nothing counted
//! twice. Prometheus then holds each restarted replica's run under two
//! `process` labels, its earlier process's and its new one's.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_upload_rollout::fleet::{EtcdStateStore, PrometheusSource};
use async_upload_rollout::{
    Arm, RolloutState, StateStore,
    act::{ChangedBy, MetricsSource},
};
use support::servers::{Etcd, Prometheus, free_port, wait_until};
use support::{ServerProcess, ids};

const NAME: &str = "restart-test";
const WITHIN: Duration = Duration::from_secs(30);

/// A replica on a fixed port, its log in `dir`.
fn replica(etcd: &Etcd, id: &str, port: u16, dir: &Path) -> ServerProcess {
    let addr = format!("127.0.0.1:{port}");
    support::fleet::replica(
        dir,
        &etcd.url,
        NAME,
        id,
        &[
            "--addr",
            &addr,
            "--tick",
            "100ms",
            // Every tick logged: the replica restarted with its log has
            // its run's totals to recover.
            "--log-interval",
            "0s",
        ],
    )
}

/// The fleet's `[async, sync]` uploads, read this long after sampling began.
type Sample = (Duration, [u64; 2]);

/// Uploads `ids` to `replica`: `[async, sync]` counts.
fn upload(replica: &ServerProcess, ids: &[String]) -> [u64; 2] {
    let async_count = replica.upload(ids) as u64;
    [async_count, ids.len() as u64 - async_count]
}

fn add(total: &mut [u64; 2], more: [u64; 2]) {
    total[0] += more[0];
    total[1] += more[1];
}

/// The fleet's uploads of the run on each path, as the leader reads them.
fn fleet_totals(source: &mut PrometheusSource, state: &RolloutState) -> Option<[u64; 2]> {
    let totals = source.run_totals(state, SystemTime::now()).ok()?;
    Some([totals.uploads(Arm::Async), totals.uploads(Arm::Sync)])
}

/// Waits until the fleet's totals are `expected`; the panic names the last
/// totals read.
fn wait_for_totals(
    what: &str,
    source: &mut PrometheusSource,
    state: &RolloutState,
    expected: [u64; 2],
) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let last = fleet_totals(source, state);
        if last == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the fleet's [async, sync] uploads are {last:?} after {WITHIN:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Distinct `process` labels of the run's series, per scraped target.
fn processes(prometheus: &Prometheus) -> Vec<(String, String)> {
    let query = format!(
        "count by (instance, process) (last_over_time(async_upload_rollout_run_uploads_total{{rollout=\"{NAME}\"}}[10m]))"
    );
    let mut response = ureq::get(&format!("{}/api/v1/query", prometheus.url))
        .query("query", &query)
        .call()
        .unwrap();
    let body: serde_json::Value = response.body_mut().read_json().unwrap();
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    for series in body["data"]["result"].as_array().unwrap() {
        let label = |name: &str| series["metric"][name].as_str().unwrap_or("").to_owned();
        found.insert((label("instance"), label("process")));
    }
    found.into_iter().collect()
}

#[test]
fn the_fleets_totals_never_go_down_across_replica_restarts_and_are_exact_afterwards() {
    let etcd = Etcd::start();
    let observer =
        EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "observer").unwrap();
    // The 50% stage: both paths carry traffic.
    let state = RolloutState::running(2, SystemTime::now(), ChangedBy::Operator, "restart test");
    observer.compare_and_swap(None, &state).unwrap();
    let state = observer.load().unwrap().unwrap().state;

    let ports = [free_port(), free_port()];
    let (wiped, kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = [wiped.path(), kept.path()];
    let mut replicas: Vec<ServerProcess> = (0..2)
        .map(|i| replica(&etcd, &format!("r{i}"), ports[i], dirs[i]))
        .collect();
    let targets: Vec<_> = replicas.iter().map(|r| r.addr).collect();
    let prometheus = Prometheus::start(&targets, Duration::from_millis(500));
    wait_until("both replicas at 50%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 50.0)
    });

    // The first processes' uploads, scraped.
    let mut expected = [0u64; 2];
    add(&mut expected, upload(&replicas[0], &ids("first-r0", 40)));
    let r1_first = upload(&replicas[1], &ids("first-r1", 40));
    add(&mut expected, r1_first);
    assert!(expected[0] > 0 && expected[1] > 0, "{expected:?}");
    let mut source = PrometheusSource::new(&prometheus.url, NAME);
    wait_for_totals("the first uploads", &mut source, &state, expected);
    // The replica that keeps its log logs its run's totals every tick
    // (100 ms): ten ticks.
    std::thread::sleep(Duration::from_secs(1));
    let log = kept.path().join("metrics.jsonl");

    // Sample the fleet's totals from now on.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
        let (url, state) = (prometheus.url.clone(), state.clone());
        std::thread::spawn(move || {
            let mut source = PrometheusSource::new(&url, NAME);
            let started = Instant::now();
            while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120) {
                if let Some(totals) = fleet_totals(&mut source, &state) {
                    samples.lock().unwrap().push((started.elapsed(), totals));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Both die (SIGKILL) and start again on the same ports: r0 without its
    // log, r1 with it.
    for replica in replicas.drain(..) {
        replica.kill();
    }
    std::thread::sleep(Duration::from_secs(1)); // a scrape or two of nothing
    let fresh = tempfile::tempdir().unwrap();
    replicas.push(replica(&etcd, "r0", ports[0], fresh.path()));
    replicas.push(replica(&etcd, "r1", ports[1], kept.path()));
    wait_until("both replicas back at 50%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 50.0)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let recovered = format!(
        "{} async and {} sync uploads judged before the restart",
        r1_first[0], r1_first[1]
    );
    assert!(
        text.contains(&recovered),
        "r1 recovers its run's totals from its log ({recovered}):\n{text}"
    );

    // The new processes' uploads.
    add(&mut expected, upload(&replicas[0], &ids("second-r0", 30)));
    add(&mut expected, upload(&replicas[1], &ids("second-r1", 20)));
    wait_for_totals(
        "every upload, after the restarts",
        &mut source,
        &state,
        expected,
    );
    std::thread::sleep(Duration::from_secs(1)); // a few samples at the end
    stop.store(true, Ordering::Release);
    sampler.join().unwrap();

    let samples = samples.lock().unwrap().clone();
    assert!(samples.len() >= 20, "{} samples", samples.len());
    for pair in samples.windows(2) {
        let ((at, before), (_, after)) = (pair[0], pair[1]);
        assert!(
            after[0] >= before[0] && after[1] >= before[1],
            "the fleet's totals went down at {at:?}: {before:?} -> {after:?}"
        );
    }
    assert_eq!(samples.last().unwrap().1, expected, "exact afterwards");
    assert_eq!(
        fleet_totals(&mut source, &state),
        Some(expected),
        "async and sync uploads of both processes of both replicas"
    );

    // Each replica's run under two processes: the dead one's series stay.
    let found = processes(&prometheus);
    for addr in &targets {
        let of_target: Vec<_> = found
            .iter()
            .filter(|(i, _)| *i == addr.to_string())
            .collect();
        assert_eq!(of_target.len(), 2, "{addr}: {found:?}");
    }
}

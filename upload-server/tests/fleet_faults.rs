//! Fleet mode under faults, over real processes: upload-server replicas
//! (this test binary started again as the upload_server example), two
//! controllers (the command line's `controller`), and a real etcd that the
//! tests kill and start again, stop and continue (SIGSTOP, SIGCONT), or cut
//! off from one replica with a proxy that goes silent.
//!
//! Each fault is timed against its goal, asserted with a margin a loaded
//! 2-core machine meets ([`MARGIN`]), and printed (`FAULT ...` lines, with
//! `--nocapture`):
//!
//! | fault | goal |
//! | --- | --- |
//! | etcd killed (connections refused) | every replica closed within `stale_after` + 1 s |
//! | etcd stopped (nothing answers) | the same |
//! | one replica's connection silent | that replica closed within `stale_after` + 1 s, the others serve on |
//! | etcd answers again | every replica open again within 1 s; every acknowledgement back within 2 s; one leader within the lease TTL |
//! | an outage | each controller's error lines: one per kind per 30 s |
//! | the leader stopped past its lease | the other leads within the TTL; the old one never writes again |
//! | garbage, then deletion, of the state key | the last known state written again above every epoch seen: a rollback is never forgotten, the epoch never goes back; a fleet that had a state is started again only by an operator's `--create` |
//! | garbage in the config key | the last good config stays, every replica says so |
//!
//! The default run uses 3 replicas, `stale_after` 3 s, a lease of 2 s and
//! outages of 6 s (longer than both). `cargo test --all-features --test
//! fleet_faults -- --ignored --nocapture` runs the full suite: 6 replicas,
//! the defaults (`stale_after` 30 s, a lease of 5 s) and outages of 60 s.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_upload_rollout::fleet::{EtcdStateStore, key_prefix};
use async_upload_rollout::{RolloutStatus, StateStore};
use support::fleet::{Controller, operator, replica};
use support::servers::{Etcd, Proxy, signal, wait_until};
use support::{ServerProcess, run_cli, status_of};

const NAME: &str = "faults";
/// Bounds every wait (a failure, not a timing).
const WITHIN: Duration = Duration::from_secs(90);
/// What a timing may exceed its goal by on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);
/// How long a condition must keep holding to count as met (see
/// [`settled`]).
const WINDOW: Duration = Duration::from_secs(2);
/// A Prometheus that is not there (the controllers judge nothing: these
/// tests are about the state, not the metrics).
const NO_PROMETHEUS: &str = "http://127.0.0.1:9";

/// One fault at a time: the timings are about the fault, not about the
/// other tests' processes.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fleet's timings.
#[derive(Clone, Copy, Debug)]
struct Plan {
    replicas: usize,
    stale_after: Duration,
    lease_ttl: u64,
    outage: Duration,
}

/// The default run's: short, every outage longer than `stale_after` and
/// the lease.
const SHORT: Plan = Plan {
    replicas: 3,
    stale_after: Duration::from_secs(3),
    lease_ttl: 2,
    outage: Duration::from_secs(6),
};

/// The full suite's: the defaults, and outages of a minute.
const FULL: Plan = Plan {
    replicas: 6,
    stale_after: Duration::from_secs(30),
    lease_ttl: 5,
    outage: Duration::from_secs(60),
};

/// A controller of this fleet with `plan`'s lease, judging nothing (no
/// Prometheus).
fn controller(etcd: &str, id: &str, plan: &Plan) -> Controller {
    Controller::start(etcd, NO_PROMETHEUS, NAME, id, plan.lease_ttl)
}

/// Whether `controller`'s last leadership line since `since` (leading,
/// lost, following) says it leads.
fn leads_since(controller: &Controller, since: Instant) -> bool {
    controller
        .lines_since(since)
        .iter()
        .rfind(|line| {
            line.ends_with(": leading")
                || line.contains("lost the leadership")
                || line.contains(": following")
        })
        .is_some_and(|line| line.ends_with(": leading"))
}

/// etcd, replicas (the last one through a proxy), two controllers, and an
/// observer's store.
struct Fleet {
    etcd: Etcd,
    proxy: Proxy,
    _dirs: Vec<tempfile::TempDir>,
    replicas: Vec<ServerProcess>,
    controllers: Vec<Controller>,
    observer: EtcdStateStore,
}

impl Fleet {
    /// Starts everything and waits until every replica serves the 10%
    /// stage the leader wrote, and acknowledged it.
    fn start(plan: Plan) -> Fleet {
        let etcd = Etcd::start();
        let proxy = Proxy::start(etcd.addr);
        let dirs: Vec<_> = (0..plan.replicas)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let stale_after = humantime::format_duration(plan.stale_after).to_string();
        let replicas = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let url = if i + 1 == plan.replicas {
                    proxy.url()
                } else {
                    etcd.url.clone()
                };
                let id = format!("r{i}");
                replica(
                    dir.path(),
                    &url,
                    NAME,
                    &id,
                    &["--stale-after", &stale_after],
                )
            })
            .collect();
        let controllers = ["c0", "c1"]
            .iter()
            .map(|id| controller(&etcd.url, id, &plan))
            .collect();
        let observer =
            EtcdStateStore::connect(std::slice::from_ref(&etcd.url), NAME, "observer").unwrap();
        let fleet = Fleet {
            etcd,
            proxy,
            _dirs: dirs,
            replicas,
            controllers,
            observer,
        };
        fleet.wait_all("every replica at 10%", |r| r["percent"] == 10.0);
        let epoch = fleet.epoch();
        wait_until("every replica's ack", WITHIN, || fleet.all_acked(epoch));
        fleet
    }

    /// The stored state's epoch.
    fn epoch(&self) -> u64 {
        let mut epoch = 0;
        wait_until("the state to be read", WITHIN, || {
            match self.observer.load() {
                Ok(Some(stored)) => {
                    epoch = stored.state.epoch;
                    true
                }
                _ => false,
            }
        });
        epoch
    }

    /// Waits until every replica's `GET /rollout` satisfies `done`.
    fn wait_all(&self, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> Duration {
        self.wait_some(what, &self.replicas.iter().collect::<Vec<_>>(), done)
    }

    fn wait_some(
        &self,
        what: &str,
        replicas: &[&ServerProcess],
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        wait_until(what, WITHIN, || {
            replicas.iter().all(|r| done(&r.get_rollout()))
        })
    }

    /// Whether every replica's acknowledgement is stored, live, at `epoch`.
    fn all_acked(&self, epoch: u64) -> bool {
        self.observer.acknowledgements().is_ok_and(|acks| {
            let acks = acks.unwrap_or_default();
            acks.len() == self.replicas.len()
                && acks.iter().all(|ack| {
                    ack.applied.epoch == epoch && ack.is_live(std::time::SystemTime::now())
                })
        })
    }

    /// Whether a controller that said it leads since `from` holds the
    /// leader key.
    fn leads(&self, from: Instant) -> bool {
        let Ok(Some(leader)) = self.observer.leader() else {
            return false;
        };
        self.controllers
            .iter()
            .any(|c| c.id == leader && leads_since(c, from))
    }

    /// Asserts that no controller ever said it follows itself or named a
    /// key twice in a line, and that each printed at most one line per
    /// failure kind per 30 s since `since`.
    fn assert_quiet_and_true(&self, since: Instant) {
        let allowed = 1 + usize::try_from(since.elapsed().as_secs() / 30).unwrap();
        for c in &self.controllers {
            let text = c.text();
            for line in c.said_since(since, "") {
                eprintln!("FAULT-LOG {}: {line}", c.id);
            }
            assert!(
                !text.contains(&format!("following {}\n", c.id))
                    && !text.ends_with(&format!("following {}", c.id)),
                "{} follows itself:\n{text}",
                c.id
            );
            // Failure lines (`cannot <what>: ...`), counted by what failed.
            let mut kinds = std::collections::BTreeMap::<String, usize>::new();
            for line in c.said_since(since, "cannot ") {
                let what = line[line.find("cannot ").unwrap()..]
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned();
                *kinds.entry(what).or_default() += 1;
            }
            assert!(
                kinds.values().all(|n| *n <= allowed),
                "{}: failure lines {kinds:?} in {:?} (at most {allowed} of each):\n{text}",
                c.id,
                since.elapsed()
            );
            // No key named twice in a line.
            let prefix = key_prefix(NAME);
            for line in text.lines() {
                let mut keys: Vec<&str> = line
                    .match_indices(prefix.as_str())
                    .map(|(at, _)| line[at..].split([' ', ':', ',']).next().unwrap())
                    .collect();
                let named = keys.len();
                keys.sort_unstable();
                keys.dedup();
                assert_eq!(keys.len(), named, "a key repeated: {line}");
            }
        }
    }
}

/// For each condition, the time from `from` until it held and then kept
/// holding for [`WINDOW`] (all checked every 20 ms): one that holds for an
/// instant and then not (an acknowledgement etcd deletes with its expired
/// lease a moment after it answers again) is not counted as met.
fn settle<const N: usize>(from: Instant, mut done: [&mut dyn FnMut() -> bool; N]) -> [Duration; N] {
    let mut since: [Option<Duration>; N] = [None; N];
    loop {
        for (i, done) in done.iter_mut().enumerate() {
            match (done(), since[i]) {
                (true, None) => since[i] = Some(from.elapsed()),
                (false, Some(_)) => since[i] = None,
                _ => {}
            }
        }
        if since
            .iter()
            .all(|at| at.is_some_and(|at| from.elapsed() >= at + WINDOW))
        {
            return since.map(Option::unwrap_or_default);
        }
        assert!(
            from.elapsed() < WITHIN,
            "timed out after {WITHIN:?}: conditions met since {since:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints one measured figure beside its goal (the fault table of `docs/fleet.md`).
fn figure(fault: &str, what: &str, measured: Duration, goal: &str) {
    eprintln!("FAULT {fault}: {what}: {measured:.2?} (goal {goal})");
}

/// The goal for a replica cut off from etcd: closed (nothing async) within
/// `stale_after` + 1 s of the cut. Prints the figure, then checks it.
fn closed_in_time(fault: &str, what: &str, closed: Duration, plan: Plan) {
    figure(fault, what, closed, "stale_after + 1 s");
    assert!(
        closed <= plan.stale_after + Duration::from_secs(1) + MARGIN,
        "closed {closed:?} after the cut"
    );
}

/// etcd goes away (`kill`ed, or `stop`ped) for the plan's outage, then
/// answers again.
fn etcd_outage(plan: Plan, stopped: bool) {
    let fault = if stopped {
        "etcd stopped (SIGSTOP)"
    } else {
        "etcd killed (SIGKILL)"
    };
    let mut fleet = Fleet::start(plan);
    let epoch = fleet.epoch();
    let cut = Instant::now();
    if stopped {
        fleet.etcd.pause();
    } else {
        fleet.etcd.kill();
    }
    let closed = fleet.wait_all("every replica closed", |r| {
        r["percent"] == 0.0 && r["stale"] == true && r["halted"] == true
    });
    closed_in_time(fault, "every replica closed after", closed, plan);
    std::thread::sleep(plan.outage.saturating_sub(cut.elapsed()));
    if stopped {
        fleet.etcd.resume();
    } else {
        fleet.etcd.restart();
    }
    let back = Instant::now();
    let [reopened, acked, settled] = settle(
        back,
        [
            &mut || {
                fleet
                    .replicas
                    .iter()
                    .all(|r| r.get_rollout()["percent"] == 10.0)
            },
            &mut || fleet.all_acked(epoch),
            &mut || fleet.leads(back),
        ],
    );
    figure(fault, "every replica open again after", reopened, "1 s");
    figure(fault, "every acknowledgement back after", acked, "2 s");
    figure(fault, "one leader after", settled, "the lease TTL");
    assert!(reopened <= Duration::from_secs(1) + MARGIN, "{reopened:?}");
    assert!(acked <= Duration::from_secs(2) + MARGIN, "{acked:?}");
    assert!(
        settled <= Duration::from_secs(plan.lease_ttl) + MARGIN,
        "{settled:?}"
    );
    // Nothing was written meanwhile: the same state serves on.
    assert_eq!(fleet.epoch(), epoch);
    fleet.assert_quiet_and_true(cut);
}

/// The last replica's connection to etcd goes silent; the others serve on.
fn silent_connection(plan: Plan) {
    let fault = "one replica's etcd connection silent";
    let fleet = Fleet::start(plan);
    let epoch = fleet.epoch();
    let (cut_off, others) = fleet.replicas.split_last().unwrap();
    fleet.proxy.silence();
    let closed = fleet.wait_some("the cut-off replica closed", &[cut_off], |r| {
        r["percent"] == 0.0 && r["stale"] == true
    });
    closed_in_time(fault, "that replica closed after", closed, plan);
    assert!(
        others.iter().all(|r| r.get_rollout()["percent"] == 10.0),
        "the others serve on"
    );
    std::thread::sleep(plan.outage.saturating_sub(closed));
    fleet.proxy.restore();
    let back = Instant::now();
    let [reopened, acked] = settle(
        back,
        [
            &mut || cut_off.get_rollout()["percent"] == 10.0,
            &mut || fleet.all_acked(epoch),
        ],
    );
    figure(fault, "that replica open again after", reopened, "1 s");
    figure(fault, "its acknowledgement back after", acked, "2 s");
    assert!(reopened <= Duration::from_secs(1) + MARGIN, "{reopened:?}");
    assert!(acked <= Duration::from_secs(2) + MARGIN, "{acked:?}");
}

/// The leader is stopped (SIGSTOP) past its lease, the other takes over,
/// an operator changes the state, and the old leader continues: it learns
/// it lost, and its writes are refused.
fn paused_leader(plan: Plan) {
    let fault = "the leader stopped past its lease";
    let fleet = Fleet::start(plan);
    let leader = fleet.observer.leader().unwrap().expect("a leader");
    let (paused, other) = if fleet.controllers[0].id == leader {
        (&fleet.controllers[0], &fleet.controllers[1])
    } else {
        (&fleet.controllers[1], &fleet.controllers[0])
    };
    let stopped = Instant::now();
    signal(paused.pid(), libc::SIGSTOP);
    wait_until("the other to lead", WITHIN, || {
        fleet.observer.leader().ok().flatten().as_deref() == Some(other.id.as_str())
            && leads_since(other, stopped)
    });
    let took = stopped.elapsed();
    figure(fault, "the other leads after", took, "the lease TTL + 1 s");
    assert!(
        took <= Duration::from_secs(plan.lease_ttl + 1) + MARGIN,
        "{took:?}"
    );
    // An operator acts under the new leader.
    operator(
        &fleet.etcd.url,
        NAME,
        "pause",
        "while the old leader sleeps",
    );
    let decided = fleet.observer.load().unwrap().unwrap();
    assert_eq!(decided.state.status, RolloutStatus::Paused);
    std::thread::sleep(Duration::from_secs(plan.lease_ttl));
    let resumed = Instant::now();
    signal(paused.pid(), libc::SIGCONT);
    wait_until("the old leader to say it lost", WITHIN, || {
        !paused.said_since(resumed, "lost the leadership").is_empty()
    });
    // Two of its ticks: nothing it judged before the pause is written.
    std::thread::sleep(Duration::from_secs(2));
    let after = fleet.observer.load().unwrap().unwrap();
    assert_eq!(
        after, decided,
        "the state is the new leader's and the operator's"
    );
    assert_eq!(
        fleet.observer.leader().unwrap().as_deref(),
        Some(other.id.as_str())
    );
}

/// Writes `value` at the rollout's `key` as is, or deletes it (`None`).
fn raw(etcd: &Etcd, key: &str, value: Option<&str>) {
    support::fleet::raw(&etcd.url, NAME, key, value);
}

/// One replica's `GET /rollout` at one time: which replica, its epoch,
/// its percent, its status.
type Sample = (usize, u64, f64, String);

/// Records every replica's epoch, percent and status every 20 ms until
/// stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    fn start(addrs: Vec<std::net::SocketAddr>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stopping.load(Ordering::Acquire) {
                for (i, addr) in addrs.iter().enumerate() {
                    let rollout = support::http::get(*addr, "/rollout").json();
                    seen.push((
                        i,
                        rollout["state"]["epoch"].as_u64().unwrap_or(0),
                        rollout["percent"].as_f64().unwrap(),
                        status_of(&rollout).to_owned(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn etcd_killed_then_started_again() {
    let _one = one_at_a_time();
    etcd_outage(SHORT, false);
}

#[test]
fn etcd_stopped_then_continued() {
    let _one = one_at_a_time();
    etcd_outage(SHORT, true);
}

#[test]
fn a_silent_connection_closes_its_replica_on_time_and_the_others_serve_on() {
    let _one = one_at_a_time();
    silent_connection(SHORT);
}

#[test]
fn a_leader_stopped_past_its_lease_is_replaced_and_fenced() {
    let _one = one_at_a_time();
    paused_leader(SHORT);
}

#[test]
fn garbage_then_deletion_of_the_state_key_never_forgets_a_rollback() {
    let _one = one_at_a_time();
    let fleet = Fleet::start(SHORT);
    let addrs = fleet.replicas.iter().map(|r| r.addr).collect();

    // Rolled back; then garbage; then the key deleted (the case:
    // the leader wrote epoch 1 `running` from its environment).
    operator(&fleet.etcd.url, NAME, "rollback", "pager");
    fleet.wait_all("every replica rolled back", |r| {
        status_of(r) == "rolled_back"
    });
    let rolled_back = fleet.observer.load().unwrap().unwrap().state;
    let sampler = Sampler::start(addrs);
    raw(&fleet.etcd, "state", Some("{\"epoch\": 3, \"garbage"));
    fleet.wait_all("every replica to report the garbage", |r| {
        r["state_error"].is_string() && r["percent"] == 0.0
    });
    let deleted = Instant::now();
    raw(&fleet.etcd, "state", None);
    let mut restored = None;
    wait_until("the rollback written again", WITHIN, || {
        restored = fleet.observer.load().ok().flatten();
        restored.is_some()
    });
    let took = deleted.elapsed();
    let restored = restored.unwrap().state;
    assert_eq!(restored.status, RolloutStatus::RolledBack, "{restored}");
    assert!(restored.epoch > rolled_back.epoch, "{restored}");
    assert_eq!(restored.stage, rolled_back.stage);
    fleet.wait_all("every replica at the restored epoch", |r| {
        r["state"]["epoch"] == restored.epoch
    });
    figure(
        "garbage, then deletion, of a rolled-back state",
        "the rollback written again after",
        took,
        "at once; never async",
    );
    let seen = sampler.finish();
    assert!(
        seen.iter().all(|(_, _, percent, _)| *percent == 0.0),
        "something served async: {:?}",
        seen.iter().find(|s| s.2 > 0.0)
    );
    for replica in 0..fleet.replicas.len() {
        let epochs: Vec<u64> = seen
            .iter()
            .filter(|s| s.0 == replica && s.1 > 0)
            .map(|s| s.1)
            .collect();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "r{replica}'s epochs went back: {epochs:?}"
        );
    }

    // Running; garbage; deleted: the running stage is written again above
    // every epoch, the stage and run continue.
    operator(&fleet.etcd.url, NAME, "resume", "all clear");
    fleet.wait_all("every replica at 10%", |r| r["percent"] == 10.0);
    let running = fleet.observer.load().unwrap().unwrap().state;
    raw(&fleet.etcd, "state", Some("[]"));
    fleet.wait_all("every replica closed", |r| r["percent"] == 0.0);
    raw(&fleet.etcd, "state", None);
    fleet.wait_all("every replica at 10% again", |r| r["percent"] == 10.0);
    let again = fleet.observer.load().unwrap().unwrap().state;
    assert_eq!(
        (
            again.status,
            again.stage,
            again.run_epoch,
            again.stage_started_at
        ),
        (
            running.status,
            running.stage,
            running.run_epoch,
            running.stage_started_at
        )
    );
    assert!(again.epoch > running.epoch);

    // Controllers that never read the state (started while it was garbage)
    // and then the key deleted: a fleet that had a state is not started
    // again from the environment; an operator's --create starts it.
    let Fleet {
        etcd,
        replicas,
        controllers,
        observer,
        _dirs,
        ..
    } = fleet;
    let high_water = observer.high_water().unwrap();
    drop(controllers);
    raw(&etcd, "state", Some("garbage"));
    let controllers: Vec<_> = ["c2", "c3"]
        .iter()
        .map(|id| controller(&etcd.url, id, &SHORT))
        .collect();
    wait_until("a new leader", WITHIN, || {
        controllers.iter().any(|c| leads_since(c, deleted))
    });
    raw(&etcd, "state", None);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        observer.load().unwrap().is_none(),
        "nothing written from the environment: {:?}",
        observer.load()
    );
    for r in &replicas {
        assert_eq!(r.get_rollout()["percent"], 0.0);
    }
    let cli = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--etcd", &etcd.url, "--name", NAME]);
        let (code, stdout, stderr) = run_cli(&args, &[]);
        (Some(code), stdout + &stderr)
    };
    let (code, text) = cli(&["advance", "--reason", "go"]);
    assert_ne!(code, Some(0), "refused without --create: {text}");
    assert!(text.contains("--create"), "{text}");
    let (code, text) = cli(&["advance", "--reason", "start again", "--create"]);
    assert_eq!(code, Some(0), "{text}");
    let started = observer.load().unwrap().unwrap().state;
    assert!(started.epoch > high_water, "{started} above {high_water}");
    assert_eq!(started.status, RolloutStatus::Running);
    wait_until("every replica at 1%", WITHIN, || {
        replicas.iter().all(|r| r.get_rollout()["percent"] == 1.0)
    });
    drop(controllers);
}

#[test]
fn garbage_in_the_config_key_keeps_the_last_good_config() {
    let _one = one_at_a_time();
    let fleet = Fleet::start(SHORT);
    let (code, _, stderr) = run_cli(
        &[
            "config",
            "set",
            "--etcd",
            &fleet.etcd.url,
            "--name",
            NAME,
            "--force-sync",
            "vip",
            "--create",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    fleet.wait_all("the config everywhere", |r| {
        r["config"]["force_sync"] == serde_json::json!(["vip"])
    });
    raw(&fleet.etcd, "config", Some("{\"kill_switch\": tr"));
    let reported = fleet.wait_all("every replica to report it", |r| {
        r["config_error"].is_string()
    });
    figure(
        "garbage in the config key",
        "every replica reports it after",
        reported,
        "at once; the last good config stays",
    );
    assert!(reported <= Duration::from_secs(1) + MARGIN, "{reported:?}");
    for r in &fleet.replicas {
        let rollout = r.get_rollout();
        assert_eq!(rollout["percent"], 10.0, "{rollout}");
        assert_eq!(rollout["config"]["force_sync"], serde_json::json!(["vip"]));
    }
    operator(
        &fleet.etcd.url,
        NAME,
        "rollback",
        "a rollback still goes through",
    );
    fleet.wait_all("every replica rolled back", |r| {
        status_of(r) == "rolled_back"
    });
}

/// The full suite: the defaults and outages of a minute (about 6 minutes).
#[test]
#[ignore = "the full fault suite: minutes; run with --ignored --nocapture"]
fn full_fault_suite() {
    let _one = one_at_a_time();
    etcd_outage(FULL, false);
    etcd_outage(FULL, true);
    silent_connection(FULL);
    paused_leader(FULL);
}

//! `check` and `report` at the size of a real log, beside the floor.
//!
//! The log: a week of a service whose controller ticks every 10 s and logs
//! its quiet ticks once a minute (plus every action and verdict change),
//! written by the library's own simulation through a real controller and
//! `JsonlSink` (about 230 MB, 10,000 lines; generated once and kept under
//! `target/bench-logs/`). The floor: a plain typed parse of the same lines
//! into `LogRecord` (`serde_json::from_str` per line, lines read with a
//! `BufReader`), in this process. Against it, the real binary, as an
//! operator runs it: `async-upload-rollout check LOG` and `report LOG -o
//! FILE`, each timed from spawn to exit, with its peak resident set
//! (`VmHWM`, from `wait4`'s `ru_maxrss`).
//!
//! Rounds interleave floor, check and report; the ratios are medians of
//! the per-round ratios, so a machine that slows down for a while moves
//! both sides of a ratio together.
//!
//! ```text
//! cargo bench --features cli --bench log_size                   # 7 days, 5 rounds
//! cargo bench --features cli --bench log_size -- --days 30 --rounds 3
//! cargo bench --features cli --bench log_size -- --log FILE     # any log
//! cargo bench --features cli --bench log_size -- --binary PATH  # another build's binary
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_upload_rollout::act::simulation::{Simulation, SimulationConfig};
use async_upload_rollout::cli::{Fleet, InstanceLog};
use async_upload_rollout::{JsonlSink, RolloutPlan, act::log::LogRecord};
use test_support::servers::cpu_name;

const BIN: &str = env!("CARGO_BIN_EXE_async-upload-rollout");

struct Args {
    days: u64,
    rounds: usize,
    log: Option<PathBuf>,
    /// `floor` or `library`: that alone, once (for `perf stat`).
    only: Option<String>,
    /// The binary to time instead of this build's (say an older build).
    binary: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        days: 7,
        rounds: 5,
        log: None,
        only: None,
        binary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--days" => args.days = it.next().and_then(|v| v.parse().ok()).unwrap_or(7),
            "--rounds" => args.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--log" => args.log = it.next().map(PathBuf::from),
            "--only" => args.only = it.next(),
            "--binary" => args.binary = it.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let args = args();
    let log = args.log.clone().unwrap_or_else(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-logs");
        let path = dir.join(format!("week-{}d-tick10s-log60s.jsonl", args.days));
        if !path.is_file() {
            generate(&path, args.days);
        }
        path
    });
    match args.only.as_deref() {
        Some("floor") => return println!("floor: {:?}", floor_parse(&log)),
        Some("library") => return println!("library: {:?}", library_check(&log)),
        _ => {}
    }
    let bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let lines = BufReader::new(File::open(&log).expect("open the log"))
        .lines()
        .count();
    println!(
        "log_size bench on {} ({} CPUs), load average before: {}",
        cpu_name(),
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1e6;
    println!("log: {} ({mb:.1} MB, {lines} lines)\n", log.display());

    let binary = args.binary.clone().unwrap_or_else(|| PathBuf::from(BIN));
    println!("binary: {}", binary.display());
    let html = std::env::temp_dir().join(format!("aur-log-size-{}.html", std::process::id()));
    let mut floor = Vec::new();
    let mut library = Vec::new();
    let mut check = Vec::new();
    let mut report = Vec::new();
    for round in 0..args.rounds {
        let f = floor_parse(&log);
        let l = library_check(&log);
        let c = run(Command::new(&binary).arg("check").arg(&log), "check");
        let r = run(
            Command::new(&binary)
                .arg("report")
                .arg(&log)
                .arg("-o")
                .arg(&html),
            "report",
        );
        println!(
            "round {}: floor {:>6.3} s | library {:>6.3} s ({:.3}×) | check {:>6.3} s ({:.3}×), peak {:>5.1} MiB | report {:>6.3} s ({:.3}×), peak {:>5.1} MiB",
            round + 1,
            f.as_secs_f64(),
            l.as_secs_f64(),
            l.as_secs_f64() / f.as_secs_f64(),
            c.0.as_secs_f64(),
            c.0.as_secs_f64() / f.as_secs_f64(),
            mib(c.1),
            r.0.as_secs_f64(),
            r.0.as_secs_f64() / f.as_secs_f64(),
            mib(r.1),
        );
        floor.push(f);
        library.push((l, 0));
        check.push(c);
        report.push(r);
    }
    let _ = std::fs::remove_file(&html);
    let ratio = |xs: &[(Duration, u64)]| {
        median(
            xs.iter()
                .zip(&floor)
                .map(|(x, f)| x.0.as_secs_f64() / f.as_secs_f64())
                .collect(),
        )
    };
    let secs = |xs: Vec<Duration>| median(xs.iter().map(Duration::as_secs_f64).collect());
    let peak = |xs: &[(Duration, u64)]| xs.iter().map(|x| x.1).max().unwrap_or(0);
    println!(
        "\nmedians of {} rounds: floor (typed parse, in-process) {:.3} s",
        args.rounds,
        secs(floor.clone())
    );
    println!(
        "  InstanceLog::read + Fleet::check in-process: {:.3} s, {:.3}× the floor",
        secs(library.iter().map(|c| c.0).collect()),
        ratio(&library)
    );
    println!(
        "  check:  {:.3} s, {:.3}× the floor (goal ≤ 1.3×), peak RSS {:.1} MiB (goal < 64 MiB)",
        secs(check.iter().map(|c| c.0).collect()),
        ratio(&check),
        mib(peak(&check))
    );
    println!(
        "  report: {:.3} s, {:.3}× the floor (goal ≤ 1.3×), peak RSS {:.1} MiB (goal < 64 MiB)",
        secs(report.iter().map(|c| c.0).collect()),
        ratio(&report),
        mib(peak(&report))
    );
    println!("load average after: {}", load_average());
}

/// Writes `days` of a simulated rollout (ticks every 10 s, quiet ticks
/// logged once a minute) to `path`.
fn generate(path: &Path, days: u64) {
    let started = Instant::now();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the log's directory");
    }
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let config = SimulationConfig {
        tick: Duration::from_secs(10),
        log_interval: Duration::from_secs(60),
        ..SimulationConfig::default()
    };
    let sink = JsonlSink::open(&partial).expect("open the log");
    let mut sim = Simulation::with_log(config, Some(sink)).expect("a simulation");
    let end = Duration::from_secs(days * 24 * 3600);
    while sim.elapsed() < end {
        let tick = sim.step();
        assert!(tick.log_error.is_none(), "{:?}", tick.log_error);
    }
    std::fs::rename(&partial, path).expect("move the log in place");
    println!(
        "generated {} ({days} simulated days) in {:.1?}",
        path.display(),
        started.elapsed()
    );
}

/// The floor: every line parsed into a `LogRecord`, nothing else.
fn floor_parse(path: &Path) -> Duration {
    let started = Instant::now();
    let mut reader = BufReader::new(File::open(path).expect("open the log"));
    let mut line = String::new();
    let mut records = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("read a line") == 0 {
            break;
        }
        let record: LogRecord = serde_json::from_str(line.trim_end()).expect("a record");
        records += usize::from(record.snapshot.is_some());
        std::hint::black_box(&record);
    }
    std::hint::black_box(records);
    started.elapsed()
}

/// What `check` does, in this process: read the log, judge it.
fn library_check(path: &Path) -> Duration {
    let started = Instant::now();
    let log = InstanceLog::read(path, &mut |_, _| {}).expect("a valid log");
    let outcome = Fleet::new(vec![log])
        .and_then(|fleet| fleet.check(&RolloutPlan::default(), None))
        .expect("a judgement");
    std::hint::black_box(&outcome);
    started.elapsed()
}

/// Runs `command` to its end: wall time and peak resident set in bytes.
#[expect(clippy::zombie_processes, reason = "wait4 reaps the child")]
fn run(command: &mut Command, what: &str) -> (Duration, u64) {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the binary");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: `rusage` is plain data, all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals; the
    // `Child` handle is not waited on afterwards.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4 on {what}");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    assert!(
        matches!(code, Some(0 | 2 | 3 | 4)),
        "{what} failed: status {status:#x}"
    );
    // Linux reports ru_maxrss in KiB.
    let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    (elapsed, peak)
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

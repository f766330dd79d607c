//! An upload handler with the async path rolled out to 10% of uploads.
//!
//! Every upload asks the rollout which path to take, runs it, and records
//! its outcome and latency on that path. Once a minute the service samples
//! its memory and appends a snapshot to the metrics log, the file the
//! rollout plan tells operators to read. Time is simulated (20 minutes run in
//! well under a second), so the uploads are simulated too; in a real handler
//! the latency is `Instant::now()` before and `elapsed()` after.
//!
//! Run with `cargo run --release --example upload_handler [LOG_PATH]`
//! (default `logs/async_upload_rollout/metrics.jsonl`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_upload_rollout::act::simulation::SplitMix64;
use async_upload_rollout::{
    Arm, History, JsonlSink, MetricsAccumulator, Outcome, Percent, Rollout, RolloutConfig,
    act::log::{DEFAULT_LOG_PATH, LogRecord, read_log},
    clock::{Clock, ManualClock},
    process_memory_bytes,
};

const MINUTES: u64 = 20;
const UPLOADS_PER_MINUTE: u64 = 600;
/// Uploads above this size are the client's fault: rejected, not judged.
const MAX_UPLOAD_BYTES: u64 = 95 * 1024 * 1024;

/// One incoming upload.
struct Upload {
    id: String,
    bytes: u64,
}

/// What the service shares between its request handlers.
struct UploadService {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
}

impl UploadService {
    /// Handles one upload on the path the rollout picks, and records it.
    fn handle(&self, upload: &Upload, rng: &mut SplitMix64) -> Outcome {
        let arm = Arm::from_use_async(self.rollout.should_use_async(&upload.id));
        let (outcome, latency) = if upload.bytes > MAX_UPLOAD_BYTES {
            // Refused before either path runs: the client's fault.
            (Outcome::Rejected, Duration::from_micros(300))
        } else {
            match arm {
                Arm::Async => simulated_async_upload(upload, rng),
                Arm::Sync => simulated_sync_upload(upload, rng),
            }
        };
        self.metrics.record(arm, outcome, latency);
        outcome
    }
}

/// The proven path: store the whole file, then answer.
fn simulated_sync_upload(upload: &Upload, rng: &mut SplitMix64) -> (Outcome, Duration) {
    // ~40 ms of overhead plus ~25 MB/s, with some jitter.
    let millis = 40.0 + upload.bytes as f64 / 25_000.0 * jitter(rng);
    let outcome = match rng.next_f64() {
        x if x < 0.0001 => Outcome::Critical,
        x if x < 0.006 => Outcome::Error,
        _ => Outcome::Success,
    };
    (outcome, Duration::from_secs_f64(millis / 1000.0))
}

/// The new path: accept, answer 202, finish in the background. Latency is
/// the time to the answer.
fn simulated_async_upload(upload: &Upload, rng: &mut SplitMix64) -> (Outcome, Duration) {
    // Receiving still scales with size; storing no longer does.
    let millis = 30.0 + upload.bytes as f64 / 40_000.0 * jitter(rng);
    let outcome = match rng.next_f64() {
        x if x < 0.008 => Outcome::Error,
        _ => Outcome::Success,
    };
    (outcome, Duration::from_secs_f64(millis / 1000.0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log_path = std::env::args().nth(1).unwrap_or(DEFAULT_LOG_PATH.into());

    // Simulated time starting now, so repeated runs append later records.
    let clock = ManualClock::new(SystemTime::now());
    let run_started = clock.now();
    let service = UploadService {
        rollout: Arc::new(Rollout::new(RolloutConfig::with_percent(
            Percent::from_whole(10)?,
        ))),
        metrics: Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone()))),
    };
    let mut log = JsonlSink::open(&log_path)?;
    if let Some(torn) = log.repaired_tail() {
        eprintln!("cut off a torn line {} left by a crash", torn.line);
    }

    let mut rng = SplitMix64::new(0x2025_1105);
    let mut upload_number = 0u64;
    for _minute in 0..MINUTES {
        for _ in 0..UPLOADS_PER_MINUTE {
            upload_number += 1;
            let upload = Upload {
                id: format!("upload-{upload_number:08}-{:016x}", rng.next_u64()),
                // Mostly small files, a few large ones, ~1% over the limit.
                bytes: (rng.next_f64().powi(6) * 100.0 * 1024.0 * 1024.0) as u64,
            };
            service.handle(&upload, &mut rng);
            clock.advance(Duration::from_secs(60) / UPLOADS_PER_MINUTE as u32);
        }
        if let Some(bytes) = process_memory_bytes() {
            service.metrics.record_memory(bytes);
        }
        // A failed write is reported, not fatal: recording goes on, and the
        // next snapshot still holds every count.
        if let Err(error) = log.append(&LogRecord::snapshot(service.metrics.snapshot())) {
            eprintln!("metrics log: {error}");
        }
    }

    // Read the log back as an operator would, and cut the last 5 minutes.
    let read = read_log::<LogRecord>(log.path())?;
    let mut history = History::new(120, Duration::from_secs(60));
    for snapshot in read.records.into_iter().filter_map(|r| r.snapshot) {
        if snapshot.at() >= run_started {
            history.push(snapshot);
        }
    }
    let window = history
        .window(Duration::from_secs(300))
        .ok_or("too little history")?;
    println!(
        "{} snapshots in {}; last 5 minutes:\n",
        history.len(),
        log.path().display()
    );
    println!(
        "{:>5}  {:>7}  {:>8}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
        "arm", "uploads", "success", "error", "crit", "p50", "p99", "mean"
    );
    for arm in Arm::ALL {
        let percent = |rate: Option<f64>| rate.map_or("-".into(), |r| format!("{:.2}%", r * 100.0));
        let millis = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        };
        println!(
            "{:>5}  {:>7}  {:>8}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
            arm.as_str(),
            window.uploads(arm),
            percent(window.success_rate(arm)),
            percent(window.error_rate(arm)),
            window.critical(arm),
            millis(window.latency_quantile(arm, 0.5)),
            millis(window.latency_quantile(arm, 0.99)),
            millis(window.mean_latency(arm)),
        );
    }
    if let Some(growth) = window.memory_growth() {
        println!("\nmemory: {:+.1}% since the first sample", growth * 100.0);
    }
    Ok(())
}

/// A multiplicative jitter between 0.5 and 2, log-uniform.
fn jitter(rng: &mut SplitMix64) -> f64 {
    2f64.powf(rng.next_f64() * 2.0 - 1.0)
}

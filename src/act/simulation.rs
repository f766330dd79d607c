//! Whole rollouts in simulated time: synthetic upload traffic through a
//! [`Rollout`], a [`MetricsAccumulator`] and a [`RolloutController`] on a
//! [`ManualClock`], with seeded randomness.
//!
//! It is what `examples/week2_rollout.rs` runs and what the decision-quality
//! tests measure: it exercises the real decision, recording, evaluation and
//! rollback code, only the uploads and the clock are simulated.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use async_upload_rollout::act::simulation::{Fault, Simulation, SimulationConfig};
//! use async_upload_rollout::{RolloutStatus, Verdict};
//!
//! let mut config = SimulationConfig::default();
//! config.fault = Some((Fault::ErrorBurst, 0)); // the async path breaks in the 1% stage
//! config.fault_after = Duration::ZERO;
//! let mut sim = Simulation::new(config)?;
//! while sim.controller().status() != Some(RolloutStatus::RolledBack) {
//!     let tick = sim.step();
//!     assert!(sim.elapsed() < Duration::from_secs(24 * 3600), "never rolled back");
//!     if let Some(evaluation) = tick.evaluation.filter(|e| e.verdict == Verdict::Rollback) {
//!         println!("rolled back: {}", evaluation.reason);
//!     }
//! }
//! assert!(sim.rollout().is_halted());
//! # Ok::<(), async_upload_rollout::ControllerError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::act::controller::{ControllerError, RolloutController, Tick};
use crate::act::log::JsonlSink;
use crate::clock::{Clock, ManualClock};
use crate::decide::rollout::Rollout;
use crate::decide::{Percent, RolloutConfig};
use crate::judge::plan::RolloutPlan;
use crate::metrics::{Arm, MetricsAccumulator, Outcome};

/// How one upload path behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathModel {
    /// Share of judged uploads that fail (server side).
    pub error_rate: f64,
    /// Median latency.
    pub median_latency: Duration,
    /// Spread of the log-normal latency (σ of the log); 0.5 is a typical service.
    pub latency_sigma: f64,
    /// User complaints per upload.
    pub complaint_rate: f64,
}

impl Default for PathModel {
    /// A healthy path: 0.5% errors, 180 ms median, σ 0.5, 1 complaint in 5,000 uploads.
    fn default() -> PathModel {
        PathModel {
            error_rate: 0.005,
            median_latency: Duration::from_millis(180),
            latency_sigma: 0.5,
            complaint_rate: 0.0002,
        }
    }
}

/// A regression injected into the async path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The async error rate jumps to 10%.
    ErrorBurst,
    /// Async latency creeps up by 1% of baseline per simulated minute, to +50%.
    LatencyCreep,
    /// One critical error (say, a corrupted upload) on the async path.
    CriticalError,
    /// Process memory grows by 1% of its baseline every 5 simulated minutes.
    MemoryLeak,
    /// The async error rate becomes `percent`% (a step when `lasting` is
    /// `None`, a burst of that length otherwise), then returns to the path's own.
    ErrorRate {
        /// The error rate while the fault lasts, in percent (0–100).
        percent: u8,
        /// How long it lasts; `None`: for good.
        lasting: Option<Duration>,
    },
    /// Async latency climbs steadily by `percent_per_hour`% of its baseline
    /// every simulated hour (linearly, without a cap): 2 reaches +20% after
    /// 10 hours.
    LatencyClimb {
        /// Percent of the baseline added per hour.
        percent_per_hour: u8,
    },
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        match s {
            "error-burst" => Ok(Fault::ErrorBurst),
            "latency-creep" => Ok(Fault::LatencyCreep),
            "critical-error" => Ok(Fault::CriticalError),
            "memory-leak" => Ok(Fault::MemoryLeak),
            other => Err(format!(
                "unknown fault {other:?}: expected error-burst, latency-creep, critical-error or memory-leak"
            )),
        }
    }
}

/// Everything a simulation needs; [`Default`] is a healthy week-2 rollout.
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    /// The plan the controller runs.
    pub plan: RolloutPlan,
    /// Stage to start at.
    pub start_stage: usize,
    /// Uploads per simulated minute, both paths together.
    pub uploads_per_minute: u32,
    /// Simulated time between controller ticks.
    pub tick: Duration,
    /// The sync (baseline) path.
    pub sync: PathModel,
    /// The async path.
    pub async_path: PathModel,
    /// Share of uploads rejected because of the client (both paths).
    pub rejected_rate: f64,
    /// A fault and the stage index it is injected in.
    pub fault: Option<(Fault, usize)>,
    /// How long into that stage the fault starts.
    pub fault_after: Duration,
    /// Advance by itself when a stage's criteria and `min_duration` are met.
    pub auto_advance: bool,
    /// Seed of the random numbers: the same seed gives the same run.
    pub seed: u64,
    /// How often a quiet tick is logged (see
    /// [`RolloutControllerBuilder::log_interval`](crate::RolloutControllerBuilder::log_interval)).
    pub log_interval: Duration,
}

impl Default for SimulationConfig {
    fn default() -> SimulationConfig {
        SimulationConfig {
            plan: RolloutPlan::default(),
            start_stage: 0,
            uploads_per_minute: 120,
            tick: Duration::from_secs(60),
            sync: PathModel::default(),
            async_path: PathModel::default(),
            rejected_rate: 0.002,
            fault: None,
            fault_after: Duration::from_secs(2 * 3600),
            auto_advance: true,
            seed: 20_251_105,
            log_interval: crate::act::controller::DEFAULT_LOG_INTERVAL,
        }
    }
}

/// A running simulation.
pub struct Simulation {
    config: SimulationConfig,
    clock: ManualClock,
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    controller: RolloutController,
    rng: SplitMix64,
    next_upload: u64,
    elapsed: Duration,
    /// Simulated time the fault has been active.
    fault_active_for: Option<Duration>,
    critical_injected: bool,
    baseline_memory: u64,
    uploads: [u64; 2],
}

impl Simulation {
    /// Builds the rollout, metrics and controller.
    ///
    /// # Errors
    ///
    /// [`ControllerError`] when the plan or the start stage is invalid.
    pub fn new(config: SimulationConfig) -> Result<Simulation, ControllerError> {
        Simulation::with_log(config, None)
    }

    /// As [`new`](Simulation::new), appending the controller's lines to `sink`.
    ///
    /// # Errors
    ///
    /// As [`new`](Simulation::new).
    pub fn with_log(
        config: SimulationConfig,
        sink: Option<JsonlSink>,
    ) -> Result<Simulation, ControllerError> {
        let clock = ManualClock::default();
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(Percent::ZERO)));
        let metrics = Arc::new(MetricsAccumulator::with_clock(Arc::clone(&shared_clock)));
        let mut builder = RolloutController::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .plan(config.plan.clone())
            .clock(shared_clock)
            .auto_advance(config.auto_advance)
            .log_interval(config.log_interval)
            .start_stage(config.start_stage);
        if let Some(sink) = sink {
            builder = builder.log(sink);
        }
        let controller = builder.build()?;
        let baseline_memory = 512 * 1024 * 1024;
        metrics.record_memory(baseline_memory);
        Ok(Simulation {
            rng: SplitMix64::new(config.seed),
            config,
            clock,
            rollout,
            metrics,
            controller,
            next_upload: 0,
            elapsed: Duration::ZERO,
            fault_active_for: None,
            critical_injected: false,
            baseline_memory,
            uploads: [0; 2],
        })
    }

    /// Simulates one tick of traffic, advances the clock, and ticks the controller.
    pub fn step(&mut self) -> Tick {
        let tick = self.config.tick;
        self.update_fault(tick);
        let uploads = self.uploads_this_tick(tick);
        for _ in 0..uploads {
            self.one_upload();
        }
        let leak = match (self.config.fault, self.fault_active_for) {
            (Some((Fault::MemoryLeak, _)), Some(active)) => {
                // 1% of the baseline per 5 minutes.
                let steps = active.as_secs() / 300;
                self.baseline_memory / 100 * steps
            }
            _ => 0,
        };
        let noise = (self.rng.next_f64() * 0.02 * self.baseline_memory as f64) as u64;
        self.metrics
            .record_memory(self.baseline_memory + leak + noise);

        self.clock.advance(tick);
        self.elapsed += tick;
        self.controller.tick()
    }

    /// Starts the fault once its stage has run `fault_after`; tracks for how long.
    fn update_fault(&mut self, tick: Duration) {
        let Some((_, stage)) = self.config.fault else {
            return;
        };
        if let Some(active) = &mut self.fault_active_for {
            *active += tick;
            return;
        }
        let in_stage = self.controller.stage() == Some(stage);
        let ran = self
            .controller
            .state()
            .map(|state| state.stage_age(self.clock.now()))
            .unwrap_or_default();
        if in_stage && ran >= self.config.fault_after {
            self.fault_active_for = Some(Duration::ZERO);
        }
    }

    fn uploads_this_tick(&mut self, tick: Duration) -> u64 {
        let mean = f64::from(self.config.uploads_per_minute) * tick.as_secs_f64() / 60.0;
        // Poisson-like jitter: normal approximation, never negative.
        let jittered = mean + mean.sqrt() * self.rng.normal();
        jittered.max(0.0).round() as u64
    }

    fn one_upload(&mut self) {
        let id = self.next_upload.to_le_bytes();
        self.next_upload += 1;
        let arm = Arm::from_use_async(self.rollout.should_use_async(&id));
        self.uploads[arm.index()] += 1;
        let mut model = match arm {
            Arm::Async => self.config.async_path,
            Arm::Sync => self.config.sync,
        };
        let mut critical = false;
        if arm == Arm::Async
            && let (Some((fault, _)), Some(active)) = (self.config.fault, self.fault_active_for)
        {
            match fault {
                Fault::ErrorBurst => model.error_rate = 0.10,
                Fault::ErrorRate { percent, lasting } => {
                    if lasting.is_none_or(|l| active < l) {
                        model.error_rate = f64::from(percent.min(100)) / 100.0;
                    }
                }
                Fault::LatencyClimb { percent_per_hour } => {
                    let climb = active.as_secs_f64() / 3600.0 * f64::from(percent_per_hour) / 100.0;
                    model.median_latency = model.median_latency.mul_f64(1.0 + climb);
                }
                Fault::LatencyCreep => {
                    let creep = (active.as_secs_f64() / 60.0 * 0.01).min(0.5);
                    model.median_latency = model.median_latency.mul_f64(1.0 + creep);
                }
                Fault::CriticalError if !self.critical_injected => {
                    self.critical_injected = true;
                    critical = true;
                }
                Fault::CriticalError | Fault::MemoryLeak => {}
            }
        }
        if self.rng.next_f64() < model.complaint_rate {
            self.metrics.record_complaint(arm);
        }
        let outcome = if critical {
            Outcome::Critical
        } else if self.rng.next_f64() < self.config.rejected_rate {
            Outcome::Rejected
        } else if self.rng.next_f64() < model.error_rate {
            Outcome::Error
        } else {
            Outcome::Success
        };
        let latency = model
            .median_latency
            .mul_f64((model.latency_sigma * self.rng.normal()).exp());
        self.metrics.record(arm, outcome, latency);
    }

    /// The controller (its state, stage and last evaluation).
    #[must_use]
    pub fn controller(&self) -> &RolloutController {
        &self.controller
    }

    /// The controller, for operator actions.
    pub fn controller_mut(&mut self) -> &mut RolloutController {
        &mut self.controller
    }

    /// The rollout the simulated handler asks.
    #[must_use]
    pub fn rollout(&self) -> &Arc<Rollout> {
        &self.rollout
    }

    /// The metrics the simulated handler records into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<MetricsAccumulator> {
        &self.metrics
    }

    /// Simulated time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The simulated time now (the controller's clock).
    #[must_use]
    pub fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// Uploads simulated so far on `arm`.
    #[must_use]
    pub fn uploads(&self, arm: Arm) -> u64 {
        self.uploads[arm.index()]
    }

    /// How long the injected fault has been active, if it has started.
    #[must_use]
    pub fn fault_active_for(&self) -> Option<Duration> {
        self.fault_active_for
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast, well-mixed seeded
/// generator. Plenty for synthetic traffic and test ids; not for secrets.
///
/// ```
/// use async_upload_rollout::act::simulation::SplitMix64;
///
/// let mut rng = SplitMix64::new(7);
/// let id = rng.uuid();
/// assert_eq!(id.len(), 36);
/// assert_eq!(SplitMix64::new(7).uuid(), id, "same seed, same ids");
/// ```
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A random version-4 UUID in its 36-character text form, the shape of
    /// the upload ids a service hands out.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

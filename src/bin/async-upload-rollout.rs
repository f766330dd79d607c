//! `async-upload-rollout`: the operator's command line (feature `cli`).
//!
//! ```text
//! async-upload-rollout check logs/async_upload_rollout/metrics.jsonl [--plan plan.toml] [--stage N] [--json]
//! async-upload-rollout report logs/*/metrics.jsonl -o report.html
//! async-upload-rollout bucket 0f8fad5b-d9cb-469f-a165-70867728950e --percent 10
//! async-upload-rollout plan --plan plan.toml [--traffic 120/min] [--json]
//! async-upload-rollout status [--state FILE] [--json]
//! async-upload-rollout rollback --reason "error spike after deploy 4512" [--state FILE]
//! async-upload-rollout resume|advance|pause --reason TEXT [--state FILE]
//! async-upload-rollout status|rollback|... --etcd http://127.0.0.1:2379 [--name NAME]   (feature etcd)
//! async-upload-rollout controller --etcd URL --prometheus URL [--plan FILE] [--name NAME]  (feature etcd)
//! ```
//!
//! Exit codes of `check`, one per verdict: 0 advance, 4 hold, 2 manual
//! review, 3 rollback; 1 usage or input error (every command), or an
//! operator command the state refuses. The other commands exit 0 on
//! success. A breaking change before 1.0: `check` used to exit 0 on hold
//! too, so scripts that took 0 as "nothing to do" must now accept 4.
//! `check --json` prints the evaluation as one line of JSON instead of the
//! table. The work is done by [`async_upload_rollout::cli`]; this file
//! parses arguments and prints.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_upload_rollout::cli::{
    CliError, Fleet, InstanceLog, Operated, ReportOptions, StageSource, StatusReport, Traffic,
    TrafficOptions, describe_bucket, exit_code, operate, plan_at_traffic, render_checks,
    render_json, render_traffic, report_html,
};
use async_upload_rollout::{
    DEFAULT_SALT, DEFAULT_STATE_PATH, FileStateStore, Operation, Percent, RolloutConfig,
    RolloutPlan, StateStore,
};
use clap::{Args, Parser, Subcommand};

/// Check, report on and answer questions about the async upload rollout.
#[derive(Debug, Parser)]
#[command(name = "async-upload-rollout", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Judge the latest metrics of one or more instances' logs against the plan.
    ///
    /// Exit code: 0 advance, 4 hold, 2 manual review, 3 rollback, 1 error.
    Check {
        /// The instances' metrics.jsonl files (their latest totals are merged).
        #[arg(required = true, value_name = "METRICS.JSONL")]
        logs: Vec<PathBuf>,
        /// The plan (TOML, or JSON when the name ends in .json); default: the week-2 plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// The stage index to judge; default: the latest line's stage.
        #[arg(long, value_name = "N")]
        stage: Option<usize>,
        /// Print the evaluation as one line of JSON (what the controller
        /// logs) instead of the table; notes go to stderr.
        #[arg(long)]
        json: bool,
    },
    /// Write the status dashboard and daily report as one HTML file.
    Report {
        /// The instances' metrics.jsonl files.
        #[arg(required = true, value_name = "METRICS.JSONL")]
        logs: Vec<PathBuf>,
        /// Where to write the HTML.
        #[arg(short, long, value_name = "REPORT.HTML")]
        output: PathBuf,
        /// The plan (thresholds and evaluation); default: the week-2 plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// The verdict table covers this much time before the latest line.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        table_span: Duration,
    },
    /// Which bucket and path an upload id gets.
    Bucket {
        /// The upload id, as the upload handler passes it.
        upload_id: String,
        /// The rollout's salt.
        #[arg(long, default_value = DEFAULT_SALT)]
        salt: String,
        /// The rollout percent (e.g. 10, 12.5%); default: ASYNC_UPLOAD_ROLLOUT
        /// if set, else every stage of the default plan.
        #[arg(long)]
        percent: Option<Percent>,
    },
    /// Print the effective plan as TOML (after validating a plan file), or
    /// with --traffic what its rollback triggers can show at that traffic.
    Plan {
        /// The plan file to validate and print; default: the week-2 plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// The service's uploads, both paths (e.g. 120/min, 2/s, 7200/h):
        /// per stage and rate trigger, the time to roll back a step to twice
        /// the trigger, the chance within 5 minutes, the false stops per
        /// stage, and the traffic at which 5 minutes holds in 99% of runs.
        #[arg(long, value_name = "RATE")]
        traffic: Option<Traffic>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the rollout's state: status, stage, the percent in force, who
    /// changed it last and why.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Nothing async from the next poll of every service on this state
    /// (force lists included), until someone resumes.
    Rollback(OperatorArgs),
    /// Back to running the current stage (after a rollback the stage starts
    /// again), judged on data from now on.
    Resume(OperatorArgs),
    /// Move to the next stage now (from `off`: start the first). Refused
    /// while rolled back: resume first.
    Advance(OperatorArgs),
    /// Stop automatic advancing; automatic rollback stays armed.
    Pause(OperatorArgs),
    /// Run a fleet's controller (feature `etcd`): campaign for the
    /// leadership on etcd; while leading, judge every replica's metrics from
    /// Prometheus and write each decision fenced on the leadership. Any
    /// number may run; one leads. The first state, when none is stored,
    /// comes from ASYNC_UPLOAD_ROLLOUT (unset or 0: off).
    #[cfg(feature = "etcd")]
    Controller(ControllerArgs),
}

/// The `controller` command's arguments.
#[cfg(feature = "etcd")]
#[derive(Debug, Args)]
struct ControllerArgs {
    /// etcd endpoint (repeat for several).
    #[arg(long, value_name = "URL", required = true)]
    etcd: Vec<String>,
    /// The Prometheus that scrapes the replicas.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// The rollout's name (its etcd prefix and exported label).
    #[arg(long, default_value = "async-upload")]
    name: String,
    /// The plan (the replicas must run the same one); default: the week-2 plan.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// How often the leader judges.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// The leadership lease in seconds: a dead leader is replaced within it.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    lease_ttl: i64,
    /// This controller's id; default: host name and pid.
    #[arg(long)]
    id: Option<String>,
    /// Let the leader advance stages by itself.
    #[arg(long)]
    auto_advance: bool,
    /// Where the leader logs its ticks and actions.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

/// Where the state is.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The state file the service uses.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE_PATH)]
    state: PathBuf,
    /// A fleet's etcd instead of the state file (feature `etcd`; repeat for
    /// several endpoints).
    #[arg(long, value_name = "URL")]
    etcd: Vec<String>,
    /// The fleet's rollout name (with --etcd).
    #[arg(long, default_value = "async-upload")]
    name: String,
    /// The plan the service runs (for stage percents and the last stage);
    /// default: the week-2 plan.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
}

/// An operator command's arguments.
#[derive(Debug, Args)]
struct OperatorArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Why: recorded in the state and the service's log.
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap exits with 2 on usage errors; 2 means "manual review" here.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("async-upload-rollout: {err}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<u8, CliError> {
    match command {
        Command::Check {
            logs,
            plan,
            stage,
            json,
        } => {
            let plan = load_plan(plan.as_deref())?;
            let fleet = read_fleet(&logs)?;
            let outcome = fleet.check(&plan, stage)?;
            for note in &outcome.notes {
                eprintln!("note: {note}");
            }
            let source = match &outcome.stage_source {
                StageSource::Flag => "from --stage".to_owned(),
                StageSource::Logged { path, line } => {
                    format!("from {}, line {line}", path.display())
                }
                StageSource::Percent {
                    path,
                    line,
                    percent,
                } => format!(
                    "the plan's stage at {percent} ({}, line {line})",
                    path.display()
                ),
                _ => String::new(),
            };
            let judged = format!(
                "judged stage {} ({}), {source}; {} instance(s), {} snapshots of history",
                outcome.evaluation.stage,
                outcome.evaluation.percent,
                fleet.instances().len(),
                outcome.history_len
            );
            if json {
                eprintln!("note: {judged}");
                println!("{}", render_json(&outcome.evaluation));
            } else {
                println!("{judged}\n");
                print!("{}", render_checks(&outcome.evaluation));
            }
            Ok(exit_code(outcome.evaluation.verdict))
        }
        Command::Report {
            logs,
            output,
            plan,
            table_span,
        } => {
            let mut options = ReportOptions::default();
            options.plan = load_plan(plan.as_deref())?;
            options.table_span = table_span;
            let fleet = read_fleet(&logs)?;
            let html = report_html(&fleet, &options)?;
            std::fs::write(&output, html).map_err(|source| CliError::Write {
                path: output.clone(),
                source,
            })?;
            eprintln!("wrote {}", output.display());
            Ok(0)
        }
        Command::Bucket {
            upload_id,
            salt,
            percent,
        } => {
            // An invalid ASYNC_UPLOAD_ROLLOUT is reported, never taken as 0%.
            let percent = match percent {
                Some(p) => Some(p),
                None if std::env::var_os(async_upload_rollout::ROLLOUT_ENV_VAR).is_some() => {
                    match RolloutConfig::from_env() {
                        Ok(config) => Some(config.percent),
                        Err(err) => {
                            eprintln!("async-upload-rollout: {err}");
                            return Ok(1);
                        }
                    }
                }
                None => None,
            };
            let stages: Vec<Percent> = RolloutPlan::default()
                .stages
                .iter()
                .map(|s| s.percent)
                .collect();
            print!("{}", describe_bucket(&upload_id, &salt, percent, &stages));
            Ok(0)
        }
        Command::Status { store, json } => {
            let plan = load_plan(store.plan.as_deref())?;
            let report = StatusReport::read(&*open_store(&store)?, &plan)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.render(&plan, std::time::SystemTime::now()));
            }
            Ok(0)
        }
        Command::Rollback(args) => operator(Operation::Rollback, args),
        Command::Resume(args) => operator(Operation::Resume, args),
        Command::Advance(args) => operator(Operation::Advance, args),
        Command::Pause(args) => operator(Operation::Pause, args),
        #[cfg(feature = "etcd")]
        Command::Controller(args) => controller(args),
        Command::Plan {
            plan,
            traffic,
            json,
        } => {
            let loaded = load_plan(plan.as_deref())?;
            if let Some(path) = &plan {
                eprintln!("{}: valid plan", path.display());
            }
            match (traffic, json) {
                (Some(traffic), json) => {
                    let report = plan_at_traffic(&loaded, traffic, &TrafficOptions::default());
                    if json {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    } else {
                        print!("{}", render_traffic(&report));
                    }
                }
                (None, true) => println!("{}", serde_json::to_string(&loaded).unwrap_or_default()),
                (None, false) => print!("{}", loaded.to_toml_string()),
            }
            Ok(0)
        }
    }
}

fn operator(operation: Operation, args: OperatorArgs) -> Result<u8, CliError> {
    if args.reason.trim().is_empty() {
        eprintln!("async-upload-rollout: --reason must say why (it is recorded)");
        return Ok(1);
    }
    let plan = load_plan(args.store.plan.as_deref())?;
    let store = open_store(&args.store)?;
    let done = operate(
        &*store,
        &plan,
        operation,
        &args.reason,
        std::time::SystemTime::now(),
    )?;
    let (verb, stored) = match &done {
        Operated::Changed(stored) => ("now", stored),
        Operated::Unchanged(stored) => ("already", stored),
    };
    let in_force = stored
        .state
        .percent_in_force(&plan)
        .map_or_else(|| "nothing async".to_owned(), |p| format!("{p} in force"));
    println!(
        "{operation}: {verb} {} ({in_force}); running services apply it at their next poll",
        stored.state
    );
    Ok(0)
}

/// The state file, or a fleet's etcd with --etcd.
fn open_store(args: &StoreArgs) -> Result<Box<dyn StateStore>, CliError> {
    if args.etcd.is_empty() {
        return Ok(Box::new(FileStateStore::new(&args.state)));
    }
    #[cfg(feature = "etcd")]
    {
        let replica = format!("cli-{}", std::process::id());
        Ok(Box::new(
            async_upload_rollout::fleet::EtcdStateStore::connect(&args.etcd, &args.name, &replica)?,
        ))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = &args.name;
        Err(CliError::State(
            async_upload_rollout::StoreError::Unavailable {
                store: args.etcd.join(","),
                message: "this binary was built without the `etcd` feature".to_owned(),
            },
        ))
    }
}

#[cfg(feature = "etcd")]
fn controller(args: ControllerArgs) -> Result<u8, CliError> {
    use async_upload_rollout::fleet::{FleetController, FleetControllerConfig, FleetEvent};
    let start = match RolloutConfig::from_env() {
        Ok(config) => config.percent,
        Err(err) => {
            eprintln!("async-upload-rollout: {err}");
            return Ok(1);
        }
    };
    let id = args.id.unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "controller".to_owned()),
            std::process::id()
        )
    });
    let mut config = FleetControllerConfig::new(args.etcd, &args.prometheus, &args.name, &id);
    config.plan = load_plan(args.plan.as_deref())?;
    config.tick = args.tick;
    config.lease_ttl = args.lease_ttl;
    config.auto_advance = args.auto_advance;
    config.log = args.log;
    config.start = start;
    let fleet = FleetController::new(config)?;
    eprintln!("controller {id}: campaigning for rollout {}", args.name);
    let stop = std::sync::atomic::AtomicBool::new(false);
    fleet
        .run(&stop, &mut |event| match event {
            FleetEvent::Leading => eprintln!("controller {id}: leading"),
            FleetEvent::Following(leader) => eprintln!(
                "controller {id}: following {}",
                leader.as_deref().unwrap_or("(no leader yet)")
            ),
            FleetEvent::LostLeadership => {
                eprintln!("controller {id}: lost the leadership; stopped acting");
            }
            FleetEvent::Error(err) => eprintln!("controller {id}: {err}"),
            _ => {}
        })
        .map_err(|err| CliError::Controller(err.to_string()))?;
    Ok(0)
}

fn load_plan(path: Option<&Path>) -> Result<RolloutPlan, CliError> {
    Ok(match path {
        Some(path) => RolloutPlan::load(path)?,
        None => RolloutPlan::default(),
    })
}

/// Reads every log, showing progress on stderr when it is a terminal, and
/// reporting torn last lines and skipped records (with file and line).
fn read_fleet(paths: &[PathBuf]) -> Result<Fleet, CliError> {
    let terminal = std::io::stderr().is_terminal();
    let mut instances = Vec::with_capacity(paths.len());
    for path in paths {
        let mut last_shown = Instant::now();
        let mut shown = false;
        let mut progress = |lines: usize, bytes: u64| {
            if terminal && last_shown.elapsed() >= Duration::from_millis(200) {
                last_shown = Instant::now();
                shown = true;
                #[allow(clippy::cast_precision_loss)]
                let mib = bytes as f64 / (1024.0 * 1024.0);
                let _ = write!(
                    std::io::stderr(),
                    "\rreading {}: {lines} lines ({mib:.0} MiB)",
                    path.display()
                );
            }
        };
        let log = InstanceLog::read(path, &mut progress);
        if shown {
            // Clear the progress line.
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
        let log = log?;
        if let Some(torn) = log.torn_tail() {
            eprintln!(
                "warning: {}, line {}: torn last line skipped ({} bytes, a crash cut it short?): {}",
                path.display(),
                torn.line,
                torn.bytes,
                torn.reason
            );
        }
        for warning in log.warnings() {
            eprintln!("warning: {warning}");
        }
        instances.push(log);
    }
    Fleet::new(instances)
}

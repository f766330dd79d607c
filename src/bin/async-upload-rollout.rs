//! `async-upload-rollout`: the operator's command line (feature `cli`).
//!
//! ```text
//! async-upload-rollout check logs/async_upload_rollout/metrics.jsonl [--plan plan.toml] [--stage N] [--json]
//! async-upload-rollout report logs/*/metrics.jsonl -o report.html
//! async-upload-rollout bucket 0f8fad5b-d9cb-469f-a165-70867728950e --percent 10
//! async-upload-rollout plan --plan plan.toml [--traffic 120/min] [--json]
//! async-upload-rollout status [--state FILE] [--config FILE] [--json]
//! async-upload-rollout rollback --reason "error spike after deploy 4512" [--state FILE] [--wait 5s] [--create]
//! async-upload-rollout resume|advance|pause --reason TEXT [--state FILE] [--wait 5s] [--create]
//! async-upload-rollout config show [--config FILE] [--json]
//! async-upload-rollout config set --config FILE [--kill-switch on|off] [--force-async IDS] [--force-sync IDS] [--salt SALT]
//! async-upload-rollout status|rollback|config ... --etcd http://127.0.0.1:2379 [--name NAME]   (feature etcd)
//! async-upload-rollout controller --etcd URL --prometheus URL [--plan FILE] [--name NAME]  (feature etcd)
//! ```
//!
//! Every command that talks to etcd takes the same connection flags: `--etcd
//! https://…` with `--etcd-ca FILE`, `--etcd-cert FILE`, `--etcd-key FILE`,
//! and `--etcd-user USER` with the password in `ETCD_PASSWORD` (never a
//! flag). The controller sends Prometheus a bearer token from
//! `--prometheus-bearer-token-file FILE`, or basic auth from
//! `PROMETHEUS_USER` and `PROMETHEUS_PASSWORD`; an `https://` Prometheus
//! (feature `prometheus-https`) is checked against `--prometheus-ca FILE` or
//! Mozilla's roots.
//!
//! Exit codes of `check`, one per verdict: 0 advance, 4 hold, 2 manual
//! review, 3 rollback (while the controller's logged state is
//! `awaiting_review` or `rolled_back`, 2 or 3 whatever the recomputation
//! says); 1 usage or input error (every command), or an operator command
//! the state refuses. The operator commands (`rollback`, `resume`,
//! `advance`, `pause`, `config set`) exit 0 when the change is stored and
//! every live service acknowledged it within `--wait`, 5 when it is stored
//! but the services named did not acknowledge it in time, and 6 when it is
//! stored but no service acknowledged anything ("none seen"). The other
//! commands exit 0 on success. A breaking change before 1.0: `check` used
//! to exit 0 on hold too, so scripts that took 0 as "nothing to do" must
//! now accept 4. `check` prints the controller's state first, then the
//! recomputed checks and whether they agree with the controller's;
//! `check --json` prints the evaluation as one line of JSON with a
//! `controller` member instead. The work is done by
//! `async_upload_rollout::cli` (the binary's internals, hidden from the
//! library's docs and not part of its API); this file parses arguments and prints.
//!
//! One concept in one file of about 932 lines (185 docs): the command line's
//! flags and help text, one clap definition per subcommand.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_upload_rollout::cli::{
    CliError, ConfigChange, ConfigReport, Create, EXIT_NONE_SEEN, EXIT_NOT_CONFIRMED, Fleet,
    InstanceLog, Operated, ReadOptions, ReportOptions, StageSource, StatusReport, Traffic,
    TrafficOptions, describe_bucket, live_acks, operate, plan_at_traffic, render_checks,
    render_controller, render_outcome_json, render_traffic, report_html, set_config, wait_for,
};
use async_upload_rollout::{
    FileStateStore, Percent, RolloutConfig, RolloutPlan, StateStore,
    act::{Acknowledgement, ConfigFile, ConfigStore, DEFAULT_STATE_PATH, Operation},
    decide::DEFAULT_SALT,
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
    /// Judge the latest metrics of one or more instances' logs against the
    /// plan, beside the controller's own last logged state and verdict.
    ///
    /// Exit code: 0 advance, 4 hold, 2 manual review, 3 rollback (2 or 3
    /// while the controller's logged state is awaiting_review or
    /// rolled_back), 1 error.
    Check {
        /// The instances' metrics.jsonl files (their latest totals are merged).
        #[arg(required = true, value_name = "METRICS.JSONL")]
        logs: Vec<PathBuf>,
        /// The plan (TOML, or JSON when the name ends in .json); default: the week-2 plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// The stage index to judge (its criteria); default: the stage of
        /// the logs' current run. With logs at different stages or runs,
        /// which are otherwise refused, judges those at stage N.
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
    /// changed it last and why, the config (with --config FILE, or a
    /// fleet's), and every service with the epoch it applied and when.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// The config file the services read (file mode; a fleet's config is
        /// read from etcd).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Nothing async from the next poll of every service on this state
    /// (force lists included), until someone resumes. Always accepted, also
    /// over a state that cannot be read.
    ///
    /// Exit code: 0 stored and acknowledged by every live service, 5 stored
    /// but not acknowledged by the services named, 6 stored but no service
    /// seen, 1 error.
    Rollback(OperatorArgs),
    /// Back to running the current stage (after a rollback the stage starts
    /// again), judged on data from now on.
    ///
    /// Exit code: as for rollback; 1 when the state refuses it.
    Resume(OperatorArgs),
    /// Move to the next stage now (from `off`: start the first). Refused
    /// while rolled back: resume first.
    ///
    /// Exit code: as for rollback; 1 when the state refuses it.
    Advance(OperatorArgs),
    /// Stop automatic advancing; automatic rollback stays armed.
    ///
    /// Exit code: as for rollback; 1 when the state refuses it.
    Pause(OperatorArgs),
    /// Show or change the config every service applies (kill switch, id
    /// lists, salt): a config file (--config FILE) or a fleet's (--etcd URL
    /// --name NAME).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a fleet's controller (feature `etcd`): campaign for the
    /// leadership on etcd; while leading, judge every replica's metrics from
    /// Prometheus and write each decision fenced on the leadership. Any
    /// number may run; one leads. The first state, when none is stored,
    /// comes from ASYNC_UPLOAD_ROLLOUT (unset or 0: off).
    #[cfg(feature = "etcd")]
    Controller(ControllerArgs),
}

/// How to reach a fleet's etcd: the same flags on every command that talks
/// to it.
#[derive(Debug, Args)]
struct EtcdArgs {
    /// A fleet's etcd endpoint (feature `etcd`; repeat for several;
    /// https://HOST:PORT for TLS).
    #[arg(long, value_name = "URL")]
    etcd: Vec<String>,
    /// The CA certificate (PEM) that signed etcd's server certificate;
    /// default for https://: the system's trusted roots.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for an etcd started with
    /// --client-cert-auth; with --etcd-key.
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_cert"])]
    etcd_key: Option<PathBuf>,
    /// The etcd user, for an etcd with authentication enabled. Its password
    /// is read from the ETCD_PASSWORD environment variable (never a flag).
    #[arg(long, value_name = "USER", requires = "etcd")]
    etcd_user: Option<String>,
}

/// The `controller` command's arguments.
#[cfg(feature = "etcd")]
#[derive(Debug, Args)]
struct ControllerArgs {
    #[command(flatten)]
    fleet: EtcdArgs,
    /// The Prometheus that scrapes the replicas.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// A file holding the bearer token to send Prometheus (read again before
    /// every query). For basic auth instead, set PROMETHEUS_USER and
    /// PROMETHEUS_PASSWORD.
    #[arg(long, value_name = "FILE")]
    prometheus_bearer_token_file: Option<PathBuf>,
    /// The CA certificate (PEM) of an https:// Prometheus (feature
    /// `prometheus-https`); default: Mozilla's root certificates.
    #[arg(long, value_name = "FILE")]
    prometheus_ca: Option<PathBuf>,
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

/// `config show` and `config set`.
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the config: kill switch, lists, salt, fingerprint, revision.
    Show {
        #[command(flatten)]
        source: ConfigArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change the config with a compare-and-swap (a config file is written
    /// whole: temporary file and rename); the fields not given are kept.
    /// Running services apply it at their next poll.
    ///
    /// Exit code: 0 written (and acknowledged by every live service when
    /// their acknowledgements can be read: always in a fleet, with --state
    /// FILE for a config file), 5 written but not acknowledged by the
    /// services named, 6 written but no service seen, 1 error.
    Set(ConfigSetArgs),
}

/// Where the config is.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The config file the services read (TOML or JSON); or a fleet's
    /// --etcd instead.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "etcd",
        conflicts_with = "etcd"
    )]
    config: Option<PathBuf>,
    #[command(flatten)]
    fleet: EtcdArgs,
    /// The fleet's rollout name (with --etcd).
    #[arg(long, default_value = "async-upload")]
    name: String,
}

/// `config set`'s arguments.
#[derive(Debug, Args)]
struct ConfigSetArgs {
    #[command(flatten)]
    source: ConfigArgs,
    /// The kill switch: on (nothing async) or off.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    kill_switch: Option<bool>,
    /// The whole force_async list, comma-separated ("" empties it).
    #[arg(long, value_name = "IDS")]
    force_async: Option<String>,
    /// The whole force_sync list, comma-separated ("" empties it).
    #[arg(long, value_name = "IDS")]
    force_sync: Option<String>,
    /// The salt (changing it moves ids between the paths).
    #[arg(long)]
    salt: Option<String>,
    /// Start a config where none is stored (starting percent 0).
    #[arg(long)]
    create: bool,
    /// Replace a config that cannot be read (the fields not given take
    /// their defaults).
    #[arg(long)]
    overwrite: bool,
    /// With a config file: the state file of the services that read it,
    /// whose acknowledgements to wait for.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// How long to wait for every live service to acknowledge the new
    /// config (0s: do not wait).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{value:?}: expected on or off")),
    }
}

/// Where the state is.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The state file the service uses (not with --etcd).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE_PATH)]
    state: PathBuf,
    /// A fleet's etcd instead of the state file.
    #[command(flatten)]
    fleet: EtcdArgs,
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
    /// Start a new state where none is stored (otherwise a store without a
    /// state is an error: no service uses it).
    #[arg(long)]
    create: bool,
    /// How long to wait for every live service to acknowledge the new epoch
    /// (0s: do not wait).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    wait: Duration,
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
            let fleet = read_fleet(&logs, &ReadOptions::default())?;
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
                eprintln!("note: {}", outcome.headline());
                eprintln!("note: {judged}");
                println!("{}", render_outcome_json(&outcome));
            } else {
                println!("{}\n{judged}\n", outcome.headline());
                print!("{}", render_checks(&outcome.evaluation));
                let controller = render_controller(&outcome);
                if !controller.is_empty() {
                    print!("\n{controller}");
                }
            }
            Ok(outcome.exit_code())
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
            let mut read = ReadOptions::default();
            read.table_span = table_span;
            let fleet = read_fleet(&logs, &read)?;
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
                None if std::env::var_os(async_upload_rollout::decide::ROLLOUT_ENV_VAR)
                    .is_some() =>
                {
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
        Command::Status {
            store,
            config,
            json,
        } => {
            let plan = load_plan(store.plan.as_deref())?;
            let stores = open_store(&store)?;
            let config_file = match config {
                Some(path) => Some(config_file(path)?),
                None => None,
            };
            let config_store = config_file
                .as_ref()
                .map(|f| f as &dyn ConfigStore)
                .or(stores.config.as_deref());
            let report = StatusReport::read(
                &*stores.state,
                config_store,
                &plan,
                std::time::SystemTime::now(),
            )?;
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
        Command::Config(ConfigCommand::Show { source, json }) => {
            let stores = open_config(&source)?;
            let report = ConfigReport::read(&*stores.config)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.render());
            }
            Ok(u8::from(report.error.is_some()))
        }
        Command::Config(ConfigCommand::Set(args)) => config_set(args),
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
    let stores = open_store(&args.store)?;
    let store = &*stores.state;
    let now = std::time::SystemTime::now();
    // Who is live before the change: each must confirm it.
    let live_before = live_acks(store, now)?;
    let create = if args.create { Create::Yes } else { Create::No };
    let done = operate(store, &plan, operation, &args.reason, now, create)?;
    let (verb, stored) = match &done {
        Operated::Changed(stored) => ("stored", stored),
        Operated::Unchanged(stored) => ("nothing to change: already", stored),
    };
    let in_force = stored
        .state
        .percent_in_force(&plan)
        .map_or_else(|| "nothing async".to_owned(), |p| format!("{p} in force"));
    let state = &stored.state;
    let stage = state
        .stage
        .map_or_else(String::new, |stage| format!(" at stage {stage}"));
    println!(
        "{operation}: {verb} epoch {} in {}: {}{stage}, {in_force} ({} by {}: {})",
        state.epoch,
        store.describe(),
        state.status,
        humantime::format_rfc3339_millis(state.changed_at),
        state.changed_by,
        state.reason
    );
    confirm(
        store,
        &format!("epoch {}", stored.state.epoch),
        &|ack| ack.applied.epoch >= stored.state.epoch,
        live_before.as_deref(),
        args.wait,
    )
}

/// Waits for the services' acknowledgements (see `wait_for`), prints the
/// outcome, and returns the exit code: 0, 5 (not every service) or 6 (none
/// seen). `live_before` is `None` when the store keeps no acknowledgements.
fn confirm(
    store: &dyn StateStore,
    awaited: &str,
    applied: &dyn Fn(&Acknowledgement) -> bool,
    live_before: Option<&[Acknowledgement]>,
    wait: Duration,
) -> Result<u8, CliError> {
    let Some(live_before) = live_before else {
        println!(
            "{} keeps no acknowledgements: not waiting",
            store.describe()
        );
        return Ok(0);
    };
    if wait.is_zero() {
        println!(
            "not waiting for acknowledgements (--wait 0s): running services apply it at their next poll"
        );
        return Ok(0);
    }
    let confirmation = wait_for(store, awaited, applied, live_before, wait)?;
    let text = confirmation.render(&store.describe(), std::time::SystemTime::now());
    let code = confirmation.exit_code();
    if code == 0 {
        println!("{text}");
    } else {
        eprintln!("async-upload-rollout: {text}");
        debug_assert!(code == EXIT_NOT_CONFIRMED || code == EXIT_NONE_SEEN);
    }
    Ok(code)
}

fn config_set(args: ConfigSetArgs) -> Result<u8, CliError> {
    let list = |ids: Option<String>| {
        ids.map(|ids| {
            ids.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let change = ConfigChange {
        kill_switch: args.kill_switch,
        force_async: list(args.force_async),
        force_sync: list(args.force_sync),
        salt: args.salt,
    };
    if change.salt.is_some() {
        eprintln!(
            "async-upload-rollout: note: a new salt moves upload ids between the paths (every id is bucketed again)"
        );
    }
    let stores = open_config(&args.source)?;
    // The services' acknowledgements: a fleet's, or the state file's.
    let acks: Option<Box<dyn StateStore>> = match (stores.state, &args.state) {
        (Some(state), _) => Some(state),
        (None, Some(path)) => Some(Box::new(FileStateStore::new(path))),
        (None, None) => None,
    };
    let now = std::time::SystemTime::now();
    let live_before = match &acks {
        Some(store) => live_acks(&**store, now)?,
        None => None,
    };
    let create = if args.create { Create::Yes } else { Create::No };
    let report = set_config(&*stores.config, &change, create, args.overwrite)?;
    let fingerprint = report.fingerprint.clone().unwrap_or_default();
    println!(
        "config: wrote revision {} to {} (fingerprint {fingerprint}); running services apply it at their next poll",
        report.revision.unwrap_or_default(),
        report.store
    );
    print!("{}", report.render());
    let Some(store) = acks else {
        println!(
            "not waiting for acknowledgements: pass --state FILE (the services' state file) to wait for them"
        );
        return Ok(0);
    };
    confirm(
        &*store,
        &format!("config {fingerprint}"),
        &|ack| ack.applied.config.as_deref() == Some(fingerprint.as_str()),
        live_before.as_deref(),
        args.wait,
    )
}

/// The state store an operator command reads and writes, and the shared
/// config beside it (a fleet's).
struct Stores {
    state: Box<dyn StateStore>,
    config: Option<Box<dyn ConfigStore>>,
}

/// The state file, or a fleet's etcd with --etcd.
fn open_store(args: &StoreArgs) -> Result<Stores, CliError> {
    if args.fleet.etcd.is_empty() {
        return Ok(Stores {
            state: Box::new(FileStateStore::new(&args.state)),
            config: None,
        });
    }
    let etcd = open_etcd(&args.fleet, &args.name)?;
    Ok(Stores {
        state: etcd.0,
        config: Some(etcd.1),
    })
}

/// A config store, and the state store whose acknowledgements go with it
/// (a fleet's).
struct ConfigStores {
    config: Box<dyn ConfigStore>,
    state: Option<Box<dyn StateStore>>,
}

fn open_config(args: &ConfigArgs) -> Result<ConfigStores, CliError> {
    match &args.config {
        Some(path) => Ok(ConfigStores {
            config: Box::new(config_file(path.clone())?),
            state: None,
        }),
        None => {
            let (state, config) = open_etcd(&args.fleet, &args.name)?;
            Ok(ConfigStores {
                config,
                state: Some(state),
            })
        }
    }
}

fn config_file(path: PathBuf) -> Result<ConfigFile, CliError> {
    ConfigFile::new(path).map_err(|err| CliError::Usage(err.to_string()))
}

/// A fleet's etcd, as a state store and a config store.
#[allow(clippy::type_complexity)]
fn open_etcd(
    args: &EtcdArgs,
    name: &str,
) -> Result<(Box<dyn StateStore>, Box<dyn ConfigStore>), CliError> {
    #[cfg(feature = "etcd")]
    {
        let replica = format!("cli-{}", std::process::id());
        let store = etcd_builder(args, name, &replica)?.connect()?;
        Ok((Box::new(store.clone()), Box::new(store)))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = name;
        Err(CliError::State(
            async_upload_rollout::StoreError::Unavailable {
                store: args.etcd.join(","),
                message: "this binary was built without the `etcd` feature".to_owned(),
            },
        ))
    }
}

/// The etcd store's builder from the shared flags: TLS files, and the user
/// with its password from ETCD_PASSWORD.
#[cfg(feature = "etcd")]
fn etcd_builder(
    args: &EtcdArgs,
    name: &str,
    replica: &str,
) -> Result<async_upload_rollout::fleet::EtcdStateStoreBuilder, CliError> {
    use async_upload_rollout::fleet::{EtcdStateStore, EtcdTls, EtcdUser};
    let mut builder = EtcdStateStore::builder(&args.etcd, name, replica).tls(EtcdTls {
        ca: args.etcd_ca.clone(),
        cert: args.etcd_cert.clone(),
        key: args.etcd_key.clone(),
    });
    if let Some(user) = &args.etcd_user {
        builder = builder.etcd_user(EtcdUser::from_env(user)?);
    }
    Ok(builder)
}

#[cfg(feature = "etcd")]
fn controller(args: ControllerArgs) -> Result<u8, CliError> {
    use async_upload_rollout::fleet::{
        ConnectError, EtcdTls, EtcdUser, FleetController, FleetControllerConfig, FleetEvent,
        PrometheusAuth,
    };
    if args.fleet.etcd.is_empty() {
        return Err(CliError::Usage(
            "controller needs --etcd URL (the fleet's etcd; repeat for several endpoints)"
                .to_owned(),
        ));
    }
    let prometheus_auth = match (
        &args.prometheus_bearer_token_file,
        PrometheusAuth::from_env()?,
    ) {
        (None, from_env) => from_env,
        (Some(path), PrometheusAuth::None) => PrometheusAuth::bearer_token_file(path),
        (Some(_), _) => {
            return Err(ConnectError::Conflicting(
                "--prometheus-bearer-token-file and PROMETHEUS_USER/PROMETHEUS_PASSWORD are both given: use one".to_owned(),
            )
            .into());
        }
    };
    let etcd_user = match &args.fleet.etcd_user {
        Some(user) => Some(EtcdUser::from_env(user)?),
        None => None,
    };
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
    let mut config = FleetControllerConfig::new(args.fleet.etcd, &args.prometheus, &args.name, &id);
    config.etcd_tls = EtcdTls {
        ca: args.fleet.etcd_ca,
        cert: args.fleet.etcd_cert,
        key: args.fleet.etcd_key,
    };
    config.etcd_user = etcd_user;
    config.prometheus_auth = prometheus_auth;
    config.prometheus_ca = args.prometheus_ca;
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
            FleetEvent::Recovered(what) => eprintln!("controller {id}: {what}"),
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
fn read_fleet(paths: &[PathBuf], options: &ReadOptions) -> Result<Fleet, CliError> {
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
        let log = InstanceLog::read_with(path, options, &mut progress);
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

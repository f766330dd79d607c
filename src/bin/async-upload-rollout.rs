//! `async-upload-rollout`: the operator's command line (feature `cli`).
//!
//! ```text
//! async-upload-rollout check logs/async_upload_rollout/metrics.jsonl [--plan plan.toml] [--stage N] [--json]
//! async-upload-rollout report logs/*/metrics.jsonl -o report.html
//! async-upload-rollout bucket 0f8fad5b-d9cb-469f-a165-70867728950e --percent 10
//! async-upload-rollout plan --plan plan.toml
//! ```
//!
//! Exit codes of `check`, one per verdict: 0 advance, 4 hold, 2 manual
//! review, 3 rollback; 1 usage or input error (every command). The other
//! commands exit 0 on success. A breaking change before 1.0: `check` used to
//! exit 0 on hold too, so scripts that took 0 as "nothing to do" must now
//! accept 4. `check --json`
//! prints the evaluation as one line of JSON instead of the table. The work
//! is done by [`async_upload_rollout::cli`]; this file parses arguments and
//! prints.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_upload_rollout::cli::{
    CliError, Fleet, InstanceLog, ReportOptions, StageSource, describe_bucket, exit_code,
    render_checks, render_json, report_html,
};
use async_upload_rollout::{DEFAULT_SALT, Percent, RolloutConfig, RolloutPlan};
use clap::{Parser, Subcommand};

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
    /// Print the effective plan as TOML (after validating a plan file).
    Plan {
        /// The plan file to validate and print; default: the week-2 plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
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
        Command::Plan { plan } => {
            let loaded = load_plan(plan.as_deref())?;
            if let Some(path) = &plan {
                eprintln!("{}: valid plan", path.display());
            }
            print!("{}", loaded.to_toml_string());
            Ok(0)
        }
    }
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

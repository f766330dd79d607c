//! [`CliError`]: why a command could not do its work; and [`exit_code`], `check`'s exit code per verdict.

use std::io;
use std::path::PathBuf;

use crate::act::log::LogError;
use crate::act::state::{InvalidState, Operation, Refused};
use crate::act::store::StoreError;
use crate::judge::Verdict;
use crate::judge::plan::PlanError;

/// A command could not do its work (exit code 1). Every variant names the
/// file, and the line when one is to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A log could not be read, or a line other than the last is not a record.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The plan file could not be read, parsed or validated.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No log was given.
    #[error("no metrics log given")]
    NoLogs,
    /// No line of the log carries a snapshot: there is nothing to judge.
    #[error("{}: no line carries a metrics snapshot ({records} records read): nothing to judge", path.display())]
    NoSnapshot {
        /// The log.
        path: PathBuf,
        /// How many records it has.
        records: usize,
    },
    /// A logged stage index is not one of the plan's stages.
    #[error("{}, line {line}: stage {stage} is not in the plan, which has {stages} stages ({}); pass --plan or --stage", path.display(), stage_range(*stages))]
    StageNotInPlan {
        /// The log.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The logged stage index.
        stage: usize,
        /// How many stages the plan has.
        stages: usize,
    },
    /// `--stage` names a stage the plan does not have.
    #[error("--stage {stage}: the plan has {stages} stages ({})", stage_range(*stages))]
    UnknownStage {
        /// The index asked for.
        stage: usize,
        /// How many stages the plan has.
        stages: usize,
    },
    /// Neither `--stage`, nor a `stage` field, nor a `percent` that the plan
    /// has tells which stage to judge.
    #[error("cannot tell which stage to judge: {detail}; pass --stage N")]
    NoStage {
        /// What was looked at, naming the file and line.
        detail: String,
    },
    /// The report could not be written.
    #[error("cannot write the report {}: {source}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The rollout's state could not be read or written.
    #[error(transparent)]
    State(#[from] StoreError),
    /// The stored state does not fit the plan (or breaks an invariant).
    #[error("{store}: {source}")]
    InvalidState {
        /// The store.
        store: String,
        /// What is wrong.
        source: InvalidState,
    },
    /// The state does not allow the operation.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// An operation kept losing races with other writers.
    #[error("{store}: other writers kept changing the state; try again")]
    Raced {
        /// The store.
        store: String,
    },
    /// The store holds no state: no service uses it (a mistyped `--state`
    /// path or `--name`?). Nothing was written.
    #[error(
        "{store} holds no rollout state: no service uses it, nothing was written. Name the store the services use (--state FILE, or --etcd URL --name NAME), or pass --create to start a new one"
    )]
    NoState {
        /// The store (for a file, its absolute path).
        store: String,
    },
    /// The stored state cannot be read, and the operation is not a
    /// rollback (a rollback is always accepted).
    #[error(
        "{operation} refused: {source}. Only a rollback is accepted over an unreadable state (async-upload-rollout rollback --reason TEXT); fix or remove it to do anything else"
    )]
    Unreadable {
        /// What was asked.
        operation: Operation,
        /// Why the state cannot be read.
        source: StoreError,
    },
    /// A config store holds no config (`config set` without `--create`).
    #[error(
        "{store} holds no rollout config: nothing was written. Name the config the services read (--config FILE, or --etcd URL --name NAME), or pass --create to start one"
    )]
    NoConfig {
        /// The config store.
        store: String,
    },
    /// The config cannot be read, and `config set` was not told to replace
    /// it whole.
    #[error(
        "{source}. Fix it, or replace it whole with: async-upload-rollout config set --overwrite ... (fields not given take their defaults)"
    )]
    UnreadableConfig {
        /// Why the config cannot be read.
        source: StoreError,
    },
    /// A command-line value is not valid.
    #[error("{0}")]
    Usage(String),
    /// A fleet's etcd or Prometheus cannot be set up: a TLS or token file
    /// that cannot be read or is not what it should be, a missing password.
    #[cfg(feature = "etcd")]
    #[error(transparent)]
    Connect(#[from] crate::fleet::ConnectError),
    /// A fleet controller could not run.
    #[error("the controller stopped: {0}")]
    Controller(String),
    /// Several logs are at different stages, or in different runs of a
    /// stage: their totals are not one run's, so they are not merged.
    #[error(
        "cannot merge logs at different stages or runs: {}; pass --stage N to judge the logs at stage N",
        describe_logs(logs)
    )]
    MixedRuns {
        /// Each log and where it stands (`stage 1 (10%), run of epoch 3,
        /// rolled_back`).
        logs: Vec<(PathBuf, String)>,
    },
    /// A chart could not be drawn.
    #[error("cannot draw the chart {chart:?}: {message}")]
    Chart {
        /// The chart's title.
        chart: String,
        /// The drawing library's message.
        message: String,
    },
}

/// `0 to 3` for a plan of 4 stages (`none` for 0).
fn stage_range(stages: usize) -> String {
    match stages {
        0 => "none".to_owned(),
        1 => "0".to_owned(),
        n => format!("0 to {}", n - 1),
    }
}

/// `a.jsonl: stage 1 (10%); b.jsonl: stage 2 (50%)`.
fn describe_logs(logs: &[(PathBuf, String)]) -> String {
    logs.iter()
        .map(|(path, what)| format!("{}: {what}", path.display()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The exit code of `check` for `verdict`, distinct for each verdict so a
/// script can tell "ready" from "wait":
///
/// | code | verdict |
/// | --- | --- |
/// | 0 | advance: every criterion met, no trigger fired |
/// | 4 | hold: a criterion is not met yet, or too little data |
/// | 2 | manual review |
/// | 3 | rollback |
///
/// (1 is left for usage and input errors.) A breaking change before 1.0:
/// hold used to exit 0 like advance, so scripts that took 0 as "nothing to
/// do" must now accept 4.
#[must_use]
pub fn exit_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Advance => 0,
        Verdict::Hold => 4,
        Verdict::ManualReview => 2,
        Verdict::Rollback => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ranges_name_the_last_index() {
        let err = CliError::UnknownStage {
            stage: 9,
            stages: 4,
        };
        assert_eq!(err.to_string(), "--stage 9: the plan has 4 stages (0 to 3)");
        assert_eq!(stage_range(1), "0");
    }

    #[test]
    fn exit_codes_are_distinct_per_verdict() {
        assert_eq!(exit_code(Verdict::Advance), 0);
        assert_eq!(exit_code(Verdict::Hold), 4);
        assert_eq!(exit_code(Verdict::ManualReview), 2);
        assert_eq!(exit_code(Verdict::Rollback), 3);
    }
}

//! The command line: every flag, its default, and `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use async_upload_rollout::RolloutPlan;

use crate::auth::ADMIN_TOKEN_ENV_VAR;
use crate::config::{FleetConfig, ServerConfig};
use crate::error::StartError;

/// The flags, parsed.
#[derive(Debug)]
pub struct Args {
    /// Where to listen (`--addr`).
    pub addr: SocketAddr,
    /// Everything else.
    pub config: ServerConfig,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Serve.
    Run(Box<Args>),
    /// Print [`HELP`] and exit 0.
    Help,
}

const USAGE: &str = "usage: upload_server [--addr HOST:PORT] [--admin-token TOKEN] [--state FILE] \
                     [--config FILE] [--log PATH] [--tick DURATION] [--log-interval DURATION] [--store-dir DIR] \
                     [--plan FILE] [--auto-advance] [--memory-warmup DURATION] \
                     [--etcd URL --name NAME] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE] \
                     [--etcd-user USER] [--replica ID] [--stale-after DURATION] \
                     [--inject-async-error-rate SHARE] [--help]";

/// `--help`: every flag, what it does and its default.
pub const HELP: &str = "\
upload_server: an HTTP upload service whose uploads take the path the rollout picks
(sync: stored, then 201; async: 202, stored in the background), with the rollout's
controller judging them in the background.

usage: upload_server [FLAGS]

  --addr HOST:PORT            where to listen (default 127.0.0.1:8080; port 0: any free port)
  --admin-token TOKEN         enables the admin routes (PUT /rollout, POST /rollout/{rollback,
                              resume,advance,pause}) with `Authorization: Bearer TOKEN`; or set
                              ASYNC_UPLOAD_ADMIN_TOKEN (keeps it out of `ps`). Without one they
                              answer 403. An empty token is refused.
  --state FILE                the rollout's state file, shared with the command line
                              (default logs/async_upload_rollout/state.json); the service
                              acknowledges what it applies in FILE.acks/
  --config FILE               a TOML or JSON rollout config (salt, kill switch, force lists, the
                              starting percent), read again at every state poll; PUT /rollout
                              writes it (whole)
  --log PATH                  the controller's JSON-lines log (default
                              logs/async_upload_rollout/metrics.jsonl)
  --tick DURATION             how often the controller judges and memory is sampled (default 10s)
  --log-interval DURATION     how often a quiet tick is logged (default 1m; acting ticks always)
  --store-dir DIR             where uploads are stored (default $TMPDIR/async_upload_rollout/uploads)
  --plan FILE                 a TOML or JSON rollout plan (default: the week-2 plan)
  --auto-advance              let the controller advance stages by itself
  --memory-warmup DURATION    how long after each run of a stage the memory baseline is taken
                              (default 1m)
  --stale-after DURATION      how long the last state read serves while the store cannot be read
                              (default 30s); after that, nothing async until it answers
  --etcd URL                  join a fleet: state and config in etcd (repeat for several
                              endpoints; needs the `etcd` feature); --state is then not used
  --name NAME                 the fleet's rollout name (default async-upload)
  --etcd-ca FILE              TLS (https:// endpoints): the CA certificate (PEM) that signed
                              etcd's certificate (default: the system's trusted roots)
  --etcd-cert FILE            this replica's client certificate (PEM), for an etcd started with
                              --client-cert-auth; with --etcd-key
  --etcd-key FILE             the private key (PEM) of --etcd-cert
  --etcd-user USER            the etcd user, for an etcd with authentication enabled; its
                              password is read from ETCD_PASSWORD (never a flag)
  --replica ID                this service's name in its acknowledgements (default: host name
                              and pid)
  --inject-async-error-rate SHARE
                              for tests and demonstrations: fail that share (0 to 1) of async
                              uploads on purpose
  -h, --help                  print this and exit

With no stored state, ASYNC_UPLOAD_ROLLOUT (or the config file's percent) picks the first
state: 0 or unset is off, 10 starts the 10% stage; with a stored state, the state decides.
Ctrl-C or SIGTERM stops it gracefully (accepted uploads are stored first, at most 10 s).
";

/// Parses the flags (without the program name); the admin token defaults
/// to [`ADMIN_TOKEN_ENV_VAR`]'s value.
///
/// # Errors
///
/// [`StartError::Usage`] naming the flag and what is wrong with its value,
/// or [`StartError::Plan`] when `--plan`'s file cannot be loaded.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, StartError> {
    let usage = |message: String| StartError::Usage(format!("{message}\n{USAGE}"));
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        config: ServerConfig {
            admin_token: std::env::var(ADMIN_TOKEN_ENV_VAR).ok(),
            ..ServerConfig::default()
        },
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => {
                let v = value()?;
                parsed.addr = v.parse().map_err(|e| usage(format!("--addr {v:?}: {e}")))?;
            }
            "--admin-token" => parsed.config.admin_token = Some(value()?),
            "--state" => parsed.config.state_path = value()?.into(),
            "--etcd" => {
                let url = value()?;
                fleet(&mut parsed.config).etcd.push(url);
            }
            "--name" => fleet(&mut parsed.config).name = value()?,
            "--etcd-ca" => fleet(&mut parsed.config).etcd_ca = Some(value()?.into()),
            "--etcd-cert" => fleet(&mut parsed.config).etcd_cert = Some(value()?.into()),
            "--etcd-key" => fleet(&mut parsed.config).etcd_key = Some(value()?.into()),
            "--etcd-user" => fleet(&mut parsed.config).etcd_user = Some(value()?),
            "--replica" => parsed.config.service_id = Some(value()?),
            "--stale-after" => {
                let v = value()?;
                parsed.config.stale_after = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--stale-after {v:?}: {e}")))?;
            }
            "--inject-async-error-rate" => {
                let v = value()?;
                parsed.config.inject_async_error_rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        usage(format!(
                            "--inject-async-error-rate {v:?}: a share from 0 to 1"
                        ))
                    })?;
            }
            "--config" => parsed.config.config_path = Some(value()?.into()),
            "--log" => parsed.config.log_path = value()?.into(),
            "--tick" => {
                let v = value()?;
                parsed.config.tick = humantime::parse_duration(&v)
                    .ok()
                    .filter(|tick| !tick.is_zero())
                    .ok_or_else(|| {
                        usage(format!("--tick {v:?}: expected a duration such as 10s"))
                    })?;
            }
            "--log-interval" => {
                let v = value()?;
                parsed.config.log_interval = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--log-interval {v:?}: {e}")))?;
            }
            "--store-dir" => parsed.config.store_dir = value()?.into(),
            "--plan" => parsed.config.plan = RolloutPlan::load(value()?)?,
            "--auto-advance" => parsed.config.auto_advance = true,
            "--memory-warmup" => {
                let v = value()?;
                parsed.config.memory_warmup = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--memory-warmup {v:?}: {e}")))?;
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(usage(format!("unknown flag {other:?} (see --help)"))),
        }
    }
    if let Some(fleet) = &mut parsed.config.fleet {
        if fleet.etcd.is_empty() {
            return Err(usage(
                "--name, --etcd-ca, --etcd-cert, --etcd-key and --etcd-user need --etcd URL"
                    .to_owned(),
            ));
        }
        if let Some(id) = &parsed.config.service_id {
            fleet.replica.clone_from(id);
        }
    }
    if parsed.config.fleet.is_some() {
        // The store answers from its watch: poll it often, so a fleet
        // decision is applied (and acknowledged) within a tenth of a second.
        parsed.config.state_poll = Duration::from_millis(100);
    }
    Ok(Parsed::Run(Box::new(parsed)))
}

/// The fleet part of `config`, created on the first fleet flag.
fn fleet(config: &mut ServerConfig) -> &mut FleetConfig {
    config.fleet.get_or_insert_with(|| FleetConfig {
        etcd: Vec::new(),
        etcd_ca: None,
        etcd_cert: None,
        etcd_key: None,
        etcd_user: None,
        name: "async-upload".to_owned(),
        replica: async_upload_rollout::act::default_service_id(),
    })
}

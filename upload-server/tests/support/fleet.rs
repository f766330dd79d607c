//! A fleet's parts as the fleet tests start them (feature `etcd`): replicas
//! (the upload server joined to etcd), controllers and operator commands
//! (the library's command line), and raw writes to the fleet's keys.

use std::ops::Deref;
use std::path::Path;
use std::process::Command;

use super::{Process, SERVER, ServerProcess, cli};

/// A replica of the fleet `name` on the etcd at `etcd`, its files in `dir`,
/// acknowledging as `id`, with `extra` flags (a later `--tick` wins).
pub fn replica(dir: &Path, etcd: &str, name: &str, id: &str, extra: &[&str]) -> ServerProcess {
    let mut flags = vec![
        "--etcd",
        etcd,
        "--name",
        name,
        "--replica",
        id,
        "--tick",
        "200ms",
    ];
    flags.extend_from_slice(extra);
    ServerProcess::start(SERVER, dir, None, &flags)
}

/// `async-upload-rollout controller` of the fleet `name`, ticking every
/// second, its first request 10%; killed when dropped, its stderr kept.
pub struct Controller {
    /// Its `--id`.
    pub id: String,
    process: Process,
}

impl Controller {
    /// Starts it on the etcd at `etcd`, reading Prometheus at `prometheus`,
    /// with a leadership lease of `lease_ttl` seconds.
    pub fn start(etcd: &str, prometheus: &str, name: &str, id: &str, lease_ttl: u64) -> Controller {
        let mut command = Command::new(cli());
        command
            .args(["controller", "--etcd", etcd, "--prometheus", prometheus])
            .args(["--name", name, "--tick", "1s", "--id", id])
            .args(["--lease-ttl", &lease_ttl.to_string()])
            .env("ASYNC_UPLOAD_ROLLOUT", "10");
        Controller {
            id: id.to_owned(),
            process: Process::start(command),
        }
    }
}

impl Deref for Controller {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

/// An operator's `command` (`rollback`, `resume`, ...) with `reason`
/// against the fleet `name`; asserts it succeeded and returns its stdout.
pub fn operator(etcd: &str, name: &str, command: &str, reason: &str) -> String {
    let (code, stdout, stderr) = super::run_cli(
        &[command, "--etcd", etcd, "--name", name, "--reason", reason],
        &[],
    );
    assert_eq!(code, 0, "{command}: {stdout}{stderr}");
    stdout
}

/// Writes `value` at the key `key` of the fleet `name` as is (garbage
/// included), or deletes it (`None`).
pub fn raw(etcd: &str, name: &str, key: &str, value: Option<&str>) {
    let key = format!("{}{key}", async_upload_rollout::fleet::key_prefix(name));
    test_support::etcd::raw(etcd, &key, value);
}

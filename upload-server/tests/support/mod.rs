//! What the upload server's tests share: the two binaries they run (this
//! crate's `upload_server`, the library's `async-upload-rollout`), and the
//! workspace's test support (real etcd and Prometheus, certificates, the
//! HTTP client, processes).
#![allow(dead_code, unused_imports)] // each test uses its part

#[cfg(feature = "etcd")]
pub mod fleet;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use test_support::process::{
    DEADLINE, Process, ServerProcess, TOKEN, built_beside, ids, status_of,
};
pub use test_support::{certs, http, servers};

/// The upload server binary, built by cargo for this crate's tests.
pub const SERVER: &str = env!("CARGO_BIN_EXE_upload_server");

/// The library's command line, `async-upload-rollout` (features `cli` and,
/// for the fleet, `etcd`), built beside [`SERVER`], and built first when it
/// is missing or stale: see [`test_support::process::built_beside`].
pub fn cli() -> &'static str {
    static CLI: OnceLock<String> = OnceLock::new();
    CLI.get_or_init(|| {
        let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        built_beside(SERVER, "async-upload-rollout", &library)
    })
}

/// The command line ([`cli`]) as a command to run, the passwords it reads
/// from the environment unset (a test sets those it means).
pub fn cli_command() -> std::process::Command {
    let mut command = std::process::Command::new(cli());
    command
        .env_remove("ETCD_PASSWORD")
        .env_remove("PROMETHEUS_USER")
        .env_remove("PROMETHEUS_PASSWORD");
    command
}

/// Runs `command` to its end: `(exit code, stdout, stderr)`.
pub fn output_of(command: &mut std::process::Command) -> (i32, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The command line run to its end with `args` and `env`: `(exit code,
/// stdout, stderr)`.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    output_of(cli_command().args(args).envs(env.iter().copied()))
}

/// Waits for `done`, at most [`DEADLINE`]; returns how long it took.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

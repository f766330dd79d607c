//! Processes under test: a [`Process`] keeps every stderr line (with when
//! it came) and is killed when dropped; a [`ServerProcess`] is the upload
//! server binary started on a free port, with a few requests it is asked
//! again and again.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::http::{self, Reply};

/// The admin token every [`ServerProcess`] is started with.
pub const TOKEN: &str = "process-test-token";
/// Bounds every wait here.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A child process with stdin and stdout closed, its stderr lines
/// collected as they come by a thread of their own; killed (SIGKILL) when
/// dropped.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Process {
    /// Spawns `command` (stdin and stdout set to null, stderr piped).
    pub fn start(mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), line));
            }
        });
        Process { child, lines }
    }

    /// Its stderr lines that came at or after `since`.
    pub fn lines_since(&self, since: Instant) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Its stderr lines since `since` that contain `what`.
    pub fn said_since(&self, since: Instant, what: &str) -> Vec<String> {
        let mut lines = self.lines_since(since);
        lines.retain(|line| line.contains(what));
        lines
    }

    /// Whether a stderr line so far contains `what`.
    pub fn said(&self, what: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(_, line)| line.contains(what))
    }

    /// Its stderr so far, one line after the other.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (its status, then).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for it to exit, at most `within`; `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upload server binary as a child process, killed (SIGKILL) when
/// dropped.
pub struct ServerProcess {
    process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server binary `bin` on the files in `dir` (`state.json`,
    /// `metrics.jsonl`, `uploads/`) on a free loopback port, with the admin
    /// token [`TOKEN`], a 100 ms tick, `ASYNC_UPLOAD_ROLLOUT` set to
    /// `percent` (or unset) and `extra` flags; waits until it listens.
    pub fn start(bin: &str, dir: &Path, percent: Option<&str>, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(bin, dir, percent, extra, &[])
    }

    /// [`start`](ServerProcess::start) with environment variables set for
    /// the child (a password, say).
    pub fn start_with_env(
        bin: &str,
        dir: &Path,
        percent: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = Command::new(bin);
        command
            .args(["--addr", "127.0.0.1:0", "--admin-token", TOKEN, "--state"])
            .arg(dir.join("state.json"))
            .arg("--log")
            .arg(dir.join("metrics.jsonl"))
            .arg("--store-dir")
            .arg(dir.join("uploads"))
            .args(["--tick", "100ms", "--memory-warmup", "1h"])
            .args(extra)
            .envs(env.iter().copied());
        match percent {
            Some(p) => command.env("ASYNC_UPLOAD_ROLLOUT", p),
            None => command.env_remove("ASYNC_UPLOAD_ROLLOUT"),
        };
        let started = Instant::now();
        let mut process = Process::start(command);
        let deadline = started + DEADLINE;
        let addr = loop {
            let said = process.said_since(started, "listening on http://");
            if let Some(line) = said.first() {
                let rest = line.split("listening on http://").nth(1).unwrap();
                break rest.split(',').next().unwrap().parse().unwrap();
            }
            let exited = process.exited();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the server did not start ({}); stderr:\n{}",
                exited.map_or_else(|| "timed out".to_owned(), |s| s.to_string()),
                process.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        ServerProcess { process, addr }
    }

    /// What the server wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.process.text()
    }

    /// The process and its stderr.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// `method path` with `headers` and `body`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        http::request(self.addr, method, path, headers, body)
    }

    /// `GET /rollout`, which must answer 200, as JSON.
    pub fn get_rollout(&self) -> serde_json::Value {
        let reply = http::get(self.addr, "/rollout");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// `POST /rollout/{operation}` with `{"reason": reason}` and the token:
    /// the status and the body.
    pub fn operate(&self, operation: &str, reason: &str) -> (u16, String) {
        let body = serde_json::json!({ "reason": reason }).to_string();
        let reply = self.request(
            "POST",
            &format!("/rollout/{operation}"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            body.as_bytes(),
        );
        (reply.status, reply.body)
    }

    /// Whether upload `id` takes the async path now
    /// (`GET /rollout/decide/{id}`).
    pub fn decide(&self, id: &str) -> bool {
        let reply = http::get(self.addr, &format!("/rollout/decide/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["use_async"].as_bool().unwrap()
    }

    /// Uploads `ids`; returns how many took the async path (202).
    pub fn upload(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| {
                let reply = self.request("POST", "/uploads", &[("Upload-Id", id)], b"data");
                let status = reply.status;
                assert!(
                    status == 201 || status == 202,
                    "{id}: {status} {}",
                    reply.body
                );
                status == 202
            })
            .count()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// SIGKILL: no shutdown, no flush, as an OOM kill.
    pub fn kill(self) {
        drop(self);
    }
}

/// `n` upload ids `prefix-0000`, `prefix-0001`, ...
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// The status in a `GET /rollout` answer (`unknown` when there is none).
pub fn status_of(rollout: &serde_json::Value) -> &str {
    rollout["state"]["status"].as_str().unwrap_or("unknown")
}

/// The binary `name` of another package of the workspace, built into the
/// same directory as `beside` (a binary cargo built for this test, from
/// `env!("CARGO_BIN_EXE_...")`), whose package's root is `package`.
///
/// A test can ask cargo only for its own package's binaries; the other
/// package's are built beside them when the workspace's tests are built
/// together (`cargo test --workspace --all-features`). When it is missing
/// there, or older than a file under `package/src` or `package/Cargo.toml`
/// (a stale binary would test old code), this builds it first with
/// `cargo build --all-features` (in the same profile), once per test
/// process; a build that fails is a panic naming the command.
pub fn built_beside(beside: &str, name: &str, package: &Path) -> String {
    let dir = Path::new(beside).parent().unwrap();
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let newest = newest_file(&package.join("src")).max(modified(&package.join("Cargo.toml")));
    if modified(&bin) < newest {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        build
            .args(["build", "--all-features", "--bin", name, "--manifest-path"])
            .arg(package.join("Cargo.toml"));
        if dir.ends_with("release") {
            build.arg("--release");
        }
        eprintln!("{} is missing or stale: {build:?}", bin.display());
        let status = build.status();
        assert!(
            status.as_ref().is_ok_and(std::process::ExitStatus::success),
            "{build:?}: {status:?}"
        );
        assert!(
            modified(&bin) >= newest,
            "{build:?} did not build {}",
            bin.display()
        );
    }
    bin.to_str().unwrap().to_owned()
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The newest modification time of a file under `dir`.
fn newest_file(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_file(&path)
        } else {
            modified(&path)
        };
        newest = newest.max(time);
    }
    newest
}

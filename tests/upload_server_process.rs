//! The upload_server example as real processes: killed with SIGKILL and
//! started again on the same state file, started with
//! `ASYNC_UPLOAD_ROLLOUT=0`, a corrupt state file, and reached by the
//! operator's command line.
//!
//! Each server is this test binary started again as a child process (the
//! example's code is compiled in with `#[path]`), running only
//! [`child_process_runs_the_server`] with its flags in an environment
//! variable. It listens on `127.0.0.1:0` and prints its address on stderr;
//! every child is killed when its test ends, and every test is bounded.
#![cfg(feature = "prometheus")]

#[allow(dead_code)] // the in-process helpers are for tests/upload_server.rs
#[path = "../examples/upload_server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_upload_rollout::{Percent, Rollout, RolloutConfig};

/// The environment variable that makes this binary a server child.
const CHILD_ARGS: &str = "UPLOAD_SERVER_TEST_CHILD_ARGS";
const TOKEN: &str = "process-test-token";
/// Bounds every wait here.
const DEADLINE: Duration = Duration::from_secs(30);

/// Not a test of its own: the entry point of the child processes the other
/// tests start (it returns at once when run as a normal test).
#[test]
fn child_process_runs_the_server() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = args.split('\u{1f}').map(str::to_owned).collect();
    if let Err(err) = runtime.block_on(server::run(args)) {
        eprintln!("upload_server: {err}");
        std::process::exit(1);
    }
}

/// A server child process, killed (SIGKILL) when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
    /// Stderr lines read so far.
    seen: Vec<String>,
}

impl ServerProcess {
    /// Starts a server on the files in `dir` with `ASYNC_UPLOAD_ROLLOUT` set
    /// to `percent` (or unset) and extra flags.
    fn start(dir: &Path, percent: Option<&str>, extra: &[&str]) -> ServerProcess {
        let mut args: Vec<String> = [
            "--addr",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--state",
            path_str(&dir.join("state.json")),
            "--log",
            path_str(&dir.join("metrics.jsonl")),
            "--store-dir",
            path_str(&dir.join("uploads")),
            "--tick",
            "100ms",
            "--memory-warmup",
            "1h",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child_process_runs_the_server", "--nocapture"])
            .env(CHILD_ARGS, args.join("\u{1f}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match percent {
            Some(p) => command.env("ASYNC_UPLOAD_ROLLOUT", p),
            None => command.env_remove("ASYNC_UPLOAD_ROLLOUT"),
        };
        let mut child = command.spawn().unwrap();
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stderr.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the server did not start; stderr:\n{}", seen.join("\n"))
            });
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split(',').next().unwrap();
                break addr.parse().unwrap();
            }
            seen.push(line);
        };
        ServerProcess {
            child,
            addr,
            stderr,
            seen,
        }
    }

    /// What the server wrote on stderr so far.
    fn stderr_text(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    fn get_rollout(&self) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", "/rollout", &[], b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn operate(&self, operation: &str, reason: &str) -> (u16, String) {
        let body = serde_json::json!({ "reason": reason }).to_string();
        http(
            self.addr,
            "POST",
            &format!("/rollout/{operation}"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            body.as_bytes(),
        )
    }

    /// Uploads `ids`; returns how many took the async path (202).
    fn upload(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| {
                let (status, body) =
                    http(self.addr, "POST", "/uploads", &[("Upload-Id", id)], b"data");
                assert!(status == 201 || status == 202, "{id}: {status} {body}");
                status == 202
            })
            .count()
    }

    /// SIGKILL: no shutdown, no flush, as an OOM kill.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One HTTP/1.1 request on a new connection, read to the server's close.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    body
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn status_of(rollout: &serde_json::Value) -> &str {
    rollout["state"]["status"].as_str().unwrap_or("unknown")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn restart_after_rollback_stays_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\nforce_async = [\"load-test-1\"]\n").unwrap();
    let flags = ["--config", path_str(&config)];

    let server = ServerProcess::start(dir.path(), Some("10"), &flags);
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 10.0);
    let all = ids("before", 200);
    let reference = Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).unwrap(),
    ));
    let expected = all
        .iter()
        .filter(|id| reference.should_use_async(*id))
        .count();
    assert_eq!(server.upload(&all), expected);
    assert_eq!(
        server.upload(&["load-test-1".to_owned()]),
        1,
        "force-listed"
    );

    let (status, body) = server.operate("rollback", "error spike after deploy 4512");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.upload(&all), 0);
    assert_eq!(
        server.upload(&["load-test-1".to_owned()]),
        0,
        "force-listed ids too"
    );
    server.kill();

    // Killed, started again with the same environment and state file.
    let server = ServerProcess::start(dir.path(), Some("10"), &flags);
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "rolled_back", "{rollout}");
    assert_eq!(rollout["percent"], 0.0);
    assert_eq!(rollout["halted"], true);
    assert_eq!(rollout["state"]["reason"], "error spike after deploy 4512");
    assert_eq!(server.upload(&all), 0, "nothing async after the restart");
    assert_eq!(server.upload(&["load-test-1".to_owned()]), 0);

    // A config change does not bring it back either.
    std::fs::write(
        &config,
        "percent = 50\nforce_async = [\"load-test-1\", \"x\"]\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // past one config poll
    assert_eq!(server.get_rollout()["percent"], 0.0);
    assert_eq!(server.upload(&all), 0);

    // Advancing is refused until someone resumes.
    let (status, body) = server.operate("advance", "skip it");
    assert_eq!(status, 409, "{body}");
    let (status, body) = server.operate("resume", "fixed in 4513");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.upload(&all), expected);
}

#[test]
fn async_upload_rollout_zero_serves_nothing_async() {
    let dir = tempfile::tempdir().unwrap();
    for percent in [Some("0"), None] {
        let _ = std::fs::remove_file(dir.path().join("state.json"));
        let server = ServerProcess::start(dir.path(), percent, &[]);
        let rollout = server.get_rollout();
        assert_eq!(status_of(&rollout), "off", "{percent:?}: {rollout}");
        assert_eq!(rollout["percent"], 0.0);
        assert_eq!(rollout["state"]["stage"], serde_json::Value::Null);
        assert_eq!(server.upload(&ids("off", 300)), 0, "{percent:?}");
    }
}

#[test]
fn a_corrupt_state_file_serves_on_the_sync_path_and_reports_state_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), "{\"epoch\": 9, \"stat").unwrap();
    let mut server = ServerProcess::start(dir.path(), Some("50"), &[]);
    let rollout = server.get_rollout();
    let error = rollout["state_error"].as_str().expect("state_error is set");
    assert!(error.contains("state.json"), "{error}");
    assert_eq!(rollout["state"], serde_json::Value::Null);
    assert_eq!(rollout["percent"], 0.0);
    let all = ids("corrupt", 200);
    assert_eq!(server.upload(&all), 0, "every upload on the sync path");
    wait_until("the uploads to be stored", || {
        all.iter()
            .all(|id| dir.path().join("uploads").join(id).exists())
    });
    let stderr = server.stderr_text();
    assert!(stderr.contains("STATE ERROR"), "loud at start:\n{stderr}");

    // Removing the bad file lets the service start from its environment.
    std::fs::remove_file(dir.path().join("state.json")).unwrap();
    wait_until("the state to be known again", || {
        server.get_rollout()["state_error"].is_null()
    });
    let rollout = server.get_rollout();
    assert_eq!(status_of(&rollout), "running");
    assert_eq!(rollout["percent"], 50.0);
}

#[cfg(feature = "cli")]
#[test]
fn the_clis_rollback_on_the_state_file_reaches_a_running_server_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let server = ServerProcess::start(dir.path(), Some("10"), &[]);
    assert_eq!(status_of(&server.get_rollout()), "running");

    let output = Command::new(env!("CARGO_BIN_EXE_async-upload-rollout"))
        .args([
            "rollback",
            "--state",
            path_str(&state),
            "--reason",
            "pager: 5xx spike",
        ])
        .output()
        .unwrap();
    let written = Instant::now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let took = wait_until("the server to roll back", || {
        status_of(&server.get_rollout()) == "rolled_back"
    });
    assert!(
        written.elapsed() < Duration::from_secs(2),
        "seen after {took:?}"
    );
    assert_eq!(server.get_rollout()["percent"], 0.0);
    assert_eq!(server.upload(&ids("after-cli", 200)), 0);

    // `status` shows what the server runs on.
    let output = Command::new(env!("CARGO_BIN_EXE_async-upload-rollout"))
        .args(["status", "--state", path_str(&state), "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["state"]["status"], "rolled_back");
    assert_eq!(status["state"]["reason"], "pager: 5xx spike");
    assert_eq!(status["halted"], true);
}

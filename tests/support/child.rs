//! Servers as child processes: the test binary started again, running only
//! its `child_process_runs_the_server` test with the server's flags in an
//! environment variable; and a minimal blocking HTTP client to talk to them.
//!
//! A test binary that uses [`ServerProcess`] must have that test, calling
//! [`run_if_child`] with the example's `run`.

use std::fmt::Display;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that makes a test binary a server child.
pub const CHILD_ARGS: &str = "UPLOAD_SERVER_TEST_CHILD_ARGS";
/// The admin token every child server is started with.
pub const TOKEN: &str = "process-test-token";
/// Bounds every wait here.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Every line `pipe` (a child's stderr) writes, collected by a thread of
/// its own as they come, so that a test can read what was said so far.
pub fn collect_lines(
    pipe: impl Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    lines
}

/// In a child (the environment variable set): runs the server with its
/// flags until it is killed. In a normal test run: returns at once.
pub fn run_if_child<F, Fut, E>(run: F)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = args.split('\u{1f}').map(str::to_owned).collect();
    if let Err(err) = runtime.block_on(run(args)) {
        eprintln!("upload_server: {err}");
        std::process::exit(1);
    }
}

/// A server child process, killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
    /// Stderr lines read so far.
    seen: Vec<String>,
}

impl ServerProcess {
    /// Starts a server on the files in `dir` with `ASYNC_UPLOAD_ROLLOUT` set
    /// to `percent` (or unset) and extra flags.
    pub fn start(dir: &Path, percent: Option<&str>, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(dir, percent, extra, &[])
    }

    /// [`start`](ServerProcess::start) with environment variables set for
    /// the child (a password, say).
    pub fn start_with_env(
        dir: &Path,
        percent: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
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
            .envs(env.iter().copied())
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
    pub fn stderr_text(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    pub fn get_rollout(&self) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", "/rollout", &[], b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn operate(&self, operation: &str, reason: &str) -> (u16, String) {
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
    pub fn upload(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| {
                let (status, body) =
                    http(self.addr, "POST", "/uploads", &[("Upload-Id", id)], b"data");
                assert!(status == 201 || status == 202, "{id}: {status} {body}");
                status == 202
            })
            .count()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
    pub fn kill(mut self) {
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

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One HTTP/1.1 request on a new connection, read to the server's close.
pub fn http(
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

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

pub fn status_of(rollout: &serde_json::Value) -> &str {
    rollout["state"]["status"].as_str().unwrap_or("unknown")
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

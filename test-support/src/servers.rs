//! Real servers for the fleet tests: etcd and Prometheus on loopback with
//! temporary data directories, and a TCP proxy that a test can cut (every
//! connection closed, new ones refused) or silence (nothing forwarded,
//! nothing closed) to partition one client from etcd. etcd can be killed
//! and started again on the same data and port, and stopped and continued
//! (SIGSTOP, SIGCONT): a server that hangs instead of refusing.
//!
//! Each is started by the test that needs it and killed when dropped. The
//! binaries come from Debian's `etcd-server` and `prometheus` packages
//! (`.ci/run` installs them when missing).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released: another process could
/// take it in between, which the callers' start checks would report).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `addr` accepts connections, at most `within`.
pub fn wait_for_port(addr: SocketAddr, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn require(binary: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{binary}` is not installed: apt-get install {package} (.ci/run does this)"
    );
}

/// An etcd server on loopback, killed when dropped.
pub struct Etcd {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
    /// Where its plain-HTTP `/health` answers: the client address, or the
    /// metrics listener of an etcd with TLS.
    health: SocketAddr,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        require("etcd", "etcd-server");
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args = etcd_args(dir.path(), &url, &peer_url, &[]);
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
        let child = spawn_etcd(&args, addr);
        Etcd {
            child,
            url,
            addr,
            health: addr,
            args,
            _dir: dir,
        }
    }

    /// Kills it with SIGKILL (its data stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same data directory and ports, and waits
    /// until it serves (a killed etcd; its leases come back with it).
    pub fn restart(&mut self) {
        self.child = spawn_etcd(&self.args, self.health);
    }

    /// Stops it with SIGSTOP: connections stay open and nothing answers.
    pub fn pause(&self) {
        signal(self.child.id(), libc::SIGSTOP);
    }

    /// Continues it with SIGCONT.
    pub fn resume(&self) {
        signal(self.child.id(), libc::SIGCONT);
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill(2) on a child process this test started and has not
    // reaped; it touches no memory of this process.
    let done = unsafe { libc::kill(pid, signal) };
    assert_eq!(done, 0, "kill({pid}, {signal})");
}

/// A one-member etcd's arguments: its data under `dir`, clients on `url`,
/// peers on `peer_url`, then `extra`.
fn etcd_args(dir: &Path, url: &str, peer_url: &str, extra: &[&str]) -> Vec<String> {
    let data = dir.join("data");
    let cluster = format!("test={peer_url}");
    let base = [
        "--name",
        "test",
        "--data-dir",
        path_str(&data),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        &cluster,
        "--log-level",
        "error",
    ];
    base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
}

/// Starts etcd with `args` and waits until it serves: until its plain-HTTP
/// `/health` on `health` (the client address, or a TLS etcd's metrics
/// listener) says so.
fn spawn_etcd(args: &[String], health: SocketAddr) -> Child {
    let child = Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    wait_for_port(health, READY_WITHIN, "etcd");
    // Listening is not ready either: until the member has elected itself
    // leader, gRPC calls can be reset. `/health` answers 200 with
    // `"health":"true"` once it serves requests; a refused or reset
    // connection meanwhile means "not yet".
    wait_ready(health, "/health", "\"health\":\"true\"", "etcd");
    child
}

/// The files an etcd with TLS serves with.
pub struct EtcdTlsFiles<'a> {
    /// Its server certificate and key.
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The CA whose client certificates it accepts (`--client-cert-auth`).
    pub client_ca: &'a Path,
}

impl Etcd {
    /// An etcd serving clients over TLS only (`https://`), asking every
    /// client for a certificate signed by `files.client_ca`
    /// (`--client-cert-auth --trusted-ca-file`). Readiness is checked on a
    /// plain-HTTP metrics listener (`/health`), so no client certificate is
    /// needed for it. Authentication is not enabled here: a test enables it
    /// through the client API once etcd runs.
    pub fn start_tls(files: &EtcdTlsFiles<'_>) -> Etcd {
        require("etcd", "etcd-server");
        let dir = tempfile::tempdir().unwrap();
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let metrics_url = format!("http://127.0.0.1:{metrics}");
        let args = etcd_args(
            dir.path(),
            &url,
            &peer_url,
            &[
                "--listen-metrics-urls",
                &metrics_url,
                "--cert-file",
                path_str(files.cert),
                "--key-file",
                path_str(files.key),
                "--client-cert-auth",
                "--trusted-ca-file",
                path_str(files.client_ca),
            ],
        );
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
        let health: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
        let child = spawn_etcd(&args, health);
        Etcd {
            child,
            url,
            addr,
            health,
            args,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server on loopback scraping `targets` every `interval`,
/// killed when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[SocketAddr], interval: Duration) -> Prometheus {
        Prometheus::launch(targets, interval, None, None)
    }

    /// A Prometheus like [`Prometheus::start`] whose own HTTP API asks for
    /// credentials: its `--web.config.file` holds `web_config` (for example
    /// `basic_auth_users` with a bcrypt hash, `tls_server_config`).
    /// `authorization` is the `Authorization` header its readiness check
    /// sends. With `tls_server_config` its URL is `https://` and only the
    /// port is waited for: the caller checks readiness with its own client.
    pub fn start_with_web_config(
        targets: &[SocketAddr],
        interval: Duration,
        web_config: &str,
        authorization: Option<&str>,
    ) -> Prometheus {
        Prometheus::launch(targets, interval, Some(web_config), authorization)
    }

    /// Starts Prometheus scraping `targets`, with `web_config` as its
    /// `--web.config.file` when there is one, and waits until it is ready.
    fn launch(
        targets: &[SocketAddr],
        interval: Duration,
        web_config: Option<&str>,
        authorization: Option<&str>,
    ) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = web_config.is_some_and(|web| web.contains("tls_server_config"));
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {ms}ms\n  evaluation_interval: {ms}ms\n\
             scrape_configs:\n  - job_name: upload_server\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", "),
            ms = interval.as_millis()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut args = vec![format!("--config.file={}", config_path.display())];
        if let Some(web_config) = web_config {
            let web_path = dir.path().join("web.yml");
            std::fs::write(&web_path, web_config).unwrap();
            args.push(format!("--web.config.file={}", web_path.display()));
        }
        args.extend([
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=error".to_owned(),
        ]);
        let child = Command::new("prometheus")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, READY_WITHIN, "prometheus");
        // Listening is not ready: the query API answers 503 until the
        // storage is open.
        if !tls {
            wait_ready_with(addr, "/-/ready", "", "prometheus", authorization);
        }
        Prometheus {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on loopback to `upstream` that a test can cut (every
/// connection through it is closed and new ones are refused) or silence
/// (connections stay open and new ones are accepted, but no byte is
/// forwarded either way: a network that hangs) until it is restored. How a
/// test partitions one client from etcd.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (cut_flag, streams) = (Arc::clone(&cut), Arc::clone(&open));
        let silence = Arc::clone(&silent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut open = streams.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&silence),
                );
                pipe(server, client, Arc::clone(&silence));
            }
        });
        Proxy {
            addr,
            cut,
            silent,
            open,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards nothing from now on, closing nothing: every byte either way
    /// is held (in the proxy and the kernel's buffers) until restored.
    pub fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Accepts and forwards again (what was held is forwarded then).
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.silent.store(false, Ordering::SeqCst);
    }
}

/// How long a server may take to become ready: generous, because a 2-core
/// machine building something beside the tests starts servers slowly.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// How long one readiness probe waits for its answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until `GET path` on `addr` answers 200 with `body_has` in its
/// body, at most [`READY_WITHIN`]. Refused, reset or timed-out connections
/// and other answers mean "not ready yet"; the panic names the last one.
pub fn wait_ready(addr: SocketAddr, path: &str, body_has: &str, what: &str) {
    wait_ready_with(addr, path, body_has, what, None);
}

/// [`wait_ready`] sending an `Authorization` header.
pub fn wait_ready_with(
    addr: SocketAddr,
    path: &str,
    body_has: &str,
    what: &str,
    authorization: Option<&str>,
) {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let answer = crate::http::try_request(addr, "GET", path, &headers, b"", POLL_TIMEOUT);
        let last = match answer {
            Ok(reply) if reply.status == 200 && reply.body.contains(body_has) => return,
            Ok(reply) => format!("{} {}", reply.status, reply.body.trim()),
            Err(err) => err.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{what} on {addr} was not ready within {READY_WITHIN:?}: GET {path}: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, silent: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            // Silent: read nothing (the sender's bytes wait in the kernel).
            while silent.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Silenced while reading: hold what was read.
                    while silent.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Waits for `done`, at most `within`; returns how long it took.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Serves the text `exposition` returns (at each request) as a Prometheus
/// text exposition on a loopback port, for as long as the process runs: a
/// replica's `/metrics` without the rest of a replica (say,
/// `move || exporter.encode_prometheus_text()`).
pub fn serve_metrics(exposition: impl Fn() -> String + Send + 'static) -> SocketAddr {
    serve_http(move |_| ("text/plain; version=0.0.4", exposition()))
}

/// A minimal HTTP server on a loopback port, for as long as the process
/// runs: one request a connection; `answer` gets the request's head (the
/// request line and headers, as text) and gives the content type and body
/// of a `200 OK`.
pub fn serve_http(answer: impl Fn(&str) -> (&'static str, String) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (content_type, body) = answer(&String::from_utf8_lossy(&request));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The CPU's model name, for figures that name their machine.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}

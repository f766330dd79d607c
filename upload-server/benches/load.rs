//! The upload server under load: uploads per second and latency
//! percentiles, with 32 keep-alive clients on loopback against the
//! `upload_server` binary (a process of its own, as a user runs it), at
//! 50%: half the uploads are stored before the answer (201), half in the
//! background (202). The server is stopped with SIGTERM at the end, which
//! stores every accepted upload before it exits.
//!
//! `cargo bench -p upload-server --bench load [-- SECONDS]` (default 10).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use test_support::process::ServerProcess;
use test_support::servers::cpu_name;

const CLIENTS: usize = 32;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    // The memory trigger has no data during its warm-up (an hour): a
    // server's memory grows as it warms up under load.
    let mut server = ServerProcess::start(
        env!("CARGO_BIN_EXE_upload_server"),
        dir.path(),
        Some("50"),
        &["--tick", "10s"],
    );
    let addr = server.addr;
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| std::thread::spawn(move || client(addr, c, until)))
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut statuses = [0u64; 2];
    for client in clients {
        let (l, s) = client.join().unwrap();
        latencies.extend(l);
        statuses[0] += s[0];
        statuses[1] += s[1];
    }
    let elapsed = started.elapsed();
    server.signal("TERM");
    let stopped = server.process().wait_exit(Duration::from_secs(30));
    assert!(
        stopped.is_some_and(|status| status.success()),
        "the server did not stop cleanly: {stopped:?}\n{}",
        server.stderr_text()
    );
    latencies.sort();
    let at = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i]
    };
    #[allow(clippy::cast_precision_loss)]
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{} uploads in {:.1?} from {CLIENTS} clients: {rate:.0} uploads/s; latency p50 {:.2?}, p99 {:.2?}, max {:.2?}; {} stored before the answer (201), {} in the background (202); on {} ({} CPUs)",
        latencies.len(),
        elapsed,
        at(0.5),
        at(0.99),
        latencies.last().unwrap(),
        statuses[0],
        statuses[1],
        cpu_name(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}

/// One keep-alive client uploading 4 KiB bodies until `until`; returns each
/// upload's latency and the count of 201s and 202s.
fn client(addr: SocketAddr, c: usize, until: Instant) -> (Vec<Duration>, [u64; 2]) {
    let body = vec![b'x'; 4096];
    let mut latencies = Vec::new();
    let mut statuses = [0u64; 2];
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut i = 0u64;
    while Instant::now() < until {
        let id = format!("load-{c}-{i}");
        i += 1;
        let started = Instant::now();
        write!(
            writer,
            "POST /uploads HTTP/1.1\r\nHost: bench\r\nUpload-Id: {id}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        writer.write_all(&body).unwrap();
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut response = vec![0u8; length];
        reader.read_exact(&mut response).unwrap();
        latencies.push(started.elapsed());
        match status_line.split(' ').nth(1) {
            Some("201") => statuses[0] += 1,
            Some("202") => statuses[1] += 1,
            other => panic!("upload {id}: {other:?}"),
        }
    }
    (latencies, statuses)
}

//! One minimal blocking HTTP/1.1 client: one request on a new connection
//! (`Connection: close`), read to the server's close, chunked bodies
//! decoded. Enough to talk to the servers under test without an HTTP
//! client crate; async tests call it through `spawn_blocking`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long [`request`] waits to connect, and then for each read.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (chunks joined), lossily as UTF-8.
    pub body: String,
}

impl Reply {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `method path` with `headers` and `body` to `addr`; panics naming the
/// request when the exchange fails.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_request(addr, method, path, headers, body, TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// `GET path` on `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// [`request`] that returns what went wrong (refused, reset, timed out,
/// not HTTP) instead of panicking, each wait bounded by `timeout`: for
/// polling a server that may not be up yet.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Reply> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    exchange(addr, head.as_bytes(), body, timeout)
}

/// One request whose request line and headers are `head` as raw bytes (a
/// header value that is not UTF-8, say), each line ending in `\r\n`; the
/// `Host`, `Connection: close` and `Content-Length` headers are added.
pub fn exchange(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(
        format!(
            "Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    stream.write_all(&bytes)?;
    // A server may answer (413) before reading the whole body: a failed
    // write is then not the failure; a missing response is.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw) {
        // A reset after the whole answer came (the server closed with the
        // body unread) still leaves an answer to read.
        if raw.is_empty() {
            return Err(err);
        }
    }
    parse(&raw)
}

/// Reads a whole response (status line, headers, body).
pub fn parse(raw: &[u8]) -> io::Result<Reply> {
    let bad = |what: &str| {
        io::Error::other(format!(
            "{what}: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ))
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("a broken chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(end + 2..end + 2 + size)?);
        rest = rest.get(end + 2 + size + 2..)?;
    }
}

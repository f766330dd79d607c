//! What the workspace's tests and benches share, as a crate of its own so
//! that both packages (the library and the upload server) use one copy:
//!
//! - [`servers`]: real etcd and Prometheus on loopback with temporary data
//!   directories, stopped when dropped, and a TCP proxy a test can cut;
//! - [`certs`]: a CA and the certificates of the TLS tests;
//! - `etcd` (feature `etcd`): raw writes to a test etcd, and its client;
//! - [`http`]: one minimal blocking HTTP/1.1 client;
//! - [`process`]: child processes that keep their stderr, and the upload
//!   server binary as one.
//!
//! Test code: a failure panics with what went wrong.

pub mod certs;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod http;
pub mod process;
pub mod servers;

//! Code shared by several integration tests.
#![allow(dead_code)]

pub mod quality;
pub mod reference;
/// Real etcd and Prometheus on loopback (shared with the upload server's
/// tests: the `test-support` crate).
#[allow(unused_imports)] // not every test uses them
pub use test_support::servers;

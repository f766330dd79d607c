//! Code shared by several integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod child;
pub mod quality;
pub mod reference;
pub mod servers;

//! Integration tests of this crate, as one test binary (one link, one binary on disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod agent;
mod container;
mod node_lost;
mod uses;
mod wall;

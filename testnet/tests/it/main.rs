//! Integration tests of otto-testnet, as one test binary: the demo and the scenarios with
//! real processes, and the workspace's tidy checks.

mod support;

mod bench;
mod demo;
mod scenarios;
mod tidy;

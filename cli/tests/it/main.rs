//! Integration tests of this crate, as one test binary (one link, one binary on disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

mod explain;
mod node_approvals;
mod node_bad_input;
mod node_cancel;
mod node_concurrency;
mod node_conventions;
mod node_forge;
mod node_gates;
mod node_gc;
mod node_handoff;
mod node_join;
mod node_libs;
mod node_logs;
mod node_owner;
mod node_repo;
mod node_restart;
mod node_retry;
mod node_run;
mod node_run_git;
mod node_runfacts;
mod node_runtimes;
mod node_source;
mod node_step_user;
mod operating_doc;
mod tutorial;
mod verify;

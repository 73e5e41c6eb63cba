//! Integration tests of this crate, as one test binary (one link, one binary on disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod plan_support;

mod conventions;
mod parse;
mod parse_errors;
mod parse_props;
mod plan_classic;
mod plan_concurrency;
mod plan_diagnostics;
mod plan_digest;
mod plan_examples;
mod plan_expand;
mod plan_gates;
mod plan_notify;
mod plan_props;
mod plan_triggers;
mod plan_uses;

//! Integration tests of this crate, as one test binary (one link, one binary on disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod machine_support;
mod sim_support;

mod attest;
mod bundle;
mod chain;
mod gossip;
mod logfetch;
mod machine_receiver;
mod machine_restore;
mod machine_sender;
mod origin;
mod owners;
mod relay;
mod retry;
mod rules;
mod sim_faults;
mod sim_properties;
mod sim_rejects;
mod sim_scale;
mod verify;

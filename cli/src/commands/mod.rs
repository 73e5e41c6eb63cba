//! One module per `otto` subcommand.

pub(crate) mod approve;
pub(crate) mod attest;
pub(crate) mod cancel;
pub(crate) mod explain;
pub(crate) mod facts;
pub(crate) mod hook;
pub(crate) mod logs;
pub(crate) mod retry;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod status;
pub(crate) mod ui;
pub(crate) mod verify;
pub(crate) mod worktree;

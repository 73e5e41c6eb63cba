//! Fail points: named places between two durable steps of a handoff where a test build
//! of the node can be made to die, as with `kill -9`, to show that a crash there loses
//! nothing and runs nothing twice (`testnet/scenarios/failpoints.toml`).
//!
//! A debug build (what `cargo build` and `cargo test` make) reads `OTTO_FAILPOINT` once:
//! when it names one of [`ALL`], the node sends itself SIGKILL the first time it reaches
//! that point. A release build has no fail points: [`hit`] compiles to nothing there and
//! the variable is ignored with a warning at start ([`check_env`]).

/// The variable that arms a fail point.
pub const ENV: &str = "OTTO_FAILPOINT";

/// A stage's final state and its receipt are committed; the engine has not moved the
/// run on (no later stage is handed off yet).
pub const STAGE_ENDED: &str = "stage-ended";
/// A stage this node moves on is committed as handed off with its handoff intent; the
/// exchange has not been told.
pub const HANDED_OFF: &str = "handed-off";
/// The exchange built and signed the offer of an intent; it is not in the outbox yet.
pub const OFFER_SIGNED: &str = "offer-signed";
/// The offer is committed to the outbox (and its intent removed); it has not been sent.
pub const OUTBOX_WRITTEN: &str = "outbox-written";
/// A received offer and its answer are committed to the inbox; its run is not recorded
/// here yet and the answer has not left.
pub const INBOX_WRITTEN: &str = "inbox-written";
/// The accepted offer's run is recorded here; the answer has not left.
pub const GUEST_RUN_RECORDED: &str = "guest-run-recorded";
/// A receipt that came back is committed; it has not been acknowledged.
pub const RECEIPT_STORED: &str = "receipt-stored";

/// Every fail point, in the order a handoff reaches them.
pub const ALL: [&str; 7] = [
    STAGE_ENDED,
    HANDED_OFF,
    OFFER_SIGNED,
    OUTBOX_WRITTEN,
    INBOX_WRITTEN,
    GUEST_RUN_RECORDED,
    RECEIPT_STORED,
];

/// Checks `OTTO_FAILPOINT` at start: an unknown name is an error (a test that misspells
/// a point must not pass without reaching it); in a release build a set variable is only
/// worth a warning.
pub fn check_env() -> Result<(), String> {
    let Some(name) = std::env::var_os(ENV) else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    if cfg!(debug_assertions) {
        if !ALL.contains(&name.as_ref()) {
            return Err(format!(
                "{ENV}={name} names no fail point; known: {}",
                ALL.join(", ")
            ));
        }
        tracing::warn!(target: "otto_node::failpoint", point = %name, "a fail point is armed: the node kills itself when it gets there");
    } else {
        tracing::warn!(target: "otto_node::failpoint", "{ENV} is set, but a release build has no fail points; ignored");
    }
    Ok(())
}

/// Kills the process with SIGKILL when `name` is the armed fail point (debug builds).
#[cfg(debug_assertions)]
pub(crate) fn hit(name: &'static str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV).ok());
    if armed.as_deref() == Some(name) {
        eprintln!("otto-node: fail point {name} reached: killing this process (SIGKILL)");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; nothing after this runs.
        loop {
            std::thread::park();
        }
    }
}

/// Release builds have no fail points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}

//! The signal that stops a stage early: a timeout, a cancel from the node, or a lost node.

use std::fmt;

use tokio::sync::watch;

/// Why a stage stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The stage ran longer than its timeout, in seconds.
    Timeout(u64),
    /// The agent got SIGTERM or SIGINT.
    Cancelled,
    /// The node did not take events, or refused connections, for too long.
    NodeLost,
}

/// A one-shot, cloneable stop signal; the first reason set wins.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    tx: watch::Sender<Option<StopReason>>,
}

impl Stop {
    /// A signal that has not fired.
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(None),
        }
    }

    /// Fires the signal, unless it fired already.
    pub(crate) fn fire(&self, reason: StopReason) {
        self.tx.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    /// The reason, if the signal fired.
    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.tx.borrow()
    }

    /// Resolves when the signal fires (at once if it has).
    pub(crate) async fn wait(&self) -> StopReason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; wait forever if it does.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(secs) => write!(f, "timed out after {secs} s"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::NodeLost => f.write_str("the node is lost"),
        }
    }
}

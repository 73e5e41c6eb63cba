//! The node's durable state: runs, stages, attempts, gates, logs, receipts, the mesh's
//! outbox and inbox, the cache index and the vault's sealed secrets, in one embedded
//! [redb](https://docs.rs/redb) database (`store.redb` in the node's home).
//!
//! # One narrow interface
//!
//! [`Store`] is the only type the orchestrator, the API and the mesh use to read or change
//! this state, and its methods are the whole interface: they take and return the plain
//! records of this module ([`Run`], [`Stage`], [`Gate`], …) and never expose redb types,
//! transactions or keys. `Store` is a concrete type rather than a trait because there is
//! one backend today; a second one (PostgreSQL, for several nodes of one org) would make
//! `Store` dispatch to either backend behind the same method signatures, so no caller
//! changes. Each method's contract is written so that a SQL backend can keep it: every
//! state transition is one transaction, and the methods that must happen at most once
//! ([`Store::begin_attempt`], [`Store::resolve_gate`], [`Store::inbox_put`],
//! [`Store::inbox_answer`]) check the current state inside that transaction.
//!
//! # Crash safety
//!
//! Every method that changes state runs one redb write transaction and commits it with
//! [`redb::Durability::Immediate`] before it returns: when it returns `Ok`, the change is
//! on disk; when the process dies before that, none of it is. After a crash
//! [`Store::recover`] marks the attempts that were running as interrupted and lists what
//! to resume. `docs/storage.md` has the whole argument.
//!
//! # Secrets
//!
//! Only masked text reaches the store: log lines are masked by the agent and again by the
//! node before [`Logs::append`] writes them to their files (`<home>/logs/`, [`Logs`]). Secret values are kept only by the
//! [`Vault`](crate::vault::Vault), sealed, in a table no public method reads.
//!
//! Every method blocks on disk I/O; async callers run them on a blocking thread.

mod codec;
mod groups;
mod handoffs;
mod ids;
pub mod logs;
mod mesh;
mod nodes;
mod records;
mod recovery;
mod runs;
mod stages;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

pub use groups::{GroupKind, GroupMember, GroupTurn, Joined};
pub use handoffs::HandoffIntent;
pub use ids::{RunId, RunIdError};
pub use logs::{Appended, Logs, Migrated, Page, Placed, Tail};
pub use records::{
    Attempt, AttemptEnd, AttemptNode, AttemptRef, AttemptState, AttemptUpdate, CacheEntry, Gate,
    GateKind, GatePhase, GateRef, GateResolution, GateState, HandoffId, InboxEntry, InboxState,
    KnownNode, LogLine, NewLine, NewRun, NewStage, OutboxEntry, ReceiptEntry, Recovery, Retry, Run,
    RunFilter, RunState, Source, Stage, StageState, Stream,
};
pub use runs::QUEUED_NOTE;

/// The name of the database file in the node's home.
pub const FILE_NAME: &str = "store.redb";

/// The store's format: bumped when a table's layout changes in a way older code cannot
/// read. A store with a newer format is refused.
const FORMAT: u32 = 1;

/// The node's database. Cheap to clone: clones share one open database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (another node on the same home) has the database open.
    #[error("{0} is open in another process")]
    AlreadyOpen(PathBuf),
    /// The database file could not be created.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The database failed: an I/O error, or a damaged file.
    #[error("database: {0}")]
    Database(Box<redb::Error>),
    /// The database was written by a newer version of Otto.
    #[error("the store has format {0}, newer than this node reads")]
    NewerFormat(u32),
    /// A record could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(String),
    /// A record could not be decoded.
    #[error("a record in table {table} is damaged: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A record has a format version this node does not know.
    #[error("a record in table {table} has format version {version}, newer than this node reads")]
    Version {
        /// The table.
        table: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A run with this id already exists.
    #[error("run {0} already exists")]
    RunExists(RunId),
    /// No run has this id.
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// The run has no stage with this id.
    #[error("run {run} has no stage {stage}")]
    UnknownStage {
        /// The run.
        run: RunId,
        /// The stage id asked for.
        stage: String,
    },
    /// The stage has no attempt with this number.
    #[error("stage {stage} of run {run} has no attempt {attempt}")]
    UnknownAttempt {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt asked for.
        attempt: u32,
    },
    /// No gate is recorded under this name.
    #[error("no gate {}", gate_name(.0))]
    UnknownGate(Box<GateRef>),
    /// No offer with this handoff id is in the outbox or inbox.
    #[error("no handoff {}", hex::encode(.0))]
    UnknownHandoff(HandoffId),
    /// The run is in a final state and cannot change.
    #[error("run {run} is already {state:?}")]
    RunFinished {
        /// The run.
        run: RunId,
        /// Its final state.
        state: RunState,
    },
    /// The stage is in a final state and cannot change.
    #[error("stage {stage} of run {run} is already {state:?}")]
    StageFinished {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// Its final state.
        state: StageState,
    },
    /// The stage's last attempt is still running, so no new one can begin.
    #[error("attempt {attempt} of stage {stage} of run {run} is still running")]
    AttemptRunning {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The running attempt.
        attempt: u32,
    },
    /// The attempt already ended (e.g. recovery marked it interrupted), so it cannot change.
    #[error("attempt {attempt} of stage {stage} of run {run} already ended as {state:?}")]
    AttemptEnded {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// How it ended.
        state: AttemptState,
    },
    /// The gate already closed, so it cannot close again.
    #[error("gate {} already closed as {state:?}", gate_name(.gate))]
    GateClosed {
        /// The gate.
        gate: Box<GateRef>,
        /// How it closed.
        state: GateState,
    },
    /// A different receipt is already stored for this attempt.
    #[error("another receipt is stored for attempt {attempt} of stage {stage} of run {run}")]
    ReceiptConflict {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
    },
    /// A stage cannot be retried: it did not fail (it succeeded, was skipped or has not
    /// ended), or its run has not ended or succeeded.
    #[error("{0}")]
    NotRetryable(String),
    /// The call asked for something the store's rules do not allow.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl Store {
    /// Opens the database at `path` (normally `<home>/store.redb`), creating it (mode 0600)
    /// and its tables if needed. A database left by a killed process is repaired by redb on open.
    /// Fails with [`Error::AlreadyOpen`] while another process holds it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        // Create the file private to the node's user before redb fills it; an existing
        // file keeps its mode.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .map_err(|err| Error::Io(path.clone(), err))?;
        let db = Database::create(&path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::AlreadyOpen(path.clone()),
            other => Error::from(other),
        })?;
        let store = Self {
            db: Arc::new(db),
            path,
        };
        store.write(|txn| {
            for table in codec::BYTE_TABLES {
                txn.open_table(table)?;
            }
            txn.open_table(codec::SECRETS)?;
            let mut meta = txn.open_table(codec::META)?;
            let format = match meta.get("format")? {
                Some(value) => {
                    let bytes = value.value().first_chunk::<4>().copied();
                    Some(u32::from_be_bytes(bytes.ok_or(Error::Corrupt {
                        table: "meta",
                        reason: "format is not 4 bytes".into(),
                    })?))
                }
                None => None,
            };
            match format {
                Some(found) if found > FORMAT => return Err(Error::NewerFormat(found)),
                Some(_) => {}
                None => {
                    meta.insert("format", FORMAT.to_be_bytes().as_slice())?;
                }
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction and commits it durably, or drops everything it
    /// did when it fails.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, Error>) -> Result<T, Error> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    /// Runs `f` in one read transaction: it sees one committed state.
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, Error>) -> Result<T, Error> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn gate_name(gate: &GateRef) -> String {
    let phase = match gate.phase {
        GatePhase::Enter => "enter",
        GatePhase::Exit => "exit",
    };
    format!("{} {phase} {} of run {}", gate.stage, gate.index, gate.run)
}

macro_rules! from_redb {
    ($($ty:ty),*) => {
        $(impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Self::Database(Box::new(err.into()))
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

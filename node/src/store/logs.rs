//! Stage logs on disk: one append-only file per stage of a run, under `<home>/logs/`.
//!
//! # Layout
//!
//! `<home>/logs/<run>/<stage>.log` holds every line of a stage, of all its attempts, in
//! order, and `<stage>.idx` next to it the offset of every [`STRIDE`]th line. (A stage
//! name is kept as it is when it is made of letters, digits, `-`, `_` and `.`; any other
//! byte is written `%XX`, and a name longer than 120 bytes becomes `%` and the sha256 of
//! it.) One file per stage rather than per attempt because a stage's lines are numbered
//! 1, 2, 3… across its attempts (the API reads "the lines after N"), so one file is one
//! unbroken sequence and one index finds any line.
//!
//! A `.log` file starts with the 8 bytes `OTTOLOG1`, then one record per line, numbers
//! big-endian: text length (u32), seq (u64), attempt (u32), time in ms (u64), stream (u8:
//! 0 stdout, 1 stderr, 2 the node's own; bit 7 marks an attempt's truncation line, bit 6
//! the stage's, bit 5 a numbered record), step (u32, `u32::MAX` for none), the attempt's
//! bytes so far and the stage's bytes so far (u64 each, this record included); a numbered
//! record then has 16 more bytes, the first 8 bytes of the key of the node whose numbering
//! the copy follows and that node's number of the last of its lines held as of this
//! record; then the UTF-8 text. A `.idx` file is a list of u64 offsets: entry k is where
//! line `k * STRIDE + 1` starts.
//!
//! # Copies of other nodes' logs
//!
//! The log of a stage another node runs is a copy of that runner's lines
//! ([`Logs::append_numbered`]): every record of it is numbered, so the copy knows, across
//! restarts, the runner's number of the last line it holds ([`Logs::tail`]). Lines held
//! already are dropped, and a jump in the numbers is either held back (the node fetches the
//! missing lines first) or written as one line, `… 1,203 lines not received …`
//! ([`otto_handoff::logseq`] decides which).
//!
//! # Bounded
//!
//! Lines are written as they arrive, one batch at a time (synced to disk before
//! [`Logs::append`] returns, as the store's transactions are), in pieces of 64 KiB; nothing
//! of a log, nor a copy of a whole batch, is held in memory. A line's text is cut at [`MAX_LINE`] bytes. An attempt may write at most
//! `max_bytes` bytes (records, headers included); the first line past that is replaced by
//! one line saying "log truncated after N MiB" and the rest of the attempt is dropped. A
//! stage may write at most [`STAGE_BUDGETS`] times that over all its attempts, after which
//! one more such line ends its log.
//!
//! # Crashes
//!
//! A record cut short by a crash is cut off when the log is next opened for writing, and a
//! reader stops before it; the index is rebuilt from the log where it falls short or
//! points past its end. A batch that was synced is never lost.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use super::{Error, LogLine, NewLine, RunId, Stream};

/// The name of the logs directory in the node's home.
pub const DIR_NAME: &str = "logs";

/// The default of `[node] max_log_bytes`: what one attempt of a stage may log (128 MiB,
/// twice the agent's default output limit, so that the agent's own truncation line
/// normally comes first).
pub const DEFAULT_MAX_BYTES: u64 = 128 << 20;

/// How many attempts' worth of `max_bytes` one stage's log may hold in all.
pub const STAGE_BUDGETS: u64 = 4;

/// The longest text of one line, in bytes; longer lines are cut at a character boundary.
pub const MAX_LINE: usize = 64 * 1024;

/// Every how many lines the index has an entry.
pub const STRIDE: u64 = 256;

/// The most bytes of text one [`Logs::read`] returns (at least one line).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// About how many bytes of records [`Logs::append`] gathers before it writes them.
const WRITE_CHUNK: usize = 64 * 1024;

/// Writers kept open at once; past that, the least recently used one is closed.
const MAX_OPEN: usize = 128;

const MAGIC: &[u8; 8] = b"OTTOLOG1";
const HEADER: usize = 4 + 8 + 4 + 8 + 1 + 4 + 8 + 8;
const ATTEMPT_CUT: u8 = 0x80;
const STAGE_CUT: u8 = 0x40;
const NUMBERED: u8 = 0x20;
/// The bytes a numbered record has after its header: the runner's key prefix and number.
const NUMBER_LEN: u64 = 16;

pub use otto_handoff::logseq::Tail;

/// The stage logs of a node. Cheap to clone; every method blocks on disk I/O.
#[derive(Clone)]
pub struct Logs(Arc<Inner>);

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    writers: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    tick: u64,
    /// Per (run, stage): when it was last used, and its writer.
    map: HashMap<(RunId, String), Used>,
}

type Used = (u64, Arc<Mutex<Writer>>);

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs")
            .field("dir", &self.0.dir)
            .field("max_bytes", &self.0.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The lines one [`Logs::append`] wrote: numbers `first..=last` (none when `first >
/// last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The number of the first line written.
    pub first: u64,
    /// The number of the last line of the log now.
    pub last: u64,
}

/// A page of a log, from [`Logs::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The lines, in order.
    pub lines: Vec<LogLine>,
    /// Whether the page reaches the end of what is written.
    pub end: bool,
}

/// An open log: where the next record goes and what the budgets hold.
struct Writer {
    log: File,
    idx: File,
    log_path: PathBuf,
    /// The offset after the last complete record.
    len: u64,
    /// The last line's number.
    seq: u64,
    /// The attempt of the last line, its bytes, and whether it was cut.
    attempt: u32,
    attempt_bytes: u64,
    attempt_cut: bool,
    stage_bytes: u64,
    stage_cut: bool,
    /// Where a copy of another node's log stands in that node's numbering (`None` for a
    /// log of this node's own).
    tail: Option<Tail>,
}

/// What [`Logs::append_numbered`] did with the lines it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Written (the new ones), after one gap line for the runner's lines `gap` (first,
    /// last) when it had to mark one.
    Written {
        /// The lines written.
        appended: Appended,
        /// The runner's lines marked as not received.
        gap: Option<(u64, u64)>,
    },
    /// Not written: they jump past the runner's line `after`, the last held; fetch the
    /// lines after it first.
    Held {
        /// The runner's number of the last line held.
        after: u64,
        /// The runner's number of the first line that arrived.
        first: u64,
    },
    /// Not written: their numbers cannot be right.
    Refused(&'static str),
}

/// One record's fixed part.
#[derive(Debug, Clone, Copy)]
struct Head {
    len: u32,
    seq: u64,
    attempt: u32,
    time: u64,
    flags: u8,
    step: u32,
    attempt_bytes: u64,
    stage_bytes: u64,
}

/// The bytes after a record's header before its text.
fn extra(flags: u8) -> u64 {
    if flags & NUMBERED != 0 { NUMBER_LEN } else { 0 }
}

impl Logs {
    /// The logs under `dir` (made, mode 0700, when missing); an attempt may log at most
    /// `max_bytes`.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, Error> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::Io(dir.clone(), e))?;
        Ok(Self(Arc::new(Inner {
            dir,
            max_bytes: max_bytes.max(HEADER as u64 + 1),
            writers: Mutex::new(Open::default()),
        })))
    }

    /// The directory of all logs.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// What one attempt may log, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.0.max_bytes
    }

    /// The directory of a run's logs.
    pub fn run_dir(&self, run: &RunId) -> PathBuf {
        self.0.dir.join(run.to_string())
    }

    /// Appends masked lines printed by attempt `attempt` of a stage, numbering them on
    /// from the stage's last line, and syncs them to disk. Lines past the attempt's or the
    /// stage's budget are dropped, the first of them replaced by one truncation line.
    pub fn append(
        &self,
        run: &RunId,
        stage: &str,
        attempt: u32,
        lines: &[NewLine],
    ) -> Result<Appended, Error> {
        let writer = self.writer(run, stage)?;
        let mut writer = lock(&writer);
        writer.append(attempt, lines, self.0.max_bytes, None)
    }

    /// Appends lines of attempt `attempt` that another node, the stage's runner (`runner`:
    /// the first 8 bytes of its key), numbered from `first` in its log: those this copy
    /// holds already are dropped, and a jump past the last line held is held back (when
    /// `hold_jumps`: nothing written, the caller fetches the missing lines) or written
    /// after one gap line (see [`otto_handoff::logseq::place`]).
    #[allow(clippy::too_many_arguments)]
    pub fn append_numbered(
        &self,
        run: &RunId,
        stage: &str,
        attempt: u32,
        runner: [u8; 8],
        first: u64,
        lines: &[NewLine],
        hold_jumps: bool,
    ) -> Result<Placed, Error> {
        use otto_handoff::logseq::{Numbered, Placement, gap_line, place};
        let writer = self.writer(run, stage)?;
        let mut writer = lock(&writer);
        let arriving = Numbered {
            runner,
            first,
            count: lines.len(),
        };
        let (gap, skip, tail) = match place(writer.tail.unwrap_or_default(), arriving, hold_jumps) {
            Placement::Refuse(reason) => return Ok(Placed::Refused(reason)),
            Placement::Hold { after, first } => return Ok(Placed::Held { after, first }),
            Placement::Write { gap, skip, tail } => (gap, skip, tail),
        };
        let max = self.0.max_bytes;
        let mut appended = Appended {
            first: writer.seq + 1,
            last: writer.seq,
        };
        if let Some((from, to)) = gap {
            let line = NewLine {
                time: lines.first().map_or_else(now_ms, |l| l.time),
                stream: Stream::System,
                step: None,
                text: gap_line(from, to),
            };
            appended.last = writer
                .append(attempt, &[line], max, Some((runner, to)))?
                .last;
        }
        let new = lines.get(skip..).unwrap_or_default();
        if !new.is_empty() {
            let from = first.saturating_add(skip as u64);
            appended.last = writer.append(attempt, new, max, Some((runner, from)))?.last;
        }
        // Lines a budget dropped count as held: the copy never asks for them again.
        writer.tail = Some(tail);
        Ok(Placed::Written { appended, gap })
    }

    /// Where the copy of another node's log of a stage stands in that node's numbering;
    /// `None` for a log of this node's own, or none.
    pub fn tail(&self, run: &RunId, stage: &str) -> Result<Option<Tail>, Error> {
        if !self.stage_path(run, stage).with_extension("log").exists() {
            return Ok(None);
        }
        let writer = self.writer(run, stage)?;
        Ok(lock(&writer).tail)
    }

    /// Up to `limit` lines of a stage with numbers above `after`, and at most
    /// [`MAX_PAGE_BYTES`] of text (one line at least).
    pub fn read(&self, run: &RunId, stage: &str, after: u64, limit: usize) -> Result<Page, Error> {
        let base = self.stage_path(run, stage);
        Ok(scan(&base, after, limit)?.0)
    }

    /// The number of a stage's last line (0 when it has none).
    pub fn last_seq(&self, run: &RunId, stage: &str) -> Result<u64, Error> {
        let open = lock(&self.0.writers)
            .map
            .get(&(*run, stage.to_owned()))
            .map(|(_, w)| w.clone());
        if let Some(writer) = open {
            return Ok(lock(&writer).seq);
        }
        Ok(scan(&self.stage_path(run, stage), u64::MAX - 1, 0)?.1)
    }

    /// Closes the open logs of `run` (before its files are removed).
    pub fn forget(&self, run: &RunId) {
        lock(&self.0.writers).map.retain(|(r, _), _| r != run);
    }

    fn stage_path(&self, run: &RunId, stage: &str) -> PathBuf {
        self.run_dir(run).join(file_stem(stage))
    }

    fn writer(&self, run: &RunId, stage: &str) -> Result<Arc<Mutex<Writer>>, Error> {
        let mut open = lock(&self.0.writers);
        open.tick += 1;
        let tick = open.tick;
        let key = (*run, stage.to_owned());
        if let Some((used, writer)) = open.map.get_mut(&key) {
            *used = tick;
            return Ok(writer.clone());
        }
        if open.map.len() >= MAX_OPEN
            && let Some(oldest) = open
                .map
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
        {
            open.map.remove(&oldest);
        }
        let run_dir = self.run_dir(run);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run_dir)
            .map_err(|e| Error::Io(run_dir.clone(), e))?;
        let writer = Arc::new(Mutex::new(Writer::open(&self.stage_path(run, stage))?));
        open.map.insert(key, (tick, writer.clone()));
        Ok(writer)
    }
}

/// What [`Logs::migrate`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Stage logs moved to files.
    pub stages: u64,
    /// Lines moved.
    pub lines: u64,
}

impl Logs {
    /// Moves the log lines an older node kept in the store's own table into files, a
    /// stage at a time, with their numbers; each stage's lines leave the store once its
    /// file is complete and in place. Safe to stop at any point and run again: a stage
    /// not yet dropped from the store is written afresh. Reads a page of lines at a time.
    pub fn migrate(&self, store: &super::Store) -> Result<Migrated, Error> {
        const PAGE: usize = 1000;
        let mut done = Migrated::default();
        for (run, stage) in store.legacy_log_stages()? {
            self.forget(&run);
            let run_dir = self.run_dir(&run);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&run_dir)
                .map_err(|e| Error::Io(run_dir.clone(), e))?;
            let stem = file_stem(&stage);
            let temp = run_dir.join(format!(".migrating-{stem}"));
            for ext in ["log", "idx"] {
                let path = temp.with_extension(ext);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::Io(path, e));
                    }
                    _ => {}
                }
            }
            let mut writer = Writer::open(&temp)?;
            let mut after = 0;
            loop {
                let lines = store.legacy_log_lines(&run, &stage, after, PAGE)?;
                let Some(last) = lines.last() else {
                    break;
                };
                after = last.seq;
                // Each run of lines of one attempt, numbered as they were.
                for group in lines.chunk_by(|a, b| a.attempt == b.attempt) {
                    let first = group[0].seq;
                    if first != writer.seq + 1 {
                        return Err(Error::Corrupt {
                            table: "logs",
                            reason: format!(
                                "run {run} stage {stage:?}: line {first} follows line {}",
                                writer.seq
                            ),
                        });
                    }
                    let new: Vec<NewLine> = group
                        .iter()
                        .map(|l| NewLine {
                            time: l.time,
                            stream: l.stream,
                            step: l.step,
                            text: l.text.clone(),
                        })
                        .collect();
                    writer.append(group[0].attempt, &new, u64::MAX / STAGE_BUDGETS, None)?;
                    done.lines += new.len() as u64;
                }
                if lines.len() < PAGE {
                    break;
                }
            }
            drop(writer);
            let base = run_dir.join(&stem);
            for ext in ["log", "idx"] {
                let (from, to) = (temp.with_extension(ext), base.with_extension(ext));
                fs::rename(&from, &to).map_err(|e| Error::Io(to, e))?;
            }
            sync_dir(&run_dir)?;
            store.drop_legacy_log(&run, &stage)?;
            done.stages += 1;
        }
        Ok(done)
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Io(dir.to_owned(), e))
}

impl Writer {
    /// Opens (or makes) the log at `base`.log: cuts a torn last record, brings the index
    /// up to date, and reads the budgets from the last record.
    fn open(base: &Path) -> Result<Self, Error> {
        let log_path = base.with_extension("log");
        let idx_path = base.with_extension("idx");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e: io::Error| Error::Io(path, e)
        };
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let mut idx = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&idx_path)
            .map_err(io(&idx_path))?;
        let size = log.metadata().map_err(io(&log_path))?.len();
        if size < MAGIC.len() as u64 {
            log.set_len(0).map_err(io(&log_path))?;
            log.write_all(MAGIC).map_err(io(&log_path))?;
            log.sync_data().map_err(io(&log_path))?;
            idx.set_len(0).map_err(io(&idx_path))?;
            return Ok(Self::empty(log, idx, log_path));
        }
        check_magic(&mut log, &log_path)?;
        // Start from the last index entry that points at the line it names.
        let offsets = read_index(&mut idx, &idx_path)?;
        let mut usable = offsets.len();
        while usable > 0 && !entry_holds(&log, size, offsets[usable - 1], usable as u64 - 1) {
            usable -= 1;
        }
        let (mut at, mut seq) = match usable {
            0 => (MAGIC.len() as u64, 0),
            n => (offsets[n - 1], (n as u64 - 1) * STRIDE),
        };
        let mut reader = BufReader::new(&log);
        reader.seek(SeekFrom::Start(at)).map_err(io(&log_path))?;
        let mut entries = offsets[..usable].to_vec();
        let mut last: Option<Head> = None;
        let mut tail = None;
        loop {
            let Some(head) = read_head(&mut reader, &log_path)? else {
                break;
            };
            let end = at + HEADER as u64 + extra(head.flags) + u64::from(head.len);
            if end > size || head.seq != seq + 1 {
                break;
            }
            if (head.seq - 1).is_multiple_of(STRIDE)
                && (head.seq - 1) / STRIDE == entries.len() as u64
            {
                entries.push(at);
            }
            tail = if head.flags & NUMBERED != 0 {
                let mut number = [0u8; NUMBER_LEN as usize];
                reader.read_exact(&mut number).map_err(io(&log_path))?;
                Some(read_tail(&number))
            } else {
                None
            };
            reader
                .seek_relative(i64::from(head.len))
                .map_err(io(&log_path))?;
            seq = head.seq;
            at = end;
            last = Some(head);
        }
        drop(reader);
        if at < size {
            log.set_len(at).map_err(io(&log_path))?;
            log.sync_data().map_err(io(&log_path))?;
        }
        if entries != offsets {
            let bytes: Vec<u8> = entries.iter().flat_map(|o| o.to_be_bytes()).collect();
            idx.set_len(0).map_err(io(&idx_path))?;
            idx.seek(SeekFrom::Start(0)).map_err(io(&idx_path))?;
            idx.write_all(&bytes).map_err(io(&idx_path))?;
        }
        log.seek(SeekFrom::Start(at)).map_err(io(&log_path))?;
        idx.seek(SeekFrom::End(0)).map_err(io(&idx_path))?;
        let mut writer = Self::empty(log, idx, log_path);
        writer.len = at;
        writer.seq = seq;
        if let Some(head) = last {
            writer.attempt = head.attempt;
            writer.attempt_bytes = head.attempt_bytes;
            writer.attempt_cut = head.flags & (ATTEMPT_CUT | STAGE_CUT) != 0;
            writer.stage_bytes = head.stage_bytes;
            writer.stage_cut = head.flags & STAGE_CUT != 0;
        }
        writer.tail = tail;
        Ok(writer)
    }

    fn empty(log: File, idx: File, log_path: PathBuf) -> Self {
        Self {
            log,
            idx,
            log_path,
            len: MAGIC.len() as u64,
            seq: 0,
            attempt: 0,
            attempt_bytes: 0,
            attempt_cut: false,
            stage_bytes: 0,
            stage_cut: false,
            tail: None,
        }
    }

    /// Appends `lines` as records, written in pieces of about [`WRITE_CHUNK`] bytes (no copy
    /// of the whole batch is made) and synced once. When a write fails, the file and the
    /// numbers are left as they were before the batch. With `numbered` (runner, number of
    /// the first), line i is the runner's line `number + i`; else every record carries the
    /// copy's tail as it is (so the last record of a copy always says where it stands).
    fn append(
        &mut self,
        attempt: u32,
        lines: &[NewLine],
        max: u64,
        numbered: Option<([u8; 8], u64)>,
    ) -> Result<Appended, Error> {
        let first = self.seq + 1;
        let tail = self.tail;
        let before = (
            self.len,
            self.seq,
            self.attempt,
            self.attempt_bytes,
            self.attempt_cut,
            self.stage_bytes,
            self.stage_cut,
        );
        let index = match self.write_lines(attempt, lines, max, numbered) {
            Ok(index) => index,
            Err(error) => {
                self.tail = tail;
                // Leave the file as it was, so that the numbers stay in step with it.
                (
                    self.len,
                    self.seq,
                    self.attempt,
                    self.attempt_bytes,
                    self.attempt_cut,
                    self.stage_bytes,
                    self.stage_cut,
                ) = before;
                let _ = self.log.set_len(self.len);
                let _ = self.log.seek(SeekFrom::Start(self.len));
                return Err(Error::Io(self.log_path.clone(), error));
            }
        };
        if !index.is_empty() {
            // The index is rebuilt from the log when it falls short: no sync needed.
            let idx_path = self.log_path.with_extension("idx");
            self.idx
                .write_all(&index)
                .map_err(|e| Error::Io(idx_path, e))?;
        }
        Ok(Appended {
            first,
            last: self.seq,
        })
    }

    /// Writes the records of `lines` and syncs them; returns the index entries they add.
    fn write_lines(
        &mut self,
        attempt: u32,
        lines: &[NewLine],
        max: u64,
        numbered: Option<([u8; 8], u64)>,
    ) -> io::Result<Vec<u8>> {
        let start = self.len;
        let mut out = Vec::with_capacity(WRITE_CHUNK + HEADER + MAX_LINE);
        let mut index = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if self.stage_cut {
                break;
            }
            // A later attempt starts a budget of its own; a line of an earlier one (the
            // node's note that it was interrupted) counts against the current one.
            if attempt > self.attempt {
                self.attempt = attempt;
                self.attempt_bytes = 0;
                self.attempt_cut = false;
            }
            if self.attempt_cut {
                continue;
            }
            let text = truncate(&line.text, MAX_LINE);
            let size = (HEADER + text.len()) as u64;
            let (flags, text) = if self.stage_bytes + size > max.saturating_mul(STAGE_BUDGETS) {
                (
                    STAGE_CUT,
                    Cow::Owned(format!(
                        "otto: log truncated after {}: the node keeps at most {} of a stage's \
                         log over all its attempts ([node] max_log_bytes × {STAGE_BUDGETS}); \
                         the rest is dropped",
                        mib(self.stage_bytes),
                        mib(max.saturating_mul(STAGE_BUDGETS))
                    )),
                )
            } else if self.attempt_bytes + size > max {
                (
                    ATTEMPT_CUT,
                    Cow::Owned(format!(
                        "otto: log truncated after {}: the node keeps at most {} of an \
                         attempt's log ([node] max_log_bytes); the rest of attempt {} is \
                         dropped",
                        mib(self.attempt_bytes),
                        mib(max),
                        self.attempt
                    )),
                )
            } else {
                (0, Cow::Borrowed(text))
            };
            let (stream, step) = if flags == 0 {
                (line.stream, line.step)
            } else {
                (Stream::System, None)
            };
            let number = match numbered {
                Some((runner, from)) => Some(Tail {
                    runner,
                    last: from.saturating_add(i as u64),
                }),
                None => self.tail,
            };
            let size = (HEADER + text.len()) as u64;
            self.attempt_bytes += size;
            self.stage_bytes += size;
            self.seq += 1;
            if (self.seq - 1).is_multiple_of(STRIDE) {
                index.extend_from_slice(&(self.len + out.len() as u64).to_be_bytes());
            }
            let head = Head {
                len: text.len() as u32,
                seq: self.seq,
                attempt,
                time: line.time,
                flags: stream_byte(stream) | flags | number.map_or(0, |_| NUMBERED),
                step: step.unwrap_or(u32::MAX),
                attempt_bytes: self.attempt_bytes,
                stage_bytes: self.stage_bytes,
            };
            write_head(&mut out, &head);
            if let Some(number) = number {
                out.extend_from_slice(&number.runner);
                out.extend_from_slice(&number.last.to_be_bytes());
                self.tail = Some(number);
            }
            out.extend_from_slice(text.as_bytes());
            if flags != 0 {
                self.attempt_cut = true;
                self.stage_cut = flags == STAGE_CUT;
            }
            if out.len() >= WRITE_CHUNK {
                self.log.write_all(&out)?;
                self.len += out.len() as u64;
                out.clear();
            }
        }
        if !out.is_empty() {
            self.log.write_all(&out)?;
            self.len += out.len() as u64;
        }
        if self.len != start {
            self.log.sync_data()?;
        }
        Ok(index)
    }
}

/// Reads a page of the log at `base`.log; also returns the number of the last line it
/// passed (the log's last line when the page reaches the end).
fn scan(base: &Path, after: u64, limit: usize) -> Result<(Page, u64), Error> {
    let log_path = base.with_extension("log");
    let idx_path = base.with_extension("idx");
    let mut log = match File::open(&log_path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((
                Page {
                    lines: Vec::new(),
                    end: true,
                },
                0,
            ));
        }
        Err(error) => return Err(Error::Io(log_path, error)),
    };
    let Some(target) = after.checked_add(1) else {
        return Ok((
            Page {
                lines: Vec::new(),
                end: true,
            },
            0,
        ));
    };
    let size = log
        .metadata()
        .map_err(|e| Error::Io(log_path.clone(), e))?
        .len();
    if size < MAGIC.len() as u64 {
        return Ok((
            Page {
                lines: Vec::new(),
                end: true,
            },
            0,
        ));
    }
    check_magic(&mut log, &log_path)?;
    // The nearest index entry at or before the line wanted that holds what it names.
    let mut at = MAGIC.len() as u64;
    let mut seq = 0;
    if let Ok(idx) = File::open(&idx_path) {
        let entries = idx.metadata().map_or(0, |m| m.len() / 8);
        let mut k = ((target - 1) / STRIDE + 1).min(entries);
        while k > 0 {
            k -= 1;
            let mut entry = [0u8; 8];
            if idx.read_exact_at(&mut entry, k * 8).is_ok() {
                let offset = u64::from_be_bytes(entry);
                if entry_holds(&log, size, offset, k) {
                    at = offset;
                    seq = k * STRIDE;
                    break;
                }
            }
        }
    }
    let mut reader = BufReader::with_capacity(64 * 1024, log);
    reader
        .seek(SeekFrom::Start(at))
        .map_err(|e| Error::Io(log_path.clone(), e))?;
    let mut page = Page::default();
    let mut bytes = 0usize;
    loop {
        let Some(head) = read_head(&mut reader, &log_path)? else {
            page.end = true;
            return Ok((page, seq));
        };
        let end = at + HEADER as u64 + extra(head.flags) + u64::from(head.len);
        if end > size || head.seq != seq + 1 || head.len as usize > MAX_LINE * 4 {
            // A record being written, or torn by a crash: the end of what is there.
            page.end = true;
            return Ok((page, seq));
        }
        if head.seq >= target
            && (page.lines.len() >= limit || (bytes >= MAX_PAGE_BYTES && !page.lines.is_empty()))
        {
            return Ok((page, seq));
        }
        at = end;
        seq = head.seq;
        if head.seq < target {
            reader
                .seek_relative(extra(head.flags) as i64 + i64::from(head.len))
                .map_err(|e| Error::Io(log_path.clone(), e))?;
            continue;
        }
        if head.flags & NUMBERED != 0 {
            reader
                .seek_relative(NUMBER_LEN as i64)
                .map_err(|e| Error::Io(log_path.clone(), e))?;
        }
        let mut text = vec![0u8; head.len as usize];
        reader
            .read_exact(&mut text)
            .map_err(|e| Error::Io(log_path.clone(), e))?;
        let text = String::from_utf8(text).map_err(|_| Error::Corrupt {
            table: "logs",
            reason: format!("line {} of {} is not UTF-8", head.seq, log_path.display()),
        })?;
        bytes += text.len();
        page.lines.push(LogLine {
            seq: head.seq,
            attempt: head.attempt,
            time: head.time,
            stream: stream_of(head.flags),
            step: (head.step != u32::MAX).then_some(head.step),
            text,
        });
    }
}

/// Whether the record at `offset` is whole and is line `k * STRIDE + 1`.
fn entry_holds(log: &File, size: u64, offset: u64, k: u64) -> bool {
    let mut buf = [0u8; HEADER];
    if offset < MAGIC.len() as u64 || log.read_exact_at(&mut buf, offset).is_err() {
        return false;
    }
    match read_head(&mut &buf[..], Path::new("")) {
        Ok(Some(head)) => {
            head.seq == k * STRIDE + 1
                && offset + HEADER as u64 + extra(head.flags) + u64::from(head.len) <= size
        }
        _ => false,
    }
}

fn check_magic(log: &mut File, path: &Path) -> Result<(), Error> {
    let mut magic = [0u8; 8];
    log.seek(SeekFrom::Start(0))
        .and_then(|_| log.read_exact(&mut magic))
        .map_err(|e| Error::Io(path.to_owned(), e))?;
    if &magic != MAGIC {
        return Err(Error::Corrupt {
            table: "logs",
            reason: format!(
                "{} is not an Otto log (it does not start with OTTOLOG1)",
                path.display()
            ),
        });
    }
    Ok(())
}

fn read_index(idx: &mut File, path: &Path) -> Result<Vec<u64>, Error> {
    let mut bytes = Vec::new();
    idx.seek(SeekFrom::Start(0))
        .and_then(|_| idx.read_to_end(&mut bytes))
        .map_err(|e| Error::Io(path.to_owned(), e))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// The next record's fixed part, or `None` at the end (a partial header is the end too).
fn read_head(reader: &mut impl Read, path: &Path) -> Result<Option<Head>, Error> {
    let mut buf = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(path.to_owned(), e)),
        }
    }
    let u32_at = |at: usize| u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Ok(Some(Head {
        len: u32_at(0),
        seq: u64_at(4),
        attempt: u32_at(12),
        time: u64_at(16),
        flags: buf[24],
        step: u32_at(25),
        attempt_bytes: u64_at(29),
        stage_bytes: u64_at(37),
    }))
}

fn write_head(out: &mut Vec<u8>, head: &Head) {
    out.extend_from_slice(&head.len.to_be_bytes());
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.extend_from_slice(&head.attempt.to_be_bytes());
    out.extend_from_slice(&head.time.to_be_bytes());
    out.push(head.flags);
    out.extend_from_slice(&head.step.to_be_bytes());
    out.extend_from_slice(&head.attempt_bytes.to_be_bytes());
    out.extend_from_slice(&head.stage_bytes.to_be_bytes());
}

fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::System => 2,
    }
}

/// The runner's key prefix and number after a numbered record's header.
fn read_tail(bytes: &[u8; NUMBER_LEN as usize]) -> Tail {
    let mut runner = [0u8; 8];
    runner.copy_from_slice(&bytes[..8]);
    let mut last = [0u8; 8];
    last.copy_from_slice(&bytes[8..]);
    Tail {
        runner,
        last: u64::from_be_bytes(last),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn stream_of(flags: u8) -> Stream {
    match flags & 0x1f {
        0 => Stream::Stdout,
        1 => Stream::Stderr,
        _ => Stream::System,
    }
}

/// A stage name as a file name: letters, digits, `-`, `_` and `.` as they are (a leading
/// `.` escaped), other bytes as `%XX`; a long result becomes `%` and the name's sha256.
pub(crate) fn file_stem(stage: &str) -> String {
    let mut out = String::with_capacity(stage.len());
    for (i, b) in stage.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() || out.len() > 120 {
        return format!("%{}", hex::encode(Sha256::digest(stage.as_bytes())));
    }
    out
}

/// `bytes` in MiB for people: "64 MiB", "1.5 MiB", "0.01 MiB".
pub(crate) fn mib(bytes: u64) -> String {
    let whole = bytes >> 20;
    let hundredths = ((bytes & ((1 << 20) - 1)) * 100) >> 20;
    match hundredths {
        0 => format!("{whole} MiB"),
        h if h % 10 == 0 => format!("{whole}.{} MiB", h / 10),
        h => format!("{whole}.{h:02} MiB"),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_become_safe_file_names() {
        assert_eq!(file_stem("Build"), "Build");
        assert_eq!(file_stem("Test linux"), "Test%20linux");
        assert_eq!(file_stem("../x"), "%2E.%2Fx");
        assert_eq!(file_stem("a/b"), "a%2Fb");
        assert!(file_stem(&"x".repeat(200)).starts_with('%'));
        assert_eq!(file_stem(&"x".repeat(200)).len(), 65);
    }

    #[test]
    fn sizes_read_in_mib() {
        assert_eq!(mib(64 << 20), "64 MiB");
        assert_eq!(mib(3 << 19), "1.5 MiB");
        assert_eq!(mib(1 << 16), "0.06 MiB");
    }
}

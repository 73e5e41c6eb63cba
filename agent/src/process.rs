//! Step processes: each in its own process group, output read line by line, the whole
//! group stopped on timeout or cancel, and whatever is left of it after the step.
//!
//! The agent is a child subreaper (set in `main`): a process a step leaves behind, even in
//! another session or double-forked, is re-parented to the agent, and [`sweep`] kills every
//! descendant of the agent when the step ends. Output beyond the stage's budget is read and
//! dropped, with one line saying so.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::events::Events;
use crate::mask::Masker;
use crate::protocol::{EventBody, LogLine, MAX_LINE_BYTES, Stream};
use crate::stop::{Stop, StopReason};

/// How long output is still read after a step's main process ended and its group was told
/// to stop, before the readers are abandoned (a process that left the group may hold the
/// pipes open forever).
const DRAIN: Duration = Duration::from_secs(2);

/// How a step process ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It was stopped for this reason.
    Stopped(StopReason),
}

/// A started step process.
pub(crate) struct Running {
    child: tokio::process::Child,
    pgid: Option<u32>,
    readers: Vec<JoinHandle<()>>,
}

/// How many rounds [`sweep`] makes at most: each kills every descendant it finds.
const SWEEP_ROUNDS: usize = 200;

/// The output bytes a stage's steps may still log, shared by every step and stream.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    left: Arc<AtomicU64>,
    limit: u64,
    told: Arc<AtomicBool>,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            left: Arc::new(AtomicU64::new(limit)),
            limit,
            told: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Takes `bytes` from the budget; false when it does not hold them (then nothing is
    /// taken, and later lines are refused too).
    fn take(&self, bytes: u64) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    /// The line that says output was dropped, the first time only.
    fn notice(&self) -> Option<String> {
        (!self.told.swap(true, Ordering::Relaxed)).then(|| {
            format!(
                "output truncated after {} MiB: the stage's output limit ([agent] limits.output_bytes = {})",
                self.limit >> 20,
                self.limit
            )
        })
    }
}

/// Starts `command` as the leader of a new process group, stdout and stderr streamed as
/// masked log lines of step `index`; its stdin is `input` and then closed, or closed from
/// the start when there is none. With `own_session`, the command makes itself the leader
/// of a session of its own (and so of a group whose id is its process id) as it starts:
/// `otto-agent --wall`, which must not be a group leader already to do so.
pub(crate) fn spawn(
    mut command: Command,
    own_session: bool,
    input: Option<Vec<u8>>,
    index: usize,
    events: &Events,
    masker: &Masker,
    budget: &Budget,
) -> std::io::Result<Running> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !own_session {
        command.process_group(0);
    }
    let mut child = command.spawn()?;
    let pgid = child.id();
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A process that ends without reading it all just closes the pipe.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = stdin.write_all(&input).await;
        });
    }
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            out,
            index,
            Stream::Stdout,
            events.clone(),
            masker.clone(),
            budget.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            err,
            index,
            Stream::Stderr,
            events.clone(),
            masker.clone(),
            budget.clone(),
        )));
    }
    Ok(Running {
        child,
        pgid,
        readers,
    })
}

impl Running {
    /// The process group id, which is the leader's process id.
    pub(crate) fn pgid(&self) -> Option<u32> {
        self.pgid
    }

    /// Waits until the process exits or `stop` fires; on stop the group gets SIGTERM, then
    /// SIGKILL after `grace`. Afterwards whatever is left of the group is stopped the same
    /// way and the output read to its end.
    pub(crate) async fn wait(mut self, stop: &Stop, grace: Duration) -> std::io::Result<Ended> {
        let ended = tokio::select! {
            status = self.child.wait() => Ended::Exited(status?),
            reason = stop.wait() => {
                self.terminate(grace).await;
                Ended::Stopped(reason)
            }
        };
        // Background processes of the step end with it, in its group or not.
        self.signal(Signal::TERM);
        signal_descendants(Signal::TERM);
        let mut readers = std::mem::take(&mut self.readers);
        let drained = tokio::time::timeout(grace.max(DRAIN), join_all(&mut readers)).await;
        if drained.is_err() {
            self.signal(Signal::KILL);
            sweep().await;
            if tokio::time::timeout(DRAIN, join_all(&mut readers))
                .await
                .is_err()
            {
                for reader in &readers {
                    reader.abort();
                }
            }
        }
        self.signal(Signal::KILL);
        sweep().await;
        Ok(ended)
    }

    /// SIGTERM to the group, SIGKILL after `grace` if the leader has not exited.
    async fn terminate(&mut self, grace: Duration) {
        self.signal(Signal::TERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::KILL);
            let _ = self.child.wait().await;
        }
    }

    /// Signals the whole group; a group that no longer exists is fine. A group that does
    /// not exist yet (a wall process that has not made its session) is the leader alone,
    /// which is signalled itself.
    fn signal(&self, signal: Signal) {
        let pid = self
            .pgid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw);
        let Some(pid) = pid else { return };
        match kill_process_group(pid, signal) {
            Ok(()) => {}
            Err(rustix::io::Errno::SRCH) => {
                if self.child.id().is_some() {
                    let _ = rustix::process::kill_process(pid, signal);
                }
            }
            Err(error) => {
                tracing::warn!(target: "otto_agent::process", %error, "cannot signal a step's process group");
            }
        }
    }
}

/// Kills every descendant of the agent, round after round until none is left (a process
/// may fork while the last round runs), at most [`SWEEP_ROUNDS`] rounds; reaps them.
pub(crate) async fn sweep() {
    for _ in 0..SWEEP_ROUNDS {
        if signal_descendants(Signal::KILL) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::warn!(target: "otto_agent::process", "step processes were still forking after {SWEEP_ROUNDS} rounds of killing");
}

/// The one child of the agent that is not a step's and outlives steps: the process holding
/// the stage's read-only mount namespace (`wall::Holder`), which starts no process; 0
/// when there is none.
static SPARED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Keeps child `pid` from [`sweep`] (`None`: no longer).
pub(crate) fn spare(pid: Option<u32>) {
    let pid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    SPARED.store(pid, Ordering::SeqCst);
}

/// Sends `signal` to every descendant of the agent but the spared one ([`spare`]) and
/// reaps those that are its children and have exited; returns how many descendants there
/// were.
fn signal_descendants(signal: Signal) -> usize {
    let me = rustix::process::getpid();
    let table = processes();
    let spared = SPARED.load(Ordering::SeqCst);
    let mut found = 0;
    let mut parents = vec![me.as_raw_nonzero().get()];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid) in &table {
            if ppid != parent || (parent == me.as_raw_nonzero().get() && pid == spared) {
                continue;
            }
            found += 1;
            parents.push(pid);
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, signal);
                if parent == me.as_raw_nonzero().get() {
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
                }
            }
        }
    }
    found
}

/// Every process's id and parent id, from `/proc`.
fn processes() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut table = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold anything, so parse after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            table.push((pid, ppid));
        }
    }
    table
}

/// Waits for every reader in turn; finished ones are removed, so this can be called again
/// after a timeout.
async fn join_all(readers: &mut Vec<JoinHandle<()>>) {
    while let Some(reader) = readers.last_mut() {
        let _ = reader.await;
        readers.pop();
    }
}

/// Reads `reader` to its end as lines and sends each as a masked log event.
async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    index: usize,
    stream: Stream,
    events: Events,
    masker: Masker,
    budget: Budget,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(error) => {
                tracing::debug!(target: "otto_agent::process", %error, "output read failed");
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let (taken, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                line.extend_from_slice(buf.get(..at).unwrap_or_default());
                (at + 1, true)
            }
            None => {
                line.extend_from_slice(buf);
                (buf.len(), false)
            }
        };
        reader.consume(taken);
        if complete || line.len() >= MAX_LINE_BYTES {
            send_within(&line, index, stream, &events, &masker, &budget).await;
            line.clear();
        }
    }
    if !line.is_empty() {
        send_within(&line, index, stream, &events, &masker, &budget).await;
    }
}

/// Sends a line if the budget holds it (its bytes and a newline); else says once that
/// output is dropped from here on.
async fn send_within(
    raw: &[u8],
    index: usize,
    stream: Stream,
    events: &Events,
    masker: &Masker,
    budget: &Budget,
) {
    let bytes = u64::try_from(raw.len())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    if budget.take(bytes) {
        send_line(raw, index, stream, events, masker).await;
    } else if let Some(notice) = budget.notice() {
        events
            .send(EventBody::Log(LogLine {
                step: Some(index),
                stream: Stream::Agent,
                line: notice,
            }))
            .await;
    }
}

/// Masks one line of raw output and sends it, cut into pieces of at most
/// [`MAX_LINE_BYTES`].
async fn send_line(raw: &[u8], index: usize, stream: Stream, events: &Events, masker: &Masker) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    let masked = masker.mask(&text);
    for piece in pieces(&masked, MAX_LINE_BYTES) {
        events
            .send(EventBody::Log(LogLine {
                step: Some(index),
                stream,
                line: piece.to_owned(),
            }))
            .await;
    }
}

/// `text` cut into pieces of at most `max` bytes at character boundaries; an empty text is
/// one empty piece.
pub(crate) fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        if rest.len() <= max {
            out.push(rest);
            return out;
        }
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = if cut == 0 { rest.len() } else { cut };
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
        if rest.is_empty() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_character_boundaries() {
        assert_eq!(pieces("", 4), [""]);
        assert_eq!(pieces("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(pieces("ääää", 3), ["ä", "ä", "ä", "ä"]);
        assert_eq!(pieces("abcd", 4), ["abcd"]);
    }
}

//! Stages, attempts, gates, log lines, the cache index and the vault's table.

use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{
    self, ACTIVE_RUNS, CACHES, GATE_TOKENS, GATES, LOGS, OPEN_GATES, RUNS, SECRETS, STAGES,
    decode_line, encode_line,
};
use super::{
    Attempt, AttemptEnd, AttemptNode, AttemptState, AttemptUpdate, CacheEntry, Error, Gate,
    GateRef, GateResolution, GateState, LogLine, NewLine, Retry, Run, RunId, RunState, Stage,
    StageState, Store,
};
use crate::blobs::Digest;

impl Store {
    /// A stage of a run.
    pub fn stage(&self, run: &RunId, stage: &str) -> Result<Option<Stage>, Error> {
        self.read(|txn| {
            let stages = txn.open_table(STAGES)?;
            codec::get(&stages, "stages", &codec::stage_key(run, stage))
        })
    }

    /// All stages of a run, in plan order.
    pub fn stages(&self, run: &RunId) -> Result<Vec<Stage>, Error> {
        self.read(|txn| {
            let table = txn.open_table(STAGES)?;
            let prefix = run.as_bytes().as_slice();
            let mut out = Vec::new();
            for entry in table.range(prefix..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                out.push(codec::decode::<Stage>("stages", value.value())?);
            }
            out.sort_by_key(|s| s.index);
            Ok(out)
        })
    }

    /// Moves a stage to `state` at `now`, with a note for people (which replaces the
    /// previous one). A stage in a final state stays there: moving it elsewhere fails with
    /// [`Error::StageFinished`].
    pub fn set_stage_state(
        &self,
        run: &RunId,
        stage: &str,
        state: StageState,
        note: Option<String>,
        now: u64,
    ) -> Result<Stage, Error> {
        self.write(|txn| set_state_in(txn, run, stage, state, note, now))
    }

    /// [`Self::set_stage_state`] to a final `state` together with `receipt`, the signed
    /// receipt of an attempt (its number and bytes), in one transaction: a stage never
    /// ends here without its receipt. A receipt already stored for the attempt (signed
    /// before a restart) is kept and comes back; otherwise `receipt`'s bytes do.
    pub fn end_stage_with_receipt(
        &self,
        run: &RunId,
        stage: &str,
        state: StageState,
        note: Option<String>,
        now: u64,
        (attempt, receipt): (u32, &[u8]),
    ) -> Result<Vec<u8>, Error> {
        if !state.is_final() {
            return Err(Error::Invalid("a receipt ends a stage"));
        }
        self.write(|txn| {
            let stored = super::mesh::put_receipt_in(txn, run, stage, attempt, receipt)?;
            set_state_in(txn, run, stage, state, note, now)?;
            Ok(stored)
        })
    }

    /// Begins the next attempt of a stage at `now` and returns its number (1 for the first,
    /// then the previous number plus one). The stage moves to [`StageState::Running`] in the
    /// same transaction. Fails with [`Error::AttemptRunning`] while the last attempt has not
    /// ended, so an attempt is never begun twice.
    pub fn begin_attempt(&self, run: &RunId, stage: &str, now: u64) -> Result<u32, Error> {
        self.begin_attempt_from(run, stage, now, 1, None)
    }

    /// [`Self::begin_attempt`], numbered at least `floor`: an offered stage runs as the
    /// attempt its offer names (a retry offered as attempt 2 is attempt 2 here too, even
    /// where attempt 1 was refused and never ran), on `node` (this node, when it has an
    /// identity).
    pub fn begin_attempt_from(
        &self,
        run: &RunId,
        stage: &str,
        now: u64,
        floor: u32,
        node: Option<AttemptNode>,
    ) -> Result<u32, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(STAGES)?;
            let mut record = load_stage(&table, run, stage)?;
            if record.state.is_final() {
                return Err(finished(&record));
            }
            if let Some(last) = record.attempts.last()
                && last.state == AttemptState::Running
            {
                return Err(Error::AttemptRunning {
                    run: *run,
                    stage: stage.to_owned(),
                    attempt: last.n,
                });
            }
            let next = record
                .attempts
                .iter()
                .map(|a| a.n)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or(Error::Invalid("too many attempts"))?;
            let n = next.max(floor);
            record.attempts.push(Attempt {
                n,
                state: AttemptState::Running,
                started_at: now,
                finished_at: None,
                exit_code: None,
                failed_step: None,
                error: None,
                cache_hits: Vec::new(),
                cache_misses: Vec::new(),
                log: None,
                agent_pid: None,
                node,
            });
            record.state = StageState::Running;
            record.note = None;
            record.updated_at = now;
            put_stage(&mut table, &record)?;
            Ok(n)
        })
    }

    /// Records what was learnt while attempt `n` runs: its agent's pid, cache hits and
    /// misses. Fails with [`Error::AttemptEnded`] once the attempt has ended.
    pub fn update_attempt(
        &self,
        run: &RunId,
        stage: &str,
        n: u32,
        update: AttemptUpdate,
    ) -> Result<Stage, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(STAGES)?;
            let mut record = load_stage(&table, run, stage)?;
            let attempt = running_attempt(&mut record, n)?;
            if update.agent_pid.is_some() {
                attempt.agent_pid = update.agent_pid;
            }
            merge(&mut attempt.cache_hits, update.cache_hits);
            merge(&mut attempt.cache_misses, update.cache_misses);
            put_stage(&mut table, &record)?;
            Ok(record)
        })
    }

    /// Ends attempt `n` as `end` says and moves the stage to `stage_state`, in one
    /// transaction. Fails with [`Error::AttemptEnded`] if the attempt already ended (a late
    /// result after recovery marked it interrupted changes nothing).
    pub fn finish_attempt(
        &self,
        run: &RunId,
        stage: &str,
        n: u32,
        end: AttemptEnd,
        stage_state: StageState,
    ) -> Result<Stage, Error> {
        self.finish_attempt_with_receipt(run, stage, n, end, stage_state, None)
            .map(|(record, _)| record)
    }

    /// [`Self::finish_attempt`] with the attempt's signed receipt, stored in the same
    /// transaction (a stage never ends here without it). A receipt already stored for the
    /// attempt (signed before a restart) is kept; the receipt stored afterwards comes back.
    pub fn finish_attempt_with_receipt(
        &self,
        run: &RunId,
        stage: &str,
        n: u32,
        end: AttemptEnd,
        stage_state: StageState,
        receipt: Option<&[u8]>,
    ) -> Result<(Stage, Option<Vec<u8>>), Error> {
        if end.state == AttemptState::Running {
            return Err(Error::Invalid("an attempt cannot finish as running"));
        }
        self.write(|txn| {
            let mut table = txn.open_table(STAGES)?;
            let mut record = load_stage(&table, run, stage)?;
            let attempt = running_attempt(&mut record, n)?;
            attempt.state = end.state;
            attempt.finished_at = Some(end.finished_at);
            attempt.exit_code = end.exit_code;
            attempt.failed_step = end.failed_step;
            attempt.error = end.error;
            attempt.log = end.log;
            record.state = stage_state;
            record.updated_at = end.finished_at;
            put_stage(&mut table, &record)?;
            if stage_state.is_final() {
                super::groups::leave_in(txn, run, Some(stage))?;
            }
            let kept = receipt
                .map(|bytes| super::mesh::put_receipt_in(txn, run, stage, n, bytes))
                .transpose()?;
            Ok((record, kept))
        })
    }

    /// Records `attempt` of a stage that another node ran, as its receipt tells, and moves
    /// the stage to `stage_state` with `note`, in one transaction. The attempt must be
    /// finished (never running, so a restart of this node has nothing to recover);
    /// recording the same attempt number again replaces it. Fails with
    /// [`Error::StageFinished`] when the stage is already final in another state.
    pub fn record_remote_attempt(
        &self,
        run: &RunId,
        stage: &str,
        attempt: Attempt,
        stage_state: StageState,
        note: Option<String>,
    ) -> Result<Stage, Error> {
        if attempt.state == AttemptState::Running {
            return Err(Error::Invalid("a remote attempt is recorded finished"));
        }
        self.write(|txn| {
            let mut table = txn.open_table(STAGES)?;
            let mut record = load_stage(&table, run, stage)?;
            if record.state.is_final() && record.state != stage_state {
                return Err(finished(&record));
            }
            // The end of an attempt from before a retry changes nothing any more.
            if record
                .retries
                .last()
                .is_some_and(|r| attempt.n <= r.after && !record.state.is_final())
            {
                return Err(finished(&record));
            }
            record.updated_at = attempt.finished_at.unwrap_or(attempt.started_at);
            record.attempts.retain(|a| a.n != attempt.n);
            record.attempts.push(attempt);
            record.attempts.sort_by_key(|a| a.n);
            record.state = stage_state;
            record.note = note;
            put_stage(&mut table, &record)?;
            Ok(record)
        })
    }

    /// Retries stages of a run that failed or were refused, in one transaction: each goes
    /// back to pending (to run as a new attempt, above its last one) with a note and a
    /// [`Retry`](super::Retry) record naming `by`, its gates are forgotten (they open again
    /// for the new attempt), and a run that ended goes back to running. Fails with
    /// [`Error::NotRetryable`] when a stage did not fail or get cancelled (a succeeded
    /// stage never runs again) or the run succeeded; nothing changes then.
    pub fn retry_stages(
        &self,
        run: &RunId,
        stages: &[String],
        by: &str,
        now: u64,
    ) -> Result<Run, Error> {
        self.write(|txn| {
            let mut runs = txn.open_table(RUNS)?;
            let key = run.as_bytes().as_slice();
            let mut record: Run = codec::get(&runs, "runs", key)?.ok_or(Error::UnknownRun(*run))?;
            if record.state == RunState::Succeeded {
                return Err(Error::NotRetryable(format!(
                    "run {run} succeeded; a succeeded run is never run again"
                )));
            }
            let mut table = txn.open_table(STAGES)?;
            let mut gates = txn.open_table(GATES)?;
            let mut open = txn.open_table(OPEN_GATES)?;
            let mut tokens = txn.open_table(GATE_TOKENS)?;
            for id in stages {
                let mut stage = load_stage(&table, run, id)?;
                if !matches!(stage.state, StageState::Failed | StageState::Cancelled) {
                    let state = serde_json::to_value(stage.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    return Err(Error::NotRetryable(format!(
                        "stage {id:?} of run {run} is {state}; only a failed, refused or \
                         cancelled stage is retried"
                    )));
                }
                let after = stage.attempts.iter().map(|a| a.n).max().unwrap_or(0);
                stage.retries.push(Retry {
                    after,
                    by: by.to_owned(),
                    at: now,
                });
                stage.state = StageState::Pending;
                stage.note = Some(format!("retried by {by} after attempt {after}"));
                stage.updated_at = now;
                put_stage(&mut table, &stage)?;
                // The stage's gates belong to the attempts before the retry.
                let prefix = codec::stage_key(run, id);
                let mut keys = Vec::new();
                for entry in gates.range(prefix.as_slice()..)? {
                    let (k, v) = entry?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    let gate: Gate = codec::decode("gates", v.value())?;
                    if gate.at.stage == *id {
                        keys.push((k.value().to_vec(), gate.token_hash));
                    }
                }
                for (k, token) in keys {
                    gates.remove(k.as_slice())?;
                    open.remove(k.as_slice())?;
                    if let Some(token) = token {
                        tokens.remove(token.as_bytes().as_slice())?;
                    }
                }
            }
            if record.state.is_final() {
                record.state = RunState::Running;
                record.finished_at = None;
                txn.open_table(ACTIVE_RUNS)?.insert(key, [].as_slice())?;
            }
            record.updated_at = now;
            runs.insert(key, codec::encode(&record)?.as_slice())?;
            Ok(record)
        })
    }

    /// Records a gate that starts waiting and moves its stage to
    /// [`StageState::WaitingGate`], in one transaction. Opening a gate that is already
    /// recorded changes nothing and returns the recorded gate with `false`, so a resumed
    /// run can open its gates again without duplicating them. `gate.state` must be
    /// [`GateState::Waiting`].
    pub fn open_gate(&self, gate: Gate) -> Result<(Gate, bool), Error> {
        if gate.state != GateState::Waiting {
            return Err(Error::Invalid("a gate opens waiting"));
        }
        self.write(|txn| {
            let mut gates = txn.open_table(GATES)?;
            let key = codec::gate_key(&gate.at);
            if let Some(existing) = codec::get(&gates, "gates", &key)? {
                return Ok((existing, false));
            }
            let mut stages = txn.open_table(STAGES)?;
            let mut stage = load_stage(&stages, &gate.at.run, &gate.at.stage)?;
            if stage.state.is_final() {
                return Err(finished(&stage));
            }
            stage.state = StageState::WaitingGate;
            stage.updated_at = gate.opened_at;
            put_stage(&mut stages, &stage)?;
            gates.insert(key.as_slice(), codec::encode(&gate)?.as_slice())?;
            txn.open_table(OPEN_GATES)?
                .insert(key.as_slice(), [].as_slice())?;
            if let Some(token) = &gate.token_hash {
                txn.open_table(GATE_TOKENS)?
                    .insert(token.as_bytes().as_slice(), key.as_slice())?;
            }
            Ok((gate, true))
        })
    }

    /// A recorded gate.
    pub fn gate(&self, at: &GateRef) -> Result<Option<Gate>, Error> {
        self.read(|txn| codec::get(&txn.open_table(GATES)?, "gates", &codec::gate_key(at)))
    }

    /// All recorded gates of a run.
    pub fn gates(&self, run: &RunId) -> Result<Vec<Gate>, Error> {
        self.read(|txn| {
            let table = txn.open_table(GATES)?;
            let prefix = run.as_bytes().as_slice();
            let mut out = Vec::new();
            for entry in table.range(prefix..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                out.push(codec::decode("gates", value.value())?);
            }
            Ok(out)
        })
    }

    /// Every gate still waiting, of every run.
    pub fn gates_waiting(&self) -> Result<Vec<Gate>, Error> {
        self.read(|txn| {
            let open = txn.open_table(OPEN_GATES)?;
            let gates = txn.open_table(GATES)?;
            let mut out = Vec::new();
            for entry in open.iter()? {
                let (key, _) = entry?;
                if let Some(gate) = codec::get(&gates, "gates", key.value())? {
                    out.push(gate);
                }
            }
            Ok(out)
        })
    }

    /// The webhook gate whose token has this digest, waiting or not.
    pub fn gate_by_token(&self, token_hash: &Digest) -> Result<Option<Gate>, Error> {
        self.read(|txn| {
            let tokens = txn.open_table(GATE_TOKENS)?;
            let Some(key) = tokens.get(token_hash.as_bytes().as_slice())? else {
                return Ok(None);
            };
            codec::get(&txn.open_table(GATES)?, "gates", key.value())
        })
    }

    /// Closes a waiting gate as `resolution` says and moves its stage to `stage_state`
    /// (with the resolution's note, if any), in one transaction. Fails with
    /// [`Error::GateClosed`] if the gate already closed, so an approval or a webhook
    /// callback is accepted once.
    pub fn resolve_gate(
        &self,
        at: &GateRef,
        resolution: GateResolution,
        stage_state: StageState,
    ) -> Result<Gate, Error> {
        if resolution.state == GateState::Waiting {
            return Err(Error::Invalid("a gate cannot close as waiting"));
        }
        self.write(|txn| {
            let mut gates = txn.open_table(GATES)?;
            let key = codec::gate_key(at);
            let mut gate = waiting_gate(&gates, at, &key)?;
            gate.state = resolution.state;
            gate.approved_by = resolution.approved_by;
            gate.closed_at = Some(resolution.at);
            gate.note = resolution.note;
            gates.insert(key.as_slice(), codec::encode(&gate)?.as_slice())?;
            txn.open_table(OPEN_GATES)?.remove(key.as_slice())?;
            let mut stages = txn.open_table(STAGES)?;
            let mut stage = load_stage(&stages, &at.run, &at.stage)?;
            if stage.state.is_final() && stage.state != stage_state {
                return Err(finished(&stage));
            }
            stage.state = stage_state;
            if gate.note.is_some() {
                stage.note.clone_from(&gate.note);
            }
            stage.updated_at = resolution.at;
            put_stage(&mut stages, &stage)?;
            if stage_state.is_final() {
                super::groups::leave_in(txn, &at.run, Some(&at.stage))?;
            }
            Ok(gate)
        })
    }

    /// Records that a waiting poll gate polled at `now`.
    pub fn gate_polled(&self, at: &GateRef, now: u64) -> Result<Gate, Error> {
        self.write(|txn| {
            let mut gates = txn.open_table(GATES)?;
            let key = codec::gate_key(at);
            let mut gate = waiting_gate(&gates, at, &key)?;
            gate.last_poll = Some(now);
            gate.polls = gate.polls.saturating_add(1);
            gates.insert(key.as_slice(), codec::encode(&gate)?.as_slice())?;
            Ok(gate)
        })
    }

    /// Appends masked log lines to the store's own log table, as nodes did before logs
    /// moved to files ([`Logs`](super::Logs)); returns the last line's number. Nothing in
    /// the node writes there any more: tests and benchmarks call it to make the store of
    /// an older node, whose lines [`Logs::migrate`](super::Logs::migrate) moves out.
    pub fn legacy_append_log_lines(
        &self,
        run: &RunId,
        stage: &str,
        attempt: u32,
        lines: &[NewLine],
    ) -> Result<u64, Error> {
        self.write(|txn| {
            load_stage(&txn.open_table(STAGES)?, run, stage)?;
            let mut logs = txn.open_table(LOGS)?;
            let mut seq = last_seq(&logs, run, stage)?;
            for line in lines {
                seq += 1;
                logs.insert(
                    codec::log_key(run, stage, seq).as_slice(),
                    encode_line(attempt, line).as_slice(),
                )?;
            }
            Ok(seq)
        })
    }

    /// Up to `limit` lines of a stage in the store's own log table (an older node's) with
    /// numbers above `after`, in order.
    pub fn legacy_log_lines(
        &self,
        run: &RunId,
        stage: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>, Error> {
        self.read(|txn| {
            let logs = txn.open_table(LOGS)?;
            let Some(from) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let start = codec::log_key(run, stage, from);
            let end = codec::log_key(run, stage, u64::MAX);
            let mut out = Vec::new();
            for entry in logs.range(start.as_slice()..=end.as_slice())? {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry?;
                out.push(decode_line(seq_of(key.value()), value.value())?);
            }
            Ok(out)
        })
    }

    /// The stages with lines in the store's own log table, by run.
    pub fn legacy_log_stages(&self) -> Result<Vec<(RunId, String)>, Error> {
        self.read(|txn| {
            let logs = txn.open_table(LOGS)?;
            let mut out = Vec::new();
            let mut from: Vec<u8> = Vec::new();
            loop {
                let Some(entry) = logs.range(from.as_slice()..)?.next() else {
                    return Ok(out);
                };
                let (key, _) = entry?;
                let key = key.value();
                let (Some(run), Some(stage)) = (codec::run_of_key(key), stage_of_log_key(key))
                else {
                    return Err(Error::Corrupt {
                        table: "logs",
                        reason: "a key is not a log key".into(),
                    });
                };
                // Next: the first key after every line of this stage.
                from = codec::log_key(&run, &stage, u64::MAX);
                from.push(0);
                out.push((run, stage));
            }
        })
    }

    /// Removes a stage's lines from the store's own log table.
    pub fn drop_legacy_log(&self, run: &RunId, stage: &str) -> Result<(), Error> {
        self.write(|txn| {
            let mut logs = txn.open_table(LOGS)?;
            let start = codec::log_key(run, stage, 0);
            let end = codec::log_key(run, stage, u64::MAX);
            logs.retain_in(start.as_slice()..=end.as_slice(), |_, _| false)?;
            Ok(())
        })
    }

    /// Records a saved cache under its name and key digest, replacing an older one.
    pub fn cache_put(&self, entry: &CacheEntry) -> Result<(), Error> {
        self.write(|txn| {
            txn.open_table(CACHES)?.insert(
                codec::cache_key(&entry.name, entry.key.as_ref()).as_slice(),
                codec::encode(entry)?.as_slice(),
            )?;
            Ok(())
        })
    }

    /// The saved cache with this name and key digest.
    pub fn cache_get(&self, name: &str, key: Option<&Digest>) -> Result<Option<CacheEntry>, Error> {
        self.read(|txn| {
            codec::get(
                &txn.open_table(CACHES)?,
                "caches",
                &codec::cache_key(name, key),
            )
        })
    }

    /// The blobs of every cache entry.
    pub fn cache_blobs(&self) -> Result<Vec<Digest>, Error> {
        self.read(|txn| {
            let caches = txn.open_table(CACHES)?;
            let mut out = Vec::new();
            for entry in caches.iter()? {
                let (_, value) = entry?;
                let entry: CacheEntry = codec::decode("caches", value.value())?;
                out.push(entry.blob);
            }
            Ok(out)
        })
    }

    /// Stores a sealed secret under its name. For the vault only.
    pub(crate) fn secret_put(&self, name: &str, sealed: &[u8]) -> Result<(), Error> {
        self.write(|txn| {
            txn.open_table(SECRETS)?.insert(name, sealed)?;
            Ok(())
        })
    }

    /// The sealed secret with this name. For the vault only.
    pub(crate) fn secret_get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.read(|txn| {
            let table = txn.open_table(SECRETS)?;
            let value = table.get(name)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// The names of the stored secrets, sorted. For the vault only.
    pub(crate) fn secret_names(&self) -> Result<Vec<String>, Error> {
        self.read(|txn| {
            let table = txn.open_table(SECRETS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                out.push(entry?.0.value().to_owned());
            }
            Ok(out)
        })
    }

    /// Removes a secret; whether it existed. For the vault only.
    pub(crate) fn secret_remove(&self, name: &str) -> Result<bool, Error> {
        self.write(|txn| Ok(txn.open_table(SECRETS)?.remove(name)?.is_some()))
    }
}

/// Marks every running attempt of every stage of `run` interrupted at `now`, in the
/// caller's transaction, and returns the stages it changed with the attempt numbers.
pub(crate) fn interrupt_running(
    txn: &WriteTransaction,
    run: &RunId,
    now: u64,
) -> Result<Vec<(Stage, u32)>, Error> {
    let mut table = txn.open_table(STAGES)?;
    let prefix = run.as_bytes().as_slice();
    let mut changed = Vec::new();
    for entry in table.range(prefix..)? {
        let (key, value) = entry?;
        if !key.value().starts_with(prefix) {
            break;
        }
        let mut stage: Stage = codec::decode("stages", value.value())?;
        if let Some(last) = stage.attempts.last_mut()
            && last.state == AttemptState::Running
        {
            last.state = AttemptState::Interrupted;
            last.finished_at = Some(now);
            last.error = Some("interrupted: the node stopped while it ran".into());
            let n = last.n;
            stage.updated_at = now;
            changed.push((stage, n));
        }
    }
    for (stage, _) in &changed {
        put_stage(&mut table, stage)?;
    }
    Ok(changed)
}

type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// Moves a stage to `state` inside `txn` (see [`Store::set_stage_state`]).
pub(super) fn set_state_in(
    txn: &WriteTransaction,
    run: &RunId,
    stage: &str,
    state: StageState,
    note: Option<String>,
    now: u64,
) -> Result<Stage, Error> {
    let mut table = txn.open_table(STAGES)?;
    let mut record = load_stage(&table, run, stage)?;
    if record.state.is_final() && record.state != state {
        return Err(finished(&record));
    }
    record.state = state;
    record.note = note;
    record.updated_at = now;
    put_stage(&mut table, &record)?;
    if state.is_final() {
        // A stage that ended holds no concurrency group and waits for none.
        super::groups::leave_in(txn, run, Some(stage))?;
    }
    Ok(record)
}

fn load_stage(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    run: &RunId,
    stage: &str,
) -> Result<Stage, Error> {
    codec::get(table, "stages", &codec::stage_key(run, stage))?.ok_or_else(|| Error::UnknownStage {
        run: *run,
        stage: stage.to_owned(),
    })
}

fn put_stage(table: &mut BytesTable<'_>, stage: &Stage) -> Result<(), Error> {
    table.insert(
        codec::stage_key(&stage.run, &stage.id).as_slice(),
        codec::encode(stage)?.as_slice(),
    )?;
    Ok(())
}

fn finished(stage: &Stage) -> Error {
    Error::StageFinished {
        run: stage.run,
        stage: stage.id.clone(),
        state: stage.state,
    }
}

/// Attempt `n` of a stage, if it is still running.
fn running_attempt(stage: &mut Stage, n: u32) -> Result<&mut Attempt, Error> {
    let (run, id) = (stage.run, stage.id.clone());
    let attempt = stage
        .attempts
        .iter_mut()
        .find(|a| a.n == n)
        .ok_or_else(|| Error::UnknownAttempt {
            run,
            stage: id.clone(),
            attempt: n,
        })?;
    if attempt.state != AttemptState::Running {
        return Err(Error::AttemptEnded {
            run,
            stage: id,
            attempt: n,
            state: attempt.state,
        });
    }
    Ok(attempt)
}

fn waiting_gate(
    gates: &impl ReadableTable<&'static [u8], &'static [u8]>,
    at: &GateRef,
    key: &[u8],
) -> Result<Gate, Error> {
    let gate: Gate =
        codec::get(gates, "gates", key)?.ok_or_else(|| Error::UnknownGate(Box::new(at.clone())))?;
    if gate.state != GateState::Waiting {
        return Err(Error::GateClosed {
            gate: Box::new(at.clone()),
            state: gate.state,
        });
    }
    Ok(gate)
}

/// The number of a stage's last log line, 0 when it has none.
fn last_seq(
    logs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    run: &RunId,
    stage: &str,
) -> Result<u64, Error> {
    let start = codec::log_key(run, stage, 0);
    let end = codec::log_key(run, stage, u64::MAX);
    let last = logs.range(start.as_slice()..=end.as_slice())?.next_back();
    match last {
        Some(entry) => Ok(seq_of(entry?.0.value())),
        None => Ok(0),
    }
}

/// The stage name inside a log key.
fn stage_of_log_key(key: &[u8]) -> Option<String> {
    let len = key.get(16..20)?;
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    let name = key.get(20..20usize.checked_add(len)?)?;
    (key.len() == 20 + len + 8).then_some(())?;
    String::from_utf8(name.to_vec()).ok()
}

/// The sequence number at the end of a log key.
fn seq_of(key: &[u8]) -> u64 {
    key.last_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b))
}

/// Adds the names in `new` that `list` does not have yet.
fn merge(list: &mut Vec<String>, new: Vec<String>) {
    for name in new {
        if !list.contains(&name) {
            list.push(name);
        }
    }
}

//! The store through its public API, on real database files.

use std::path::Path;

use otto_node::blobs::Digest;
use otto_node::store::{
    AttemptEnd, AttemptState, AttemptUpdate, CacheEntry, Error, Gate, GateKind, GatePhase, GateRef,
    GateResolution, GateState, InboxState, NewRun, NewStage, OutboxEntry, RunFilter, RunId,
    RunState, Source, StageState, Store,
};
use otto_pipeline::plan::Facts;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(dir: &Path) -> Result<Store> {
    Ok(Store::open(dir.join("store.redb"))?)
}

fn id(time: u64, r: u8) -> RunId {
    RunId::new(time, [r; 10])
}

fn new_run(id: RunId, pipeline: &str, stages: &[&str]) -> NewRun {
    NewRun {
        id,
        pipeline: pipeline.into(),
        plan: format!("{{\"pipeline\":\"{pipeline}\"}}").into_bytes(),
        source: Source::Snapshot {
            digest: Digest::of(b"snapshot"),
        },
        facts: Facts {
            branch: Some("main".into()),
            ..Facts::default()
        },
        created_at: id.time_ms(),
        started_by: "alice".into(),
        stages: stages
            .iter()
            .map(|s| NewStage {
                id: (*s).into(),
                state: StageState::Pending,
            })
            .collect(),
    }
}

fn end(state: AttemptState, at: u64) -> AttemptEnd {
    AttemptEnd {
        state,
        finished_at: at,
        exit_code: None,
        failed_step: None,
        error: None,
        log: None,
    }
}

#[test]
fn a_run_goes_through_its_lifecycle_and_survives_reopening() -> Result {
    let dir = tempfile::tempdir()?;
    let run = id(1_000, 1);
    {
        let store = open(dir.path())?;
        let new = new_run(run, "webapp", &["Build", "Test", "Deploy"]);
        let plan = new.plan.clone();
        let created = store.create_run(new)?;
        assert_eq!(created.state, RunState::Queued);
        assert_eq!(created.plan_digest, Digest::of(&plan));
        assert_eq!(store.plan(&created.plan_digest)?, Some(plan));
        let ids: Vec<_> = store.stages(&run)?.into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["Build", "Test", "Deploy"]);

        store.set_run_state(&run, RunState::Running, 1_100)?;
        assert_eq!(store.unfinished_runs()?.len(), 1);
        let done = store.set_run_state(&run, RunState::Succeeded, 1_200)?;
        assert_eq!(done.finished_at, Some(1_200));
        assert!(store.unfinished_runs()?.is_empty());
        // A finished run stays finished; setting the same state again is harmless.
        assert!(matches!(
            store.set_run_state(&run, RunState::Running, 1_300),
            Err(Error::RunFinished {
                state: RunState::Succeeded,
                ..
            })
        ));
        store.set_run_state(&run, RunState::Succeeded, 1_300)?;
    }
    let store = open(dir.path())?;
    let stored = store.run(&run)?.ok_or("run lost")?;
    assert_eq!(stored.state, RunState::Succeeded);
    assert_eq!(stored.updated_at, 1_200);
    assert_eq!(stored.facts.branch.as_deref(), Some("main"));
    assert_eq!(stored.started_by, "alice");
    Ok(())
}

#[test]
fn run_ids_and_stage_ids_are_unique() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    store.create_run(new_run(id(1, 1), "p", &["A"]))?;
    assert!(matches!(
        store.create_run(new_run(id(1, 1), "p", &["A"])),
        Err(Error::RunExists(_))
    ));
    assert!(matches!(
        store.create_run(new_run(id(2, 1), "p", &["A", "A"])),
        Err(Error::Invalid(_))
    ));
    assert!(store.run(&id(2, 1))?.is_none());
    assert!(matches!(
        store.set_run_state(&id(3, 3), RunState::Running, 0),
        Err(Error::UnknownRun(_))
    ));
    Ok(())
}

#[test]
fn attempts_are_numbered_and_begin_once() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = id(10, 1);
    store.create_run(new_run(run, "p", &["Build"]))?;

    assert_eq!(store.begin_attempt(&run, "Build", 100)?, 1);
    assert!(matches!(
        store.begin_attempt(&run, "Build", 101),
        Err(Error::AttemptRunning { attempt: 1, .. })
    ));
    let update = AttemptUpdate {
        agent_pid: Some(4242),
        cache_hits: vec!["cargo".into()],
        cache_misses: vec!["npm".into()],
    };
    store.update_attempt(&run, "Build", 1, update.clone())?;
    store.update_attempt(&run, "Build", 1, update)?;
    let stage = store.finish_attempt(
        &run,
        "Build",
        1,
        AttemptEnd {
            exit_code: Some(2),
            failed_step: Some(3),
            error: Some("step 3 exited with 2".into()),
            ..end(AttemptState::Failed, 150)
        },
        StageState::Pending,
    )?;
    assert_eq!(stage.state, StageState::Pending);
    let first = &stage.attempts[0];
    assert_eq!((first.n, first.state), (1, AttemptState::Failed));
    assert_eq!((first.exit_code, first.failed_step), (Some(2), Some(3)));
    assert_eq!(first.agent_pid, Some(4242));
    assert_eq!(first.cache_hits, ["cargo"]);
    assert_eq!(first.cache_misses, ["npm"]);

    assert_eq!(store.begin_attempt(&run, "Build", 200)?, 2);
    // A late result for an attempt that already ended changes nothing.
    assert!(matches!(
        store.finish_attempt(
            &run,
            "Build",
            1,
            end(AttemptState::Succeeded, 201),
            StageState::Succeeded
        ),
        Err(Error::AttemptEnded {
            attempt: 1,
            state: AttemptState::Failed,
            ..
        })
    ));
    assert!(matches!(
        store.finish_attempt(
            &run,
            "Build",
            3,
            end(AttemptState::Succeeded, 201),
            StageState::Succeeded
        ),
        Err(Error::UnknownAttempt { attempt: 3, .. })
    ));
    let log = Digest::of(b"the log");
    let stage = store.finish_attempt(
        &run,
        "Build",
        2,
        AttemptEnd {
            log: Some(log),
            ..end(AttemptState::Succeeded, 250)
        },
        StageState::Succeeded,
    )?;
    assert_eq!(stage.attempts.len(), 2);
    assert_eq!(stage.attempts[1].log, Some(log));
    // A finished stage takes no more attempts.
    assert!(matches!(
        store.begin_attempt(&run, "Build", 300),
        Err(Error::StageFinished { .. })
    ));
    assert!(matches!(
        store.begin_attempt(&run, "Nope", 300),
        Err(Error::UnknownStage { .. })
    ));
    Ok(())
}

#[test]
fn recovery_interrupts_running_attempts_once_and_lists_what_to_resume() -> Result {
    let dir = tempfile::tempdir()?;
    let run = id(10, 1);
    let gate = GateRef::new(run, "Deploy", GatePhase::Enter, 0);
    {
        let store = open(dir.path())?;
        store.create_run(new_run(run, "p", &["Build", "Deploy"]))?;
        store.set_run_state(&run, RunState::Running, 11)?;
        store.begin_attempt(&run, "Build", 12)?;
        store.update_attempt(
            &run,
            "Build",
            1,
            AttemptUpdate {
                agent_pid: Some(77),
                ..AttemptUpdate::default()
            },
        )?;
        store.open_gate(Gate::waiting(gate.clone(), GateKind::Input, 13))?;
        // The node is killed here: the store is dropped without anything finishing.
    }
    let store = open(dir.path())?;
    let first = store.recover(1_000)?;
    assert_eq!(first.runs.len(), 1);
    assert_eq!(first.interrupted.len(), 1);
    assert_eq!(first.interrupted[0].stage, "Build");
    assert_eq!(first.interrupted[0].attempt, 1);
    assert_eq!(first.interrupted[0].agent_pid, Some(77));
    assert_eq!(first.retry, first.interrupted);
    assert_eq!(first.gates.len(), 1);
    assert_eq!(first.gates[0].at, gate);

    let stage = store.stage(&run, "Build")?.ok_or("stage lost")?;
    assert_eq!(stage.attempts.len(), 1);
    assert_eq!(stage.attempts[0].state, AttemptState::Interrupted);
    assert_eq!(stage.attempts[0].finished_at, Some(1_000));

    // Called again (say the node died during recovery): nothing new is interrupted or
    // created, and the same work is listed.
    let second = store.recover(2_000)?;
    assert!(second.interrupted.is_empty());
    assert_eq!(second.retry, first.retry);
    assert_eq!(second.gates, first.gates);
    let stage = store.stage(&run, "Build")?.ok_or("stage lost")?;
    assert_eq!(stage.attempts.len(), 1);
    assert_eq!(stage.attempts[0].finished_at, Some(1_000));

    // The retry is attempt 2, and a late result from the dead agent is refused.
    assert_eq!(store.begin_attempt(&run, "Build", 2_100)?, 2);
    assert!(matches!(
        store.finish_attempt(
            &run,
            "Build",
            1,
            end(AttemptState::Succeeded, 2_200),
            StageState::Succeeded
        ),
        Err(Error::AttemptEnded {
            state: AttemptState::Interrupted,
            ..
        })
    ));
    // A second crash while attempt 2 runs interrupts attempt 2 and retries as 3.
    let third = store.recover(2_300)?;
    let attempts: Vec<_> = third.interrupted.iter().map(|a| a.attempt).collect();
    assert_eq!(attempts, [2]);
    assert_eq!(store.begin_attempt(&run, "Build", 2_400)?, 3);
    Ok(())
}

#[test]
fn gates_open_once_and_close_once() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = id(10, 1);
    store.create_run(new_run(run, "p", &["Deploy"]))?;
    let at = GateRef::new(run, "Deploy", GatePhase::Enter, 0);
    let token = Digest::of(b"secret token");
    let gate = Gate {
        token_hash: Some(token),
        deadline: Some(5_000),
        ..Gate::waiting(at.clone(), GateKind::Webhook, 100)
    };
    let (opened, created) = store.open_gate(gate.clone())?;
    assert!(created);
    assert_eq!(opened, gate);
    let stage = store.stage(&run, "Deploy")?.ok_or("stage lost")?;
    assert_eq!(stage.state, StageState::WaitingGate);

    // Opening it again (a resumed run) returns the recorded gate unchanged.
    let again = Gate::waiting(at.clone(), GateKind::Webhook, 900);
    assert_eq!(store.open_gate(again)?, (gate.clone(), false));
    assert_eq!(store.gates_waiting()?, std::slice::from_ref(&gate));
    assert_eq!(store.gate_by_token(&token)?, Some(gate.clone()));
    assert_eq!(store.gate_by_token(&Digest::of(b"guess"))?, None);

    let resolution = GateResolution {
        state: GateState::Passed,
        approved_by: None,
        note: None,
        at: 200,
    };
    let closed = store.resolve_gate(&at, resolution.clone(), StageState::Pending)?;
    assert_eq!(closed.state, GateState::Passed);
    assert_eq!(closed.closed_at, Some(200));
    assert_eq!(
        store.stage(&run, "Deploy")?.map(|s| s.state),
        Some(StageState::Pending)
    );
    // The callback is accepted once.
    assert!(matches!(
        store.resolve_gate(&at, resolution, StageState::Pending),
        Err(Error::GateClosed {
            state: GateState::Passed,
            ..
        })
    ));
    assert!(store.gates_waiting()?.is_empty());
    assert_eq!(
        store.gate_by_token(&token)?.map(|g| g.state),
        Some(GateState::Passed)
    );
    assert_eq!(store.gates(&run)?.len(), 1);
    Ok(())
}

#[test]
fn poll_and_input_gates_record_their_progress() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = id(10, 1);
    store.create_run(new_run(run, "p", &["Deploy"]))?;
    let poll = GateRef::new(run, "Deploy", GatePhase::Exit, 1);
    let input = GateRef::new(run, "Deploy", GatePhase::Exit, 0);
    store.open_gate(Gate::waiting(poll.clone(), GateKind::Poll, 1))?;
    store.open_gate(Gate::waiting(input.clone(), GateKind::Input, 1))?;
    store.gate_polled(&poll, 10)?;
    let polled = store.gate_polled(&poll, 20)?;
    assert_eq!((polled.polls, polled.last_poll), (2, Some(20)));
    let timed_out = store.resolve_gate(
        &poll,
        GateResolution {
            state: GateState::TimedOut,
            approved_by: None,
            note: Some("poll timed out after 1h".into()),
            at: 30,
        },
        StageState::Failed,
    )?;
    assert_eq!(timed_out.state, GateState::TimedOut);
    let stage = store.stage(&run, "Deploy")?.ok_or("stage lost")?;
    assert_eq!(stage.state, StageState::Failed);
    assert_eq!(stage.note.as_deref(), Some("poll timed out after 1h"));
    assert!(matches!(
        store.gate_polled(&poll, 40),
        Err(Error::GateClosed { .. })
    ));
    // The stage failed, so the other gate cannot pass it any more.
    assert!(matches!(
        store.resolve_gate(
            &input,
            GateResolution {
                state: GateState::Passed,
                approved_by: Some("bob".into()),
                note: None,
                at: 50,
            },
            StageState::Succeeded,
        ),
        Err(Error::StageFinished { .. })
    ));
    assert_eq!(
        store.gate(&input)?.map(|g| g.state),
        Some(GateState::Waiting)
    );
    Ok(())
}

#[test]
fn list_runs_filters_and_pages_newest_first() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    for t in 1..=10u64 {
        let pipeline = if t % 2 == 0 { "even" } else { "odd" };
        store.create_run(new_run(id(t * 1_000, t as u8), pipeline, &["A"]))?;
        if t % 3 == 0 {
            store.set_run_state(&id(t * 1_000, t as u8), RunState::Failed, t * 1_000 + 1)?;
        }
    }
    let times = |runs: Vec<otto_node::store::Run>| -> Vec<u64> {
        runs.iter().map(|r| r.created_at / 1_000).collect()
    };
    let all = store.list_runs(&RunFilter::default())?;
    assert_eq!(times(all), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    let even = store.list_runs(&RunFilter {
        pipeline: Some("even".into()),
        ..RunFilter::default()
    })?;
    assert_eq!(times(even), [10, 8, 6, 4, 2]);
    let failed = store.list_runs(&RunFilter {
        state: Some(RunState::Failed),
        ..RunFilter::default()
    })?;
    assert_eq!(times(failed), [9, 6, 3]);
    let page1 = store.list_runs(&RunFilter {
        limit: 4,
        ..RunFilter::default()
    })?;
    let last = page1.last().map(|r| r.id);
    assert_eq!(times(page1), [10, 9, 8, 7]);
    let page2 = store.list_runs(&RunFilter {
        limit: 4,
        before: last,
        ..RunFilter::default()
    })?;
    assert_eq!(times(page2), [6, 5, 4, 3]);
    let queued_odd = store.list_runs(&RunFilter {
        pipeline: Some("odd".into()),
        state: Some(RunState::Queued),
        limit: 2,
        before: None,
    })?;
    assert_eq!(times(queued_odd), [7, 5]);
    assert_eq!(store.unfinished_runs()?.len(), 7);
    Ok(())
}

#[test]
fn receipts_are_kept_per_attempt_and_never_replaced() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = id(10, 1);
    assert!(store.put_receipt(&run, "Build", 1, b"receipt one")?);
    assert!(!store.put_receipt(&run, "Build", 1, b"receipt one")?);
    assert!(matches!(
        store.put_receipt(&run, "Build", 1, b"forged"),
        Err(Error::ReceiptConflict { attempt: 1, .. })
    ));
    store.put_receipt(&run, "Build", 2, b"receipt two")?;
    store.put_receipt(&run, "Deploy", 1, b"receipt three")?;
    store.put_receipt(&id(11, 1), "Build", 1, b"another run")?;
    let all = store.receipts(&run)?;
    let listed: Vec<_> = all
        .iter()
        .map(|r| (r.stage.as_str(), r.attempt, r.bytes.as_slice()))
        .collect();
    assert_eq!(
        listed,
        [
            ("Build", 1, b"receipt one".as_slice()),
            ("Build", 2, b"receipt two".as_slice()),
            ("Deploy", 1, b"receipt three".as_slice()),
        ]
    );
    assert_eq!(
        store.receipt(&run, "Build", 2)?.as_deref(),
        Some(b"receipt two".as_slice())
    );
    Ok(())
}

fn outbox(id: u8, next: u64) -> OutboxEntry {
    OutboxEntry {
        id: [id; 16],
        run: RunId::new(1, [0; 10]),
        stage: "Deploy".into(),
        peer: "ops".into(),
        message: vec![id; 100],
        created_at: 0,
        next_attempt_at: next,
        tries: 0,
        last_error: None,
    }
}

#[test]
fn the_outbox_hands_out_due_offers_in_time_order() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    assert!(store.outbox_put(&outbox(3, 30))?);
    assert!(store.outbox_put(&outbox(1, 10))?);
    assert!(store.outbox_put(&outbox(2, 20))?);
    // A second put of the same handoff keeps the first.
    assert!(!store.outbox_put(&outbox(1, 99))?);
    let ids = |entries: Vec<OutboxEntry>| -> Vec<u8> { entries.iter().map(|e| e.id[0]).collect() };
    assert_eq!(ids(store.outbox_due(5, 10)?), Vec::<u8>::new());
    assert_eq!(ids(store.outbox_due(15, 10)?), [1]);
    assert_eq!(ids(store.outbox_due(100, 10)?), [1, 2, 3]);
    assert_eq!(ids(store.outbox_due(100, 2)?), [1, 2]);
    assert_eq!(store.outbox_next_due()?, Some(10));

    let retried = store.outbox_retry(&[1; 16], 50, "connection refused")?;
    assert_eq!(retried.tries, 1);
    assert_eq!(retried.last_error.as_deref(), Some("connection refused"));
    assert_eq!(ids(store.outbox_due(40, 10)?), [2, 3]);
    assert_eq!(ids(store.outbox_due(100, 10)?), [2, 3, 1]);
    assert_eq!(store.outbox_next_due()?, Some(20));

    assert_eq!(store.outbox_ack(&[2; 16])?.map(|e| e.id), Some([2; 16]));
    assert_eq!(store.outbox_ack(&[2; 16])?, None);
    assert_eq!(ids(store.outbox_due(100, 10)?), [3, 1]);
    assert_eq!(store.outbox_get(&[1; 16])?.map(|e| e.tries), Some(1));
    assert!(matches!(
        store.outbox_retry(&[2; 16], 60, "gone"),
        Err(Error::UnknownHandoff(_))
    ));
    Ok(())
}

#[test]
fn the_inbox_is_idempotent_and_keeps_the_first_answer() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let a = [0xa; 16];
    let (entry, new) = store.inbox_put(&a, b"offer a", 10)?;
    assert!(new);
    assert_eq!(entry.state, InboxState::Received);
    // A duplicate (even with other bytes) gets the stored entry, unchanged.
    let (dup, new) = store.inbox_put(&a, b"replayed offer", 20)?;
    assert!(!new);
    assert_eq!(dup.offer, b"offer a");
    assert_eq!(dup.received_at, 10);

    let answered = store.inbox_answer(&a, b"accept a", InboxState::Accepted, 30)?;
    assert_eq!(answered.answer.as_deref(), Some(b"accept a".as_slice()));
    let again = store.inbox_answer(&a, b"reject a", InboxState::Rejected, 40)?;
    assert_eq!(again.answer.as_deref(), Some(b"accept a".as_slice()));
    assert_eq!(again.state, InboxState::Accepted);
    let (dup, _) = store.inbox_put(&a, b"offer a", 50)?;
    assert_eq!(dup.answer.as_deref(), Some(b"accept a".as_slice()));

    let b = [0xb; 16];
    let c = [0xc; 16];
    let batch = store.inbox_put_many(&[(b, b"offer b"), (c, b"offer c"), (b, b"offer b")], 60)?;
    let news: Vec<_> = batch.iter().map(|(_, new)| *new).collect();
    assert_eq!(news, [true, true, false]);
    store.inbox_answer(&c, b"reject c", InboxState::Rejected, 70)?;

    let pending: Vec<_> = store.inbox_pending()?.iter().map(|e| e.id).collect();
    assert_eq!(pending, [a, b]);
    assert!(matches!(store.inbox_done(&b), Err(Error::Invalid(_))));
    assert_eq!(store.inbox_done(&a)?.state, InboxState::Done);
    assert_eq!(store.inbox_done(&a)?.state, InboxState::Done);
    let pending: Vec<_> = store.inbox_pending()?.iter().map(|e| e.id).collect();
    assert_eq!(pending, [b]);
    assert_eq!(
        store.inbox_get(&c)?.map(|e| e.state),
        Some(InboxState::Rejected)
    );
    assert!(matches!(
        store.inbox_answer(&[0xd; 16], b"x", InboxState::Accepted, 0),
        Err(Error::UnknownHandoff(_))
    ));
    Ok(())
}

#[test]
fn an_offer_and_its_answer_are_persisted_together_and_the_first_answer_stays() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let a = [0xa; 16];
    let entry =
        store.inbox_put_answered(&a, b"offer a", 10, b"accept a", InboxState::Accepted, 11)?;
    assert_eq!(entry.state, InboxState::Accepted);
    assert_eq!(entry.answer.as_deref(), Some(b"accept a".as_slice()));
    assert_eq!(store.inbox_pending()?.len(), 1);
    // A copy keeps the first offer and answer.
    let again =
        store.inbox_put_answered(&a, b"other", 20, b"reject a", InboxState::Rejected, 21)?;
    assert_eq!(again.offer, b"offer a");
    assert_eq!(again.state, InboxState::Accepted);
    // A refusal is final at once: nothing left to run.
    let b = [0xb; 16];
    store.inbox_put_answered(&b, b"offer b", 30, b"reject b", InboxState::Rejected, 31)?;
    let pending: Vec<_> = store.inbox_pending()?.iter().map(|e| e.id).collect();
    assert_eq!(pending, [a]);
    assert!(matches!(
        store.inbox_put_answered(&[0xc; 16], b"x", 0, b"y", InboxState::Done, 0),
        Err(Error::Invalid(_))
    ));
    Ok(())
}

#[test]
fn the_cache_index_maps_name_and_key_to_a_blob() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let lock = Digest::of(b"Gemfile.lock");
    let entry = |blob: &[u8], key: Option<Digest>| CacheEntry {
        name: "gems".into(),
        key,
        blob: Digest::of(blob),
        size: blob.len() as u64,
        saved_at: 1,
    };
    store.cache_put(&entry(b"v1", Some(lock)))?;
    store.cache_put(&entry(b"unkeyed", None))?;
    assert_eq!(
        store.cache_get("gems", Some(&lock))?,
        Some(entry(b"v1", Some(lock)))
    );
    assert_eq!(
        store.cache_get("gems", None)?,
        Some(entry(b"unkeyed", None))
    );
    assert_eq!(store.cache_get("gems", Some(&Digest::of(b"other")))?, None);
    assert_eq!(store.cache_get("npm", None)?, None);
    store.cache_put(&entry(b"v2", Some(lock)))?;
    assert_eq!(
        store.cache_get("gems", Some(&lock))?.map(|e| e.blob),
        Some(Digest::of(b"v2"))
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn the_database_file_is_private_to_the_node_user() -> Result {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir()?;
    drop(open(dir.path())?);
    let mode = std::fs::metadata(dir.path().join("store.redb"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

#[test]
fn a_second_process_cannot_open_the_same_store() -> Result {
    let dir = tempfile::tempdir()?;
    let _store = open(dir.path())?;
    assert!(matches!(open_err(dir.path()), Some(Error::AlreadyOpen(_))));
    Ok(())
}

fn open_err(dir: &Path) -> Option<Error> {
    Store::open(dir.join("store.redb")).err()
}

#[test]
fn records_have_a_stable_json_form() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = RunId::new(0x0123_4567_89ab, [0; 10]);
    let created = store.create_run(new_run(run, "p", &["A"]))?;
    let json = serde_json::to_value(&created)?;
    assert_eq!(json["id"], run.to_string());
    assert_eq!(json["state"], "queued");
    assert_eq!(json["source"]["kind"], "snapshot");
    assert_eq!(
        json["source"]["digest"],
        Digest::of(b"snapshot").to_string()
    );
    let back: otto_node::store::Run = serde_json::from_value(json)?;
    assert_eq!(back, created);

    let gate = Gate::waiting(
        GateRef::new(run, "A", GatePhase::Exit, 2),
        GateKind::Input,
        5,
    );
    let json = serde_json::to_value(&gate)?;
    assert_eq!(json["stage"], "A");
    assert_eq!(json["phase"], "exit");
    assert_eq!(json["state"], "waiting");
    Ok(())
}

#[test]
fn a_handoff_intent_is_kept_with_the_handed_off_stage_until_its_offer_is_in_the_outbox() -> Result {
    let dir = tempfile::tempdir()?;
    let run = RunId::new(1, [0; 10]);
    {
        let store = open(dir.path())?;
        store.create_run(new_run(run, "app", &["Build", "Deploy", "Notify"]))?;
        let stage = store.hand_off_stage(
            &run,
            "Deploy",
            Some("to be offered to ops".into()),
            Some("ops"),
            7,
        )?;
        assert_eq!(stage.state, StageState::HandedOff);
        // Another node moves this one on: handed off here, nothing owed by this node.
        store.hand_off_stage(&run, "Notify", Some("dev-2 moves it on".into()), None, 8)?;
    }
    // What one transaction wrote is there after the process is gone.
    let store = open(dir.path())?;
    let intents = store.handoff_intents()?;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(
        (
            intents[0].run,
            intents[0].stage.as_str(),
            intents[0].owner.as_str(),
            intents[0].created_at
        ),
        (run, "Deploy", "ops", 7)
    );
    assert_eq!(
        store.stage(&run, "Deploy")?.map(|s| s.state),
        Some(StageState::HandedOff)
    );
    assert!(store.handoff_intent(&run, "Notify")?.is_none());
    // The offer of another stage leaves the intent alone; the offer of Deploy takes it.
    let mut other = outbox(4, 10);
    other.run = run;
    other.stage = "Build".into();
    store.outbox_put(&other)?;
    assert!(store.handoff_intent(&run, "Deploy")?.is_some());
    let mut offer = outbox(5, 10);
    offer.run = run;
    assert!(store.outbox_put(&offer)?);
    assert!(store.handoff_intents()?.is_empty());
    assert!(!store.drop_handoff_intent(&run, "Deploy")?);
    // A finished stage cannot be handed off, and nothing is recorded for it.
    store.set_stage_state(&run, "Build", StageState::Succeeded, None, 9)?;
    assert!(matches!(
        store.hand_off_stage(&run, "Build", None, Some("ops"), 10),
        Err(Error::StageFinished { .. })
    ));
    assert!(store.handoff_intents()?.is_empty());
    Ok(())
}

#[test]
fn a_stage_ends_with_its_receipt_in_one_transaction_and_a_stored_receipt_is_kept() -> Result {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let run = RunId::new(1, [0; 10]);
    store.create_run(new_run(run, "app", &["Build", "Deploy"]))?;
    let kept = store.end_stage_with_receipt(
        &run,
        "Build",
        StageState::Succeeded,
        None,
        5,
        (1, b"receipt one"),
    )?;
    assert_eq!(kept, b"receipt one");
    assert_eq!(
        store.stage(&run, "Build")?.map(|s| s.state),
        Some(StageState::Succeeded)
    );
    assert_eq!(
        store.receipt(&run, "Build", 1)?.as_deref(),
        Some(&b"receipt one"[..])
    );
    // Signed again after a restart (the signature need not be the same bytes): the first
    // receipt stays and comes back.
    let kept = store.end_stage_with_receipt(
        &run,
        "Build",
        StageState::Succeeded,
        None,
        6,
        (1, b"receipt again"),
    )?;
    assert_eq!(kept, b"receipt one");
    // A refused state change stores no receipt either.
    assert!(matches!(
        store.end_stage_with_receipt(&run, "Build", StageState::Failed, None, 7, (2, b"late")),
        Err(Error::StageFinished { .. })
    ));
    assert_eq!(store.receipt(&run, "Build", 2)?, None);
    assert!(matches!(
        store.end_stage_with_receipt(&run, "Deploy", StageState::Running, None, 7, (1, b"x")),
        Err(Error::Invalid(_))
    ));
    Ok(())
}

/// Concurrency groups (issue #14, item 4): arrival order, members leaving with their
/// final state, and `cancel_in_progress` reaching only members of the joining member's org:
/// a peer org's stage in the owner's group queues behind the owner's deploy but never
/// cancels it, nor another org's.
#[test]
fn a_group_keeps_arrival_order_and_a_newer_member_cancels_only_its_own_orgs() -> Result {
    use otto_node::store::{GroupKind, GroupMember, GroupTurn, Joined};
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let runs: Vec<RunId> = (1..=5).map(|n| id(1_000 + n, n as u8)).collect();
    for run in &runs {
        store.create_run(new_run(*run, "webapp", &["Deploy"]))?;
    }
    let member = |run: RunId, org: Option<&str>, cancel: bool| GroupMember {
        run,
        stage: Some("Deploy".into()),
        org: org.map(Into::into),
        cancel_in_progress: cancel,
        joined_at: 0,
        superseded_by: None,
    };
    let join = |m: GroupMember| store.join_group(GroupKind::Stage, "prod", m, 4);
    // The owner's own deploy holds; two peers' wait behind it, in arrival order.
    assert!(matches!(
        join(member(runs[0], None, false))?,
        Joined::In {
            turn: GroupTurn::Holds,
            ..
        }
    ));
    assert!(matches!(
        join(member(runs[1], Some("dev"), false))?,
        Joined::In {
            turn: GroupTurn::Waits { ahead: 1, .. },
            ..
        }
    ));
    assert!(matches!(
        join(member(runs[2], Some("qa"), false))?,
        Joined::In {
            turn: GroupTurn::Waits { ahead: 2, .. },
            ..
        }
    ));
    // Joining again changes nothing.
    assert!(matches!(join(member(runs[1], Some("dev"), false))?,
        Joined::In { turn: GroupTurn::Waits { ahead: 1, .. }, superseded } if superseded.is_empty()));
    // A newer dev stage with cancel_in_progress cancels dev's earlier one only.
    let Joined::In { turn, superseded } = join(member(runs[3], Some("dev"), true))? else {
        panic!("not joined")
    };
    assert!(matches!(turn, GroupTurn::Waits { ahead: 3, .. }));
    let cancelled: Vec<RunId> = superseded.iter().map(|m| m.run).collect();
    assert_eq!(cancelled, [runs[1]]);
    assert_eq!(
        store.group_turn(GroupKind::Stage, "prod", &runs[1], Some("Deploy"))?,
        Some(GroupTurn::Superseded { by: runs[3] })
    );
    assert_eq!(
        store.group_turn(GroupKind::Stage, "prod", &runs[0], Some("Deploy"))?,
        Some(GroupTurn::Holds),
        "a peer never cancels the owner's deploy"
    );
    // Full at 4: the fifth is refused, not queued.
    assert_eq!(
        join(member(runs[4], None, false))?,
        Joined::Full { members: 4 }
    );
    // A stage that ends leaves its group in the same transaction; the next takes it.
    store.set_stage_state(&runs[0], "Deploy", StageState::Succeeded, None, 2_000)?;
    assert!(matches!(
        store.group_turn(GroupKind::Stage, "prod", &runs[1], Some("Deploy"))?,
        Some(GroupTurn::Superseded { .. })
    ));
    store.set_stage_state(&runs[1], "Deploy", StageState::Cancelled, None, 2_000)?;
    assert_eq!(
        store.group_turn(GroupKind::Stage, "prod", &runs[2], Some("Deploy"))?,
        Some(GroupTurn::Holds)
    );
    // A run that ends takes its stages out too; the groups of a pipeline are apart.
    store.set_run_state(&runs[2], RunState::Failed, 3_000)?;
    assert_eq!(
        store.group_turn(GroupKind::Stage, "prod", &runs[2], Some("Deploy"))?,
        None
    );
    assert_eq!(
        store.group_turn(GroupKind::Run, "prod", &runs[3], Some("Deploy"))?,
        None
    );
    let left: Vec<RunId> = store
        .group_members(GroupKind::Stage, "prod")?
        .iter()
        .map(|m| m.run)
        .collect();
    assert_eq!(left, [runs[3]]);
    // Reopened, the queue is as it was.
    drop(store);
    let store = open(dir.path())?;
    assert_eq!(store.prune_groups()?, 0);
    assert_eq!(
        store.group_turn(GroupKind::Stage, "prod", &runs[3], Some("Deploy"))?,
        Some(GroupTurn::Holds)
    );
    Ok(())
}

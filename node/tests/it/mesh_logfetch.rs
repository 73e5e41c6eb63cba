//! Fetching missed lines of a stage log over `/otto/handoff/1`
//! (`otto_node::exchange::logfetch::request`): a copy that asks the runner for the lines
//! in its gap takes the runner's signed answer when it fits the gap, and refuses whole,
//! with one line, an answer outside the gap, of another run or stage, over the bounds, not
//! signed by the runner, or none at all in time.

use std::time::Duration;

use futures::future;
use otto_handoff::logseq::{self, Ask, FETCH_BYTES};
use otto_node::exchange::logfetch::{request, runner_tag};
use otto_node::mesh::Event;
use otto_protocol::limits::MAX_LOG_LINE_LEN;
use otto_protocol::{HandoffId, LogLines, LogRequest, Message, Reject, RejectCode};
use otto_trust::NodeKey;

use crate::mesh_support::{
    TestNode, Transport, config, next_event, sign, spawn, spawn_with, trust_each_other, within,
};

const RUN: &str = "run-0001";
const STAGE: &str = "Deploy";

/// The copy on `dev` holds ops's lines up to 5 and knows ops wrote up to 1208.
fn ask_of(ops: &TestNode) -> Ask {
    logseq::ask(
        logseq::Tail {
            runner: runner_tag(&ops.key.public_key()),
            last: 5,
        },
        runner_tag(&ops.key.public_key()),
        1208,
    )
    .expect("lines are missing")
}

fn lines(first: u64, texts: &[&str], last: u64) -> LogLines {
    LogLines {
        run: RUN.to_owned(),
        stage: STAGE.to_owned(),
        first,
        lines: texts.iter().map(|t| (*t).to_owned()).collect(),
        last,
    }
}

/// `dev` asks `ops` for the lines of `ask`; `ops` answers with `answer(request)` signed by
/// `signer` (ops's own key for `None`), or not at all when `answer` gives `None`. Returns
/// what `dev` made of it.
async fn fetch(
    dev: &TestNode,
    ops: &mut TestNode,
    ask: Ask,
    signer: Option<&NodeKey>,
    answer: impl FnOnce(LogRequest) -> Option<Message>,
) -> Result<(logseq::Taken, Vec<String>), String> {
    let (ops_peer, ops_key, dev_peer) = (ops.peer(), ops.key.public_key(), dev.peer());
    let envelope = sign(&dev.key, &Message::LogRequest(ask.request(RUN, STAGE)));
    let signer = signer.unwrap_or(&ops.key);
    let events = &mut ops.events;
    let answering = async {
        let (peer, envelope, reply) = next_event(events, |event| match event {
            Event::LogRequest {
                peer,
                envelope,
                reply,
            } => Some((peer, envelope, reply)),
            _ => None,
        })
        .await;
        assert_eq!(peer, dev_peer);
        let request: LogRequest = envelope
            .verify(&dev.key.public_key())
            .expect("signed by dev")
            .payload_as()
            .expect("a log request");
        match answer(request) {
            Some(message) => reply.send(sign(signer, &message)).await.expect("answers"),
            // Never answered: the handle is kept until dev gave up.
            None => return Some(reply),
        }
        None
    };
    let (result, kept) = within(future::join(
        request(&dev.client, ops_peer, &ops_key, envelope, &ask, RUN, STAGE),
        answering,
    ))
    .await;
    drop(kept);
    result
}

async fn pair(seed: u8) -> (TestNode, TestNode) {
    let mut dev = spawn(seed, Transport::Tcp).await;
    let mut ops = spawn(seed + 1, Transport::Tcp).await;
    trust_each_other(&dev, &ops);
    dev.connect(&mut ops).await;
    (dev, ops)
}

#[tokio::test]
async fn the_runners_lines_in_the_gap_are_taken() {
    let (dev, mut ops) = pair(61).await;
    let ask = ask_of(&ops);
    let got = fetch(&dev, &mut ops, ask, None, |request| {
        assert_eq!((request.after, request.upto), (5, 1208));
        assert_eq!(request.max_bytes, FETCH_BYTES);
        Some(Message::LogLines(lines(
            6,
            &["ops line 6", "ops line 7"],
            1208,
        )))
    })
    .await
    .expect("taken");
    assert_eq!(got.0.first, 6);
    assert_eq!(got.1, ["ops line 6", "ops line 7"]);
}

#[tokio::test]
async fn lines_outside_the_gap_are_refused() {
    let (dev, mut ops) = pair(63).await;
    // Before the gap (lines dev holds, or lines the owner never wrote there), after its
    // start, and past its end.
    for (first, count) in [(1, 3), (7, 1), (1209, 1), (6, 1300)] {
        let ask = ask_of(&ops);
        let texts: Vec<String> = (0..count).map(|n| format!("line {n}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let error = fetch(&dev, &mut ops, ask, None, |_| {
            Some(Message::LogLines(lines(first, &refs, 2000)))
        })
        .await
        .expect_err("refused");
        assert!(
            error.contains("right after the last held") || error.contains("past line 1208"),
            "{first}: {error}"
        );
    }
}

#[tokio::test]
async fn lines_of_another_run_or_stage_are_refused() {
    let (dev, mut ops) = pair(65).await;
    for (run, stage) in [("run-0002", STAGE), (RUN, "Build")] {
        let ask = ask_of(&ops);
        let error = fetch(&dev, &mut ops, ask, None, |_| {
            let mut other = lines(6, &["ops line 6"], 1208);
            other.run = run.to_owned();
            other.stage = stage.to_owned();
            Some(Message::LogLines(other))
        })
        .await
        .expect_err("refused");
        assert!(
            error.contains("answer a request for stage 'Deploy'"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_answer_over_the_bounds_is_refused() {
    let (dev, mut ops) = pair(67).await;
    // More bytes than asked for (within what the mesh carries), then one line too long.
    let wide = "w".repeat(MAX_LOG_LINE_LEN);
    let count = FETCH_BYTES as usize / MAX_LOG_LINE_LEN + 1;
    let ask = ask_of(&ops);
    let error = fetch(&dev, &mut ops, ask, None, |_| {
        Some(Message::LogLines(lines(
            6,
            &vec![wide.as_str(); count],
            1208,
        )))
    })
    .await
    .expect_err("refused");
    assert!(error.contains("bytes of lines, more than"), "{error}");
    let long = "l".repeat(MAX_LOG_LINE_LEN + 1);
    let ask = ask_of(&ops);
    let error = fetch(&dev, &mut ops, ask, None, |_| {
        Some(Message::LogLines(lines(6, &[long.as_str()], 1208)))
    })
    .await
    .expect_err("refused");
    assert!(error.contains("longer than"), "{error}");
}

#[tokio::test]
async fn an_answer_not_from_the_runner_is_refused() {
    let (dev, mut ops) = pair(69).await;
    // Signed by another node's key, on ops's connection.
    let other = NodeKey::from_seed(&[99; 32]);
    let ask = ask_of(&ops);
    let error = fetch(&dev, &mut ops, ask, Some(&other), |_| {
        Some(Message::LogLines(lines(6, &["forged"], 1208)))
    })
    .await
    .expect_err("refused");
    assert!(error.contains("not signed by the node asked"), "{error}");
    // Ops answers well, but the copy follows another node's numbering: ops is not the
    // stage's runner here.
    let mut ask = ask_of(&ops);
    ask.runner = runner_tag(&other.public_key());
    let error = fetch(&dev, &mut ops, ask, None, |_| {
        Some(Message::LogLines(lines(6, &["ops line 6"], 1208)))
    })
    .await
    .expect_err("refused");
    assert!(
        error.contains("not signed by the node that ran it"),
        "{error}"
    );
    // A reject is no lines, with its reason.
    let ask = ask_of(&ops);
    let error = fetch(&dev, &mut ops, ask, None, |_| {
        Some(Message::Reject(Reject {
            id: HandoffId([0; 16]),
            code: RejectCode::UnknownOrg,
            message: "takes no part in the run".to_owned(),
            hint: None,
        }))
    })
    .await
    .expect_err("refused");
    assert!(
        error.contains("refused to send its lines: takes no part"),
        "{error}"
    );
}

#[tokio::test]
async fn a_runner_that_never_answers_is_given_up_on() {
    let quick = otto_node::mesh::Config {
        request_timeout: Duration::from_millis(500),
        ..config()
    };
    let mut dev = spawn_with(71, Transport::Tcp, quick).await;
    let mut ops = spawn(72, Transport::Tcp).await;
    trust_each_other(&dev, &ops);
    dev.connect(&mut ops).await;
    let ask = ask_of(&ops);
    let error = fetch(&dev, &mut ops, ask, None, |_| None)
        .await
        .expect_err("no answer");
    assert!(error.contains("did not answer in time"), "{error}");
}

//! Numbered log lines across nodes: where the lines a stage's runner shares go in another
//! node's copy of the stage's log.
//!
//! A runner numbers the lines of a stage's log 1, 2, 3… across the attempts it runs, and
//! every status event it publishes says the number of its first line (`log_seq`; with no
//! lines, the number its next line will have). Another node keeps, with its copy of the
//! log, where it stands in that numbering ([`Tail`]): whose numbering it follows and the
//! number of the last line it holds. [`place`] says what to do with lines that arrive:
//! keep the new ones, drop those held already, and show a jump as one gap line
//! ([`gap_line`]) or hold the lines back while the missed ones are fetched.
//!
//! Nothing here trusts the numbers: a number of 0, a count that overflows, a jump of any
//! size or numbers going backwards are all answered without panic, without a duplicate
//! line and with a gap count that is exact and bounded by the numbers themselves.
//!
//! # Fetching what was missed
//!
//! A node whose copy jumps holds the arriving lines back and asks the runner for the
//! missing ones, a `log_request` answered by the `log_lines` the runner signs. The rule of
//! both sides is here; the node only sends, reads and writes:
//!
//! - what to ask ([`ask`]): the lines after the last held, up to the last the runner is
//!   known to have written, at most [`FETCH_LINES`] lines and [`FETCH_BYTES`] bytes a
//!   request, at most [`FETCH_REQUESTS`] requests for one stage's copy;
//! - who may ask ([`may_fetch`]): a node the runner trusts (the mesh refuses any other)
//!   that takes part in the run: the node that gave the runner the stage, or a node of an
//!   org the run's plan binds an owner to (the origin's included);
//! - what the runner answers ([`serve`], [`answer`]): its own lines of a stage it ran,
//!   from the one after `after`, within the request's bounds and this side's;
//! - what the asking node takes ([`accept`]): an answer signed by the runner whose
//!   numbering the copy follows, of the run and stage asked, starting right after the last
//!   line held, ending within the gap, within the bounds asked. Anything else is refused
//!   whole, and whatever is still missing when the fetch ends is marked as a gap.

use otto_pipeline::plan::Body;
use otto_protocol::limits::{MAX_LOG_FETCH_BYTES, MAX_LOG_FETCH_LINES, MAX_LOG_LINE_LEN};
use otto_protocol::{LogLines, LogRequest};
use otto_trust::PublicKey;

/// The most lines one `log_request` asks for and one `log_lines` carries.
pub const FETCH_LINES: u32 = MAX_LOG_FETCH_LINES as u32;

/// The most bytes of text one `log_request` asks for and one `log_lines` carries.
pub const FETCH_BYTES: u32 = MAX_LOG_FETCH_BYTES as u32;

/// The most requests a node makes to fill the gaps of one copy of a stage's log (up to
/// about 1,000,000 lines or 24 MiB of text); past that, gaps are marked.
pub const FETCH_REQUESTS: u32 = 256;

/// Where a copy of a stage's log stands in its runner's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tail {
    /// Whose numbering the copy follows: the first 8 bytes of the runner's node key (all
    /// zero for none yet).
    pub runner: [u8; 8],
    /// The runner's number of the last line held (0 for none).
    pub last: u64,
}

/// Lines that arrive: from which runner, the number of the first, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    /// The first 8 bytes of the runner's node key.
    pub runner: [u8; 8],
    /// The runner's number of the first line; with no lines, the number of its next line.
    pub first: u64,
    /// How many lines arrive.
    pub count: usize,
}

/// What to do with lines that arrive ([`place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Write one gap line for the runner's lines `gap` (first, last) when there is one, then
    /// the arriving lines after the first `skip` (held already); the copy then stands at
    /// `tail`.
    Write {
        /// The runner's lines that never came, first and last, to mark with one line.
        gap: Option<(u64, u64)>,
        /// How many of the arriving lines to drop from the front: held already.
        skip: usize,
        /// Where the copy stands afterwards.
        tail: Tail,
    },
    /// The lines jump past what is held and the caller fetches the missing ones first:
    /// write nothing. `after` is the number of the last line held, `first` the first
    /// arriving.
    Hold {
        /// The runner's number of the last line held.
        after: u64,
        /// The runner's number of the first line that arrived.
        first: u64,
    },
    /// The numbers cannot be right: write nothing.
    Refuse(&'static str),
}

/// What to do with `lines` arriving at a copy standing at `tail`. A jump is held back
/// (nothing written) when `hold_jumps` (the caller fetches the missing lines), and marked
/// with a gap line otherwise. Lines of another runner than the copy follows start its
/// numbering afresh: the new runner's lines before the first that arrived are a gap.
pub fn place(tail: Tail, lines: Numbered, hold_jumps: bool) -> Placement {
    if lines.first == 0 {
        return Placement::Refuse("log lines are numbered from 1");
    }
    // The runner's number of the last line arriving (first - 1 with none).
    let end = match lines.count {
        0 => lines.first - 1,
        n => match u64::try_from(n - 1)
            .ok()
            .and_then(|more| lines.first.checked_add(more))
        {
            Some(end) => end,
            None => {
                return Placement::Refuse(
                    "the numbers of the log lines run past the largest number",
                );
            }
        },
    };
    let have = if lines.runner == tail.runner {
        tail.last
    } else {
        0
    };
    let tail_after = |last: u64| Tail {
        runner: lines.runner,
        last,
    };
    if end <= have {
        return Placement::Write {
            gap: None,
            skip: lines.count,
            tail: tail_after(have),
        };
    }
    // `have < end` here, so `have + 1` cannot overflow.
    if lines.first <= have + 1 {
        let skip = usize::try_from(have + 1 - lines.first).unwrap_or(lines.count);
        return Placement::Write {
            gap: None,
            skip,
            tail: tail_after(end),
        };
    }
    if hold_jumps {
        return Placement::Hold {
            after: have,
            first: lines.first,
        };
    }
    Placement::Write {
        gap: Some((have + 1, lines.first - 1)),
        skip: 0,
        tail: tail_after(end),
    }
}

/// The line that stands for the runner's lines `first..=last` this node never received:
/// `… 1,203 lines not received …`.
pub fn gap_line(first: u64, last: u64) -> String {
    let missing = last.saturating_sub(first).saturating_add(1);
    if missing == 1 {
        "… 1 line not received …".to_owned()
    } else {
        format!("… {} lines not received …", thousands(missing))
    }
}

/// `n` with a comma between each group of three digits: 1,203.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A log line as it travels between nodes (in a status event or a `log_lines`): cut at
/// the protocol's bound for one line, at a character boundary, with `…` marking the cut.
pub fn wire_text(mut text: String) -> String {
    if text.len() <= MAX_LOG_LINE_LEN {
        return text;
    }
    let mut end = MAX_LOG_LINE_LEN - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// What a copy asks its runner for: the lines after `after` up to `upto`, from the node
/// whose key starts with `runner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The first 8 bytes of the key of the node asked: the runner, whose numbering the
    /// copy follows.
    pub runner: [u8; 8],
    /// The runner's number of the last line held.
    pub after: u64,
    /// The runner's number of the last line wanted.
    pub upto: u64,
}

impl Ask {
    /// The request for it, of stage `stage` of run `run`.
    pub fn request(&self, run: &str, stage: &str) -> LogRequest {
        LogRequest {
            run: run.to_owned(),
            stage: stage.to_owned(),
            after: self.after,
            upto: self.upto,
            max_lines: FETCH_LINES,
            max_bytes: FETCH_BYTES,
        }
    }
}

/// What a copy standing at `tail` asks `runner` for next, when it wants every line up to
/// the runner's line `want` (the last the runner is known to have written): the lines
/// after the last held, up to `want`. `None` when it holds them all.
pub fn ask(tail: Tail, runner: [u8; 8], want: u64) -> Option<Ask> {
    let have = if tail.runner == runner { tail.last } else { 0 };
    (have < want).then_some(Ask {
        runner,
        after: have,
        upto: want,
    })
}

/// What an accepted answer gives ([`accept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The runner's number of the first line taken (the one after the last held).
    pub first: u64,
    /// How many lines are taken: all of the answer's.
    pub count: usize,
    /// Whether asking again is of no use: the lines reach the end of the gap, or the
    /// runner holds no line after them.
    pub done: bool,
}

/// Judges the answer `lines`, signed by the node whose key starts with `signer`, to the
/// request of `ask` for stage `stage` of run `run`: the answer is taken whole or refused
/// whole, with one line saying why. It must be signed by the runner asked, be of that
/// run and stage, start right after the last line held, end within the gap, and stay
/// within the bounds asked ([`FETCH_LINES`], [`FETCH_BYTES`], one line at most
/// [`MAX_LOG_LINE_LEN`] bytes). No lines is an answer only from a runner that holds none
/// after the last held.
pub fn accept(
    ask: &Ask,
    run: &str,
    stage: &str,
    signer: [u8; 8],
    lines: &LogLines,
) -> Result<Taken, String> {
    if signer != ask.runner {
        return Err(format!(
            "the lines of stage '{stage}' are not signed by the node that ran it"
        ));
    }
    if lines.run != run || lines.stage != stage {
        return Err(format!(
            "lines of stage '{}' of run {} answer a request for stage '{stage}' of run {run}",
            lines.stage.escape_default(),
            lines.run.escape_default()
        ));
    }
    let first = ask.after.saturating_add(1);
    if lines.first != first {
        return Err(format!(
            "the lines start at line {}, not at line {first}, right after the last held",
            lines.first
        ));
    }
    if lines.lines.len() > FETCH_LINES as usize {
        return Err(format!(
            "{} lines, more than the {FETCH_LINES} asked for",
            lines.lines.len()
        ));
    }
    if let Some(long) = lines.lines.iter().position(|l| l.len() > MAX_LOG_LINE_LEN) {
        return Err(format!(
            "line {} is longer than {MAX_LOG_LINE_LEN} bytes",
            first.saturating_add(long as u64)
        ));
    }
    let bytes: usize = lines.lines.iter().map(String::len).sum();
    if bytes > FETCH_BYTES as usize {
        return Err(format!(
            "{bytes} bytes of lines, more than the {FETCH_BYTES} asked for"
        ));
    }
    let count = lines.lines.len();
    if count == 0 {
        if lines.last >= first {
            return Err(format!(
                "no lines, though the node says it holds lines up to {}",
                lines.last
            ));
        }
        return Ok(Taken {
            first,
            count,
            done: true,
        });
    }
    // `count` is at most FETCH_LINES, so this cannot overflow past u64::MAX by more than
    // the saturating add shows.
    let end = first.saturating_add(count as u64 - 1);
    if end > ask.upto || end < first {
        return Err(format!(
            "the lines run to line {end}, past line {} where the gap ends",
            ask.upto
        ));
    }
    Ok(Taken {
        first,
        count,
        done: end == ask.upto || lines.last <= end,
    })
}

/// What a runner reads to answer a request ([`serve`]): at most `lines` lines after its
/// line `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serve {
    /// The number of the last line not wanted.
    pub after: u64,
    /// The most lines to read.
    pub lines: usize,
    /// The most bytes of text to answer with.
    pub bytes: usize,
}

/// What the runner of a stage reads to answer `request` (a node [`may_fetch`] allowed):
/// the lines after `after`, no more than up to `upto` and no more than both sides'
/// bounds; or why the request is malformed.
pub fn serve(request: &LogRequest) -> Result<Serve, String> {
    if request.upto <= request.after {
        return Err(format!(
            "the request asks for no line: after line {}, up to line {}",
            request.after, request.upto
        ));
    }
    if (request.max_bytes as usize) < MAX_LOG_LINE_LEN {
        return Err(format!(
            "the request takes {} bytes, fewer than one line may have ({MAX_LOG_LINE_LEN})",
            request.max_bytes
        ));
    }
    let span = request.upto - request.after;
    let lines = u64::from(request.max_lines.clamp(1, FETCH_LINES)).min(span);
    Ok(Serve {
        after: request.after,
        lines: lines as usize,
        bytes: request.max_bytes.min(FETCH_BYTES) as usize,
    })
}

/// The runner's answer to `request`, served as `serve` says, from `read`: the lines it
/// read after `serve.after` (consecutive, its own) as they travel ([`wire_text`]), as
/// many as fit the bounds, and `last`, the number of its log's last line.
pub fn answer(
    request: &LogRequest,
    serve: &Serve,
    read: impl IntoIterator<Item = String>,
    last: u64,
) -> LogLines {
    let mut lines = Vec::new();
    let mut bytes = 0usize;
    for text in read.into_iter().take(serve.lines) {
        let text = wire_text(text);
        if bytes + text.len() > serve.bytes {
            break;
        }
        bytes += text.len();
        lines.push(text);
    }
    LogLines {
        run: request.run.clone(),
        stage: request.stage.clone(),
        first: serve.after.saturating_add(1),
        lines,
        last,
    }
}

/// Whether the node with key `node`, of the org with key `org`, may fetch the lines of a
/// stage of a run of `body` from the node that ran it, which was given the stage by
/// `given_by` (when it knows): the node that gave it the stage, or a node of an org the
/// plan binds an owner to (the origin's org included), takes part in the run and sees its
/// logs on its gossip anyway. Any other trusted node does not learn them this way.
pub fn may_fetch(
    body: &Body,
    node: &PublicKey,
    org: &PublicKey,
    given_by: Option<&PublicKey>,
) -> Result<(), String> {
    if given_by == Some(node) {
        return Ok(());
    }
    let org_id = org.keyid();
    if body.owners.values().any(|binding| binding.key == org_id) {
        return Ok(());
    }
    Err(format!(
        "node {} takes no part in the run: its org ({org_id}) is bound to no owner of the plan",
        node.keyid()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: [u8; 8] = [1; 8];
    const OPS2: [u8; 8] = [2; 8];

    fn at(last: u64) -> Tail {
        Tail { runner: OPS, last }
    }

    fn lines(first: u64, count: usize) -> Numbered {
        Numbered {
            runner: OPS,
            first,
            count,
        }
    }

    #[test]
    fn lines_in_order_are_kept_and_repeats_dropped() {
        assert_eq!(
            place(Tail::default(), lines(1, 3), false),
            Placement::Write {
                gap: None,
                skip: 0,
                tail: at(3)
            }
        );
        assert_eq!(
            place(at(3), lines(4, 2), false),
            Placement::Write {
                gap: None,
                skip: 0,
                tail: at(5)
            }
        );
        // Overlapping: only the new ones.
        assert_eq!(
            place(at(5), lines(3, 5), false),
            Placement::Write {
                gap: None,
                skip: 3,
                tail: at(7)
            }
        );
        // Held already, and going backwards: nothing written, the copy stays where it is.
        for back in [lines(1, 7), lines(2, 1), lines(7, 0), lines(1, 0)] {
            assert_eq!(
                place(at(7), back, false),
                Placement::Write {
                    gap: None,
                    skip: back.count,
                    tail: at(7)
                },
                "{back:?}"
            );
        }
    }

    #[test]
    fn a_jump_is_one_gap_or_held_for_a_fetch() {
        assert_eq!(
            place(at(5), lines(1209, 2), false),
            Placement::Write {
                gap: Some((6, 1208)),
                skip: 0,
                tail: at(1210)
            }
        );
        assert_eq!(
            place(at(5), lines(1209, 2), true),
            Placement::Hold {
                after: 5,
                first: 1209
            }
        );
        // No lines, but the runner says its next line is 10: lines 6 to 9 never came.
        assert_eq!(
            place(at(5), lines(10, 0), false),
            Placement::Write {
                gap: Some((6, 9)),
                skip: 0,
                tail: at(9)
            }
        );
        assert_eq!(gap_line(6, 1208), "… 1,203 lines not received …");
        assert_eq!(gap_line(6, 6), "… 1 line not received …");
    }

    #[test]
    fn hostile_numbers_are_refused_or_bounded() {
        assert!(matches!(
            place(at(5), lines(0, 3), false),
            Placement::Refuse(_)
        ));
        assert!(matches!(
            place(at(5), lines(u64::MAX, 2), false),
            Placement::Refuse(_)
        ));
        // The largest number that fits: one gap, counted exactly, of bounded text.
        let far = place(at(5), lines(u64::MAX, 1), false);
        let Placement::Write {
            gap: Some((from, to)),
            skip: 0,
            tail,
        } = far
        else {
            panic!("{far:?}");
        };
        assert_eq!((from, to, tail.last), (6, u64::MAX - 1, u64::MAX));
        let line = gap_line(from, to);
        assert_eq!(line, "… 18,446,744,073,709,551,609 lines not received …");
        // After it nothing more fits: later lines are all "held already", never a wrap.
        assert_eq!(
            place(tail, lines(u64::MAX, 1), false),
            Placement::Write {
                gap: None,
                skip: 1,
                tail
            }
        );
        assert!(matches!(
            place(tail, lines(u64::MAX, 2), false),
            Placement::Refuse(_)
        ));
        assert_eq!(gap_line(9, 3), "… 1 line not received …");
    }

    #[test]
    fn another_runner_starts_its_numbering_afresh() {
        // Attempt 2 runs on ops-2, whose log of the stage starts at 1 again.
        let other = Numbered {
            runner: OPS2,
            first: 1,
            count: 2,
        };
        assert_eq!(
            place(at(500), other, false),
            Placement::Write {
                gap: None,
                skip: 0,
                tail: Tail {
                    runner: OPS2,
                    last: 2
                }
            }
        );
        let late = Numbered {
            runner: OPS2,
            first: 40,
            count: 1,
        };
        assert_eq!(
            place(at(500), late, false),
            Placement::Write {
                gap: Some((1, 39)),
                skip: 0,
                tail: Tail {
                    runner: OPS2,
                    last: 40
                }
            }
        );
    }

    fn asked() -> Ask {
        ask(at(5), OPS, 1208).unwrap()
    }

    fn answer_of(first: u64, lines: &[&str], last: u64) -> LogLines {
        LogLines {
            run: "r1".to_owned(),
            stage: "Deploy".to_owned(),
            first,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
            last,
        }
    }

    #[test]
    fn a_copy_asks_for_the_lines_after_the_last_held_up_to_the_last_written() {
        assert_eq!(
            asked(),
            Ask {
                runner: OPS,
                after: 5,
                upto: 1208
            }
        );
        let request = asked().request("r1", "Deploy");
        assert_eq!((request.after, request.upto), (5, 1208));
        assert_eq!(
            (request.max_lines, request.max_bytes),
            (FETCH_LINES, FETCH_BYTES)
        );
        // Holding them all: nothing to ask.
        assert_eq!(ask(at(1208), OPS, 1208), None);
        assert_eq!(ask(at(1300), OPS, 1208), None);
        // Another runner's numbering starts afresh.
        assert_eq!(ask(at(1300), OPS2, 3).map(|a| a.after), Some(0));
    }

    #[test]
    fn lines_in_the_gap_from_the_runner_are_taken() {
        let taken = accept(
            &asked(),
            "r1",
            "Deploy",
            OPS,
            &answer_of(6, &["a", "b"], 1208),
        );
        assert_eq!(
            taken,
            Ok(Taken {
                first: 6,
                count: 2,
                done: false
            })
        );
        // Up to the end of the gap: done.
        let lines: Vec<String> = (6..=1208).map(|n| n.to_string()).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let taken = accept(&asked(), "r1", "Deploy", OPS, &answer_of(6, &refs, 1300)).unwrap();
        assert!(taken.done && taken.count == 1203);
        // The runner holds fewer lines than the gap: done, the rest is marked.
        let taken = accept(&asked(), "r1", "Deploy", OPS, &answer_of(6, &["a"], 6)).unwrap();
        assert!(taken.done);
        let none = accept(&asked(), "r1", "Deploy", OPS, &answer_of(6, &[], 5)).unwrap();
        assert_eq!((none.count, none.done), (0, true));
    }

    #[test]
    fn a_hostile_answer_is_refused_whole() {
        let refused = |signer: [u8; 8], lines: LogLines| {
            accept(&asked(), "r1", "Deploy", signer, &lines).unwrap_err()
        };
        // Signed by a node that is not the runner.
        let e = refused(OPS2, answer_of(6, &["a"], 1208));
        assert!(e.contains("not signed by the node that ran it"), "{e}");
        // Lines of another stage, or another run.
        let mut other = answer_of(6, &["a"], 1208);
        other.stage = "Build".to_owned();
        assert!(refused(OPS, other).contains("answer a request for stage 'Deploy'"));
        let mut other = answer_of(6, &["a"], 1208);
        other.run = "r2".to_owned();
        assert!(refused(OPS, other).contains("of run r2"));
        // Outside the gap: before it (lines held already, or the owner's own start), after
        // its start, or past its end.
        for first in [1, 5, 7, 1209, u64::MAX] {
            let e = refused(OPS, answer_of(first, &["a"], 1208));
            assert!(e.contains("right after the last held"), "{first}: {e}");
        }
        let long: Vec<String> = (6..=1300).map(|n| n.to_string()).collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        let e = refused(OPS, answer_of(6, &refs, 1300));
        assert!(e.contains("past line 1208"), "{e}");
        // Too many lines, too many bytes, a line too long.
        let many = vec!["x"; FETCH_LINES as usize + 1];
        let e = refused(OPS, answer_of(6, &many, u64::MAX));
        assert!(e.contains("more than the 4096"), "{e}");
        let big = "y".repeat(MAX_LOG_LINE_LEN);
        let bulk = vec![big.as_str(); FETCH_BYTES as usize / MAX_LOG_LINE_LEN + 1];
        let e = refused(OPS, answer_of(6, &bulk, 1208));
        assert!(e.contains("bytes of lines"), "{e}");
        let huge = "z".repeat(MAX_LOG_LINE_LEN + 1);
        let e = refused(OPS, answer_of(6, &[huge.as_str()], 1208));
        assert!(e.contains("line 6 is longer"), "{e}");
        // Nothing, from a runner that says it has lines: refused, not "done".
        let e = refused(OPS, answer_of(6, &[], 1208));
        assert!(e.contains("no lines"), "{e}");
    }

    #[test]
    fn the_runner_serves_its_lines_within_both_sides_bounds() {
        let mut request = asked().request("r1", "Deploy");
        let serve = serve(&request).unwrap();
        assert_eq!(
            serve,
            Serve {
                after: 5,
                lines: 1203,
                bytes: FETCH_BYTES as usize
            }
        );
        // A greedy request gets this side's bounds; a narrow gap only its lines.
        request.max_lines = u32::MAX;
        request.max_bytes = u32::MAX;
        request.upto = 7;
        let narrow = super::serve(&request).unwrap();
        assert_eq!((narrow.lines, narrow.bytes), (2, FETCH_BYTES as usize));
        let served = answer(
            &request,
            &narrow,
            ["six", "seven", "eight"].map(str::to_owned),
            8,
        );
        assert_eq!(served.first, 6);
        assert_eq!(served.lines, ["six", "seven"]);
        assert_eq!(served.last, 8);
        // Long lines are cut as on gossip; the answer stops at the byte bound.
        let wide = Serve {
            after: 5,
            lines: 10,
            bytes: MAX_LOG_LINE_LEN * 2,
        };
        let long = "é".repeat(MAX_LOG_LINE_LEN);
        let served = answer(&request, &wide, vec![long.clone(); 5], 10);
        assert_eq!(served.lines.len(), 2);
        assert!(
            served
                .lines
                .iter()
                .all(|l| l.len() <= MAX_LOG_LINE_LEN && l.ends_with('…'))
        );
        assert!(accept(&asked(), "r1", "Deploy", OPS, &served).is_ok());
        // Requests that ask for nothing, or for less than one line's bytes.
        request.upto = 5;
        assert!(super::serve(&request).is_err());
        request.upto = 9;
        request.max_bytes = 10;
        assert!(super::serve(&request).is_err());
    }

    #[test]
    fn numbers_read_with_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_002), "200,002");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

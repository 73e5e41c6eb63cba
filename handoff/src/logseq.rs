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

    #[test]
    fn numbers_read_with_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_002), "200,002");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

//! Diagnostics as text for people, in the style of rustc:
//!
//! ```text
//! error: unknown keyword `stpes` in a stage body
//!   --> Ottofile:3:5
//!   |
//! 3 |     stpes { sh 'make' }
//!   |     ^^^^^ unknown keyword
//!   = hint: did you mean `steps`?
//! ```
//!
//! Columns count characters, not bytes; tabs in the shown line are expanded to four
//! spaces so the underline stays under the text.

use std::fmt::Write as _;

use crate::diagnostic::Diagnostic;
use crate::span::SourceMap;

/// At most this many characters of the offending line are echoed: a window around the
/// span, with `…` where the line was cut.
pub const MAX_ECHO: usize = 120;

/// At most this many characters of a message, label or hint are shown (they may quote
/// names taken from the file, which can be as long as the file).
pub const MAX_TEXT: usize = 300;

/// At most this many problems are rendered in full by [`render_all`]; the count line
/// says how many there were.
pub const MAX_RENDERED: usize = 20;

/// Renders one diagnostic over several lines (each ending in a line break): the message,
/// the location, the source line with the span underlined by `^` and the label after the
/// underline, and the hint. A span over several lines is underlined to the end of its
/// first line. A diagnostic without a span (or whose file is not in `sources`) renders as
/// its message and hint.
pub fn render(diag: &Diagnostic, sources: &SourceMap) -> String {
    let mut out = format!("error: {}\n", capped(&diag.message));
    let located = diag
        .span
        .and_then(|span| sources.get(span.file).map(|file| (span, file)));
    let gutter = match located {
        Some((span, file)) => {
            let (line, column) = file.line_col(span.start);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad} --> {}:{line}:{column}", file.path.display());
            let _ = writeln!(out, "{pad} |");
            let text = file.line(line);
            let (shown, start_col) = expand_tabs(text, column - 1);
            // The underline ends at the span's end, or at the end of the line when the
            // span continues on later lines.
            let (end_line, end_column) = file.line_col(span.end.max(span.start));
            let end_col = if end_line == line {
                expand_tabs(text, end_column - 1).1
            } else {
                shown.chars().count()
            };
            let width = end_col.saturating_sub(start_col).max(1);
            let (shown, start_col, width) = window(&shown, start_col, width);
            let shown = if diag.redact {
                let hidden = start_col..start_col + width;
                shown
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if hidden.contains(&i) { '*' } else { c })
                    .collect()
            } else {
                shown
            };
            let _ = writeln!(out, "{line} | {shown}");
            let mut underline = format!("{pad} | {}{}", " ".repeat(start_col), "^".repeat(width));
            if let Some(label) = &diag.label {
                underline.push(' ');
                underline.push_str(&capped(label));
            }
            out.push_str(underline.trim_end());
            out.push('\n');
            gutter
        }
        None => {
            if let (Some(label), Some(_)) = (&diag.label, diag.span) {
                // The file is unknown: keep the label so nothing is lost.
                let _ = writeln!(out, "  = note: {}", capped(label));
            }
            1
        }
    };
    if let Some(hint) = &diag.hint {
        let _ = writeln!(out, "{} = hint: {}", " ".repeat(gutter), capped(hint));
    }
    out
}

/// Renders several diagnostics with a blank line between them and, when there is more
/// than one, a last line `error: N problems found`.
/// At most [`MAX_RENDERED`] are rendered; the last line then says how many were left out.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = diags
        .iter()
        .take(MAX_RENDERED)
        .map(|diag| render(diag, sources))
        .collect::<Vec<_>>()
        .join("\n");
    if diags.len() > MAX_RENDERED {
        let _ = write!(
            out,
            "\nerror: {} problems found (the first {MAX_RENDERED} are shown)\n",
            diags.len()
        );
    } else if diags.len() > 1 {
        let _ = write!(out, "\nerror: {} problems found\n", diags.len());
    }
    out
}

/// `text`, cut to [`MAX_TEXT`] characters with `…` when longer.
pub fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

/// At most [`MAX_ECHO`] characters of `line` around the underlined columns
/// `start..start + width`: the window, and the start and width of the underline in it.
fn window(line: &str, start: usize, width: usize) -> (String, usize, usize) {
    let len = line.chars().count();
    if len <= MAX_ECHO {
        return (line.to_owned(), start, width);
    }
    // Keep some text before the span for context, and as much of the span as fits.
    let from = start
        .saturating_sub(MAX_ECHO / 3)
        .min(len.saturating_sub(MAX_ECHO));
    let to = (from + MAX_ECHO).min(len);
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(from).take(to - from));
    if to < len {
        shown.push('…');
    }
    let lead = usize::from(from > 0);
    let start_in = start.saturating_sub(from) + lead;
    let room = (to - from + lead).saturating_sub(start_in).max(1);
    (shown, start_in, width.min(room))
}

/// Renders a diagnostic on one line: `path:LINE:COL: MESSAGE`, or just the message when
/// it has no location.
pub fn one_line(diag: &Diagnostic, sources: &SourceMap) -> String {
    let located = diag
        .span
        .and_then(|span| sources.get(span.file).map(|file| (span, file)));
    match located {
        Some((span, file)) => {
            let (line, column) = file.line_col(span.start);
            format!(
                "{}:{line}:{column}: {}",
                file.path.display(),
                capped(&diag.message)
            )
        }
        None => capped(&diag.message).into_owned(),
    }
}

/// A line with tabs expanded to four spaces, and the display column of the character at
/// index `column`.
fn expand_tabs(text: &str, column: usize) -> (String, usize) {
    let mut shown = String::with_capacity(text.len());
    let mut display_col = None;
    for (i, c) in text.chars().enumerate() {
        if i == column {
            display_col = Some(shown.chars().count());
        }
        if c == '\t' {
            shown.push_str("    ");
        } else {
            shown.push(c);
        }
    }
    let width = shown.chars().count();
    (
        shown,
        display_col.unwrap_or(width + column.saturating_sub(text.chars().count())),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::span::{FileId, Span};

    fn sources(text: &str) -> SourceMap {
        let mut map = SourceMap::new();
        map.add(PathBuf::from("Ottofile"), text.to_owned());
        map
    }

    #[test]
    fn underline_counts_characters_and_carries_the_label() {
        let map = sources("stage {\n  nàme = 'x'\n}\n");
        let diag = Diagnostic::new("unknown keyword", Span::new(FileId(0), 10, 15))
            .with_label("expected `name`")
            .with_hint("did you mean `name`?");
        assert_eq!(
            render(&diag, &map),
            "error: unknown keyword\n  --> Ottofile:2:3\n  |\n2 |   nàme = 'x'\n  |   ^^^^ expected `name`\n  = hint: did you mean `name`?\n"
        );
    }

    #[test]
    fn multi_line_spans_underline_to_the_end_of_the_first_line() {
        let map = sources("a 'xy\nz'\n");
        let diag = Diagnostic::new("m", Span::new(FileId(0), 2, 8));
        assert!(render(&diag, &map).contains("1 | a 'xy\n  |   ^^^\n"));
    }

    #[test]
    fn tabs_keep_the_underline_aligned() {
        let map = sources("\tsh 1.5\n");
        let diag = Diagnostic::new("m", Span::new(FileId(0), 4, 7));
        assert!(render(&diag, &map).contains("1 |     sh 1.5\n  |        ^^^\n"));
    }

    #[test]
    fn empty_span_at_end_of_file_gets_one_caret() {
        let map = sources("stage {");
        let diag = Diagnostic::new("unexpected end of file", Span::new(FileId(0), 7, 7))
            .with_label("expected `}`");
        assert!(render(&diag, &map).contains("1 | stage {\n  |        ^ expected `}`\n"));
    }

    #[test]
    fn global_diagnostics_render_message_and_hint() {
        let diag = Diagnostic::global("no Ottofile in .").with_hint("run otto init");
        assert_eq!(
            render(&diag, &SourceMap::new()),
            "error: no Ottofile in .\n  = hint: run otto init\n"
        );
        assert_eq!(one_line(&diag, &SourceMap::new()), "no Ottofile in .");
    }

    #[test]
    fn render_all_counts_problems() {
        let map = sources("x\n");
        let one = Diagnostic::new("first", Span::new(FileId(0), 0, 1));
        let two = Diagnostic::global("second");
        let text = render_all(&[one.clone(), two], &map);
        assert!(text.contains("^\n\nerror: second\n"), "{text}");
        assert!(text.ends_with("\nerror: 2 problems found\n"), "{text}");
        assert!(!render_all(&[one], &map).contains("problems found"));
    }

    #[test]
    fn one_line_has_path_line_and_column() {
        let map = sources("a\n  b\n");
        let diag = Diagnostic::new("bad b", Span::new(FileId(0), 4, 5));
        assert_eq!(one_line(&diag, &map), "Ottofile:2:3: bad b");
    }

    #[test]
    fn a_long_line_is_echoed_as_a_window_around_the_span() {
        let line = format!("{}stpes {}", "a".repeat(5000), "b".repeat(5000));
        let map = sources(&format!("{line}\n"));
        let diag = Diagnostic::new("unknown keyword `stpes`", Span::new(FileId(0), 5000, 5005))
            .with_label("unknown keyword");
        let text = render(&diag, &map);
        assert!(text.len() < 600, "{} bytes:\n{text}", text.len());
        let lines: Vec<&str> = text.lines().collect();
        let echoed = lines[3].strip_prefix("1 | ").unwrap();
        assert!(echoed.starts_with('…') && echoed.ends_with('…'), "{echoed}");
        assert_eq!(echoed.chars().count(), MAX_ECHO + 2);
        // The underline still sits under `stpes`.
        let underline = lines[4].strip_prefix("  | ").unwrap();
        let at = underline.find('^').unwrap();
        let under: String = echoed.chars().skip(at).take(5).collect();
        assert_eq!(under, "stpes");
        assert!(underline.ends_with("^^^^^ unknown keyword"), "{underline}");
    }

    #[test]
    fn a_span_at_the_end_of_a_long_line_keeps_its_caret() {
        let line = "x".repeat(1000);
        let map = sources(&line);
        let diag = Diagnostic::new("unexpected end of file", Span::new(FileId(0), 1000, 1000));
        let text = render(&diag, &map);
        let lines: Vec<&str> = text.lines().collect();
        let echoed = lines[3].strip_prefix("1 | ").unwrap();
        assert!(
            echoed.starts_with('…') && !echoed.ends_with('…'),
            "{echoed}"
        );
        let caret = lines[4].strip_prefix("  | ").unwrap().find('^').unwrap();
        assert_eq!(
            caret,
            echoed.chars().count(),
            "just after the last character"
        );
    }

    #[test]
    fn long_messages_and_many_problems_are_capped() {
        let map = sources("x\n");
        let long = Diagnostic::new(
            format!("unknown stage '{}'", "n".repeat(100_000)),
            Span::new(FileId(0), 0, 1),
        )
        .with_hint("h".repeat(100_000));
        let text = render(&long, &map);
        assert!(text.len() < 1000, "{}", text.len());
        assert!(text.contains("nnn…\n"), "{text}");
        let many = vec![Diagnostic::new("m", Span::new(FileId(0), 0, 1)); 70];
        let text = render_all(&many, &map);
        assert_eq!(text.matches("error: m\n").count(), MAX_RENDERED);
        assert!(
            text.ends_with("error: 70 problems found (the first 20 are shown)\n"),
            "{text}"
        );
    }

    #[test]
    fn wide_line_numbers_widen_the_gutter() {
        let text = "\n".repeat(11) + "oops\n";
        let map = sources(&text);
        let diag = Diagnostic::new("m", Span::new(FileId(0), 11, 15));
        assert_eq!(
            render(&diag, &map),
            "error: m\n   --> Ottofile:12:1\n   |\n12 | oops\n   | ^^^^\n"
        );
    }
}

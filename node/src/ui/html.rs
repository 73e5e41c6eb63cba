//! HTML building: escaping, the page frame, state icons, times and durations.
//!
//! Pages are plain strings built with `write!`; every piece of text that comes from the
//! store, the plan, a peer or a request goes through [`esc`] (text and attribute values
//! alike: it escapes `&`, `<`, `>`, `"` and `'`). Nothing here emits inline script or
//! inline style, so the Content-Security-Policy can forbid both.

use std::fmt::{self, Write as _};

use crate::store::{RunState, StageState};

/// Text escaped for HTML text and quoted attribute values.
pub(crate) struct Esc<'a>(&'a str);

/// Escapes `text` for HTML.
pub(crate) fn esc(text: &str) -> Esc<'_> {
    Esc(text)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or('&');
            f.write_str(match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Percent-encodes a path segment (a run id, a stage name) for a URL.
pub(crate) fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the frame of every page shows about this node.
pub(crate) struct Frame<'a> {
    /// The page's title.
    pub(crate) title: &'a str,
    /// Which nav entry is current: `runs`, `mesh` or `explain`.
    pub(crate) nav: &'a str,
    /// The node's name.
    pub(crate) node: &'a str,
    /// The node's org.
    pub(crate) org: &'a str,
    /// The session's CSRF token, when signed in.
    pub(crate) csrf: Option<&'a str>,
    /// The run the page shows, for live updates (`data-run` on `<main>`).
    pub(crate) run: Option<&'a str>,
    /// The run's tag when the page was drawn (`data-etag` on `<main>`): the event stream
    /// announces a change at once when the run no longer has it.
    pub(crate) etag: Option<&'a str>,
    /// Whether the page updates itself on changes.
    pub(crate) live: bool,
}

/// A whole page: `body` goes inside `<main>`.
pub(crate) fn page(frame: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{} · Otto {}</title>",
        esc(frame.title),
        esc(frame.node)
    );
    if let Some(csrf) = frame.csrf {
        let _ = write!(out, "<meta name=\"otto-csrf\" content=\"{}\">", esc(csrf));
    }
    out.push_str(
        "<link rel=\"stylesheet\" href=\"/ui/assets/otto.css\">\
         <script src=\"/ui/assets/otto.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><nav aria-label=\"Main\"><a class=\"brand\" href=\"/ui/runs\">Otto</a><ul>",
    );
    for (key, label) in [("runs", "Runs"), ("mesh", "Mesh"), ("explain", "Explain")] {
        let current = if key == frame.nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(out, "<li><a href=\"/ui/{key}\"{current}>{label}</a></li>");
    }
    let _ = write!(
        out,
        "</ul></nav><div class=\"who\" data-testid=\"node-name\"><span class=\"node\">{}</span> \
         <span class=\"org\">{}</span>",
        esc(frame.node),
        esc(frame.org)
    );
    if let Some(csrf) = frame.csrf {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/logout\" class=\"inline\">{}\
             <button type=\"submit\" class=\"link\">Sign out</button></form>",
            csrf_field(csrf)
        );
    }
    out.push_str(
        "</div></header><div id=\"banner\" class=\"banner\" role=\"status\" aria-live=\"polite\" hidden></div>",
    );
    let _ = write!(out, "<main id=\"main\" tabindex=\"-1\"");
    if frame.live {
        out.push_str(" data-live=\"true\"");
    }
    if let Some(run) = frame.run {
        let _ = write!(out, " data-run=\"{}\"", esc(run));
    }
    if let Some(etag) = frame.etag {
        let _ = write!(out, " data-etag=\"{}\"", esc(etag));
    }
    out.push('>');
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// The hidden form field that carries the CSRF token.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"_csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A page shown to someone not signed in, or for an error: a heading and a paragraph.
pub(crate) fn notice(title: &str, message: &str, hint: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{t} · Otto</title><link rel=\"stylesheet\" href=\"/ui/assets/otto.css\"></head>\
         <body><main id=\"main\" class=\"notice\"><h1>{t}</h1><p>{m}</p><p class=\"hint\">{h}</p></main></body></html>\n",
        t = esc(title),
        m = esc(message),
        h = esc(hint)
    )
}

/// The icon and word of a run state.
pub(crate) fn run_state(state: RunState) -> (&'static str, &'static str) {
    match state {
        RunState::Queued => ("◌", "queued"),
        RunState::Running => ("●", "running"),
        RunState::Waiting => ("◔", "waiting"),
        RunState::Succeeded => ("✓", "succeeded"),
        RunState::Failed => ("✗", "failed"),
        RunState::Cancelled => ("⊘", "cancelled"),
    }
}

/// The icon and word of a stage state.
pub(crate) fn stage_state(state: StageState) -> (&'static str, &'static str) {
    match state {
        StageState::Pending => ("◌", "pending"),
        StageState::WaitingGate => ("◔", "waiting_gate"),
        StageState::Running => ("●", "running"),
        StageState::Succeeded => ("✓", "succeeded"),
        StageState::Failed => ("✗", "failed"),
        StageState::Skipped => ("–", "skipped"),
        StageState::Cancelled => ("⊘", "cancelled"),
        StageState::HandedOff => ("→", "handed_off"),
    }
}

/// A state badge: icon and word, the colour only an extra (class `s-<word>`).
pub(crate) fn badge(icon: &str, word: &str) -> String {
    format!(
        "<span class=\"state s-{w}\"><span class=\"icon\" aria-hidden=\"true\">{i}</span> {shown}</span>",
        w = esc(word),
        shown = esc(&word.replace('_', " ")),
        i = esc(icon)
    )
}

/// A duration in milliseconds for people: `850ms`, `12.3s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{}.{}s", secs, (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// A time (milliseconds since the Unix epoch) as UTC `YYYY-MM-DD HH:MM:SS`, in a
/// `<time>` element.
pub(crate) fn time(ms: u64) -> String {
    let text = utc(ms / 1000);
    format!(
        "<time datetime=\"{}Z\">{text}</time>",
        text.replace(' ', "T")
    )
}

/// Seconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn utc(secs: u64) -> String {
    otto_protocol::time::utc(secs)
}

/// Shortens `text` to at most `max` characters, ending in `…` when cut.
pub(crate) fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\" onclick='y'>&</a>").to_string(),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("plain ✓ text").to_string(), "plain ✓ text");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(seg("Deploy staging/1"), "Deploy%20staging%2F1");
        assert_eq!(seg("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}

//! The bench's chart, written by hand as SVG: for each figure, its title, one bar for the
//! value and one for its same-run baseline, each scaled to the larger of the two, with the
//! numbers and the ratio written out.

use std::fmt::Write as _;

use super::Figure;

/// The chart's width, in SVG units.
const WIDTH: u32 = 800;
/// The height of one figure's block: a title line and two bars.
const BLOCK: u32 = 78;
/// The left edge of the bars.
const BARS_X: u32 = 20;
/// The widest bar.
const BAR_MAX: f64 = 430.0;
/// A bar's height.
const BAR_H: u32 = 18;

/// The chart of `figures` as an SVG document, with `title` on top.
pub fn chart(title: &str, figures: &[Figure]) -> String {
    let top = 48;
    let height = top + BLOCK * u32::try_from(figures.len()).unwrap_or(u32::MAX / BLOCK) + 30;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{BARS_X}" y="28" font-size="17" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, figure) in figures.iter().enumerate() {
        let y = top + BLOCK * u32::try_from(i).unwrap_or(0);
        block(&mut out, figure, y);
    }
    let legend_y = height - 12;
    let _ = writeln!(
        out,
        r##"<rect x="{BARS_X}" y="{}" width="12" height="12" fill="#2f6db5"/><text x="{}" y="{legend_y}">Otto, this run</text>"##,
        legend_y - 10,
        BARS_X + 18
    );
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="12" height="12" fill="#a3adb8"/><text x="{}" y="{legend_y}">baseline, same run</text>"##,
        BARS_X + 140,
        legend_y - 10,
        BARS_X + 158
    );
    out.push_str("</svg>\n");
    out
}

/// `text` safe inside SVG text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One figure's title, its two bars with their numbers, and the ratio.
fn block(out: &mut String, figure: &Figure, y: u32) {
    let scale = figure.value.max(figure.baseline);
    let width = |v: f64| {
        if scale > 0.0 && v.is_finite() {
            (v / scale * BAR_MAX).max(1.0)
        } else {
            1.0
        }
    };
    let _ = writeln!(out, r#"<g class="figure" id="{}">"#, escape(&figure.id));
    let _ = writeln!(
        out,
        r#"<text x="{BARS_X}" y="{}" font-weight="bold">{}</text>"#,
        y + 14,
        escape(&format!(
            "{} ({} is better)",
            figure.title,
            if figure.lower_is_better {
                "lower"
            } else {
                "higher"
            }
        ))
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="end" font-weight="bold">{}</text>"##,
        WIDTH - 20,
        y + 14,
        escape(&format!("ratio {}", ratio_text(figure.ratio())))
    );
    let rows = [
        ("value", "#2f6db5", figure.value, "Otto".to_owned()),
        (
            "baseline",
            "#a3adb8",
            figure.baseline,
            figure.baseline_label.clone(),
        ),
    ];
    for (row, (class, colour, v, label)) in rows.into_iter().enumerate() {
        let bar_y = y + 22 + u32::try_from(row).unwrap_or(0) * (BAR_H + 4);
        let w = width(v);
        let _ = writeln!(
            out,
            r#"<rect class="{class}" x="{BARS_X}" y="{bar_y}" width="{w:.1}" height="{BAR_H}" fill="{colour}"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}">{}</text>"#,
            f64::from(BARS_X) + w + 6.0,
            bar_y + BAR_H - 5,
            escape(&format!("{} {}: {label}", number(v), figure.unit))
        );
    }
    out.push_str("</g>\n");
}

/// A number with about three significant digits.
pub(crate) fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A ratio such as `2.4×`.
pub(crate) fn ratio_text(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{}×", number(ratio))
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(id: &str, title: &str, value: f64, baseline: f64) -> Figure {
        Figure {
            id: id.into(),
            title: title.into(),
            unit: "ms".into(),
            value,
            baseline,
            baseline_label: "local <stage> & \"more\"".into(),
            lower_is_better: true,
            samples: 3,
            detail: String::new(),
        }
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("bell\u{7}"), "bell\u{fffd}");
        assert_eq!(escape("plain text"), "plain text");
    }

    #[test]
    fn every_figure_gets_a_value_bar_and_a_baseline_bar_with_escaped_labels() {
        let figures = [
            figure("a", "Latency <p50>", 12.0, 4.0),
            figure("b", "Throughput", 3.0, 6.0),
        ];
        let svg = chart("Otto & friends", &figures);
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(r#"viewBox="0 0 800 "#));
        assert_eq!(svg.matches(r#"class="value""#).count(), 2);
        assert_eq!(svg.matches(r#"class="baseline""#).count(), 2);
        assert!(svg.contains("Otto &amp; friends"));
        assert!(svg.contains("Latency &lt;p50&gt; (lower is better)"));
        assert!(svg.contains("local &lt;stage&gt; &amp; &quot;more&quot;"));
        assert!(!svg.contains("<p50>"));
        // The larger of a pair fills the bar; the ratio is written out.
        assert!(svg.contains(r#"width="430.0""#));
        assert!(svg.contains("ratio 3.00×"));
        assert!(svg.contains("ratio 0.50×"));
    }
}

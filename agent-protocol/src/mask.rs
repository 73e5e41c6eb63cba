//! Masking secrets in log output.
//!
//! A [`Masker`] is built from the secret values a stage may see and replaces every
//! occurrence of them in a line of output with [`MASK`]. The agent masks every line before
//! it leaves the agent, and the node masks again before it stores a line, with the same
//! type. Output is masked line by line, so a [`Masker`] holds no state between lines.
//!
//! # What is found
//!
//! For every secret of at least [`MIN_SECRET_BYTES`] bytes:
//!
//! - the value itself, and the value without a trailing line ending;
//! - each line of a multi-line value that has at least [`MIN_SECRET_BYTES`] bytes (shorter
//!   lines, like a lone `}`, would mask far too much);
//! - base64 in the standard and the URL-safe alphabet, padded and unpadded, as the whole
//!   output of an encoder and also inside a longer base64 text at each of the three byte
//!   alignments the value can have there (so `printf '%s\n' "$TOKEN" | base64`, where a
//!   newline follows the value, is found too);
//! - base64 wrapped into lines of 64 or 76 characters (`base64` and PEM line widths);
//! - any percent-encoding (URL encoding): a line holding `%` or `+` is also searched after
//!   decoding, so it does not matter which characters an encoder escaped, whether it wrote
//!   upper- or lower-case hex, or whether it wrote a space as `+`;
//! - the value escaped as inside a JSON string.
//!
//! # Limits
//!
//! - A secret shorter than [`MIN_SECRET_BYTES`] bytes is not masked at all.
//! - Inside a longer base64 text, the characters that encode the first and last one or two
//!   bytes of the secret together with bytes around it stay visible: they are shared with
//!   data that is not secret. At most two bytes at each end can be guessed from them.
//! - Base64 wrapped at other widths than 64 or 76, hex, double URL-encoding, compression,
//!   encryption, or a secret printed one character per line are not found. Neither is a
//!   secret that a program splits over two lines by itself, nor one inside a line longer
//!   than [`crate::protocol::MAX_LINE_BYTES`] at the point where that line is cut.
//! - Masking protects logs against accidents, not against a step that wants to leak a
//!   secret on purpose: such a step can always transform it first.
#![warn(clippy::unwrap_used)]

use std::borrow::Cow;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The shortest secret, or line of a multi-line secret, that is masked, in bytes.
pub const MIN_SECRET_BYTES: usize = 4;

/// The line widths at which wrapped base64 is recognised.
const WRAP_WIDTHS: [usize; 2] = [64, 76];

/// Finds secrets in lines of text and hides them.
#[derive(Clone, Default)]
pub struct Masker {
    /// Every form searched for; `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
    /// How many forms the matcher holds.
    forms: usize,
}

impl Masker {
    /// A masker for these secret values. Values shorter than [`MIN_SECRET_BYTES`] are
    /// ignored.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            add_forms(secret.as_ref(), &mut forms);
        }
        forms.retain(|f| f.len() >= MIN_SECRET_BYTES);
        forms.sort();
        forms.dedup();
        let matcher = if forms.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&forms)
                .ok()
        };
        Self {
            forms: if matcher.is_some() { forms.len() } else { 0 },
            matcher,
        }
    }

    /// Whether the masker has nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// One line with every secret replaced by [`MASK`]. The line should not hold a newline:
    /// see [`Self::mask_text`] for text that may.
    pub fn mask<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(line);
        };
        let mut spans: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(line)
            .map(|m| (m.start(), m.end()))
            .collect();
        let bytes = line.as_bytes();
        if bytes.contains(&b'%') {
            decoded_spans(matcher, bytes, false, &mut spans);
        }
        if bytes.contains(&b'+') {
            decoded_spans(matcher, bytes, true, &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(line);
        }
        Cow::Owned(replace(line, spans))
    }

    /// Text of any number of lines with every secret replaced by [`MASK`], line by line.
    pub fn mask_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        text.split('\n')
            .map(|line| self.mask(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("forms", &self.forms)
            .finish()
    }
}

/// Adds every form of one secret that is searched for.
fn add_forms(secret: &str, forms: &mut Vec<Vec<u8>>) {
    if secret.len() < MIN_SECRET_BYTES {
        return;
    }
    let trimmed = secret.trim_end_matches(['\n', '\r']);
    let mut wholes = vec![secret];
    if trimmed != secret && trimmed.len() >= MIN_SECRET_BYTES {
        wholes.push(trimmed);
    }
    for whole in wholes {
        forms.push(whole.as_bytes().to_vec());
        add_base64(whole.as_bytes(), forms);
        let json = serde_json::Value::String(whole.to_owned()).to_string();
        if let Some(inner) = json.get(1..json.len() - 1) {
            forms.push(inner.as_bytes().to_vec());
        }
    }
    for line in secret.split('\n') {
        let line = line.trim_end_matches('\r');
        forms.push(line.as_bytes().to_vec());
    }
}

/// Adds the base64 forms of a value: whole, at each alignment, and wrapped.
fn add_base64(value: &[u8], forms: &mut Vec<Vec<u8>>) {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(value).into_bytes());
    }
    // Inside a longer base64 text the value starts at some byte offset; `skip` bytes later
    // it is aligned to a 3-byte group, and every whole group after that encodes to the
    // same four characters whatever surrounds the value.
    for skip in 0..3 {
        let Some(rest) = value.get(skip..) else {
            break;
        };
        let whole = rest.len() / 3 * 3;
        let Some(groups) = rest.get(..whole) else {
            break;
        };
        if groups.is_empty() {
            continue;
        }
        let std = STANDARD_NO_PAD.encode(groups);
        let url = URL_SAFE_NO_PAD.encode(groups);
        if skip == 0 {
            add_wrapped(&std, forms);
            add_wrapped(&url, forms);
        }
        forms.push(std.into_bytes());
        forms.push(url.into_bytes());
    }
    add_wrapped(&STANDARD.encode(value), forms);
    add_wrapped(&URL_SAFE.encode(value), forms);
}

/// Adds the lines of `encoded` wrapped at each of [`WRAP_WIDTHS`], when it is longer.
fn add_wrapped(encoded: &str, forms: &mut Vec<Vec<u8>>) {
    for width in WRAP_WIDTHS {
        if encoded.len() > width {
            forms.extend(encoded.as_bytes().chunks(width).map(<[u8]>::to_vec));
        }
    }
}

/// Searches the percent-decoded line and adds the spans of the original line that the
/// matches came from.
fn decoded_spans(
    matcher: &AhoCorasick,
    line: &[u8],
    plus_is_space: bool,
    spans: &mut Vec<(usize, usize)>,
) {
    let (decoded, starts) = percent_decode(line, plus_is_space);
    if decoded.len() == line.len() {
        // Nothing was decoded: the plain search has seen this text already.
        if !plus_is_space || !line.contains(&b'+') {
            return;
        }
    }
    for m in matcher.find_overlapping_iter(&decoded) {
        let start = starts.get(m.start()).copied();
        let end = starts.get(m.end()).copied();
        if let (Some(start), Some(end)) = (start, end) {
            spans.push((start, end));
        }
    }
}

/// Percent-decodes a line. Returns the decoded bytes and, for each decoded byte and one
/// past the end, the offset in `line` where it starts.
fn percent_decode(line: &[u8], plus_is_space: bool) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(line.len());
    let mut starts = Vec::with_capacity(line.len() + 1);
    let mut i = 0;
    while i < line.len() {
        starts.push(i);
        let byte = line[i];
        if byte == b'%'
            && let (Some(hi), Some(lo)) = (
                line.get(i + 1).and_then(|b| hex_value(*b)),
                line.get(i + 2).and_then(|b| hex_value(*b)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && byte == b'+' {
            b' '
        } else {
            byte
        });
        i += 1;
    }
    starts.push(line.len());
    (out, starts)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The line with the union of `spans` replaced by [`MASK`], one mask per joined span.
fn replace(line: &str, mut spans: Vec<(usize, usize)>) -> String {
    spans.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut pos = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(next_start, next_end)) = iter.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            iter.next();
        }
        let start = floor_boundary(line, start.max(pos));
        let end = ceil_boundary(line, end);
        if end <= pos {
            continue;
        }
        out.push_str(line.get(pos..start).unwrap_or_default());
        out.push_str(MASK);
        pos = end;
    }
    out.push_str(line.get(pos..).unwrap_or_default());
    out
}

fn floor_boundary(line: &str, mut i: usize) -> usize {
    while i > 0 && !line.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(line: &str, mut i: usize) -> usize {
    while i < line.len() && !line.is_char_boundary(i) {
        i += 1;
    }
    i.min(line.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-Value/with+chars?";

    fn masker() -> Masker {
        Masker::new([SECRET])
    }

    #[test]
    fn plain_values_are_masked_everywhere_in_a_line() {
        let m = masker();
        assert_eq!(
            m.mask(&format!("token={SECRET} again {SECRET}!")),
            "token=*** again ***!"
        );
        assert_eq!(m.mask("nothing secret here"), "nothing secret here");
        assert!(matches!(m.mask("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_secrets_are_masked_as_their_union() {
        let m = Masker::new(["abcdef", "defghi"]);
        assert_eq!(m.mask("xabcdefghiy"), "x***y");
        let m = Masker::new(["long-secret-value", "secret"]);
        assert_eq!(m.mask("a long-secret-value b secret c"), "a *** b *** c");
    }

    #[test]
    fn short_secrets_and_short_lines_are_ignored() {
        let m = Masker::new(["abc", ""]);
        assert!(m.is_empty());
        assert_eq!(m.mask("abc abc"), "abc abc");
        let m = Masker::new(["first-line\n}\nxy\nlast-line"]);
        assert_eq!(m.mask("}"), "}");
        assert_eq!(m.mask("xy"), "xy");
        assert_eq!(m.mask("  first-line"), "  ***");
        assert_eq!(m.mask("last-line;"), "***;");
    }

    #[test]
    fn base64_in_both_alphabets_with_and_without_padding_is_masked() {
        // Bytes chosen so the encodings hold `+` and `/` (standard) or `-` and `_` (URL).
        let secret = "???>>>secret~~";
        let m = Masker::new([secret]);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(secret);
            assert_eq!(m.mask(&format!("b64: {encoded}")), "b64: ***", "{encoded}");
        }
        assert!(STANDARD.encode(secret).contains('+'));
        assert!(URL_SAFE.encode(secret).contains('-'));
    }

    #[test]
    fn base64_of_the_secret_with_a_trailing_newline_is_masked() {
        // What `echo "$TOKEN" | base64` prints.
        let m = masker();
        let encoded = STANDARD.encode(format!("{SECRET}\n"));
        let masked = m.mask(&encoded);
        assert!(masked.starts_with(MASK), "{masked}");
        assert!(masked.len() <= MASK.len() + 4, "{masked}");
    }

    #[test]
    fn base64_inside_longer_text_is_masked_at_every_alignment() {
        let secret = "correct-horse-battery-staple";
        let m = Masker::new([secret]);
        for before in 0..6 {
            for after in 0..4 {
                let data = format!("{}{secret}{}", "<".repeat(before), ">".repeat(after));
                for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                    let encoded = engine.encode(&data);
                    let masked = m.mask(&encoded);
                    assert!(masked.contains(MASK), "{before} {after}: {masked}");
                    // At most the two bytes at each end of the secret, with their neighbours,
                    // stay visible.
                    let hidden = encoded.len() + MASK.len() - masked.len();
                    let at_least = (secret.len() - 2) / 3 * 4;
                    assert!(hidden >= at_least, "{before} {after}: {masked}");
                }
            }
        }
    }

    #[test]
    fn wrapped_base64_is_masked_line_by_line() {
        let secret = "x".repeat(100) + "-a-long-certificate-like-secret-" + &"y".repeat(70);
        let m = Masker::new([secret.as_str()]);
        let encoded = STANDARD.encode(format!("{secret}\n"));
        for width in WRAP_WIDTHS {
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(width)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            let last = lines.len() - 1;
            for (i, line) in lines.iter().enumerate() {
                let masked = m.mask(line);
                if i < last {
                    assert_eq!(masked, MASK, "width {width} line {i}");
                } else {
                    // The last line may hold only the final partial group (the newline and
                    // at most two bytes of the secret), which is not masked.
                    assert!(
                        masked.starts_with(MASK) || line.len() <= 4,
                        "width {width}: {masked}"
                    );
                }
            }
        }
    }

    #[test]
    fn percent_encoded_forms_are_masked_whatever_the_encoder() {
        let secret = "p@ss word/with?chars&more";
        let m = Masker::new([secret]);
        for encoded in [
            "p%40ss%20word%2Fwith%3Fchars%26more",
            "p%40ss%20word%2fwith%3fchars%26more",
            "p%40ss+word%2Fwith%3Fchars%26more",
            "p@ss%20word/with?chars&more",
            "%70%40%73%73%20word/with?chars&more",
        ] {
            assert_eq!(
                m.mask(&format!("GET https://x.test/?t={encoded}&page=2")),
                "GET https://x.test/?t=***&page=2",
                "{encoded}"
            );
        }
        // A secret holding a literal `+` is still found when `+` is not decoded.
        assert_eq!(masker().mask("s3cr3t-Value%2Fwith+chars%3F"), "***");
    }

    #[test]
    fn non_ascii_secrets_are_masked_plain_and_percent_encoded() {
        let m = Masker::new(["pässwörd-1"]);
        assert_eq!(m.mask("a pässwörd-1 b"), "a *** b");
        assert_eq!(m.mask("a=p%C3%A4ssw%C3%B6rd-1;"), "a=***;");
        assert_eq!(m.mask("ä pässwörd-1ö"), "ä ***ö");
    }

    #[test]
    fn multi_line_secrets_are_masked_per_line_and_whole() {
        let key = "-----BEGIN TEST KEY-----\nMIIBVQIBADANBgkqhkiG9w0B\nAQEFAASCAT8wggE7\n-----END TEST KEY-----\n";
        let m = Masker::new([key]);
        let printed: Vec<String> = key.lines().map(|l| m.mask(l).into_owned()).collect();
        assert!(printed.iter().all(|l| l == MASK), "{printed:?}");
        assert_eq!(m.mask(&STANDARD.encode(key)), MASK);
        let json = serde_json::json!({ "key": key }).to_string();
        assert_eq!(m.mask(&json), r#"{"key":"***"}"#);
        assert_eq!(
            m.mask_text("head\nAQEFAASCAT8wggE7\ntail"),
            "head\n***\ntail"
        );
    }

    #[test]
    fn json_escaped_secrets_are_masked() {
        let secret = r#"quote"and\backslash"#;
        let m = Masker::new([secret]);
        let json = serde_json::json!({ "password": secret }).to_string();
        assert_eq!(m.mask(&json), r#"{"password":"***"}"#);
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let text = format!("{:?}", masker());
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn an_empty_masker_leaves_text_alone() {
        let m = Masker::new(Vec::<String>::new());
        assert!(m.is_empty());
        assert_eq!(m.mask("a%20b+c"), "a%20b+c");
        assert_eq!(m.mask_text("a\nb"), "a\nb");
    }
}

//! The lexer: turns Ottofile text into [`Token`]s.
//!
//! The lexer is a pull iterator over the text: it holds no token buffer, so memory use
//! does not grow with the input, and each byte is looked at a bounded number of times, so
//! it runs in linear time. Problems (an unexpected character, an unterminated string or
//! comment, a malformed number, a bad escape) become [`Diagnostic`]s; the lexer always
//! makes progress and never panics, and it still produces a token where that helps the
//! parser carry on (an unterminated string is still a string).

#![warn(clippy::unwrap_used)]

use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};

/// Lexes a whole text into its tokens (without the final [`TokenKind::Eof`]) and the
/// problems found on the way.
pub fn tokenize(file: FileId, text: &str) -> (Vec<Token<'_>>, Vec<Diagnostic>) {
    let mut lexer = Lexer::new(file, text);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token();
        if token.kind == TokenKind::Eof {
            break;
        }
        tokens.push(token);
    }
    (tokens, lexer.take_diagnostics())
}

/// One token with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// What it is.
    pub kind: TokenKind<'a>,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of token.
///
/// Keywords are not tokens of their own: the parser is context-sensitive and reads
/// `stage`, `true`, `in` and the rest as [`TokenKind::Ident`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind<'a> {
    /// An identifier: `[A-Za-z_][A-Za-z0-9_-]*`, where a dash must be followed by a letter,
    /// digit or underscore (so `environment->x` is three tokens).
    Ident(&'a str),
    /// A string literal, unescaped (and, for triple-quoted strings, with the leading
    /// newline and common indentation removed).
    Str(String),
    /// A whole number.
    Int(i64),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `=`
    Eq,
    /// `->`
    Arrow,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `!`
    Bang,
    /// `.`
    Dot,
    /// The end of the text.
    Eof,
}

impl TokenKind<'_> {
    /// How the token is named in messages, e.g. "`{`", "string 'abc'", "end of file".
    pub fn describe(&self) -> String {
        match self {
            Self::Ident(name) => format!("`{name}`"),
            Self::Str(value) => {
                let mut short: String = value.chars().take(20).collect();
                if value.chars().nth(20).is_some() {
                    short.push('…');
                }
                format!("string {:?}", short)
            }
            Self::Int(value) => format!("number {value}"),
            Self::Eof => "end of file".to_owned(),
            other => format!("`{}`", other.punct()),
        }
    }

    /// The text of a punctuation token; empty for the others.
    pub fn punct(&self) -> &'static str {
        match self {
            Self::LBrace => "{",
            Self::RBrace => "}",
            Self::LParen => "(",
            Self::RParen => ")",
            Self::LBracket => "[",
            Self::RBracket => "]",
            Self::Comma => ",",
            Self::Colon => ":",
            Self::Eq => "=",
            Self::Arrow => "->",
            Self::EqEq => "==",
            Self::NotEq => "!=",
            Self::AndAnd => "&&",
            Self::OrOr => "||",
            Self::Bang => "!",
            Self::Dot => ".",
            Self::Ident(_) | Self::Str(_) | Self::Int(_) | Self::Eof => "",
        }
    }
}

/// A pull lexer over one text.
#[derive(Debug)]
pub struct Lexer<'a> {
    file: FileId,
    text: &'a str,
    pos: usize,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `text`.
    ///
    /// Offsets are 32-bit: a text longer than 4 GiB is lexed as if it ended there, with
    /// a diagnostic.
    pub fn new(file: FileId, text: &'a str) -> Self {
        let mut diagnostics = Vec::new();
        let mut text = text;
        if text.len() > MAX_TEXT_BYTES {
            diagnostics.push(Diagnostic::global(
                "the file is too large to read (over 4 GiB)",
            ));
            let mut end = MAX_TEXT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = text.get(..end).unwrap_or_default();
        }
        Self {
            file,
            text,
            pos: 0,
            diagnostics,
        }
    }

    /// Takes the diagnostics found so far.
    pub fn take_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diagnostics)
    }

    /// Whether diagnostics are waiting to be taken.
    pub fn has_diagnostics(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// The next token; [`TokenKind::Eof`] at the end (and on every later call).
    pub fn next_token(&mut self) -> Token<'a> {
        loop {
            self.skip_trivia();
            let start = self.pos;
            let Some(c) = self.peek_char(0) else {
                return self.token(TokenKind::Eof, start);
            };
            let kind = match c {
                '{' => self.punct(TokenKind::LBrace, 1),
                '}' => self.punct(TokenKind::RBrace, 1),
                '(' => self.punct(TokenKind::LParen, 1),
                ')' => self.punct(TokenKind::RParen, 1),
                '[' => self.punct(TokenKind::LBracket, 1),
                ']' => self.punct(TokenKind::RBracket, 1),
                ',' => self.punct(TokenKind::Comma, 1),
                ':' => self.punct(TokenKind::Colon, 1),
                '.' => self.punct(TokenKind::Dot, 1),
                '=' if self.peek_byte(1) == Some(b'=') => self.punct(TokenKind::EqEq, 2),
                '=' => self.punct(TokenKind::Eq, 1),
                '!' if self.peek_byte(1) == Some(b'=') => self.punct(TokenKind::NotEq, 2),
                '!' => self.punct(TokenKind::Bang, 1),
                '&' if self.peek_byte(1) == Some(b'&') => self.punct(TokenKind::AndAnd, 2),
                '|' if self.peek_byte(1) == Some(b'|') => self.punct(TokenKind::OrOr, 2),
                '-' if self.peek_byte(1) == Some(b'>') => self.punct(TokenKind::Arrow, 2),
                '-' if self.peek_byte(1).is_some_and(|b| b.is_ascii_digit()) => self.number(),
                '0'..='9' => self.number(),
                '\'' | '"' => self.string(c),
                c if c.is_ascii_alphabetic() || c == '_' => self.ident(),
                other => {
                    self.unexpected_char(other);
                    continue;
                }
            };
            return self.token(kind, start);
        }
    }

    fn token(&self, kind: TokenKind<'a>, start: usize) -> Token<'a> {
        Token {
            kind,
            span: self.span(start, self.pos),
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start as u32, end as u32)
    }

    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn peek_byte(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + ahead).copied()
    }

    fn peek_char(&self, ahead_bytes: usize) -> Option<char> {
        self.text.get(self.pos + ahead_bytes..)?.chars().next()
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn punct(&mut self, kind: TokenKind<'a>, len: usize) -> TokenKind<'a> {
        self.pos += len;
        kind
    }

    fn unexpected_char(&mut self, c: char) {
        let start = self.pos;
        self.pos += c.len_utf8();
        let shown = if c.is_control() || c.is_whitespace() {
            format!("{}", c.escape_unicode())
        } else {
            c.to_string()
        };
        let mut diagnostic = Diagnostic::new(
            format!("unexpected character `{shown}`"),
            self.span(start, self.pos),
        )
        .with_label("not part of the Ottofile language");
        let hint = match c {
            '&' => Some("write `&&` for \"and\""),
            '|' => Some("write `||` for \"or\""),
            '-' => Some(
                "numbers are written `-7`; an environment is chosen with `environment -> NAME`",
            ),
            ';' => Some("items need no separator: put them on separate lines or side by side"),
            '#' => Some("comments are written `// ...` or `/* ... */`"),
            '`' => Some("strings are quoted with ' or \""),
            '\u{2018}' | '\u{2019}' | '\u{201c}' | '\u{201d}' => {
                Some("typographic quotes are not string quotes: use ' or \"")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            diagnostic = diagnostic.with_hint(hint);
        }
        self.error(diagnostic);
    }

    /// Skips whitespace and comments, reporting unterminated block comments.
    fn skip_trivia(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r', '\u{feff}']);
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if trimmed.starts_with("/*") {
                self.block_comment();
            } else {
                return;
            }
        }
    }

    fn block_comment(&mut self) {
        let start = self.pos;
        self.pos += 2;
        let mut depth = 1usize;
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match (b, bytes.get(self.pos + 1)) {
                (b'/', Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.pos += 1,
            }
        }
        // The end of the text is a char boundary, so `pos` is valid again here.
        self.pos = self.text.len();
        self.error(
            Diagnostic::new("unterminated block comment", self.span(start, start + 2))
                .with_label("this comment is never closed")
                .with_hint(
                    "close it with `*/` (block comments nest: each `/*` needs its own `*/`)",
                ),
        );
    }

    fn ident(&mut self) -> TokenKind<'a> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut end = start + 1;
        while let Some(&b) = bytes.get(end) {
            let continues = b.is_ascii_alphanumeric()
                || b == b'_'
                || (b == b'-'
                    && bytes
                        .get(end + 1)
                        .is_some_and(|&n| n.is_ascii_alphanumeric() || n == b'_'));
            if !continues {
                break;
            }
            end += 1;
        }
        self.pos = end;
        TokenKind::Ident(self.text.get(start..end).unwrap_or_default())
    }

    fn number(&mut self) -> TokenKind<'a> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut end = start;
        if bytes.get(end) == Some(&b'-') {
            end += 1;
        }
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let digits_end = end;
        let is_decimal =
            bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if is_decimal {
            end += 1;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        let has_suffix = bytes
            .get(end)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
        if has_suffix {
            while bytes
                .get(end)
                .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
            {
                end += 1;
            }
        }
        self.pos = end;
        let text = self.text.get(start..end).unwrap_or_default();
        let span = self.span(start, end);
        if has_suffix {
            self.error(
                Diagnostic::new(format!("invalid number `{text}`"), span)
                    .with_label("a number has only digits")
                    .with_hint(format!(
                        "write durations and other text as strings, e.g. '{}'",
                        text.trim_start_matches('-')
                    )),
            );
            return TokenKind::Int(0);
        }
        if is_decimal {
            self.error(
                Diagnostic::new("only whole numbers are supported", span)
                    .with_label("decimal number")
                    .with_hint(format!(
                        "write a whole number, or quote it as a string: '{text}'"
                    )),
            );
        }
        let digits = self.text.get(start..digits_end).unwrap_or_default();
        match digits.parse::<i64>() {
            Ok(value) => TokenKind::Int(value),
            Err(_) => {
                self.error(Diagnostic::new("number is too large", span).with_label(
                    "whole numbers range from -9223372036854775808 to 9223372036854775807",
                ));
                TokenKind::Int(0)
            }
        }
    }

    fn string(&mut self, quote: char) -> TokenKind<'a> {
        let q = quote as u8;
        if self.peek_byte(1) == Some(q) && self.peek_byte(2) == Some(q) {
            return self.triple_string(quote);
        }
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let rest = self.rest();
            // Copy the plain run up to the next quote or backslash in one go.
            let run = rest.find([quote, '\\']).unwrap_or(rest.len());
            value.push_str(rest.get(..run).unwrap_or_default());
            self.pos += run;
            match self.peek_char(0) {
                None => {
                    self.error(
                        Diagnostic::new("unterminated string", self.span(start, start + 1))
                            .with_label("this string is never closed")
                            .with_hint(format!("close it with {quote}; strings may span lines, so the quote may be missing much earlier than the end of the file")),
                    );
                    return TokenKind::Str(value);
                }
                Some('\\') => self.escape(&mut value),
                Some(_) => {
                    self.pos += 1;
                    return TokenKind::Str(value);
                }
            }
        }
    }

    fn escape(&mut self, value: &mut String) {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek_char(0) else {
            // The unterminated string is reported by the caller.
            return;
        };
        self.pos += c.len_utf8();
        let decoded = match c {
            '\\' => '\\',
            '\'' => '\'',
            '"' => '"',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            'u' => match self.unicode_escape(start) {
                Some(c) => c,
                None => return,
            },
            other => {
                self.error(
                    Diagnostic::new(
                        format!("unknown escape `\\{}`", other.escape_debug()),
                        self.span(start, self.pos),
                    )
                    .with_label("not a valid escape")
                    .with_hint(r#"valid escapes are \\ \' \" \n \t \r \0 and \u{HEX}; triple-quoted strings take backslashes literally"#),
                );
                value.push(other);
                return;
            }
        };
        value.push(decoded);
    }

    /// Reads `{HEX}` after `\u`; reports and returns `None` when malformed.
    fn unicode_escape(&mut self, start: usize) -> Option<char> {
        let rest = self.rest();
        let parsed = rest.strip_prefix('{').and_then(|inner| {
            let close = inner.find('}')?;
            let hex = inner.get(..close)?;
            let valid_len = (1..=6).contains(&hex.len());
            let code = if valid_len && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else {
                None
            };
            Some((close + 2, code))
        });
        match parsed {
            Some((len, Some(c))) => {
                self.pos += len;
                Some(c)
            }
            Some((len, None)) => {
                self.pos += len;
                self.error(
                    Diagnostic::new("invalid unicode escape", self.span(start, self.pos))
                        .with_label("not a unicode scalar value")
                        .with_hint(r"write 1 to 6 hexadecimal digits of a code point, e.g. \u{e9}"),
                );
                None
            }
            None => {
                self.error(
                    Diagnostic::new("invalid unicode escape", self.span(start, self.pos))
                        .with_label("expected `{` and hexadecimal digits")
                        .with_hint(r"write \u{HEX}, e.g. \u{e9}"),
                );
                None
            }
        }
    }

    fn triple_string(&mut self, quote: char) -> TokenKind<'a> {
        let start = self.pos;
        self.pos += 3;
        let closing: &str = if quote == '\'' { "'''" } else { "\"\"\"" };
        let rest = self.rest();
        let (raw, closed) = match rest.find(closing) {
            Some(end) => (rest.get(..end).unwrap_or_default(), true),
            None => (rest, false),
        };
        self.pos += raw.len();
        if closed {
            self.pos += 3;
        } else {
            self.error(
                Diagnostic::new("unterminated string", self.span(start, start + 3))
                    .with_label("this triple-quoted string is never closed")
                    .with_hint(format!("close it with {closing}")),
            );
        }
        TokenKind::Str(dedent(raw))
    }
}

/// The most bytes a lexed text may have: offsets are 32-bit.
const MAX_TEXT_BYTES: usize = u32::MAX as usize;

/// The value of a triple-quoted string: when the text starts with a line break, that line
/// break is dropped and the indentation common to all non-blank lines is removed from
/// every line (whitespace-only lines lose their whitespace up to that much).
fn dedent(raw: &str) -> String {
    let Some(body) = raw.strip_prefix("\r\n").or_else(|| raw.strip_prefix('\n')) else {
        return raw.to_owned();
    };
    let indent_of = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let mut common: Option<&str> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.get(..indent_of(line)).unwrap_or_default();
        common = Some(match common {
            None => indent,
            Some(prev) => {
                let shared = prev
                    .bytes()
                    .zip(indent.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                prev.get(..shared).unwrap_or_default()
            }
        });
    }
    let common = common.unwrap_or_default();
    let mut out = String::with_capacity(body.len());
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let stripped = match line.strip_prefix(common) {
            Some(stripped) => stripped,
            // A blank line with less indentation than the rest.
            None => line.trim_start_matches([' ', '\t']),
        };
        out.push_str(stripped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind<'_>> {
        let (tokens, diagnostics) = tokenize(FileId(0), text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn punctuation_and_operators() {
        use TokenKind::*;
        assert_eq!(
            kinds("{ } ( ) [ ] , : = -> == != && || ! ."),
            vec![
                LBrace, RBrace, LParen, RParen, LBracket, RBracket, Comma, Colon, Eq, Arrow, EqEq,
                NotEq, AndAnd, OrOr, Bang, Dot
            ]
        );
    }

    #[test]
    fn dashes_inside_identifiers_but_not_before_an_arrow() {
        use TokenKind::*;
        assert_eq!(
            kinds("cargo-build environment->prod a_b-2"),
            vec![
                Ident("cargo-build"),
                Ident("environment"),
                Arrow,
                Ident("prod"),
                Ident("a_b-2")
            ]
        );
    }

    #[test]
    fn negative_numbers() {
        assert_eq!(
            kinds("-7 0 42"),
            vec![TokenKind::Int(-7), TokenKind::Int(0), TokenKind::Int(42)]
        );
    }

    #[test]
    fn triple_quoted_strings_drop_first_newline_and_common_indent() {
        assert_eq!(
            dedent("\n    make\n      make install\n    "),
            "make\n  make install\n"
        );
        assert_eq!(dedent("  no leading newline"), "  no leading newline");
        assert_eq!(dedent("\r\n\tA\r\n\tB"), "A\r\nB");
        assert_eq!(dedent("\n  a\n\n  b"), "a\n\nb");
    }

    #[test]
    fn spans_are_byte_ranges() {
        let (tokens, _) = tokenize(FileId(3), "é 'x'");
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].span, Span::new(FileId(3), 3, 6));
    }

    #[test]
    fn lexer_keeps_returning_eof() {
        let mut lexer = Lexer::new(FileId(0), "a");
        assert!(matches!(lexer.next_token().kind, TokenKind::Ident("a")));
        assert_eq!(lexer.next_token().kind, TokenKind::Eof);
        assert_eq!(lexer.next_token().kind, TokenKind::Eof);
    }
}

//! Errors in Ottofiles, reported to people with file:line:column and the offending text
//! underlined.

use crate::span::Span;

/// One problem found in an Ottofile (or in the inputs around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one line without a trailing period, e.g. "unknown stage 'Biuld'".
    pub message: String,
    /// Where; `None` for problems that belong to no file (a missing file, a bad `--var`).
    pub span: Option<Span>,
    /// Written under the underline: usually what was expected, e.g. "expected a string".
    pub label: Option<String>,
    /// A suggestion, e.g. "did you mean 'Build'?".
    pub hint: Option<String>,
    /// The spanned text must not be shown (it holds a secret value): renderers print
    /// `*` in its place.
    pub redact: bool,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span: Some(span),
            label: None,
            hint: None,
            redact: false,
        }
    }

    /// A diagnostic that belongs to no file.
    pub fn global(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: None,
            label: None,
            hint: None,
            redact: false,
        }
    }

    /// Adds the text written under the underline.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Hides the spanned text wherever the diagnostic is shown.
    pub fn redacted(mut self) -> Self {
        self.redact = true;
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

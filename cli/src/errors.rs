//! How `otto` and `otto-node` end with an error: one line, each cause said once. Shared by
//! both binaries.

use std::io;

/// An error and its causes on one line, each said once: a cause whose text the line
/// already holds (a context that repeats its source's message) is left out.
pub(crate) fn chain_text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

/// A closed stdout (`otto explain | head`) is not a failure.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let inner = anyhow::anyhow!("/h/store is open in another process");
        let e = inner.context("/h/store is open in another process");
        assert_eq!(chain_text(&e), "/h/store is open in another process");
        let e = anyhow::anyhow!("permission denied").context("cannot open /h/store");
        assert_eq!(chain_text(&e), "cannot open /h/store: permission denied");
        // A context that wraps its cause's text (as `store: {0}` does) says it once.
        let e = anyhow::anyhow!("/h/store.redb is open in another process")
            .context("store: /h/store.redb is open in another process")
            .context("node of /h");
        assert_eq!(
            chain_text(&e),
            "node of /h: store: /h/store.redb is open in another process"
        );
    }
}

//! The run's source across a handoff: which git repositories and commits an owner takes,
//! and how it gets the commit ([`check_source`], check 11b of
//! [`verify_offer`](crate::verify_offer)).
//!
//! An offer of a git-sourced run carries the repository URL and the full commit id, and,
//! when the sender can make one, the digest and size of a git bundle holding the commit
//! that it serves as an artifact. The owner either fetches the commit itself from the URL,
//! when its policy for the sender's org lists that repository (`repos`, exact URLs), or
//! takes the sender's bundle; either way it checks the commit id itself, by git, and never
//! trusts a ref name. The owner refuses, as `source_refused`, before anything is fetched:
//!
//! - a URL it would never fetch ([`check_repo_url`]): a transport helper (`ext::`,
//!   `fd::`), an option (`--upload-pack=…`), a scheme other than https, http, ssh, git and
//!   file, spaces, control characters, `..` segments, a relative path;
//! - a commit that is not a full lowercase hex id ([`is_commit_id`]), or that is not the
//!   commit the plan's facts name (the plan digest covers the facts, so the chain and the
//!   checkout agree);
//! - a repository its policy does not list when the offer carries no bundle: there is no
//!   way left to get the commit.
//!
//! Whether a `file://` URL points into the owner's own home is the node's to check (it
//! needs the file system) before it fetches from a URL its policy lists.
#![warn(clippy::unwrap_used)]

use otto_pipeline::plan::Body;
use otto_protocol::{GitBundle, RejectCode, RunSource};
use otto_trust::TrustStore;

use crate::chain::quoted;
use crate::verify::Rejection;

/// The longest repository URL taken.
pub const MAX_URL_LEN: usize = 2048;

/// How the owner of an offered stage gets the run's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obtain {
    /// A snapshot of a directory, fetched from the sender by its digest.
    Snapshot {
        /// The snapshot's digest.
        digest: otto_protocol::Digest,
    },
    /// The owner fetches `commit` from `url` itself: its policy lists the repository.
    Fetch {
        /// The repository URL.
        url: String,
        /// The full commit id.
        commit: String,
    },
    /// The owner fetches the sender's bundle, then takes `commit` out of it.
    Bundle {
        /// The repository URL the run names (never fetched from).
        url: String,
        /// The full commit id.
        commit: String,
        /// The bundle the sender serves.
        bundle: GitBundle,
    },
    /// The run is this node's own (it started it): its own mirror has the commit.
    Own {
        /// The repository URL.
        url: String,
        /// The full commit id.
        commit: String,
    },
}

impl Obtain {
    /// The repository and commit, for a git source.
    pub fn git(&self) -> Option<(&str, &str)> {
        match self {
            Self::Snapshot { .. } => None,
            Self::Fetch { url, commit }
            | Self::Bundle { url, commit, .. }
            | Self::Own { url, commit } => Some((url, commit)),
        }
    }
}

/// Whether `text` is a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks the form of a repository URL (not where a local path leads: that needs the file
/// system). Refused, each with the reason: an empty or over-long URL, spaces or control
/// characters, a leading `-` (git would read an option), a transport helper (`ext::…`,
/// `fd::…`, any `name::address`), a scheme other than `https`, `http`, `ssh`, `git` and
/// `file`, a `..` path segment, a relative local path. Taken: those schemes,
/// `user@host:path` (ssh) and absolute paths.
pub fn check_repo_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(format!("the URL must have 1 to {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL must not contain spaces or control characters".into());
    }
    if url.starts_with('-') {
        return Err("the URL must not start with '-'".into());
    }
    if url.contains("::") {
        return Err("transport helpers (`ext::`, `fd::`, …) are not allowed".into());
    }
    if url.split(['/', '\\']).any(|segment| segment == "..") {
        return Err("the URL must not contain `..` segments".into());
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme {
            "https" | "http" | "ssh" | "git" => Ok(()),
            "file" if rest.starts_with('/') => Ok(()),
            "file" => Err("a file:// URL needs an absolute path".into()),
            other => Err(format!(
                "the scheme `{other}` is not allowed (https, http, ssh, git, file)"
            )),
        }
    } else if url.starts_with('/') {
        Ok(())
    } else if let Some((user_host, _)) = url.split_once(':')
        && !user_host.contains('/')
        && !user_host.is_empty()
    {
        // scp-like `git@host:org/repo.git`: ssh.
        Ok(())
    } else {
        Err(
            "give a URL (https://, ssh://, git://, file://), user@host:path, or an absolute path"
                .into(),
        )
    }
}

/// Check 11b of [`verify_offer`](crate::verify_offer): whether the owner takes the run's
/// source as offered by a node of org `org`, and how it gets it (see the
/// [module docs](self)). `own`: this node started the run with this plan, so the source is
/// its own and no policy applies.
pub fn check_source(
    trust: &TrustStore,
    org: &str,
    body: &Body,
    source: &RunSource,
    own: bool,
) -> Result<Obtain, Rejection> {
    let (url, commit, bundle) = match source {
        RunSource::Snapshot { digest } => return Ok(Obtain::Snapshot { digest: *digest }),
        RunSource::Git {
            url,
            commit,
            bundle,
        } => (url, commit, bundle),
    };
    let refused = |message: String| Rejection::new(RejectCode::SourceRefused, message);
    check_repo_url(url).map_err(|why| {
        refused(format!(
            "the run's repository URL {} is refused: {why}",
            quoted(url)
        ))
    })?;
    if !is_commit_id(commit) {
        return Err(refused(format!(
            "the run's commit {} is not a full commit id (40 or 64 lowercase hex digits)",
            quoted(commit)
        )));
    }
    if let Some(planned) = &body.facts.commit
        && planned != commit
    {
        return Err(refused(format!(
            "the offer's source is commit {commit}, but the plan was made for commit {}",
            quoted(planned)
        )));
    }
    let (url, commit) = (url.clone(), commit.clone());
    if own {
        return Ok(Obtain::Own { url, commit });
    }
    if fetches_itself(trust, org, &url) {
        return Ok(Obtain::Fetch { url, commit });
    }
    match bundle {
        Some(bundle) => Ok(Obtain::Bundle {
            url,
            commit,
            bundle: *bundle,
        }),
        None => Err(refused(format!(
            "the offer carries no bundle of commit {commit}, and this node's policy for \
             {org} does not list {url} as a repository it fetches itself"
        ))
        .hint(format!(
            "send the offer from a node that has the commit, or add the repository on this \
             node with `otto-node trust policy {org} --repos {url}`"
        ))),
    }
}

/// Whether the policy of org `org` lists `url` among the repositories this node fetches
/// itself (exact URLs).
pub fn fetches_itself(trust: &TrustStore, org: &str, url: &str) -> bool {
    trust
        .policy(org)
        .is_some_and(|policy| policy.repos.iter().any(|r| r == url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_urls_are_refused_with_a_reason() {
        for (url, why) in [
            ("", "1 to 2048"),
            ("--upload-pack=/tmp/x", "start with '-'"),
            ("-oProxyCommand=x", "start with '-'"),
            ("ext::sh -c touch% /tmp/pwned", "spaces"),
            ("ext::sh", "transport helpers"),
            ("fd::17", "transport helpers"),
            ("https://x/y\n", "control"),
            ("ftp://example.com/r.git", "scheme `ftp`"),
            ("file://relative/path", "absolute"),
            ("relative/path", "give a URL"),
            ("file:///srv/git/../../home/ops/.otto", "`..`"),
            ("https://example.com/acme/../x.git", "`..`"),
        ] {
            let err = check_repo_url(url).expect_err(url);
            assert!(err.contains(why), "{url:?}: {err}");
        }
        for ok in [
            "https://github.com/acme/app.git",
            "ssh://git@example.com/acme/app.git",
            "git@github.com:acme/app.git",
            "git://127.0.0.1:9418/app",
            "file:///srv/git/app.git",
            "/srv/git/app.git",
            "https://example.com/a..b/c.git",
        ] {
            check_repo_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn commit_ids_are_full_lowercase_hex() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"0".repeat(64)));
        for bad in [
            "",
            "HEAD",
            "-a",
            &"A".repeat(40),
            &"a".repeat(39),
            "--output=x",
        ] {
            assert!(!is_commit_id(bad), "{bad}");
        }
    }
}

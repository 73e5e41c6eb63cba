//! What stages leave for later stages of the same run: artifacts (`archive`) and, for a
//! stage that another starts from (`runtime { from 'X' }`), its workspace.
//!
//! Outputs are recorded durably as node lines of the stage's log (stream `system`, no
//! step), written before the attempt is marked succeeded, for example
//!
//! ```text
//! artifact 'site' stored as sha256:9f86d0… (10240 bytes)
//! workspace of attempt 1 handed on (18028 entries, 91234567 bytes)
//! ```
//!
//! A handed-on workspace is a directory of the node's work directory
//! (`<work>/<run>/.handed/<stage>-<attempt>/`, see the engine's stage task); runs from
//! before it was so read `workspace stored as sha256:… (N bytes)`, a blob.
//!
//! so that people see them and a restarted node finds them again ([`load`]). Only lines of
//! the attempt that succeeded count, and the agent never writes lines that start this way.
#![warn(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use otto_pipeline::plan::Body;

use crate::blobs::Digest;
use crate::store::{self, AttemptState, Logs, Stage, Stream};

/// The outputs of a run's stages so far.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// Artifacts by the stage that archived them, in the order archived: name, blob, size.
    artifacts: HashMap<String, Vec<(String, Digest, u64)>>,
    /// Saved workspaces, by stage.
    workspaces: HashMap<String, Handed>,
}

/// Where a stage's workspace was left for the stages that start from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// In the work directory, copied there by this attempt's agent.
    Dir(u32),
    /// As a blob (runs of an older node).
    Blob(Digest),
}

/// One output, as recorded in a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// An artifact: its name, blob and size.
    Artifact(String, Digest, u64),
    /// The stage's workspace: its blob and size (an older node's record).
    Workspace(Digest, u64),
    /// The stage's workspace, handed on in the work directory: the attempt, the entries
    /// and bytes copied.
    HandedOn(u32, u64, u64),
}

impl Outputs {
    /// Records what a stage's succeeded attempt left.
    pub(crate) fn add(&mut self, stage: &str, records: &[Record]) {
        for record in records {
            match record {
                Record::Artifact(name, digest, size) => self
                    .artifacts
                    .entry(stage.to_owned())
                    .or_default()
                    .push((name.clone(), *digest, *size)),
                Record::Workspace(digest, _) => {
                    self.workspaces
                        .insert(stage.to_owned(), Handed::Blob(*digest));
                }
                Record::HandedOn(attempt, _, _) => {
                    self.workspaces
                        .insert(stage.to_owned(), Handed::Dir(*attempt));
                }
            }
        }
    }

    /// The artifacts a stage may `unarchive`: those of every stage it depends on, directly
    /// or not; when two have the same name, the later stage in plan order wins.
    pub(crate) fn artifacts_for(&self, body: &Body, stage: &str) -> BTreeMap<String, Digest> {
        let mut out = BTreeMap::new();
        for up in otto_handoff::rules::upstream(body, stage) {
            for (name, digest, _) in self.artifacts.get(&up.id).into_iter().flatten() {
                out.insert(name.clone(), *digest);
            }
        }
        out
    }

    /// The artifacts `stage` itself archived: name, blob and size, in the order archived.
    pub(crate) fn of_stage(&self, stage: &str) -> &[(String, Digest, u64)] {
        self.artifacts.get(stage).map_or(&[], Vec::as_slice)
    }

    /// The saved workspace of a stage.
    pub(crate) fn workspace(&self, stage: &str) -> Option<Handed> {
        self.workspaces.get(stage).copied()
    }
}

impl Record {
    /// The log line that records it.
    pub(crate) fn line(&self) -> String {
        match self {
            Self::Artifact(name, digest, size) => {
                format!("artifact '{name}' stored as {digest} ({size} bytes)")
            }
            Self::Workspace(digest, size) => {
                format!("workspace stored as {digest} ({size} bytes)")
            }
            Self::HandedOn(attempt, entries, bytes) => {
                format!(
                    "workspace of attempt {attempt} handed on ({entries} entries, {bytes} bytes)"
                )
            }
        }
    }

    /// Reads a line written by [`Self::line`].
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("artifact '") {
            let (name, rest) = rest.rsplit_once("' stored as ")?;
            let (digest, size) = digest_and_size(rest)?;
            Some(Self::Artifact(name.to_owned(), digest, size))
        } else if let Some(rest) = text.strip_prefix("workspace of attempt ") {
            let (attempt, rest) = rest.split_once(" handed on (")?;
            let (entries, rest) = rest.split_once(" entries, ")?;
            let bytes = rest.strip_suffix(" bytes)")?;
            Some(Self::HandedOn(
                attempt.parse().ok()?,
                entries.parse().ok()?,
                bytes.parse().ok()?,
            ))
        } else {
            let rest = text.strip_prefix("workspace stored as ")?;
            let (digest, size) = digest_and_size(rest)?;
            Some(Self::Workspace(digest, size))
        }
    }
}

/// Reads the outputs of every stage of a run whose last attempt succeeded, from the log.
/// Blocks on the store.
pub(crate) fn load(logs: &Logs, stages: &[Stage]) -> Result<Outputs, store::Error> {
    const PAGE: usize = 1000;
    let mut outputs = Outputs::default();
    for stage in stages {
        let Some(attempt) = stage
            .last_attempt()
            .filter(|a| a.state == AttemptState::Succeeded)
        else {
            continue;
        };
        let mut after = 0;
        let mut records = Vec::new();
        loop {
            let page = logs.read(&stage.run, &stage.id, after, PAGE)?;
            let Some(last) = page.lines.last() else {
                break;
            };
            after = last.seq;
            records.extend(
                page.lines
                    .iter()
                    .filter(|l| {
                        l.attempt == attempt.n && l.stream == Stream::System && l.step.is_none()
                    })
                    .filter_map(|l| Record::parse(&l.text)),
            );
            if page.end {
                break;
            }
        }
        outputs.add(&stage.id, &records);
    }
    Ok(outputs)
}

fn digest_and_size(text: &str) -> Option<(Digest, u64)> {
    let (digest, size) = text.split_once(" (")?;
    let size = size.strip_suffix(" bytes)")?.parse().ok()?;
    Some((digest.parse().ok()?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_from_their_lines() {
        let digest = Digest::of(b"x");
        for record in [
            Record::Artifact("site's build".into(), digest, 10),
            Record::Workspace(digest, 7),
            Record::HandedOn(2, 18_028, 91_234_567),
        ] {
            assert_eq!(Record::parse(&record.line()), Some(record));
        }
        assert_eq!(Record::parse("archived 'site': 10 bytes"), None);
        assert_eq!(
            Record::parse("artifact 'x' stored as sha256:12 (1 bytes)"),
            None
        );
    }
}

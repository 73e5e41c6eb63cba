//! `uses`: the source files a stage names, resolved to paths and digests.
//!
//! A path is relative to the directory of the Ottofile (the source root, which is the
//! workspace's root). It names a file or a directory; a directory stands for every regular
//! file under it. Its digest goes into the plan ([`plan::Used`]), so it is part of the
//! stage's definition digest: a changed file is a changed definition.

use std::path::{Component, Path};

use crate::diagnostic::Diagnostic;
use crate::plan::{self, tree_digest};
use crate::source::{EntryKind, Source};

use super::expand::Node;

/// The most files one stage's `uses` may name, directories' files included.
pub(crate) const MAX_USED_FILES: usize = 10_000;

/// Fills each node's `stage.uses` from the paths it named, reading digests through
/// `source` relative to `root`. Reports paths that climb out, are absolute, or do not
/// exist.
pub(crate) fn resolve(
    source: &dyn Source,
    root: &Path,
    nodes: &mut [Node],
    diags: &mut Vec<Diagnostic>,
) {
    for node in nodes {
        let mut used: Vec<plan::Used> = Vec::new();
        let mut files = 0;
        for (written, span) in std::mem::take(&mut node.uses) {
            let Some(path) = clean(&written) else {
                diags.push(
                    Diagnostic::new(
                        format!("uses {written:?}: a path must be relative to the Ottofile's directory and stay inside it"),
                        span,
                    )
                    .with_hint("write a path such as 'deploy.sh' or 'k8s/'"),
                );
                continue;
            };
            if used.iter().any(|u| u.path == path) {
                continue;
            }
            match digest(source, root, &path, &mut files) {
                Ok(sha256) => used.push(plan::Used { path, sha256 }),
                Err(why) => diags.push(Diagnostic::new(format!("uses {written:?}: {why}"), span)),
            }
        }
        used.sort();
        node.stage.uses = used;
    }
}

/// `deploy.sh`, `./k8s/` → `deploy.sh`, `k8s`; `None` for an absolute path, one with
/// `..`, or one that names the root itself.
pub(crate) fn clean(written: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(written).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty() && !written.contains('\\')).then(|| parts.join("/"))
}

/// The digest of the file or directory `path` (relative to `root`).
fn digest(
    source: &dyn Source,
    root: &Path,
    path: &str,
    files: &mut usize,
) -> Result<String, String> {
    let full = root.join(path);
    match source.kind(&full) {
        Some(EntryKind::File) => {
            *files += 1;
            source.sha256(&full).map_err(|e| e.to_string())
        }
        Some(EntryKind::Dir) => {
            let mut found = Vec::new();
            collect(source, root, &full, &mut found, files)?;
            if found.is_empty() {
                return Err("the directory holds no files".into());
            }
            Ok(tree_digest(&found))
        }
        None => Err("no such file or directory in the source".into()),
    }
}

/// Every regular file under `dir`, as (path relative to `root`, digest).
fn collect(
    source: &dyn Source,
    root: &Path,
    dir: &Path,
    found: &mut Vec<(String, String)>,
    files: &mut usize,
) -> Result<(), String> {
    for entry in source.list(dir).map_err(|e| e.to_string())? {
        match source.kind(&entry) {
            Some(EntryKind::Dir) => collect(source, root, &entry, found, files)?,
            Some(EntryKind::File) => {
                *files += 1;
                if *files > MAX_USED_FILES {
                    return Err(format!("more than {MAX_USED_FILES} files"));
                }
                let rel = entry.strip_prefix(root).unwrap_or(&entry);
                let rel: Vec<&str> = rel
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(p) => p.to_str(),
                        _ => None,
                    })
                    .collect();
                let digest = source.sha256(&entry).map_err(|e| e.to_string())?;
                found.push((rel.join("/"), digest));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn paths_are_cleaned_and_checked() {
        assert_eq!(clean("deploy.sh").as_deref(), Some("deploy.sh"));
        assert_eq!(clean("./k8s/").as_deref(), Some("k8s"));
        assert_eq!(clean("a//b/./c").as_deref(), Some("a/b/c"));
        for bad in ["", ".", "/etc/passwd", "../x", "a/../../x", "a\\b"] {
            assert_eq!(clean(bad), None, "{bad}");
        }
    }
}

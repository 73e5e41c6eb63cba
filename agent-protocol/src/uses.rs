//! The files an approval covers in a workspace, and what may be written over them.
//!
//! A stage of another node's run names the source files it runs with `uses`, and their
//! digests are part of the definition its owner approved. The node puts exactly those files
//! in the workspace ([`crate::Job::uses`]); the agent must then keep them as approved:
//!
//! - an entry of an input artifact (`unarchive`) or a restored cache may not create,
//!   replace or shadow a covered file, nor add anything inside a used directory, whichever
//!   path the entry takes to get there (the agent resolves the symbolic links already in the
//!   workspace before it asks, see [`Covered::place`]). An entry that is byte for byte the
//!   covered file, or a directory where the workspace has one, is left alone: writing it
//!   would change nothing;
//! - nor may it write a name directly in a directory that leads to a used path (a used
//!   file's own directory, every directory above a used path, the top of the workspace
//!   included): a used file loads what lies beside it (Python's `json.py`, a `lib.sh` it
//!   sources) or above it (Node's `node_modules/`, looked up in every directory on the way
//!   to the root), and the approval covers none of that ([`Covered::judge`]). An entry may
//!   land inside a directory that was already there and leads to nothing covered (one a
//!   step made, such as the `in/` of `dir 'in' { unarchive … }`), so inputs are unpacked in
//!   a directory of their own. What a used file needs beside it comes with it in `uses`;
//! - a workspace handed on (`runtime { from }`) holds nothing in those directories but
//!   what is covered ([`Covered::stray`]);
//! - before each program step (`sh`, a step package) every used path must still hold what
//!   was approved ([`check`]): a file with its digest, a directory whose regular files
//!   give its tree digest, with no symbolic link on the way. A step that rewrote a covered
//!   file, by its own hand or from something it unpacked, stops the stage before the next
//!   program step runs, so what runs by path is what was approved.
//!
//! This module is the rule; the agent does the reading and writing.
#![warn(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use otto_pipeline::plan::{Used, tree_digest};

/// What a used path holds in the workspace, as the agent found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file, with the digest of its bytes.
    File(String),
    /// A directory, with every regular file under it: its path (workspace-relative,
    /// `/`-separated) and its digest.
    Dir(Vec<(String, String)>),
    /// Nothing is there.
    Missing,
    /// Something no approval can cover: a symbolic link on the path or inside a used
    /// directory, a device, a name that is not UTF-8. Says what, and where.
    Other(String),
}

/// A used path that no longer holds what was approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The used path, as `uses` names it.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not what the stage's approval covers (uses): {}",
            self.path, self.reason
        )
    }
}

impl std::error::Error for Mismatch {}

/// Checks that `found` is what `used` approved; the covered files (path and digest) when
/// it is.
pub fn check(used: &Used, found: &Found) -> Result<Vec<(String, String)>, Mismatch> {
    let mismatch = |reason: String| Mismatch {
        path: used.path.clone(),
        reason,
    };
    match found {
        Found::File(digest) if *digest == used.sha256 => {
            Ok(vec![(used.path.clone(), digest.clone())])
        }
        Found::File(digest) => Err(mismatch(format!(
            "it holds {digest}, where {} was approved",
            used.sha256
        ))),
        Found::Dir(files) => {
            let prefix = format!("{}/", used.path);
            if let Some((path, _)) = files.iter().find(|(p, _)| !p.starts_with(&prefix)) {
                return Err(mismatch(format!("'{path}' is not inside it")));
            }
            let digest = tree_digest(files);
            if digest == used.sha256 {
                Ok(files.clone())
            } else {
                Err(mismatch(format!(
                    "its files give {digest}, where {} was approved",
                    used.sha256
                )))
            }
        }
        Found::Missing => Err(mismatch("it is missing".into())),
        Found::Other(what) => Err(mismatch(what.clone())),
    }
}

/// The files an approval covers in a workspace, once they were found as approved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Covered {
    /// Each covered file and its approved digest.
    files: BTreeMap<String, String>,
    /// The used directories.
    used_dirs: BTreeSet<String>,
    /// Every directory that leads to a covered file, the used directories and those
    /// inside them included, and the top of the workspace (`""`) once anything is covered.
    dirs: BTreeSet<String>,
    /// Each directory that leads to a used path (not one inside a used directory), with the
    /// used path it is named by in a refusal: one directly in it when there is one.
    sealed: BTreeMap<String, String>,
}

/// Where an archive entry would land, as far as the approval is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Nothing covered is there, above or below it.
    Free,
    /// A covered file, with its approved digest.
    File {
        /// The approved digest of its bytes.
        digest: String,
    },
    /// A directory that leads to covered files (a used directory, one inside it, or one
    /// above a used path).
    Dir,
    /// Below a covered file, or inside a used directory where the approval has nothing.
    Inside {
        /// The used path it would change.
        used: String,
    },
}

/// What an archive entry is, to judge it at its [`Place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A directory.
    Dir,
    /// A regular file, with the digest of its bytes.
    File(&'a str),
    /// Anything else: a symbolic link, for one.
    Other,
}

/// What to do with an archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write it: nothing covered is there.
    Write,
    /// Leave it out: it is what the workspace holds already (the covered file's very
    /// bytes, or a directory where one is).
    Skip,
    /// Refuse it, and the archive: why, naming the covered path.
    Refuse(String),
}

impl Covered {
    /// The covered files of the used paths, as [`check`] gave them.
    pub fn new(used: &[(Used, Vec<(String, String)>)]) -> Self {
        let mut covered = Self::default();
        for (used, files) in used {
            let is_dir = !(files.len() == 1 && files[0].0 == used.path);
            if is_dir {
                covered.used_dirs.insert(used.path.clone());
                covered.dirs.insert(used.path.clone());
            }
            for (path, digest) in files {
                covered.files.insert(path.clone(), digest.clone());
                let mut parent = path.as_str();
                while let Some((up, _)) = parent.rsplit_once('/') {
                    covered.dirs.insert(up.to_owned());
                    parent = up;
                }
            }
            let mut parent = used.path.as_str();
            let mut nearest = true;
            loop {
                let up = parent.rsplit_once('/').map_or("", |(up, _)| up);
                covered.dirs.insert(up.to_owned());
                let named = covered
                    .sealed
                    .entry(up.to_owned())
                    .or_insert_with(|| used.path.clone());
                if nearest && named.rsplit_once('/').map_or("", |(up, _)| up) != up {
                    named.clone_from(&used.path);
                }
                nearest = false;
                if up.is_empty() {
                    break;
                }
                parent = up;
            }
        }
        covered
    }

    /// The directories that lead to a used path, the top of the workspace (`""`) first:
    /// nothing but what is covered may be written directly in them.
    pub fn sealed(&self) -> impl Iterator<Item = &str> {
        self.sealed.keys().map(String::as_str)
    }

    /// Whether `name`, found directly in the sealed directory `dir` of a workspace (one
    /// handed on), is something the approval does not cover; why, when it is.
    pub fn stray(&self, dir: &str, name: &str) -> Option<String> {
        let path = join(dir, name);
        match self.place(&path) {
            Place::Free => Some(format!(
                "'{path}' lies {}: name it in uses too, or hand it on in a directory of its own",
                self.where_(dir, "in")
            )),
            _ => None,
        }
    }

    /// Why nothing may be written as `path` directly in the sealed directory `dir`; `verb`
    /// says what writing it would do (`add`, `replace`).
    fn beside(&self, dir: &str, path: &str, verb: &str) -> String {
        let name = path.rsplit_once('/').map_or(path, |(_, name)| name);
        let to = if verb == "add" { "to" } else { "in" };
        format!(
            "it would {verb} '{name}' {}: unpack inputs in a directory of their own (dir 'in' {{ unarchive … }}) or name the file in uses",
            self.where_(dir, to)
        )
    }

    /// "to 'ci', the directory of 'ci/deploy.py', which … covers (uses), and …".
    fn where_(&self, dir: &str, to: &str) -> String {
        let used = self.sealed.get(dir).map(String::as_str).unwrap_or_default();
        let place = if dir.is_empty() {
            format!("{to} the top of the workspace")
        } else {
            format!("{to} '{dir}'")
        };
        let how = if used.rsplit_once('/').map_or("", |(up, _)| up) == dir {
            "the directory of"
        } else {
            "which leads to"
        };
        format!(
            "{place}, {how} '{used}', which the stage's approval covers (uses), and a used file may load what lies beside or above it"
        )
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.used_dirs.is_empty()
    }

    /// Where `path` is: workspace-relative, `/`-separated, without `.` or `..`, after the
    /// symbolic links already in the workspace were followed (the empty path is the
    /// workspace itself).
    pub fn place(&self, path: &str) -> Place {
        if path.is_empty() {
            return if self.is_empty() {
                Place::Free
            } else {
                Place::Dir
            };
        }
        if let Some(digest) = self.files.get(path) {
            return Place::File {
                digest: digest.clone(),
            };
        }
        if self.dirs.contains(path) {
            return Place::Dir;
        }
        let mut parent = path;
        while let Some((up, _)) = parent.rsplit_once('/') {
            if self.files.contains_key(up) || self.used_dirs.contains(up) {
                return Place::Inside {
                    used: up.to_owned(),
                };
            }
            parent = up;
        }
        Place::Free
    }

    /// What to do with an entry of kind `entry` that would land at `path`, of which the
    /// first `existing` components are in the workspace already (a directory each, but for
    /// the last). A refusal says why in words that follow "refused archive entry 'NAME': ".
    ///
    /// Where nothing covered is, the entry is written unless the first name it writes (the
    /// first component not there yet; the entry's own name when all are there, but for a
    /// directory that is already one) is directly in a [sealed](Self::sealed) directory.
    pub fn judge(&self, path: &str, existing: usize, entry: Entry<'_>) -> Verdict {
        match (self.place(path), entry) {
            (Place::Free, _) => {
                let parts: Vec<&str> = path.split('/').collect();
                let (first, verb) = if existing < parts.len() {
                    (existing, "add")
                } else if entry == Entry::Dir {
                    return Verdict::Write;
                } else {
                    (parts.len().saturating_sub(1), "replace")
                };
                let dir = parts.get(..first).map(|p| p.join("/")).unwrap_or_default();
                if self.sealed.contains_key(&dir) {
                    let at = parts.get(..=first).map(|p| p.join("/")).unwrap_or_default();
                    Verdict::Refuse(self.beside(&dir, &at, verb))
                } else {
                    Verdict::Write
                }
            }
            (Place::File { digest }, Entry::File(got)) if got == digest => Verdict::Skip,
            (Place::File { .. }, Entry::File(got)) => Verdict::Refuse(format!(
                "it would replace '{path}' with {got}, and the stage's approval covers that file (uses)"
            )),
            (Place::File { .. }, _) => Verdict::Refuse(format!(
                "it would replace '{path}', a file the stage's approval covers (uses)"
            )),
            (Place::Dir, Entry::Dir) => Verdict::Skip,
            (Place::Dir, _) => Verdict::Refuse(format!(
                "it would replace the directory '{}', which holds files the stage's approval covers (uses)",
                display(path)
            )),
            (Place::Inside { used }, _) => Verdict::Refuse(format!(
                "it would put '{path}' inside '{used}', which the stage's approval covers (uses)"
            )),
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

#[cfg(test)]
mod tests {
    use otto_pipeline::plan::sha256_digest;

    use super::*;

    fn used(path: &str, sha256: &str) -> Used {
        Used {
            path: path.into(),
            sha256: sha256.into(),
        }
    }

    /// `uses ['deploy.sh', 'k8s/']` with deploy.sh and k8s/{app.yaml, base/svc.yaml}.
    fn covered() -> Covered {
        let script = sha256_digest(b"echo deploying\n");
        let files = vec![
            ("k8s/app.yaml".to_owned(), sha256_digest(b"app")),
            ("k8s/base/svc.yaml".to_owned(), sha256_digest(b"svc")),
        ];
        let deploy = used("deploy.sh", &script);
        let k8s = used("k8s", &tree_digest(&files));
        let one = check(&deploy, &Found::File(script.clone())).expect("approved");
        let two = check(&k8s, &Found::Dir(files)).expect("approved");
        Covered::new(&[(deploy, one), (k8s, two)])
    }

    #[test]
    fn what_is_found_is_checked_against_the_approved_digest() {
        let script = sha256_digest(b"v1");
        let deploy = used("deploy.sh", &script);
        assert!(check(&deploy, &Found::File(script.clone())).is_ok());
        let changed = check(&deploy, &Found::File(sha256_digest(b"v2"))).expect_err("changed");
        assert_eq!(changed.path, "deploy.sh");
        assert!(changed.to_string().contains("was approved"), "{changed}");
        assert!(check(&deploy, &Found::Missing).is_err());
        let link = check(&deploy, &Found::Other("it is a symbolic link".into()));
        assert!(
            link.expect_err("link")
                .to_string()
                .contains("symbolic link")
        );
        // A directory whose tree digest happens to be asked as a file's is still compared
        // by its own digest.
        assert!(check(&deploy, &Found::Dir(vec![])).is_err());

        let files = vec![("k8s/a.yaml".to_owned(), sha256_digest(b"a"))];
        let k8s = used("k8s", &tree_digest(&files));
        assert_eq!(check(&k8s, &Found::Dir(files.clone())), Ok(files.clone()));
        let mut more = files.clone();
        more.push(("k8s/extra.yaml".to_owned(), sha256_digest(b"x")));
        assert!(check(&k8s, &Found::Dir(more)).is_err(), "an added file");
        assert!(check(&k8s, &Found::Dir(vec![])).is_err(), "emptied");
        let elsewhere = vec![("k8sx/a.yaml".to_owned(), sha256_digest(b"a"))];
        assert!(check(&k8s, &Found::Dir(elsewhere)).is_err());
    }

    #[test]
    fn entries_are_placed_by_where_they_land() {
        let c = covered();
        assert!(matches!(c.place("deploy.sh"), Place::File { .. }));
        assert!(matches!(c.place("k8s/base/svc.yaml"), Place::File { .. }));
        for dir in ["", "k8s", "k8s/base"] {
            assert_eq!(c.place(dir), Place::Dir, "{dir:?}");
        }
        assert_eq!(
            c.place("k8s/new.yaml"),
            Place::Inside { used: "k8s".into() }
        );
        assert_eq!(
            c.place("k8s/base/deeper/x"),
            Place::Inside { used: "k8s".into() }
        );
        assert_eq!(
            c.place("deploy.sh/x"),
            Place::Inside {
                used: "deploy.sh".into()
            }
        );
        for free in ["out/version.txt", "deploy.sh.bak", "k8sx/a", "x/deploy.sh"] {
            assert_eq!(c.place(free), Place::Free, "{free}");
        }
        assert_eq!(Covered::default().place(""), Place::Free);
    }

    #[test]
    fn only_what_changes_nothing_may_land_on_covered_paths() {
        let c = covered();
        let same = sha256_digest(b"echo deploying\n");
        let other = sha256_digest(b"echo evil\n");
        assert_eq!(c.judge("deploy.sh", 0, Entry::File(&same)), Verdict::Skip);
        let Verdict::Refuse(why) = c.judge("deploy.sh", 0, Entry::File(&other)) else {
            panic!("other bytes are refused");
        };
        assert!(why.contains("'deploy.sh'") && why.contains(&other), "{why}");
        for kind in [Entry::Other, Entry::Dir] {
            assert!(matches!(c.judge("deploy.sh", 0, kind), Verdict::Refuse(_)));
        }
        assert_eq!(c.judge("", 0, Entry::Dir), Verdict::Skip);
        assert_eq!(c.judge("k8s", 0, Entry::Dir), Verdict::Skip);
        // A link or a file where a directory leads to covered files would shadow them.
        for path in ["k8s", "k8s/base", ""] {
            for kind in [Entry::Other, Entry::File(&same)] {
                let Verdict::Refuse(why) = c.judge(path, 0, kind) else {
                    panic!("{path:?} {kind:?}");
                };
                assert!(why.contains("directory"), "{why}");
            }
        }
        let Verdict::Refuse(why) = c.judge("k8s/new.yaml", 0, Entry::File(&same)) else {
            panic!("an added file is refused");
        };
        assert!(why.contains("inside 'k8s'"), "{why}");
        // Where nothing covered is, an entry lands inside a directory that was there.
        assert_eq!(
            c.judge("out/deploy.sh", 1, Entry::File(&other)),
            Verdict::Write
        );
        assert_eq!(c.judge("out/link", 1, Entry::Other), Verdict::Write);
        assert_eq!(
            Covered::default().judge("deploy.sh", 0, Entry::File(&other)),
            Verdict::Write
        );
    }

    #[test]
    fn a_used_file_inside_a_directory_covers_the_directories_above_it() {
        let script = sha256_digest(b"run");
        let nested = used("ci/bin/run.sh", &script);
        let files = check(&nested, &Found::File(script.clone())).expect("approved");
        let c = Covered::new(&[(nested, files)]);
        assert_eq!(c.place("ci"), Place::Dir);
        assert_eq!(c.place("ci/bin"), Place::Dir);
        assert_eq!(c.place("ci/other.sh"), Place::Free);
        assert!(matches!(
            c.judge("ci/bin", 0, Entry::Other),
            Verdict::Refuse(_)
        ));
    }

    /// F2-e of the review of #12: a used file loads what lies beside it and above it, so
    /// nothing may be written directly in a directory that leads to a used path.
    #[test]
    fn nothing_is_added_beside_or_above_a_used_path() {
        let py = sha256_digest(b"import json");
        let deploy = used("ci/deploy.py", &py);
        let files = check(&deploy, &Found::File(py.clone())).expect("approved");
        let c = Covered::new(&[(deploy, files)]);
        assert_eq!(c.sealed().collect::<Vec<_>>(), ["", "ci"]);
        let file = Entry::File(&py);
        for (path, existing, kind, says) in [
            (
                "ci/json.py",
                1,
                file,
                "add 'json.py' to 'ci', the directory of 'ci/deploy.py'",
            ),
            ("ci/json/__init__.py", 1, file, "add 'json' to 'ci'"),
            ("ci/json", 1, Entry::Dir, "add 'json' to 'ci'"),
            ("ci/json", 1, Entry::Other, "add 'json' to 'ci'"),
            (
                "node_modules/left-pad/index.js",
                0,
                file,
                "add 'node_modules' to the top of the workspace, which leads to 'ci/deploy.py'",
            ),
            // A file a step left there is not replaced either.
            ("ci/notes.txt", 2, file, "replace 'notes.txt' in 'ci'"),
        ] {
            let Verdict::Refuse(why) = c.judge(path, existing, kind) else {
                panic!("{path} {existing} {kind:?} is refused");
            };
            assert!(why.contains(says), "{path}: {why}");
            assert!(why.contains("dir 'in' { unarchive"), "{why}");
        }
        // Inside a directory that was there and leads to nothing covered (a step made it):
        // written. A directory entry where one is already changes nothing.
        assert_eq!(c.judge("in/json.py", 1, file), Verdict::Write);
        assert_eq!(c.judge("in/a/b", 1, Entry::Dir), Verdict::Write);
        assert_eq!(c.judge("out", 1, Entry::Dir), Verdict::Write);
        assert_eq!(c.judge("ci/cache", 2, Entry::Dir), Verdict::Write);
        assert_eq!(Covered::default().judge("json.py", 0, file), Verdict::Write);

        // A used file at the top: the refusal names it as the top's own.
        let sh = sha256_digest(b"run");
        let top = used("deploy.sh", &sh);
        let files = check(&top, &Found::File(sh.clone())).expect("approved");
        let both = Covered::new(&[
            (top, files),
            (
                used("ci/deploy.py", &py),
                vec![("ci/deploy.py".into(), py.clone())],
            ),
        ]);
        let Verdict::Refuse(why) = both.judge("lib.sh", 0, Entry::File(&sh)) else {
            panic!("lib.sh beside deploy.sh");
        };
        assert!(
            why.contains("add 'lib.sh' to the top of the workspace, the directory of 'deploy.sh'"),
            "{why}"
        );
    }

    #[test]
    fn a_stray_is_what_a_sealed_directory_holds_beyond_the_covered_paths() {
        let c = covered();
        assert_eq!(c.sealed().collect::<Vec<_>>(), [""]);
        for name in ["deploy.sh", "k8s"] {
            assert_eq!(c.stray("", name), None, "{name}");
        }
        let why = c.stray("", "lib.sh").expect("lib.sh is a stray");
        assert!(
            why.contains("'lib.sh'") && why.contains("'deploy.sh'"),
            "{why}"
        );
    }
}

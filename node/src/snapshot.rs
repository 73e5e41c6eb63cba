//! Source snapshots: the tar of a directory that `otto run` uploads, and the view of one
//! that the planner reads.
//!
//! [`create`] writes a deterministic tar of a directory: entries sorted by path, each
//! entry's modification time kept (in whole seconds: tools such as `pip wheel` refuse files
//! dated 1970), owners and permissions left out except the executable bit, symbolic links
//! stored as links, other special files skipped. The same tree with the same times gives
//! the same bytes, so the same digest. It skips what [`Ignore`] says: `.git/`, `target/` and `node_modules/` anywhere,
//! and the patterns of the root's `.gitignore` and `.ottoignore` (a subset of gitignore,
//! see [`Ignore`]).
//!
//! [`read`] turns an uploaded tar into a [`MemSource`] for the planner, refusing entries
//! that are absolute or climb out with `..`. The agent restores the same tar into the
//! workspace itself, with its own checks; the node never extracts a snapshot to disk.
#![warn(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use otto_pipeline::plan::{Used, tree_digest};
use otto_pipeline::{EntryKind, MemSource, Source};
use sha2::{Digest as _, Sha256};

/// Directories skipped at any depth, whatever the ignore files say.
pub const ALWAYS_IGNORED: [&str; 3] = [".git", "target", "node_modules"];

/// The most entries [`read`] accepts in one snapshot.
pub const MAX_ENTRIES: usize = 100_000;

/// The largest file [`read`] gives the planner as text; larger files are seen as empty.
pub const MAX_TEXT_FILE: u64 = 4 * 1024 * 1024;

/// What [`create`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Regular files.
    pub files: u64,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Paths skipped by the ignore rules (a skipped directory counts once).
    pub ignored: u64,
}

/// Which paths of a directory a snapshot leaves out: [`ALWAYS_IGNORED`] directories at
/// any depth, and the patterns of `.gitignore` and `.ottoignore` at the directory's root.
///
/// The patterns are a subset of gitignore's:
/// - blank lines and lines starting with `#` are skipped;
/// - a pattern ending in `/` matches directories only;
/// - a pattern with a `/` elsewhere matches paths from the root (`/build`, `docs/out`),
///   otherwise it matches a file or directory name at any depth (`*.log`);
/// - `*` matches any characters but `/`, `?` one character, and a `**` path component
///   any number of components.
///
/// Negations (`!pattern`), character classes and `.gitignore` files below the root are
/// not supported: negated lines are skipped, and `[` is an ordinary character.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// A snapshot's files as the planner reads them, with the name of the directory the
/// snapshot was made from (its root has no name of its own): the pipeline's name when
/// the Ottofile sets none, as `otto explain` would give for the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSource {
    files: MemSource,
    digests: BTreeMap<PathBuf, String>,
    root_name: Option<String>,
    /// Files the planner cannot read as text, and why.
    unreadable: BTreeMap<PathBuf, Unreadable>,
}

/// Why a file of a snapshot is not given to the planner as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// It is not UTF-8.
    NotUtf8,
    /// It is larger than [`MAX_TEXT_FILE`].
    TooLarge,
}

/// Why a snapshot could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file or directory could not be read, or the tar could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The snapshot is not a tar archive Otto accepts.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

/// Writes a deterministic tar of the directory `dir` to `out`, leaving out what the
/// directory's [`Ignore`] rules say.
pub fn create(dir: &Path, out: impl Write) -> Result<Written, SnapshotError> {
    let ignore = Ignore::from_dir(dir)?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.sparse(false);
    let mut written = Written::default();
    add_dir(&mut builder, dir, Path::new(""), &ignore, &mut written)?;
    builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|source| SnapshotError::Io {
            path: dir.to_owned(),
            source,
        })?;
    Ok(written)
}

/// Reads a snapshot tar into a [`MemSource`] whose paths are relative to the snapshot's
/// root (`Ottofile`, `lib/deploy.otto`). UTF-8 files up to [`MAX_TEXT_FILE`] bytes are
/// given with their text; other files are present with empty text, so the planner sees
/// that they exist. Directories and symbolic links are left out.
pub fn read(tar_bytes: &[u8]) -> Result<MemSource, SnapshotError> {
    read_noting_unreadable(tar_bytes).map(|(files, _)| files)
}

/// [`read`], also saying which files are present only as empty text and why, so that
/// planning one of them reports it ("Ottofile is not UTF-8 text") instead of reading it as
/// an empty file.
pub fn read_noting_unreadable(
    tar_bytes: &[u8],
) -> Result<(MemSource, BTreeMap<PathBuf, Unreadable>), SnapshotError> {
    read_all(tar_bytes).map(|all| (all.files, all.unreadable))
}

/// Reads a snapshot tar (see [`read_noting_unreadable`]) into the source the planner reads
/// for a run: its files, the unreadable ones, and the digest of every regular file's bytes
/// (what `uses` records).
pub fn read_source(
    tar_bytes: &[u8],
    root_name: Option<String>,
) -> Result<SnapshotSource, SnapshotError> {
    let all = read_all(tar_bytes)?;
    Ok(SnapshotSource {
        files: all.files,
        root_name,
        unreadable: all.unreadable,
        digests: all.digests,
    })
}

/// Everything [`read_source`] learns from a snapshot's files.
struct ReadAll {
    files: MemSource,
    unreadable: BTreeMap<PathBuf, Unreadable>,
    digests: BTreeMap<PathBuf, String>,
}

fn read_all(tar_bytes: &[u8]) -> Result<ReadAll, SnapshotError> {
    let mut unreadable = BTreeMap::new();
    let invalid = |e: io::Error| SnapshotError::Invalid(e.to_string());
    if tar_bytes.is_empty() || !tar_bytes.len().is_multiple_of(512) {
        return Err(SnapshotError::Invalid(
            "not a tar archive (its size is not a multiple of 512 bytes)".into(),
        ));
    }
    let mut archive = tar::Archive::new(tar_bytes);
    let mut source = MemSource::new();
    let mut digests = BTreeMap::new();
    for (count, entry) in archive.entries().map_err(invalid)?.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(SnapshotError::Invalid(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let mut entry = entry.map_err(invalid)?;
        let path = entry.path().map_err(invalid)?.into_owned();
        let path = clean_path(&path)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            return Err(SnapshotError::Invalid(format!(
                "{}: only files, directories and symbolic links are allowed",
                path.display()
            )));
        }
        if !kind.is_file() || path.as_os_str().is_empty() {
            continue;
        }
        let size = entry.size();
        let mut text = String::new();
        let digest = if size <= MAX_TEXT_FILE {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry.read_to_end(&mut bytes).map_err(invalid)?;
            let digest = otto_pipeline::plan::sha256_digest(&bytes);
            match String::from_utf8(bytes) {
                Ok(t) => text = t,
                Err(_) => {
                    unreadable.insert(path.clone(), Unreadable::NotUtf8);
                }
            }
            digest
        } else {
            unreadable.insert(path.clone(), Unreadable::TooLarge);
            let mut hasher = Sha256::new();
            io::copy(&mut entry, &mut hasher).map_err(invalid)?;
            format!("sha256:{}", hex::encode(hasher.finalize()))
        };
        digests.insert(path.clone(), digest);
        source.insert(path, text);
    }
    Ok(ReadAll {
        files: source,
        unreadable,
        digests,
    })
}

/// The part of a snapshot a stage of another node's run may see: a tar holding only the
/// regular files that `uses` names (a directory stands for the files under it), with
/// their modes and modification times, each checked against the digest in the plan. A
/// file missing, or one whose bytes differ from what the plan (and so the approved
/// definition) records, fails with its path. Symbolic links are left out, as the planner
/// never saw them.
pub fn select(tar_bytes: &[u8], uses: &[Used]) -> Result<Vec<u8>, SnapshotError> {
    let invalid = |e: io::Error| SnapshotError::Invalid(e.to_string());
    let wanted = |path: &str| {
        uses.iter().any(|u| {
            path == u.path
                || path
                    .strip_prefix(u.path.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    // (path, header as in the snapshot, bytes, digest), in the snapshot's (sorted) order.
    let mut picked: Vec<(String, tar::Header, Vec<u8>, String)> = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for (count, entry) in archive.entries().map_err(invalid)?.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(SnapshotError::Invalid(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let mut entry = entry.map_err(invalid)?;
        let path = clean_path(&entry.path().map_err(invalid)?)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(text) = path.to_str().map(|p| p.replace('\\', "/")) else {
            continue;
        };
        if !wanted(&text) {
            continue;
        }
        // Its mode and modification time stay as the snapshot has them.
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(invalid)?;
        let digest = otto_pipeline::plan::sha256_digest(&bytes);
        picked.push((text, header, bytes, digest));
    }
    for used in uses {
        let found = match picked.iter().find(|p| p.0 == used.path) {
            Some(file) => Some(file.3.clone()),
            None => {
                let under: Vec<(String, String)> = picked
                    .iter()
                    .filter(|p| p.0.starts_with(&format!("{}/", used.path)))
                    .map(|p| (p.0.clone(), p.3.clone()))
                    .collect();
                (!under.is_empty()).then(|| tree_digest(&under))
            }
        };
        match found {
            None => {
                return Err(SnapshotError::Invalid(format!(
                    "{} is not in the source snapshot, but the stage uses it",
                    used.path
                )));
            }
            Some(digest) if digest != used.sha256 => {
                return Err(SnapshotError::Invalid(format!(
                    "{} in the source snapshot is {digest}, not {} as the plan (and the approved definition) says",
                    used.path, used.sha256
                )));
            }
            Some(_) => {}
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let io_err = |source| SnapshotError::Io {
        path: PathBuf::from("(selected source)"),
        source,
    };
    for (path, header, bytes, _) in &mut picked {
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            parent.push_str(part);
            parent.push('/');
            if dirs.insert(parent.clone()) {
                let mut header = dir_header();
                builder
                    .append_data(&mut header, &parent, io::empty())
                    .map_err(io_err)?;
            }
        }
        builder
            .append_data(header, &*path, bytes.as_slice())
            .map_err(io_err)?;
    }
    builder.into_inner().map_err(io_err)
}

fn dir_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header
}

impl SnapshotSource {
    /// The files of a snapshot made from a directory called `root_name`; the digests of
    /// their bytes are those of their text (see [`read_source`] for a snapshot's own).
    pub fn new(files: MemSource, root_name: Option<String>) -> Self {
        Self {
            files,
            root_name,
            unreadable: BTreeMap::new(),
            digests: BTreeMap::new(),
        }
    }

    /// The same, with the files [`read_noting_unreadable`] found unreadable: reading one
    /// is an error saying why.
    pub fn with_unreadable(mut self, unreadable: BTreeMap<PathBuf, Unreadable>) -> Self {
        self.unreadable = unreadable;
        self
    }

    /// The files.
    pub fn files(&self) -> &MemSource {
        &self.files
    }
}

impl Source for SnapshotSource {
    fn read(&self, path: &Path) -> Result<String, otto_pipeline::SourceError> {
        match self.unreadable.get(path) {
            Some(Unreadable::NotUtf8) => Err(otto_pipeline::SourceError::NotUtf8(path.into())),
            Some(Unreadable::TooLarge) => Err(otto_pipeline::SourceError::TooLarge {
                path: path.into(),
                limit: MAX_TEXT_FILE,
            }),
            None => self.files.read(path),
        }
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        self.files.kind(path)
    }

    fn sha256(&self, path: &Path) -> Result<String, otto_pipeline::SourceError> {
        match self.digests.get(path) {
            Some(digest) => Ok(digest.clone()),
            None => self.files.sha256(path),
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, otto_pipeline::SourceError> {
        self.files.list(dir)
    }

    fn dir_name(&self, dir: &Path) -> Option<String> {
        if dir.components().all(|c| c == Component::CurDir) {
            self.root_name.clone()
        } else {
            self.files.dir_name(dir)
        }
    }
}

impl Ignore {
    /// The rules for the directory `dir`: its `.gitignore` and `.ottoignore`, if any.
    pub fn from_dir(dir: &Path) -> Result<Self, SnapshotError> {
        let mut text = String::new();
        for name in [".gitignore", ".ottoignore"] {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(t) => {
                    text.push_str(&t);
                    text.push('\n');
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(SnapshotError::Io { path, source }),
            }
        }
        Ok(Self::parse(&text))
    }

    /// The rules written in `text`, one pattern a line.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .filter_map(Pattern::parse)
            .collect();
        Self { patterns }
    }

    /// Whether `path` (relative to the root, `/`-separated) is left out; `is_dir` says
    /// whether it is a directory.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        if is_dir && ALWAYS_IGNORED.contains(&name) {
            return true;
        }
        self.patterns.iter().any(|p| p.matches(path, name, is_dir))
    }
}

/// One ignore pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The components to match from the root, or one name to match at any depth.
    parts: Vec<String>,
    anchored: bool,
    dir_only: bool,
}

impl Pattern {
    fn parse(line: &str) -> Option<Self> {
        let (body, dir_only) = match line.strip_suffix('/') {
            Some(body) => (body, true),
            None => (line, false),
        };
        let anchored = body.contains('/');
        let body = body.trim_start_matches('/');
        if body.is_empty() {
            return None;
        }
        Some(Self {
            parts: body.split('/').map(str::to_owned).collect(),
            anchored,
            dir_only,
        })
    }

    fn matches(&self, path: &str, name: &str, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        if self.anchored {
            let comps: Vec<&str> = path.split('/').collect();
            let parts: Vec<&str> = self.parts.iter().map(String::as_str).collect();
            match_components(&parts, &comps)
        } else {
            self.parts
                .first()
                .is_some_and(|p| glob(p.as_bytes(), name.as_bytes()))
        }
    }
}

/// Matches path components against pattern components, where `**` matches any number.
fn match_components(parts: &[&str], comps: &[&str]) -> bool {
    match parts.split_first() {
        None => comps.is_empty(),
        Some((&"**", rest)) => (0..=comps.len()).any(|i| match_components(rest, &comps[i..])),
        Some((first, rest)) => match comps.split_first() {
            Some((c, more)) => glob(first.as_bytes(), c.as_bytes()) && match_components(rest, more),
            None => false,
        },
    }
}

/// Matches one name against a glob of `*` and `?`, iteratively (no backtracking blow-up).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn add_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    ignore: &Ignore,
    written: &mut Written,
) -> Result<(), SnapshotError> {
    let dir = root.join(rel);
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SnapshotError::Io { path, source }
    };
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        let full = root.join(&rel_path);
        let Some(rel_text) = rel_path.to_str().map(|s| s.replace('\\', "/")) else {
            return Err(SnapshotError::Invalid(format!(
                "{}: file names must be UTF-8",
                full.display()
            )));
        };
        let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let kind = meta.file_type();
        if ignore.is_ignored(&rel_text, kind.is_dir()) {
            written.ignored += 1;
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime_secs(&meta));
        header.set_uid(0);
        header.set_gid(0);
        let add = |r: io::Result<()>| r.map_err(io_err(&full));
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            add(builder.append_data(&mut header, format!("{rel_text}/"), io::empty()))?;
            add_dir(builder, root, &rel_path, ignore, written)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            add(builder.append_link(&mut header, &rel_text, &target))?;
        } else if kind.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if is_executable(&meta) { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = fs::File::open(&full).map_err(io_err(&full))?;
            // The size in the header is the size when listed: a file that changes while
            // it is read fails the snapshot rather than writing a broken archive.
            add(builder.append_data(&mut header, &rel_text, file.take(meta.len())))?;
            written.files += 1;
            written.bytes += meta.len();
        } else {
            // Sockets, fifos and devices are not source.
            written.ignored += 1;
        }
    }
    Ok(())
}

/// A file's modification time in whole seconds since 1970; 0 when it is earlier or unknown.
fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// A tar entry's path as a clean relative path: no root, no `..`, no `.`.
fn clean_path(path: &Path) -> Result<PathBuf, SnapshotError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(SnapshotError::Invalid(format!(
                    "{}: entries must stay inside the snapshot",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("Ottofile"), "steps { sh 'make' }\n").unwrap();
        fs::create_dir_all(p.join("src/deep")).unwrap();
        fs::write(p.join("src/deep/a.rs"), "fn main() {}\n").unwrap();
        fs::write(p.join("src/app.log"), "noise").unwrap();
        fs::create_dir_all(p.join(".git/objects")).unwrap();
        fs::write(p.join(".git/HEAD"), "ref").unwrap();
        fs::create_dir_all(p.join("target/debug")).unwrap();
        fs::write(p.join("target/debug/x"), "bin").unwrap();
        fs::create_dir_all(p.join("web/node_modules/x")).unwrap();
        fs::write(p.join("web/node_modules/x/i.js"), "js").unwrap();
        fs::create_dir_all(p.join("build")).unwrap();
        fs::write(p.join("build/out"), "o").unwrap();
        fs::write(p.join("binary"), [0xff, 0xfe, 0]).unwrap();
        fs::write(
            p.join(".gitignore"),
            "*.log\n/build/\n!keep.log\n# comment\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn snapshot_skips_ignored_paths_and_reads_back() {
        let dir = tree();
        let mut tar = Vec::new();
        let written = create(dir.path(), &mut tar).unwrap();
        assert_eq!(written.files, 4, "{written:?}"); // Ottofile, a.rs, binary, .gitignore
        let source = read(&tar).unwrap();
        let paths: Vec<_> = source.0.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(paths, [".gitignore", "Ottofile", "binary", "src/deep/a.rs"]);
        assert_eq!(source.read(Path::new("binary")).unwrap(), "");
        assert_eq!(source.kind(Path::new("src")), Some(EntryKind::Dir));
        assert_eq!(
            source.read(Path::new("Ottofile")).unwrap(),
            "steps { sh 'make' }\n"
        );
    }

    #[test]
    fn the_same_tree_with_the_same_times_gives_the_same_bytes() {
        let dir = tree();
        let ottofile = dir.path().join("Ottofile");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let set_time = |t| {
            fs::File::options()
                .write(true)
                .open(&ottofile)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        set_time(when);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        create(dir.path(), &mut a).unwrap();
        create(dir.path(), &mut b).unwrap();
        assert_eq!(a, b);
        // The time is part of the snapshot: a file touched is a different snapshot...
        set_time(when + std::time::Duration::from_secs(1));
        create(dir.path(), &mut c).unwrap();
        assert_ne!(a, c);
        // ...and the time is what the archive says.
        let mut archive = tar::Archive::new(&a[..]);
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap() == Path::new("Ottofile"))
            .unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
    }

    #[test]
    fn ignore_patterns() {
        let ignore = Ignore::parse("*.log\n/dist\ndocs/**/gen/\ntmp?/\n");
        assert!(ignore.is_ignored("a/b/x.log", false));
        assert!(ignore.is_ignored("dist", true));
        assert!(!ignore.is_ignored("sub/dist", true));
        assert!(ignore.is_ignored("docs/gen", true));
        assert!(ignore.is_ignored("docs/a/b/gen", true));
        assert!(!ignore.is_ignored("docs/a/b/gen", false));
        assert!(ignore.is_ignored("x/tmp1", true));
        assert!(!ignore.is_ignored("x/tmp12", true));
        assert!(ignore.is_ignored("deep/target", true));
        assert!(!ignore.is_ignored("deep/target", false));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
        assert!(glob(b"***", b""));
    }

    /// A hostile asker could send a plan whose `uses` digests are those the owner approved
    /// with a snapshot holding other bytes: the owner's selection checks every file.
    #[test]
    fn select_gives_only_the_used_files_and_checks_them_against_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("Ottofile"), "stage('D') { steps { sh 'x' } }\n").unwrap();
        fs::write(p.join("deploy.sh"), "echo deploy\n").unwrap();
        fs::create_dir_all(p.join("k8s/svc")).unwrap();
        fs::write(p.join("k8s/app.yaml"), "app").unwrap();
        fs::write(p.join("k8s/svc/svc.yaml"), "svc").unwrap();
        fs::write(p.join("k8s-other"), "not under k8s/").unwrap();
        fs::write(p.join("secret.env"), "PASSWORD=x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", p.join("k8s/link")).unwrap();
        let mut tar = Vec::new();
        create(p, &mut tar).unwrap();
        let source = read_source(&tar, None).unwrap();
        let used = |path: &str| Used {
            path: path.to_owned(),
            sha256: match source.kind(Path::new(path)) {
                Some(EntryKind::File) => source.sha256(Path::new(path)).unwrap(),
                _ => tree_digest(&[
                    (
                        "k8s/app.yaml".into(),
                        otto_pipeline::plan::sha256_digest(b"app"),
                    ),
                    (
                        "k8s/svc/svc.yaml".into(),
                        otto_pipeline::plan::sha256_digest(b"svc"),
                    ),
                ]),
            },
        };
        let uses = [used("deploy.sh"), used("k8s")];
        let selected = select(&tar, &uses).unwrap();
        let files = read(&selected).unwrap();
        let paths: Vec<_> = files.0.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(paths, ["deploy.sh", "k8s/app.yaml", "k8s/svc/svc.yaml"]);
        // The same selection twice is the same bytes (so the same blob), and a file keeps
        // its time and mode.
        assert_eq!(select(&tar, &uses).unwrap(), selected);
        let times = |tar: &[u8]| -> Vec<(String, u64, u32)> {
            let mut archive = tar::Archive::new(tar);
            archive
                .entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let h = e.header();
                    (
                        e.path().unwrap().display().to_string(),
                        h.mtime().unwrap(),
                        h.mode().unwrap(),
                    )
                })
                .filter(|(p, ..)| p == "deploy.sh")
                .collect()
        };
        assert_eq!(times(&selected), times(&tar));
        assert_eq!(times(&selected).len(), 1);

        // Bytes other than the plan's: refused with the path.
        let mut lying = uses.clone();
        lying[0].sha256 = otto_pipeline::plan::sha256_digest(b"echo old\n");
        let err = select(&tar, &lying).unwrap_err().to_string();
        assert!(
            err.contains("deploy.sh in the source snapshot is sha256:"),
            "{err}"
        );
        let mut lying = uses.clone();
        lying[1].sha256 = tree_digest(&[("k8s/app.yaml".into(), "sha256:00".into())]);
        let err = select(&tar, &lying).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid snapshot: k8s in the source"),
            "{err}"
        );
        // A used file that is not there.
        let missing = [Used {
            path: "gone.sh".into(),
            sha256: "sha256:00".into(),
        }];
        let err = select(&tar, &missing).unwrap_err().to_string();
        assert!(
            err.contains("gone.sh is not in the source snapshot"),
            "{err}"
        );
    }

    #[test]
    fn read_refuses_entries_that_climb_out_and_garbage() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`, so write the name into the header directly.
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        tar.append(&header, &b"x"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let err = read(&bytes).unwrap_err();
        assert!(err.to_string().contains("inside the snapshot"), "{err}");
        assert!(read(b"this is not a tar archive at all, not even close........").is_err());
    }
}

//! Workspace paths and tar archives, with every path kept inside the workspace.
//!
//! Step arguments, archive entries and cache paths come from Ottofiles and blobs, so
//! none of them may name a file outside the workspace: no absolute paths, no `..`, no
//! symbolic link that leads out.
#![warn(clippy::unwrap_used)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use otto_agent_protocol::uses::{self, Covered, Found, Place, Verdict};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, HeaderMode};

/// A relative path with no `..`, `.` parts dropped; refused with the reason otherwise.
pub(crate) fn relative(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "path '{text}' leaves the workspace ('..' is not allowed)"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "path '{text}' is absolute; give a path relative to the workspace"
                ));
            }
        }
    }
    Ok(out)
}

/// Enters `rel` below `base` (both inside the canonical workspace `root`), creating missing
/// directories, and returns its canonical path. Refuses a path that reaches outside `root`
/// through a symbolic link, before creating anything there.
pub(crate) fn enter_dir(root: &Path, base: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut current = base.to_owned();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::canonicalize(&current).map_err(|e| format!("'{}': {e}", rel.display()))?;
                if !target.starts_with(root) {
                    return Err(format!(
                        "path '{}' leads outside the workspace through a symbolic link",
                        rel.display()
                    ));
                }
                current = target;
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("'{}' is not a directory", rel.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|e| format!("'{}': {e}", rel.display()))?;
            }
            Err(e) => return Err(format!("'{}': {e}", rel.display())),
        }
    }
    let canonical = fs::canonicalize(&current).map_err(|e| format!("'{}': {e}", rel.display()))?;
    if !canonical.starts_with(root) {
        return Err(format!(
            "path '{}' leads outside the workspace",
            rel.display()
        ));
    }
    Ok(canonical)
}

/// The canonical path of an existing `rel` below `base`, `None` when nothing is there;
/// refused when it resolves outside `root`.
pub(crate) fn existing(root: &Path, base: &Path, rel: &Path) -> Result<Option<PathBuf>, String> {
    let path = base.join(rel);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("'{}': {e}", rel.display())),
        Ok(_) => {}
    }
    let canonical = fs::canonicalize(&path).map_err(|e| format!("'{}': {e}", rel.display()))?;
    if !canonical.starts_with(root) {
        return Err(format!(
            "path '{}' leads outside the workspace through a symbolic link",
            rel.display()
        ));
    }
    Ok(Some(canonical))
}

/// A tar archive written to a file, with its digest and size.
#[derive(Debug)]
pub(crate) struct Written {
    /// `sha256:<hex>` of the archive.
    pub(crate) digest: String,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// How much of each file's metadata an archive keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Times {
    /// Times and owners are left out, so equal trees give equal archives (artifacts).
    Drop,
    /// Modification times are kept, so tools that compare them (cargo, make) find restored
    /// outputs up to date (caches).
    Keep,
}

/// Writes a tar of `items` (name in the archive, existing source path) to `dest`.
/// Symbolic links are stored as links, never followed; sparse files are stored whole.
///
/// Stops with an error of kind [`io::ErrorKind::FileTooLarge`] as soon as the tar would
/// exceed `max_bytes`, so no more than that is written to disk.
pub(crate) fn write_tar(
    dest: &Path,
    items: &[(PathBuf, PathBuf)],
    times: Times,
    max_bytes: u64,
) -> io::Result<Written> {
    let file = fs::File::create(dest)?;
    let mut hashing = Hashing::new(io::BufWriter::new(file));
    hashing.limit = max_bytes;
    let mut builder = tar::Builder::new(hashing);
    builder.mode(match times {
        Times::Drop => HeaderMode::Deterministic,
        Times::Keep => HeaderMode::Complete,
    });
    builder.follow_symlinks(false);
    builder.sparse(false);
    for (name, source) in items {
        let meta = fs::symlink_metadata(source)?;
        let name = if name.as_os_str().is_empty() {
            Path::new(".")
        } else {
            name.as_path()
        };
        if meta.is_dir() {
            builder.append_dir_all(name, source)?;
        } else {
            builder.append_path_with_name(source, name)?;
        }
    }
    let mut hashing = builder.into_inner()?;
    hashing.flush()?;
    hashing
        .inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(Written {
        digest: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size: hashing.size,
    })
}

/// The files an approval covers in the workspace `root`: archive entries extracted under
/// it are judged against them (see [`otto_agent_protocol::uses`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard<'a> {
    /// The canonical workspace.
    pub(crate) root: &'a Path,
    /// What its approval covers.
    pub(crate) covered: &'a Covered,
}

/// What [`extract_tar`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// Entries written.
    pub(crate) written: usize,
    /// Entries left out because the workspace holds them already as approved.
    pub(crate) kept: usize,
}

/// Extracts the tar at `archive` into the directory `dest` (inside the workspace).
/// Refuses, before writing it, any entry that is absolute, holds `..`, is a symbolic link
/// leading outside `dest`, a hard link or a device; refuses writing through an existing
/// link that leads out. With a `guard`, also refuses an entry that would replace, shadow
/// or add to a file the approval covers, wherever the links already in the workspace lead
/// it, and leaves out one that is already there as approved.
pub(crate) fn extract_tar(
    archive: &Path,
    dest: &Path,
    guard: Option<Guard<'_>>,
) -> Result<Extracted, String> {
    let file = fs::File::open(archive).map_err(|e| format!("cannot open archive: {e}"))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    tar.set_overwrite(true);
    let mut done = Extracted::default();
    let entries = tar.entries().map_err(|e| format!("bad archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad archive entry: {e}"))?
            .into_owned();
        let shown = path.display().to_string();
        let rel = relative(&shown).map_err(|e| format!("refused archive entry: {e}"))?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("bad archive entry '{shown}': {e}"))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !link_stays_inside(&rel, &target) {
                    return Err(format!(
                        "refused archive entry '{shown}': a symbolic link to '{}' leads outside the workspace",
                        target.display()
                    ));
                }
            }
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            other => {
                return Err(format!(
                    "refused archive entry '{shown}': entries of type {other:?} are not supported"
                ));
            }
        }
        if let Some(guard) = guard {
            let is_dir = kind == EntryType::Directory;
            let (at, existing) = landing(guard.root, dest, &rel, is_dir)
                .map_err(|e| format!("refused archive entry '{shown}': {e}"))?;
            let judge = |entry| guard.covered.judge(&at, existing, entry);
            let verdict = match (guard.covered.place(&at), kind) {
                (Place::File { .. }, EntryType::Regular | EntryType::Continuous) => {
                    let digest = hash_reader(&mut entry)
                        .map_err(|e| format!("cannot read archive entry '{shown}': {e}"))?;
                    judge(uses::Entry::File(&digest))
                }
                (_, EntryType::Directory) => judge(uses::Entry::Dir),
                // A sparse file is judged as something other than the covered bytes.
                (_, _) => judge(uses::Entry::Other),
            };
            match verdict {
                Verdict::Write => {}
                Verdict::Skip => {
                    done.kept += 1;
                    continue;
                }
                Verdict::Refuse(why) => {
                    return Err(format!("refused archive entry '{shown}': {why}"));
                }
            }
        }
        let written = entry
            .unpack_in(dest)
            .map_err(|e| format!("cannot extract '{shown}': {}", cause(&e)))?;
        if !written {
            return Err(format!("refused archive entry '{shown}'"));
        }
        done.written += 1;
    }
    Ok(done)
}

/// Why `error` happened: the innermost error it wraps (the archive crate's own message,
/// "failed to unpack `PATH`", says what it did, and only its source says why), on one line.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    let mut depth = 0;
    while let Some(next) = inner.source() {
        if depth == 16 {
            break;
        }
        inner = next;
        depth += 1;
    }
    inner.to_string().replace(['\n', '\r'], " ")
}

/// Where an archive entry `rel` extracted into `dest` lands, relative to the workspace
/// `root` (`/`-separated, empty for the root itself), and how many of that path's leading
/// components are there already: the symbolic links already on its way are followed, as
/// extracting it would follow them, and so is the entry's own path when it is a directory
/// (extracting a directory over a link to one keeps the link). Refused when it would lead
/// outside `root` or through a link that leads nowhere.
fn landing(
    root: &Path,
    dest: &Path,
    rel: &Path,
    follow_last: bool,
) -> Result<(String, usize), String> {
    let parts: Vec<&std::ffi::OsStr> = rel.components().map(|c| c.as_os_str()).collect();
    let mut current = dest.to_owned();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !rest.is_empty() || (last && !follow_last) {
            rest.push(part);
            continue;
        }
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                current = fs::canonicalize(&next).map_err(|e| {
                    format!(
                        "'{}' is a symbolic link that leads nowhere ({e})",
                        next.display()
                    )
                })?;
            }
            Ok(_) => current = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => rest.push(part),
            Err(e) => return Err(format!("'{}': {e}", next.display())),
        }
    }
    let inside = current
        .strip_prefix(root)
        .map_err(|_| "it leads outside the workspace through a symbolic link".to_owned())?;
    let mut out: Vec<String> = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut existing = out.len();
    // The entry's own name, not followed, is there when its directory is and holds it.
    if let [last] = rest.as_slice()
        && !follow_last
        && fs::symlink_metadata(current.join(last)).is_ok()
    {
        existing += 1;
    }
    out.extend(rest.iter().map(|p| p.to_string_lossy().into_owned()));
    Ok((out.join("/"), existing))
}

/// What the workspace `root` holds at the used path `path` (see [`uses::Found`]): every
/// directory on the way must be one, not a symbolic link, and so must everything under a
/// used directory be a regular file or a directory.
pub(crate) fn find_used(root: &Path, path: &str) -> Found {
    let rel = match relative(path) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        Ok(_) => return Found::Other("it names the whole workspace".into()),
        Err(e) => return Found::Other(e),
    };
    let mut current = root.to_owned();
    let mut shown = String::new();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(&part.as_os_str().to_string_lossy());
        let meta = match fs::symlink_metadata(&current) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Found::Missing,
            Err(e) => return Found::Other(format!("'{shown}': {e}")),
        };
        if meta.file_type().is_symlink() {
            return Found::Other(format!("'{shown}' is a symbolic link"));
        }
        if i + 1 < parts.len() {
            if !meta.is_dir() {
                return Found::Other(format!("'{shown}' is not a directory"));
            }
            continue;
        }
        if meta.is_file() {
            return match hash_file(&current) {
                Ok(digest) => Found::File(digest),
                Err(e) => Found::Other(format!("'{shown}': {e}")),
            };
        }
        if !meta.is_dir() {
            return Found::Other(format!("'{shown}' is not a regular file or a directory"));
        }
    }
    let mut files = Vec::new();
    let mut todo = vec![(current, shown)];
    while let Some((dir, name)) = todo.pop() {
        let listed = match fs::read_dir(&dir) {
            Ok(listed) => listed,
            Err(e) => return Found::Other(format!("'{name}': {e}")),
        };
        for entry in listed {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => return Found::Other(format!("'{name}': {e}")),
            };
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                return Found::Other(format!("'{name}' holds a name that is not UTF-8"));
            };
            let sub = format!("{name}/{file_name}");
            let meta = match fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) => return Found::Other(format!("'{sub}': {e}")),
            };
            if meta.file_type().is_symlink() {
                return Found::Other(format!("'{sub}' is a symbolic link"));
            } else if meta.is_dir() {
                todo.push((entry.path(), sub));
            } else if meta.is_file() {
                match hash_file(&entry.path()) {
                    Ok(digest) => files.push((sub, digest)),
                    Err(e) => return Found::Other(format!("'{sub}': {e}")),
                }
            } else {
                return Found::Other(format!("'{sub}' is not a regular file or a directory"));
            }
        }
    }
    Found::Dir(files)
}

/// The first thing the workspace `root` holds directly in a directory that leads to a used
/// path beyond what is covered, with why (see [`Covered::stray`]). The directories are
/// real ones: [`find_used`] found no link on the way to a used path.
pub(crate) fn find_stray(root: &Path, covered: &Covered) -> Result<(), String> {
    for dir in covered.sealed() {
        let listed =
            fs::read_dir(root.join(dir)).map_err(|e| format!("'{}': {e}", display(dir)))?;
        let mut names = Vec::new();
        for entry in listed {
            let entry = entry.map_err(|e| format!("'{}': {e}", display(dir)))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(format!("'{}' holds a name that is not UTF-8", display(dir)));
            };
            names.push(name.to_owned());
        }
        names.sort();
        if let Some(why) = names.iter().find_map(|name| covered.stray(dir, name)) {
            return Err(why);
        }
    }
    Ok(())
}

fn display(dir: &str) -> &str {
    if dir.is_empty() { "." } else { dir }
}

/// `sha256:<hex>` of a regular file's bytes, never through a symbolic link.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(i32::MAX))
        .open(path)?;
    hash_reader(&mut file)
}

/// `sha256:<hex>` of everything `reader` gives.
fn hash_reader(reader: &mut impl io::Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Whether a symbolic link at `entry` (relative to the extraction root) pointing at
/// `target` resolves, by its text, to a place inside the root.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    let mut depth: usize = entry.components().count().saturating_sub(1);
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    /// Writing past this many bytes fails.
    limit: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
            limit: u64::MAX,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size.saturating_add(buf.len() as u64) > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {} bytes", self.limit),
            ));
        }
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What [`copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    /// Files, directories and symbolic links.
    pub(crate) entries: u64,
    /// Bytes of the files.
    pub(crate) bytes: u64,
}

/// Copies what is inside the directory `from` into the existing directory `to`, without
/// the paths in `exclude` (relative to `from`, as [`relative`] gives them) and everything
/// under them: a workspace handed from one stage to another on the same machine.
///
/// A step made the tree, so nothing in it is followed or trusted: a symbolic link is copied
/// as a link, and only when its text leads to a place inside `from` (as extraction judges
/// links); a link leading out, a fifo, a socket or a device refuses the whole copy. Files
/// are opened without following links and without blocking, and refused unless they are
/// regular files when open. Files keep their contents and modification times (build tools
/// compare them); files and directories keep their permission bits without setuid, setgid
/// and sticky, and stay readable (directories usable) by the copy's owner, the agent's
/// user, which owns everything copied. Hard links become separate files.
pub(crate) fn copy_tree(from: &Path, to: &Path, exclude: &[PathBuf]) -> Result<Copied, String> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let mut copied = Copied::default();
    // Directories get their modes and times once everything inside them is written.
    let mut dirs: Vec<(PathBuf, u32, std::time::SystemTime)> = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let listing =
            fs::read_dir(from.join(&rel)).map_err(|e| format!("'{}': {e}", shown(&rel)))?;
        for entry in listing {
            let entry = entry.map_err(|e| format!("'{}': {e}", shown(&rel)))?;
            let rel = rel.join(entry.file_name());
            if exclude.contains(&rel) {
                continue;
            }
            let source = from.join(&rel);
            let dest = to.join(&rel);
            let meta =
                fs::symlink_metadata(&source).map_err(|e| format!("'{}': {e}", shown(&rel)))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&dest).map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                dirs.push((
                    dest,
                    meta.mode() & 0o777 | 0o700,
                    meta.modified()
                        .map_err(|e| format!("'{}': {e}", shown(&rel)))?,
                ));
                todo.push(rel);
            } else if kind.is_symlink() {
                let target =
                    fs::read_link(&source).map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                if !link_stays_inside(&rel, &target) {
                    return Err(format!(
                        "'{}' is a symbolic link to '{}', which leads outside the workspace",
                        shown(&rel),
                        target.display()
                    ));
                }
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
            } else if kind.is_file() {
                let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
                let mut input = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(flags.bits() as i32)
                    .open(&source)
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                let opened = input
                    .metadata()
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                if !opened.is_file() {
                    return Err(format!("'{}' changed while it was copied", shown(&rel)));
                }
                let mut output = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                copied.bytes += io::copy(&mut input, &mut output)
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
                output
                    .set_permissions(fs::Permissions::from_mode(opened.mode() & 0o777 | 0o400))
                    .and_then(|()| output.set_modified(opened.modified()?))
                    .map_err(|e| format!("'{}': {e}", shown(&rel)))?;
            } else {
                return Err(format!(
                    "'{}' is not a file, a directory or a symbolic link (a fifo, socket or device)",
                    shown(&rel)
                ));
            }
            copied.entries += 1;
        }
    }
    for (dir, mode, modified) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .and_then(|()| fs::File::open(&dir)?.set_modified(modified))
            .map_err(|e| format!("'{}': {e}", dir.display()))?;
    }
    Ok(copied)
}

/// A relative path for a message.
fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        rel.display().to_string()
    }
}

/// Gives `dir` and everything under it to `uid`:`gid`, symbolic links themselves rather
/// than what they point to.
pub(crate) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn relative_paths_refuse_escapes() {
        assert_eq!(relative("a/./b/").expect("ok"), PathBuf::from("a/b"));
        assert_eq!(relative(".").expect("ok"), PathBuf::new());
        assert!(relative("../x").expect_err("escape").contains("'..'"));
        assert!(relative("a/../../x").is_err());
        assert!(relative("/etc").expect_err("absolute").contains("absolute"));
    }

    #[test]
    fn links_are_judged_by_where_they_lead() {
        assert!(link_stays_inside(Path::new("a/l"), Path::new("b")));
        assert!(link_stays_inside(Path::new("a/l"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("a/l"), Path::new("../../b")));
        assert!(!link_stays_inside(Path::new("l"), Path::new("/etc/passwd")));
        assert!(link_stays_inside(
            Path::new("a/b/l"),
            Path::new("../c/../d")
        ));
    }

    #[test]
    fn entering_a_directory_refuses_links_leading_out() {
        let outside = tempfile::tempdir().expect("tempdir");
        let ws = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(ws.path()).expect("canonical");
        symlink(outside.path(), root.join("out")).expect("symlink");
        let err = enter_dir(&root, &root, Path::new("out/sub")).expect_err("escape");
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!outside.path().join("sub").exists());
        let made = enter_dir(&root, &root, Path::new("a/b")).expect("inside");
        assert_eq!(made, root.join("a/b"));
        assert!(made.is_dir());
    }

    #[test]
    fn cache_archives_keep_times_and_store_sparse_files_whole() {
        let ws = tempfile::tempdir().expect("tempdir");
        let sparse = ws.path().join("sparse.bin");
        let file = fs::File::create(&sparse).expect("create");
        // A file with a hole, as linkers leave them: mostly unwritten, then a few bytes.
        file.set_len(4 << 20).expect("extend");
        std::os::unix::fs::FileExt::write_at(&file, b"end", (4 << 20) - 3).expect("write");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        file.set_modified(old).expect("set mtime");
        drop(file);

        let tar = ws.path().join("cache.tar");
        let items = [(PathBuf::from("sparse.bin"), sparse.clone())];
        write_tar(&tar, &items, Times::Keep, u64::MAX).expect("tar");
        let out = tempfile::tempdir().expect("tempdir");
        extract_tar(&tar, out.path(), None).expect("extract");
        let restored = out.path().join("sparse.bin");
        assert_eq!(
            fs::read(&restored).expect("read"),
            fs::read(&sparse).expect("read")
        );
        let mtime = fs::metadata(&restored)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(
            mtime, old,
            "restored outputs keep their times, so build tools see them as fresh"
        );
    }

    #[test]
    fn a_tree_round_trips_and_equal_trees_give_equal_digests() {
        let ws = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(ws.path()).expect("canonical");
        fs::create_dir_all(root.join("dist/sub")).expect("mkdir");
        fs::write(root.join("dist/a.txt"), "alpha").expect("write");
        fs::write(root.join("dist/sub/b.txt"), "beta").expect("write");
        symlink("a.txt", root.join("dist/link")).expect("symlink");
        let scratch = tempfile::tempdir().expect("tempdir");
        let items = vec![(PathBuf::from("dist"), root.join("dist"))];
        let one =
            write_tar(&scratch.path().join("1.tar"), &items, Times::Drop, u64::MAX).expect("tar");
        let two =
            write_tar(&scratch.path().join("2.tar"), &items, Times::Drop, u64::MAX).expect("tar");
        assert_eq!(one.digest, two.digest);
        assert_eq!(
            one.size,
            fs::metadata(scratch.path().join("1.tar"))
                .expect("stat")
                .len()
        );

        let out = tempfile::tempdir().expect("tempdir");
        let dest = fs::canonicalize(out.path()).expect("canonical");
        extract_tar(&scratch.path().join("1.tar"), &dest, None).expect("extract");
        assert_eq!(
            fs::read_to_string(dest.join("dist/sub/b.txt")).expect("read"),
            "beta"
        );
        assert_eq!(
            fs::read_link(dest.join("dist/link")).expect("link"),
            Path::new("a.txt")
        );
    }

    #[test]
    fn a_handed_on_tree_keeps_files_links_and_times_and_leaves_out_what_is_excluded() {
        use std::os::unix::fs::PermissionsExt as _;
        let ws = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(ws.path()).expect("canonical");
        fs::create_dir_all(root.join("node_modules/pkg")).expect("mkdir");
        fs::create_dir_all(root.join(".npm/_cacache")).expect("mkdir");
        fs::write(root.join("node_modules/pkg/index.js"), "x").expect("write");
        fs::write(root.join(".npm/_cacache/blob"), "cached").expect("write");
        fs::write(root.join("tool"), "#!/bin/sh").expect("write");
        fs::set_permissions(root.join("tool"), fs::Permissions::from_mode(0o6755)).expect("chmod");
        symlink("../pkg/index.js", root.join("node_modules/pkg/self")).expect("symlink");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(root.join("node_modules/pkg/index.js"))
            .and_then(|f| f.set_modified(old))
            .expect("mtime");

        let out = tempfile::tempdir().expect("tempdir");
        let copied = copy_tree(&root, out.path(), &[PathBuf::from(".npm")]).expect("copy");
        // node_modules, pkg, index.js, self, tool
        assert_eq!(
            copied,
            Copied {
                entries: 5,
                bytes: 10
            }
        );
        assert!(
            !out.path().join(".npm").exists(),
            "the cache travels in the cache"
        );
        let index = out.path().join("node_modules/pkg/index.js");
        assert_eq!(
            fs::metadata(&index)
                .and_then(|m| m.modified())
                .expect("mtime"),
            old
        );
        assert_eq!(
            fs::read_link(out.path().join("node_modules/pkg/self")).expect("link"),
            Path::new("../pkg/index.js")
        );
        let mode = fs::metadata(out.path().join("tool")).expect("stat").mode();
        assert_eq!(
            mode & 0o7777,
            0o755,
            "no setuid or setgid bit survives the copy"
        );
    }

    #[test]
    fn a_handed_on_tree_with_a_link_out_or_a_fifo_is_refused_without_reading_them() {
        let secret = tempfile::tempdir().expect("tempdir");
        fs::write(secret.path().join("key"), "private").expect("write");
        for (name, make) in [("link", 0), ("dir link", 1), ("fifo", 2)] {
            let ws = tempfile::tempdir().expect("tempdir");
            let root = fs::canonicalize(ws.path()).expect("canonical");
            fs::create_dir(root.join("sub")).expect("mkdir");
            let entry = root.join("sub/x");
            match make {
                0 => symlink(secret.path().join("key"), &entry).expect("symlink"),
                1 => symlink("../../..", &entry).expect("symlink"),
                _ => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &entry,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .expect("mkfifo"),
            }
            let out = tempfile::tempdir().expect("tempdir");
            // A fifo would block a reader forever: the copy must refuse it, not open it.
            let err = copy_tree(&root, out.path(), &[]).expect_err(name);
            assert!(err.contains("sub/x"), "{name}: {err}");
            let leaked = fs::read_dir(out.path().join("sub"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(leaked, 0, "{name}: nothing of it was copied");
        }
    }
}

//! Loading: the root file, the libraries it uses, and the files its `from` paths name.
//!
//! Every file is read through a [`Source`] (the repository's, or the embedded stdlib's),
//! added to the [`SourceMap`] and parsed once. Relative paths resolve against the directory
//! of the file that names them and may not leave the file's boundary: the directory holding
//! the root Ottofile, an external library's cache directory or fetched files, or the stdlib.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::ast::{self, StageItem, Str, Use};
use crate::diagnostic::Diagnostic;
use crate::source::{EntryKind, Source};
use crate::span::{FileId, SourceMap, Span};

use super::{Libraries, LibraryPin, stdlib};

/// Where a file's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// The repository (and the library cache under it).
    Repo,
    /// The stdlib embedded in this crate.
    Stdlib,
    /// An external library the caller fetched: its index in [`Libraries`].
    Fetched(usize),
}

/// One loaded and parsed file.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) ast: ast::File,
    /// Its path relative to its boundary.
    pub(crate) rel: PathBuf,
    pub(crate) origin: Origin,
    pub(crate) boundary: PathBuf,
    /// The path shown to people.
    pub(crate) display: String,
    /// The library it was loaded as part of, if any.
    pub(crate) library: Option<String>,
    /// The libraries its `use` names.
    pub(crate) uses: Vec<LibId>,
    /// The library it belongs to (the first that loaded it); its blueprints see each other.
    pub(crate) member_of: Option<LibId>,
}

/// Index of a library in [`Loaded::libraries`].
pub(crate) type LibId = usize;

/// A library: a set of files with a content digest.
#[derive(Debug)]
pub(crate) struct Lib {
    pub(crate) name: String,
    pub(crate) digest: String,
    pub(crate) files: Vec<FileId>,
}

/// Everything loaded for one plan.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Indexed by `FileId`.
    pub(crate) units: Vec<Unit>,
    pub(crate) libraries: Vec<Lib>,
    /// Files named by relative `from` paths, by (naming file, path as written).
    pub(crate) from_paths: HashMap<(FileId, String), Vec<FileId>>,
    /// Whether some file had syntax errors.
    pub(crate) syntax_errors: bool,
    /// Libraries pinned to a commit that are neither cached nor given.
    pub(crate) wanted: Vec<LibraryPin>,
}

impl Loaded {
    pub(crate) fn unit(&self, id: FileId) -> Option<&Unit> {
        self.units.get(id.0 as usize)
    }
}

/// Loads the root file (given as text) and everything it reaches.
pub(crate) fn load(
    repo: &dyn Source,
    libraries: &Libraries,
    root_dir: &Path,
    root_rel: &Path,
    text: String,
    sources: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> Loaded {
    let mut loader = Loader {
        repo,
        libraries,
        root_dir,
        sources,
        diags,
        loaded: Loaded::default(),
        by_path: HashMap::new(),
        libs_by_path: HashMap::new(),
        stack: Vec::new(),
    };
    let boundary = root_dir.to_path_buf();
    loader.add_file(Origin::Repo, &boundary, root_rel, text, None);
    loader.loaded
}

/// The content digest of a library: see `docs/plan-format.md`. For each file, sorted by its
/// path relative to the library (bytewise, `/`-separated): the path's length as a big-endian
/// u64, the path, the content's length as a big-endian u64, the content.
pub(crate) fn library_digest<'a>(files: impl IntoIterator<Item = (String, &'a str)>) -> String {
    let mut files: Vec<(String, &str)> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Sha256::new();
    for (path, text) in files {
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Resolves `target` (which starts with `./` or `../`) against `dir`, lexically. `None` when
/// it leaves the boundary (climbs above `dir`'s root) or is absolute.
pub(crate) fn resolve_relative(dir: &Path, target: &str) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in dir.components().chain(Path::new(target).components()) {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Whether a `use` or `from` target is a relative path.
pub(crate) fn is_relative(target: &str) -> bool {
    target.starts_with("./") || target.starts_with("../") || target == "." || target == ".."
}

struct Loader<'a> {
    repo: &'a dyn Source,
    libraries: &'a Libraries,
    root_dir: &'a Path,
    sources: &'a mut SourceMap,
    diags: &'a mut Vec<Diagnostic>,
    loaded: Loaded,
    by_path: HashMap<(Origin, PathBuf), FileId>,
    libs_by_path: HashMap<(Origin, PathBuf), LibId>,
    /// Files being loaded, outermost first: a `use` of one of them is a cycle.
    stack: Vec<FileId>,
}

/// What a relative path names.
enum Target {
    /// The files, and the directory their library-relative names start from.
    Files(Vec<PathBuf>, PathBuf),
    Missing,
    Empty,
}

impl Loader<'_> {
    fn source(&self, origin: Origin) -> &dyn Source {
        match origin {
            Origin::Repo => self.repo,
            Origin::Stdlib => stdlib::source(),
            Origin::Fetched(index) => match self.libraries.get(index) {
                Some((_, Ok(files))) => files,
                _ => &NOTHING,
            },
        }
    }

    fn display(&self, origin: Origin, real: &Path) -> String {
        match origin {
            Origin::Stdlib => format!("<stdlib>/{}", real.display()),
            Origin::Fetched(index) => match self.libraries.get(index) {
                Some((pin, _)) => format!(
                    "<{}@{}>/{}",
                    pin.location,
                    pin.commit.get(..12).unwrap_or(&pin.commit),
                    real.display()
                ),
                None => real.display().to_string(),
            },
            Origin::Repo => match real.strip_prefix(self.root_dir) {
                Ok(rel) if !self.root_dir.as_os_str().is_empty() => rel.display().to_string(),
                _ => real.display().to_string(),
            },
        }
    }

    /// Adds a file's text, parses it, and loads what it uses.
    fn add_file(
        &mut self,
        origin: Origin,
        boundary: &Path,
        rel: &Path,
        text: String,
        library: Option<String>,
    ) -> FileId {
        let real = boundary.join(rel);
        let display = self.display(origin, &real);
        let id = self.sources.add(PathBuf::from(&display), text);
        let (ast, syntax) = match self.sources.get(id) {
            Some(file) => crate::parse(id, &file.text),
            None => (ast::File::default(), Vec::new()),
        };
        self.loaded.syntax_errors |= !syntax.is_empty();
        self.diags.extend(syntax);
        self.loaded.units.push(Unit {
            ast,
            rel: rel.to_path_buf(),
            origin,
            boundary: boundary.to_path_buf(),
            display,
            library,
            uses: Vec::new(),
            member_of: None,
        });
        self.by_path.insert((origin, real), id);
        self.stack.push(id);
        self.load_uses(id);
        self.load_from_paths(id);
        self.stack.pop();
        id
    }

    /// Reads and adds a file unless it is loaded already.
    fn file(
        &mut self,
        origin: Origin,
        boundary: &Path,
        rel: &Path,
        library: Option<String>,
        at: Span,
    ) -> Option<FileId> {
        let real = boundary.join(rel);
        if let Some(&id) = self.by_path.get(&(origin, real.clone())) {
            return Some(id);
        }
        match self.source(origin).read(&real) {
            Ok(text) => Some(self.add_file(origin, boundary, rel, text, library)),
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    format!("cannot read {}: {e}", self.display(origin, &real)),
                    at,
                ));
                None
            }
        }
    }

    fn unit(&self, id: FileId) -> &Unit {
        // Ids handed out by `add_file` always index `units`.
        &self.loaded.units[id.0 as usize]
    }

    fn load_uses(&mut self, id: FileId) {
        let uses = self.unit(id).ast.uses.clone();
        for u in &uses {
            let lib = match u {
                Use::Stdlib(span) => self.stdlib_lib(*span),
                Use::Path(target) => self.path_lib(id, target),
                Use::Bare(target) => self.bare_lib(id, target),
                Use::External {
                    location,
                    sha256,
                    commit,
                } => self.external_lib(location, sha256, commit.as_ref()),
            };
            if let Some(lib) = lib {
                self.loaded.units[id.0 as usize].uses.push(lib);
            }
        }
    }

    fn stdlib_lib(&mut self, span: Span) -> Option<LibId> {
        let key = (Origin::Stdlib, PathBuf::new());
        if let Some(&lib) = self.libs_by_path.get(&key) {
            return Some(lib);
        }
        let mut files = Vec::new();
        for (name, _) in stdlib::FILES {
            files.extend(self.file(
                Origin::Stdlib,
                Path::new(""),
                Path::new(name),
                Some("stdlib".into()),
                span,
            ));
        }
        Some(self.add_lib(key, "stdlib".into(), stdlib::digest(), files))
    }

    fn path_lib(&mut self, id: FileId, target: &Str) -> Option<LibId> {
        let (origin, boundary, dir) = {
            let unit = self.unit(id);
            let dir = unit.rel.parent().map(Path::to_path_buf).unwrap_or_default();
            (unit.origin, unit.boundary.clone(), dir)
        };
        if !is_relative(&target.value) {
            self.diags.push(
                Diagnostic::new(
                    format!("'{}' is not a relative path", target.value),
                    target.span,
                )
                .with_hint("in-repository libraries start with ./ or ../"),
            );
            return None;
        }
        let rel = self.resolve(&dir, target)?;
        let key = (origin, boundary.join(&rel));
        if let Some(&lib) = self.libs_by_path.get(&key) {
            if self.check_cycle(lib, target.span) {
                return None;
            }
            return Some(lib);
        }
        let (files, base) = self.target_files(origin, &boundary, &rel, target)?;
        for f in &files {
            let real = boundary.join(f);
            if let Some(&on) = self.by_path.get(&(origin, real))
                && self.report_if_on_stack(on, target.span)
            {
                return None;
            }
        }
        let name = self.display(origin, &boundary.join(&rel));
        let mut ids = Vec::new();
        for f in &files {
            ids.extend(self.file(origin, &boundary, f, Some(name.clone()), target.span));
        }
        let digest = self.files_digest(&ids, &base);
        Some(self.add_lib(key, name, digest, ids))
    }

    /// `'blueprints/rubygem'`: the in-repository path `./blueprints/rubygem` when it exists,
    /// else an external library that was not pinned.
    fn bare_lib(&mut self, id: FileId, target: &Str) -> Option<LibId> {
        let relative = Str {
            value: format!("./{}", target.value),
            span: target.span,
        };
        if self.exists_relative(id, &relative.value) {
            return self.path_lib(id, &relative);
        }
        self.diags.push(
            Diagnostic::new(
                "external library must be pinned: add sha256 '<digest>'",
                target.span,
            )
            .with_label("not pinned, and not a path in the repository")
            .with_hint(format!(
                "'./{}' is no .otto file or directory here; anything else is external and needs its sha256 content digest",
                target.value
            )),
        );
        None
    }

    /// Whether a relative path written in file `id` names a file, `.otto` file or directory
    /// of `.otto` files inside the file's boundary.
    fn exists_relative(&self, id: FileId, target: &str) -> bool {
        let unit = self.unit(id);
        let dir = unit.rel.parent().map(Path::to_path_buf).unwrap_or_default();
        resolve_relative(&dir, target).is_some_and(|rel| {
            matches!(
                self.lookup(unit.origin, &unit.boundary, &rel),
                Target::Files(..)
            )
        })
    }

    fn external_lib(
        &mut self,
        location: &Str,
        sha256: &Str,
        commit: Option<&Str>,
    ) -> Option<LibId> {
        let pin = commit.map(|commit| LibraryPin {
            location: location.value.clone(),
            commit: commit.value.clone(),
        });
        if let Some(index) = pin.as_ref().and_then(|p| self.libraries.position(p)) {
            if let Some((pin, Err(reason))) = self.libraries.get(index) {
                self.diags.push(
                    Diagnostic::new(
                        format!(
                            "external library {} at commit {} cannot be had: {reason}",
                            location.value, pin.commit
                        ),
                        location.span,
                    )
                    .with_label("fetched by the node, and refused"),
                );
                return None;
            }
            let holder = format!("commit {}", pin.as_ref().map_or("", |p| p.commit.as_str()));
            return self.pinned_lib(
                Origin::Fetched(index),
                PathBuf::new(),
                location,
                sha256,
                &holder,
            );
        }
        let dir = self
            .root_dir
            .join(".otto")
            .join("libs")
            .join(format!("sha256-{}", sha256.value));
        if self.libs_by_path.contains_key(&(Origin::Repo, dir.clone())) {
            return self.pinned_lib(Origin::Repo, dir, location, sha256, "the library cache");
        }
        if self.repo.kind(&dir) != Some(EntryKind::Dir) {
            let diagnostic = match pin {
                Some(pin) => {
                    let d = Diagnostic::new(
                        format!(
                            "external library {} at commit {} has not been fetched",
                            location.value, pin.commit
                        ),
                        location.span,
                    )
                    .with_hint(format!(
                        "the node that starts a run fetches it; without a node, put its files in {}",
                        self.display(Origin::Repo, &dir)
                    ));
                    if !self.loaded.wanted.contains(&pin) {
                        self.loaded.wanted.push(pin);
                    }
                    d
                }
                None => Diagnostic::new(
                    format!(
                        "external library {} is not in the library cache, and without a commit pin it cannot be fetched",
                        location.value
                    ),
                    location.span,
                )
                .with_hint(format!(
                    "add commit '<id>' to fetch it from its git repository, or put its files in {}",
                    self.display(Origin::Repo, &dir)
                )),
            };
            self.diags.push(diagnostic);
            return None;
        }
        self.pinned_lib(Origin::Repo, dir, location, sha256, "the library cache")
    }

    /// Loads the external library whose files are the `.otto` files directly in `dir` of
    /// `origin`, checking them against the pinned digest (`holder` says where they are).
    fn pinned_lib(
        &mut self,
        origin: Origin,
        dir: PathBuf,
        location: &Str,
        sha256: &Str,
        holder: &str,
    ) -> Option<LibId> {
        let key = (origin, dir.clone());
        if let Some(&lib) = self.libs_by_path.get(&key) {
            return Some(lib);
        }
        let names = self.otto_files(origin, &dir, Path::new(""));
        let mut texts = Vec::new();
        for name in &names {
            match self.source(origin).read(&dir.join(name)) {
                Ok(text) => texts.push((name.clone(), text)),
                Err(e) => {
                    self.diags.push(Diagnostic::new(
                        format!("cannot read external library {}: {e}", location.value),
                        location.span,
                    ));
                    return None;
                }
            }
        }
        let digest = library_digest(texts.iter().map(|(n, t)| (slash_path(n), t.as_str())));
        let pinned = format!("sha256:{}", sha256.value);
        if digest != pinned {
            self.diags.push(
                Diagnostic::new("pinned digest does not match", sha256.span)
                    .with_label(format!("{holder} holds {digest}"))
                    .with_hint(format!(
                        "the files of {} changed since it was pinned",
                        location.value
                    )),
            );
            return None;
        }
        let mut ids = Vec::new();
        for (name, text) in texts {
            let real = dir.join(&name);
            let id = match self.by_path.get(&(origin, real)) {
                Some(&id) => id,
                None => self.add_file(origin, &dir, &name, text, Some(location.value.clone())),
            };
            ids.push(id);
        }
        Some(self.add_lib(key, location.value.clone(), digest, ids))
    }

    fn add_lib(
        &mut self,
        key: (Origin, PathBuf),
        name: String,
        digest: String,
        files: Vec<FileId>,
    ) -> LibId {
        let id = self.loaded.libraries.len();
        for file in &files {
            if let Some(unit) = self.loaded.units.get_mut(file.0 as usize) {
                unit.member_of.get_or_insert(id);
            }
        }
        self.loaded.libraries.push(Lib {
            name,
            digest,
            files,
        });
        self.libs_by_path.insert(key, id);
        id
    }

    /// Content digest of a library whose files are named relative to `base`.
    fn files_digest(&self, ids: &[FileId], base: &Path) -> String {
        let mut files = Vec::new();
        for id in ids {
            let unit = self.unit(*id);
            let name = unit.rel.strip_prefix(base).unwrap_or(&unit.rel);
            if let Some(file) = self.sources.get(*id) {
                files.push((slash_path(name), file.text.as_str()));
            }
        }
        library_digest(files)
    }

    fn check_cycle(&mut self, lib: LibId, span: Span) -> bool {
        let files = self
            .loaded
            .libraries
            .get(lib)
            .map(|l| l.files.clone())
            .unwrap_or_default();
        files.into_iter().any(|f| self.report_if_on_stack(f, span))
    }

    fn report_if_on_stack(&mut self, file: FileId, span: Span) -> bool {
        let Some(pos) = self.stack.iter().position(|&f| f == file) else {
            return false;
        };
        let mut chain: Vec<String> = self.stack[pos..]
            .iter()
            .map(|&f| self.unit(f).display.clone())
            .collect();
        chain.push(self.unit(file).display.clone());
        self.diags.push(
            Diagnostic::new(format!("use cycle: {}", chain.join(" → ")), span)
                .with_label("this use closes the cycle"),
        );
        true
    }

    fn resolve(&mut self, dir: &Path, target: &Str) -> Option<PathBuf> {
        let rel = resolve_relative(dir, &target.value);
        if rel.is_none() {
            self.diags.push(
                Diagnostic::new(
                    format!("'{}' leaves the directory of the Ottofile", target.value),
                    target.span,
                )
                .with_hint("libraries and blueprints must live inside the repository"),
            );
        }
        rel
    }

    /// The files a relative target names: the file, the file with `.otto`, or the `.otto`
    /// files of the directory. Reports a problem and returns `None` when there are none.
    fn target_files(
        &mut self,
        origin: Origin,
        boundary: &Path,
        rel: &Path,
        target: &Str,
    ) -> Option<(Vec<PathBuf>, PathBuf)> {
        match self.lookup(origin, boundary, rel) {
            Target::Files(files, base) => Some((files, base)),
            Target::Missing => {
                self.diags.push(
                    Diagnostic::new(format!("cannot find '{}'", target.value), target.span)
                        .with_label("no such file, .otto file or directory"),
                );
                None
            }
            Target::Empty => {
                self.diags.push(Diagnostic::new(
                    format!("the directory '{}' holds no .otto files", target.value),
                    target.span,
                ));
                None
            }
        }
    }

    fn lookup(&self, origin: Origin, boundary: &Path, rel: &Path) -> Target {
        let source = self.source(origin);
        let real = boundary.join(rel);
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        match source.kind(&real) {
            Some(EntryKind::File) => Target::Files(vec![rel.to_path_buf()], parent),
            Some(EntryKind::Dir) => {
                let files = self.otto_files(origin, boundary, rel);
                if files.is_empty() {
                    Target::Empty
                } else {
                    Target::Files(files, rel.to_path_buf())
                }
            }
            None => {
                let mut with_ext = rel.as_os_str().to_owned();
                with_ext.push(".otto");
                let with_ext = PathBuf::from(with_ext);
                if source.kind(&boundary.join(&with_ext)) == Some(EntryKind::File) {
                    Target::Files(vec![with_ext], parent)
                } else {
                    Target::Missing
                }
            }
        }
    }

    /// The `.otto` files directly in `boundary/rel`, as paths relative to `boundary`, sorted.
    fn otto_files(&self, origin: Origin, boundary: &Path, rel: &Path) -> Vec<PathBuf> {
        let source = self.source(origin);
        let dir = boundary.join(rel);
        let Ok(entries) = source.list(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "otto"))
            .filter(|p| source.kind(p) == Some(EntryKind::File))
            .filter_map(|p| p.file_name().map(|n| rel.join(n)))
            .collect();
        files.sort();
        files
    }

    /// Loads the files that relative `from` paths in file `id` name.
    fn load_from_paths(&mut self, id: FileId) {
        let mut targets = Vec::new();
        {
            let ast = &self.unit(id).ast;
            let pipeline = ast.pipeline.iter().flat_map(|p| &p.items);
            let blueprints = ast.blueprints.iter().flat_map(|b| &b.items);
            collect_from_targets(pipeline.chain(blueprints), &mut targets);
        }
        let (origin, boundary, dir) = {
            let unit = self.unit(id);
            let dir = unit.rel.parent().map(Path::to_path_buf).unwrap_or_default();
            (unit.origin, unit.boundary.clone(), dir)
        };
        for written in targets {
            let key = (id, written.value.clone());
            if self.loaded.from_paths.contains_key(&key) {
                continue;
            }
            let target = if is_relative(&written.value) {
                written
            } else {
                // `from 'blueprints/rubygem'`: a path when it exists, else a blueprint name.
                let relative = format!("./{}", written.value);
                if !self.exists_relative(id, &relative) {
                    continue;
                }
                Str {
                    value: relative,
                    span: written.span,
                }
            };
            let Some(rel) = self.resolve(&dir, &target) else {
                continue;
            };
            let Some((files, _)) = self.target_files(origin, &boundary, &rel, &target) else {
                continue;
            };
            let mut ids = Vec::new();
            for f in &files {
                ids.extend(self.file(origin, &boundary, f, None, target.span));
            }
            self.loaded.from_paths.insert(key, ids);
        }
    }
}

fn collect_from_targets<'a>(items: impl Iterator<Item = &'a StageItem>, out: &mut Vec<Str>) {
    for item in items {
        match item {
            StageItem::Stage(stage) => collect_from_targets(stage.children.iter(), out),
            StageItem::Parallel { items, .. } | StageItem::Each { items, .. } => {
                collect_from_targets(items.iter(), out);
            }
            StageItem::From { target, .. } => {
                let bare_path =
                    target.value.contains('/') && crate::parser::could_be_in_repo(&target.value);
                if is_relative(&target.value) || bare_path {
                    out.push(target.clone());
                }
            }
        }
    }
}

/// What a fetched library that is not there reads as.
static NOTHING: crate::source::MemSource =
    crate::source::MemSource(std::collections::BTreeMap::new());

/// A relative path with `/` separators, for digests.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_lexically_and_stay_inside() {
        assert_eq!(
            resolve_relative(Path::new("a/b"), "../c"),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(
            resolve_relative(Path::new(""), "./lib"),
            Some(PathBuf::from("lib"))
        );
        assert_eq!(resolve_relative(Path::new("a"), "../../x"), None);
        assert_eq!(resolve_relative(Path::new(""), "/etc/passwd"), None);
    }

    #[test]
    fn library_digest_frames_paths_and_contents() {
        let a = library_digest([("a.otto".to_owned(), "x"), ("b.otto".to_owned(), "y")]);
        let swapped = library_digest([("b.otto".to_owned(), "y"), ("a.otto".to_owned(), "x")]);
        assert_eq!(a, swapped, "order of listing does not matter");
        let moved = library_digest([("a.ottox".to_owned(), ""), ("b.otto".to_owned(), "y")]);
        assert_ne!(a, moved, "bytes cannot move between path and content");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }
}

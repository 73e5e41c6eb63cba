//! File access for the planner.
//!
//! The planner never touches the filesystem itself: it reads Ottofiles and libraries
//! through a [`Source`]. [`FsSource`] is the one adapter to the real filesystem;
//! [`MemSource`] holds files in memory, for tests and for the embedded stdlib.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Why a file or directory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Nothing exists at the path.
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// The file is larger than the size cap.
    #[error("{} is too large: Ottofiles and libraries are limited to {} KiB", path.display(), limit / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// The file is not valid UTF-8 text.
    #[error("{} is not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    /// The path is a directory where a file was expected, or the other way round.
    #[error("{} is not a {expected}", path.display())]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// "file" or "directory".
        expected: &'static str,
    },
    /// The path resolves (through a symbolic link) to a place outside the repository.
    #[error("{} leads outside the repository (a symbolic link?): only files inside it are read", .0.display())]
    Outside(PathBuf),
    /// Any other I/O failure.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Read access to files, as the planner needs it.
pub trait Source {
    /// Reads a whole file as UTF-8 text, refusing files over the source's size cap.
    fn read(&self, path: &Path) -> Result<String, SourceError>;

    /// Says whether `path` is a file, a directory, or nothing.
    fn kind(&self, path: &Path) -> Option<EntryKind>;

    /// Lists the entries of a directory (full paths), sorted.
    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, SourceError>;

    /// `sha256:<hex>` of a file's bytes (for `uses`). By default, of the text [`Self::read`]
    /// gives; a source that holds files which are not text, or too large to read as text,
    /// hashes their bytes.
    fn sha256(&self, path: &Path) -> Result<String, SourceError> {
        self.read(path)
            .map(|text| crate::plan::sha256_digest(text.as_bytes()))
    }

    /// The name people know a directory by: its last path component, or for `.`, `..` and
    /// the empty path (which have none) whatever the source can tell. `None` when unknown.
    fn dir_name(&self, dir: &Path) -> Option<String> {
        dir.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

/// The default size cap of [`FsSource`]: 4 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the real filesystem.
#[derive(Debug, Clone)]
pub struct FsSource {
    max_file_bytes: u64,
    /// When set (canonical), files that resolve outside this directory are refused.
    root: Option<PathBuf>,
}

impl FsSource {
    /// A filesystem source with the default size cap ([`DEFAULT_MAX_FILE_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_file_bytes(DEFAULT_MAX_FILE_BYTES)
    }

    /// A filesystem source that refuses files larger than `max_file_bytes`.
    pub fn with_max_file_bytes(max_file_bytes: u64) -> Self {
        Self {
            max_file_bytes,
            root: None,
        }
    }

    /// The same source, refusing to read files that resolve (through symbolic links)
    /// outside the directory `root`, as a node does for a snapshot (which holds no links
    /// it follows). Fails when `root` cannot be resolved.
    pub fn confined_to(mut self, root: &Path) -> std::io::Result<Self> {
        self.root = Some(fs::canonicalize(root)?);
        Ok(self)
    }
}

impl Default for FsSource {
    fn default() -> Self {
        Self::new()
    }
}

impl Source for FsSource {
    fn sha256(&self, path: &Path) -> Result<String, SourceError> {
        use sha2::Digest as _;
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(io)?;
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    fn dir_name(&self, dir: &Path) -> Option<String> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let named = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
        named(dir).or_else(|| named(&fs::canonicalize(dir).ok()?))
    }

    fn read(&self, path: &Path) -> Result<String, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(root) = &self.root {
            match fs::canonicalize(path) {
                Ok(real) if real.starts_with(root) => {}
                Ok(_) => return Err(SourceError::Outside(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SourceError::NotFound(path.to_path_buf()));
                }
                Err(e) => return Err(io(e)),
            }
        }
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound(path.to_path_buf()));
            }
            Err(e) => return Err(io(e)),
        };
        if file.metadata().map_err(io)?.is_dir() {
            return Err(SourceError::WrongKind {
                path: path.to_path_buf(),
                expected: "file",
            });
        }
        // Read one byte past the cap so a file that grows while being read is still caught.
        let mut bytes = Vec::new();
        file.take(self.max_file_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(SourceError::TooLarge {
                path: path.to_path_buf(),
                limit: self.max_file_bytes,
            });
        }
        String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8(path.to_path_buf()))
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let meta = fs::metadata(path).ok()?;
        if meta.is_dir() {
            Some(EntryKind::Dir)
        } else if meta.is_file() {
            Some(EntryKind::File)
        } else {
            None
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
        let entries = fs::read_dir(dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound(dir.to_path_buf()),
            _ => SourceError::Io {
                path: dir.to_path_buf(),
                source,
            },
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SourceError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            paths.push(entry.path());
        }
        paths.sort();
        Ok(paths)
    }
}

/// Files held in memory, keyed by path. Directories are implied by the files' paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemSource(pub BTreeMap<PathBuf, String>);

impl MemSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file and returns the source, for chaining.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.insert(path, text);
        self
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) {
        self.0.insert(path.into(), text.into());
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.0.keys().any(|p| p != path && p.starts_with(path))
    }
}

impl Source for MemSource {
    fn read(&self, path: &Path) -> Result<String, SourceError> {
        match self.0.get(path) {
            Some(text) => Ok(text.clone()),
            None if self.is_dir(path) => Err(SourceError::WrongKind {
                path: path.to_path_buf(),
                expected: "file",
            }),
            None => Err(SourceError::NotFound(path.to_path_buf())),
        }
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        if self.0.contains_key(path) {
            Some(EntryKind::File)
        } else if self.is_dir(path) {
            Some(EntryKind::Dir)
        } else {
            None
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
        if self.0.contains_key(dir) {
            return Err(SourceError::WrongKind {
                path: dir.to_path_buf(),
                expected: "directory",
            });
        }
        let mut entries: Vec<PathBuf> = self
            .0
            .keys()
            .filter_map(|p| {
                let rest = p.strip_prefix(dir).ok()?;
                let first = rest.components().next()?;
                Some(dir.join(first))
            })
            .collect();
        if entries.is_empty() {
            return Err(SourceError::NotFound(dir.to_path_buf()));
        }
        entries.sort();
        entries.dedup();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_source_lists_files_and_implied_directories() {
        let src = MemSource::new()
            .with("/r/Ottofile", "x")
            .with("/r/lib/b.otto", "b")
            .with("/r/lib/a.otto", "a")
            .with("/r/lib/deep/c.otto", "c");
        assert_eq!(src.kind(Path::new("/r/lib")), Some(EntryKind::Dir));
        assert_eq!(src.kind(Path::new("/r/Ottofile")), Some(EntryKind::File));
        assert_eq!(src.kind(Path::new("/r/li")), None);
        assert_eq!(
            src.list(Path::new("/r/lib")).unwrap(),
            vec![
                PathBuf::from("/r/lib/a.otto"),
                PathBuf::from("/r/lib/b.otto"),
                PathBuf::from("/r/lib/deep"),
            ]
        );
        assert!(matches!(
            src.read(Path::new("/r/lib")),
            Err(SourceError::WrongKind { .. })
        ));
        assert!(matches!(
            src.read(Path::new("/r/nope")),
            Err(SourceError::NotFound(_))
        ));
    }

    #[test]
    fn fs_source_caps_size_and_checks_utf8() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("small"), "hello").unwrap();
        fs::write(dir.path().join("big"), "0123456789").unwrap();
        fs::write(dir.path().join("binary"), [0xff, 0xfe]).unwrap();
        let src = FsSource::with_max_file_bytes(5);
        assert_eq!(src.read(&dir.path().join("small")).unwrap(), "hello");
        assert!(matches!(
            src.read(&dir.path().join("big")),
            Err(SourceError::TooLarge { limit: 5, .. })
        ));
        assert!(matches!(
            src.read(&dir.path().join("binary")),
            Err(SourceError::NotUtf8(_))
        ));
        assert!(matches!(
            src.read(&dir.path().join("missing")),
            Err(SourceError::NotFound(_))
        ));
        assert_eq!(src.kind(dir.path()), Some(EntryKind::Dir));
        assert_eq!(
            src.list(dir.path()).unwrap(),
            vec![
                dir.path().join("big"),
                dir.path().join("binary"),
                dir.path().join("small"),
            ]
        );
    }
}

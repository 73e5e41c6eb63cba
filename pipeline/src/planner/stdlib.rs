//! The stdlib: blueprints that ship inside Otto, embedded in the binary.
//!
//! `use { stdlib }` makes them available to `from`. Each file defines one blueprint named
//! after the file. The library's digest is computed from the embedded files exactly as for
//! any other library, so a plan records which stdlib it was made with.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::source::MemSource;

use super::load::library_digest;

/// The stdlib's files: (file name, text).
pub(crate) const FILES: [(&str, &str); 8] = [
    ("cargo.otto", include_str!("../../stdlib/cargo.otto")),
    ("go.otto", include_str!("../../stdlib/go.otto")),
    ("gradle.otto", include_str!("../../stdlib/gradle.otto")),
    ("make.otto", include_str!("../../stdlib/make.otto")),
    ("maven.otto", include_str!("../../stdlib/maven.otto")),
    ("npm.otto", include_str!("../../stdlib/npm.otto")),
    ("python.otto", include_str!("../../stdlib/python.otto")),
    ("rails.otto", include_str!("../../stdlib/rails.otto")),
];

/// The stdlib as a source whose paths are the file names.
pub(crate) fn source() -> &'static MemSource {
    static SOURCE: OnceLock<MemSource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        MemSource(
            FILES
                .iter()
                .map(|(name, text)| (PathBuf::from(name), (*text).to_owned()))
                .collect(),
        )
    })
}

/// The stdlib's content digest.
pub(crate) fn digest() -> String {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST
        .get_or_init(|| library_digest(FILES.iter().map(|(n, t)| ((*n).to_owned(), *t))))
        .clone()
}

/// Whether the stdlib has a blueprint with this name.
pub(crate) fn has_blueprint(name: &str) -> bool {
    FILES
        .iter()
        .any(|(file, _)| file.strip_suffix(".otto") == Some(name))
}

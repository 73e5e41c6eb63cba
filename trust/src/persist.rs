//! The only file I/O of this crate: key files and the trust store file.
//!
//! Files are written atomically: to a temporary file in the same directory, created with
//! mode 0600, flushed to disk, then renamed over the target, and the directory is flushed
//! so the rename survives a crash. A key file (PKCS#8 PEM) is refused on load when its mode
//! lets the group or others read or write it; the trust store is refused when the group or
//! others may write it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::{KeyError, NodeKey, OrgKey};
use crate::store::{FormatError, MAX_STORE_LEN, TrustStore};

/// The largest key file read, in bytes.
pub const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The operating system refused an operation.
    // The cause is in the message and is not a `source`, so that error chains (anyhow's
    // `{:#}`) print it once.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `read`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A key file can be read or written by the group or others.
    #[error(
        "key file {} has mode {mode:04o}, which lets other users access it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The trust store file can be written by the group or others.
    #[error(
        "trust store {} has mode {mode:04o}, which lets other users change it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    StoreFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a regular file, or is too large for what it should hold.
    #[error("{} is not a plausible {what} file", path.display())]
    NotPlausible {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// The key file is empty (or only whitespace).
    #[error("key file {} is empty", path.display())]
    EmptyKeyFile {
        /// The file.
        path: PathBuf,
    },
    /// A key file to rewrite is a symbolic link: rewriting would replace the link with a
    /// copy of the key and leave the file it points to as it was.
    #[error(
        "{} is a symbolic link to {}; it is left alone so the key stays where the link points: migrate {} itself",
        path.display(),
        target.display(),
        target.display()
    )]
    KeyFileLink {
        /// The link.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// The key file does not hold an Ed25519 PKCS#8 PEM key.
    #[error("key file {}: {error}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with the key.
        error: KeyError,
    },
    /// The trust store file is not a valid trust store.
    #[error("{}: {error}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: FormatError,
    },
}

/// Writes a node key as PKCS#8 PEM to `path` with mode 0600.
pub fn save_node_key(path: &Path, key: &NodeKey) -> Result<(), PersistError> {
    write_private_file(path, key.to_pkcs8_pem().as_bytes())
}

/// Reads a node key written by [`save_node_key`] (or any Ed25519 PKCS#8 PEM key file),
/// refusing a file other users may access.
pub fn load_node_key(path: &Path) -> Result<NodeKey, PersistError> {
    let pem = read_key_pem(path)?;
    NodeKey::from_pkcs8_pem(&pem).map_err(|source| PersistError::Key {
        path: path.to_owned(),
        error: source,
    })
}

/// Writes an org key as PKCS#8 PEM to `path` with mode 0600.
pub fn save_org_key(path: &Path, key: &OrgKey) -> Result<(), PersistError> {
    write_private_file(path, key.to_pkcs8_pem().as_bytes())
}

/// Reads an org key written by [`save_org_key`], refusing a file other users may access.
pub fn load_org_key(path: &Path) -> Result<OrgKey, PersistError> {
    let pem = read_key_pem(path)?;
    OrgKey::from_pkcs8_pem(&pem).map_err(|source| PersistError::Key {
        path: path.to_owned(),
        error: source,
    })
}

/// Rewrites the Ed25519 PKCS#8 key file at `path` (a node, org or CA key) in the form
/// Otto writes now, PKCS#8 v1 (RFC 8410), if it is in another form (the v2 documents with
/// the public key attached that Otto wrote before). Returns whether it rewrote the file.
/// The file keeps mode 0600 and is replaced atomically; a file that does not hold an
/// Ed25519 key is left alone and reported, and so is a symbolic link to a file that needs
/// rewriting ([`PersistError::KeyFileLink`]).
pub fn migrate_key_file(path: &Path) -> Result<bool, PersistError> {
    let pem = read_key_pem(path)?;
    let key = crate::keys::Keypair::from_pem(&pem).map_err(|source| PersistError::Key {
        path: path.to_owned(),
        error: source,
    })?;
    let v1 = key.to_pem();
    if pem.trim() == v1.trim() {
        return Ok(false);
    }
    let meta = fs::symlink_metadata(path).map_err(|e| io_error("inspect", path, e))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| io_error("read the link", path, e))?;
        // A relative target is relative to the link's directory.
        let target = path
            .parent()
            .map_or(target.clone(), |dir| dir.join(&target));
        return Err(PersistError::KeyFileLink {
            path: path.to_owned(),
            target,
        });
    }
    write_private_file(path, v1.as_bytes())?;
    Ok(true)
}

/// Writes the trust store as TOML to `path`, atomically, with mode 0600.
pub fn save_trust_store(path: &Path, store: &TrustStore) -> Result<(), PersistError> {
    write_private_file(path, store.to_toml().as_bytes())
}

/// Reads the trust store at `path`; a missing file is an empty store. Refuses a file the
/// group or others may write.
pub fn load_trust_store(path: &Path) -> Result<TrustStore, PersistError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TrustStore::new()),
        Err(source) => return Err(io_error("open", path, source)),
    };
    let meta = file.metadata().map_err(|e| io_error("inspect", path, e))?;
    if !meta.is_file() || meta.len() > MAX_STORE_LEN as u64 {
        return Err(PersistError::NotPlausible {
            path: path.to_owned(),
            what: "trust store",
        });
    }
    if let Some(mode) = mode_of(&meta).filter(|m| m & 0o022 != 0) {
        return Err(PersistError::StoreFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    TrustStore::from_toml(&text).map_err(|source| PersistError::Store {
        path: path.to_owned(),
        error: source,
    })
}

/// Writes `bytes` to `path` atomically, as a file only its owner may read and write.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| PersistError::NotPlausible {
        path: path.to_owned(),
        what: "target",
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error("remove stale", &tmp, e));
        }
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .map_err(|e| io_error("create", &tmp, e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_error("rename into", path, e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Flush the directory entry so the rename is durable; not every platform can open a
    // directory, so failing to open it is not an error.
    if let Ok(dir) = File::open(dir) {
        dir.sync_all().map_err(|e| io_error("sync", path, e))?;
    }
    Ok(())
}

/// Reads a key file's PEM text, refusing it when other users may access it.
fn read_key_pem(path: &Path) -> Result<Zeroizing<String>, PersistError> {
    let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let meta = file.metadata().map_err(|e| io_error("inspect", path, e))?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_LEN {
        return Err(PersistError::NotPlausible {
            path: path.to_owned(),
            what: "key",
        });
    }
    if let Some(mode) = mode_of(&meta).filter(|m| m & 0o077 != 0) {
        return Err(PersistError::KeyFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    // Sized up front so that reading never reallocates and leaves copies of the key behind.
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize));
    (&mut file)
        .take(MAX_KEY_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    if text.trim().is_empty() {
        return Err(PersistError::EmptyKeyFile {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// The permission bits of a file, where the platform has them.
fn mode_of(meta: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> PersistError {
    PersistError::Io {
        op,
        path: path.to_owned(),
        error: source,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::AliasTarget;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn node_key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = NodeKey::from_seed(&[3; 32]);
        save_node_key(&path, &key).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_node_key(&path).unwrap().public_key(), key.public_key());
        assert!(!dir.path().join(".node.key.tmp").exists());
    }

    #[test]
    fn migrate_rewrites_a_v2_key_file_as_v1_once() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let v2 = ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        write_private_file(&path, v2.as_bytes()).unwrap();
        let before = load_node_key(&path).unwrap().public_key();
        assert!(migrate_key_file(&path).unwrap(), "a v2 file is rewritten");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, *NodeKey::from_seed(&[3; 32]).to_pkcs8_pem());
        assert_eq!(load_node_key(&path).unwrap().public_key(), before);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            !migrate_key_file(&path).unwrap(),
            "a v1 file is left as it is"
        );
        let junk = dir.path().join("junk.key");
        write_private_file(&junk, b"not a key").unwrap();
        let err = migrate_key_file(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.key"), "{err}");
        assert_eq!(fs::read(&junk).unwrap(), b"not a key");
    }

    #[test]
    fn migrate_leaves_a_symlinked_key_file_and_its_target_alone() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let dir = tempfile::tempdir().unwrap();
        let offline = dir.path().join("offline");
        fs::create_dir(&offline).unwrap();
        let target = offline.join("acme-org.key");
        let v2 = ed25519_dalek::SigningKey::from_bytes(&[4; 32])
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        write_private_file(&target, v2.as_bytes()).unwrap();
        let link = dir.path().join("org.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = migrate_key_file(&link).unwrap_err();
        assert!(matches!(err, PersistError::KeyFileLink { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("org.key is a symbolic link to"), "{text}");
        assert!(
            text.contains(&format!("migrate {}", target.display())),
            "{text}"
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), *v2);
        // The target itself migrates in place, and then the link is fine as it is.
        assert!(migrate_key_file(&target).unwrap());
        assert!(!migrate_key_file(&link).unwrap());
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            load_org_key(&link).unwrap().public_key(),
            OrgKey::from_seed(&[4; 32]).public_key()
        );
    }

    #[test]
    fn an_empty_key_file_is_reported_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write_private_file(&path, b"\n").unwrap();
        let err = load_node_key(&path).unwrap_err().to_string();
        assert!(err.ends_with("node.key is empty"), "{err}");
        // An I/O error's cause is in the message, not repeated as a source.
        let err = load_node_key(&dir.path().join("missing")).unwrap_err();
        assert!(std::error::Error::source(&err).is_none());
        assert!(err.to_string().contains("No such file"), "{err}");
    }

    #[test]
    fn overwrite_keeps_mode_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("org.key");
        save_org_key(&path, &OrgKey::from_seed(&[1; 32])).unwrap();
        // A stale temporary file with loose permissions from a crash is replaced.
        let stale = dir.path().join(".org.key.tmp");
        fs::write(&stale, b"junk").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        let key = OrgKey::from_seed(&[2; 32]);
        save_org_key(&path, &key).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_org_key(&path).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn key_file_readable_by_others_is_refused_with_its_name_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save_node_key(&path, &NodeKey::from_seed(&[3; 32])).unwrap();
        for loose in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            let err = load_node_key(&path).unwrap_err();
            assert!(
                matches!(&err, PersistError::KeyFileMode { mode, .. } if *mode == loose),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{loose:04o}")), "{text}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_node_key(&path).is_ok());
    }

    #[test]
    fn bad_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        assert!(matches!(
            load_node_key(&missing),
            Err(PersistError::Io { op: "open", .. })
        ));
        let garbage = dir.path().join("garbage.key");
        write_private_file(&garbage, b"not a key").unwrap();
        assert!(matches!(
            load_org_key(&garbage),
            Err(PersistError::Key {
                error: KeyError::Pem(_),
                ..
            })
        ));
        assert!(matches!(
            load_node_key(dir.path()),
            Err(PersistError::NotPlausible { what: "key", .. })
        ));
        let huge = dir.path().join("huge.key");
        write_private_file(&huge, &vec![b'a'; MAX_KEY_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            load_node_key(&huge),
            Err(PersistError::NotPlausible { .. })
        ));
    }

    #[test]
    fn trust_store_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        assert_eq!(load_trust_store(&path).unwrap(), TrustStore::new());
        let mut store = TrustStore::new();
        store
            .pin_org("acme", OrgKey::from_seed(&[1; 32]).public_key(), 5)
            .unwrap();
        store
            .set_alias("a", AliasTarget::Org("acme".into()))
            .unwrap();
        save_trust_store(&path, &store).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_trust_store(&path).unwrap(), store);
    }

    #[test]
    fn trust_store_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        save_trust_store(&path, &TrustStore::new()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_trust_store(&path).is_ok(),
            "readable by others is fine"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o662)).unwrap();
        assert!(matches!(
            load_trust_store(&path),
            Err(PersistError::StoreFileMode { mode: 0o662, .. })
        ));
        write_private_file(&path, b"version = 7").unwrap();
        assert!(matches!(
            load_trust_store(&path),
            Err(PersistError::Store {
                error: FormatError::Version(7),
                ..
            })
        ));
        assert!(matches!(
            load_trust_store(dir.path()),
            Err(PersistError::NotPlausible { .. })
        ));
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/key");
        assert!(matches!(
            write_private_file(&path, b"x"),
            Err(PersistError::Io { op: "create", .. })
        ));
    }
}

//! The blob store on real directories.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use otto_node::blobs::{BlobError, BlobStore, Digest, DigestError};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn files_under(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn a_blob_is_stored_under_its_digest_and_read_back() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    let blobs = BlobStore::open(&root)?;
    let bytes = vec![7u8; 300_000];
    let digest = blobs.put(&bytes[..])?;
    assert_eq!(digest, Digest::of(&bytes));
    assert!(blobs.has(&digest));
    assert_eq!(blobs.size(&digest)?, 300_000);
    assert_eq!(blobs.read(&digest)?, bytes);
    blobs.verify(&digest)?;
    let mut streamed = Vec::new();
    blobs.file(&digest)?.read_to_end(&mut streamed)?;
    assert_eq!(streamed, bytes);

    let hex = digest.hex();
    let expected = root.join("sha256").join(&hex[..2]).join(&hex[2..]);
    assert_eq!(
        files_under(&root)?,
        [expected.to_string_lossy().into_owned()]
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn storing_the_same_bytes_again_does_not_rewrite_the_blob() -> Result {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    let blobs = BlobStore::open(&root)?;
    let digest = blobs.put_bytes(b"same")?;
    let hex = digest.hex();
    let path = root.join("sha256").join(&hex[..2]).join(&hex[2..]);
    let inode = fs::metadata(&path)?.ino();
    assert_eq!(blobs.put_bytes(b"same")?, digest);
    assert_eq!(fs::metadata(&path)?.ino(), inode);
    assert!(files_under(&root.join("tmp"))?.is_empty());
    Ok(())
}

#[test]
fn empty_blobs_work() -> Result {
    let dir = tempfile::tempdir()?;
    let blobs = BlobStore::open(dir.path())?;
    let digest = blobs.put_bytes(b"")?;
    assert_eq!(
        digest.to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(blobs.read(&digest)?, b"");
    Ok(())
}

#[test]
fn a_corrupted_blob_is_detected() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    let blobs = BlobStore::open(&root)?;
    let digest = blobs.put_bytes(b"the artifact")?;
    let hex = digest.hex();
    let path = root.join("sha256").join(&hex[..2]).join(&hex[2..]);
    fs::write(&path, b"the artifacT")?;
    assert!(matches!(
        blobs.read(&digest),
        Err(BlobError::Corrupt { expected, actual })
            if expected == digest && actual == Digest::of(b"the artifacT")
    ));
    assert!(matches!(
        blobs.verify(&digest),
        Err(BlobError::Corrupt { .. })
    ));
    // A damaged copy of the same size is not replaced by put (it is not read back), but
    // one of another size is.
    fs::write(&path, b"short")?;
    blobs.put_bytes(b"the artifact")?;
    blobs.verify(&digest)?;
    Ok(())
}

#[test]
fn missing_blobs_are_reported() -> Result {
    let dir = tempfile::tempdir()?;
    let blobs = BlobStore::open(dir.path())?;
    let digest = Digest::of(b"never stored");
    assert!(!blobs.has(&digest));
    assert!(matches!(blobs.read(&digest), Err(BlobError::NotFound(d)) if d == digest));
    assert!(matches!(blobs.file(&digest), Err(BlobError::NotFound(_))));
    assert!(matches!(blobs.size(&digest), Err(BlobError::NotFound(_))));
    Ok(())
}

#[test]
fn opening_discards_half_written_blobs() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    drop(BlobStore::open(&root)?);
    fs::write(root.join("tmp").join("123-0"), vec![1u8; 1000])?;
    fs::create_dir(root.join("tmp").join("stray"))?;
    fs::write(root.join("tmp").join("stray").join("x"), b"x")?;
    let blobs = BlobStore::open(&root)?;
    assert!(files_under(&root)?.is_empty());
    assert!(fs::read_dir(root.join("tmp"))?.next().is_none());
    blobs.put_bytes(b"works")?;
    Ok(())
}

#[test]
fn put_expected_refuses_other_bytes_and_keeps_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    let blobs = BlobStore::open(&root)?;
    let promised = Digest::of(b"what the peer promised");
    assert!(matches!(
        blobs.put_expected(&b"what the peer sent"[..], &promised),
        Err(BlobError::Mismatch { expected, .. }) if expected == promised
    ));
    assert!(files_under(&root)?.is_empty());
    assert_eq!(
        blobs.put_expected(&b"what the peer promised"[..], &promised)?,
        promised
    );
    Ok(())
}

struct FailingReader(usize);

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_source_stores_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("blobs");
    let blobs = BlobStore::open(&root)?;
    assert!(matches!(
        blobs.put(FailingReader(200_000)),
        Err(BlobError::Source(_))
    ));
    assert!(files_under(&root)?.is_empty());
    Ok(())
}

#[test]
fn digest_parsing_accepts_only_the_canonical_form() {
    let good = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        good.parse::<Digest>().map(|d| d.to_string()),
        Ok(good.clone())
    );
    let cases: &[(&str, DigestError)] = &[
        ("", DigestError::Prefix),
        ("sha256", DigestError::Prefix),
        ("SHA256:00", DigestError::Prefix),
        (&"ab".repeat(32), DigestError::Prefix),
        ("sha512:00", DigestError::Prefix),
        ("sha256:", DigestError::Length(0)),
        ("sha256:abc", DigestError::Length(3)),
        (
            &format!("sha256:{}", "a".repeat(63)),
            DigestError::Length(63),
        ),
        (
            &format!("sha256:{}", "a".repeat(65)),
            DigestError::Length(65),
        ),
        (&format!("sha256:{}", "AB".repeat(32)), DigestError::NotHex),
        (&format!("sha256:{}", "g".repeat(64)), DigestError::NotHex),
        (
            &format!("sha256:../../{}", "a".repeat(58)),
            DigestError::NotHex,
        ),
        (&format!("sha256:{} ", "a".repeat(63)), DigestError::NotHex),
        (&format!("sha256:{}é", "a".repeat(62)), DigestError::NotHex),
    ];
    for (text, error) in cases {
        assert_eq!(text.parse::<Digest>().as_ref(), Err(error), "{text:?}");
    }
    let json = format!("\"{good}\"");
    assert!(serde_json::from_str::<Digest>(&json).is_ok());
    assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
}

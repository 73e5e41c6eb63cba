//! External Ottofile libraries pinned to a commit
//! (`use { 'URL' commit '<id>' sha256 '<digest>' }`): the node that plans a run fetches
//! each one through its mirrors and gives its files to the planner, which stays pure and
//! checks them against the pinned content digest.
//!
//! The URL passes the same rules as any repository the node fetches ([`super::git::check_url`]:
//! no transport helper, no option, no path into the node's home); the commit is fetched
//! into the URL's mirror (`<home>/mirrors/<hash>/fetched.git`, or the watched repository's
//! own mirror when the node has one with that URL), by its id when no branch or tag has it
//! (any more), and `git archive` must say it archived that very commit. A URL carrying
//! credentials is refused: they would go into the plan, which peers see. A library holds
//! plain files only: a symbolic link anywhere in it is refused, and so are more than
//! [`MAX_LIBRARY_BYTES`] of files. A warm mirror that has the commit is not asked again.

use std::path::{Component, PathBuf};

use otto_pipeline::MemSource;

use super::{GitError, Repos};

/// The most bytes a library's files may have at its commit (the tar `git archive` makes).
pub const MAX_LIBRARY_BYTES: usize = 8 << 20;

/// The most external libraries one plan may fetch.
pub const MAX_LIBRARIES: usize = 32;

/// The most times planning is repeated for libraries that libraries use.
pub const MAX_ROUNDS: usize = 8;

impl Repos {
    /// The files of `commit` of the git repository at `url`, for an external library
    /// pinned to that commit, as the module says. `Err` is one line saying why not.
    pub async fn library(&self, url: &str, commit: &str) -> Result<MemSource, String> {
        if carries_credentials(url) {
            return Err(
                "the URL carries credentials (user:password@ or a token@): an Ottofile is no place for them, and the node fetches with its own git credentials".to_owned(),
            );
        }
        self.fetch_commit(url, commit)
            .await
            .map_err(|e| e.to_string())?;
        let mirror = self
            .mirror_with(url, commit)
            .await
            .ok_or_else(|| format!("this node has not got commit {commit} of {url}"))?;
        let tar = mirror
            .checkout(commit, MAX_LIBRARY_BYTES)
            .await
            .map_err(|e| match e {
                GitError::TooLarge { .. } => format!(
                    "its files are larger than {} MiB, the most a library may have",
                    MAX_LIBRARY_BYTES >> 20
                ),
                other => other.to_string(),
            })?;
        tokio::task::spawn_blocking(move || files_of(&tar))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Whether `url` carries credentials in its user part: any for http and https (a token
/// stands there), a password for the others (`ssh://git@host/…` names only a user).
fn carries_credentials(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => matches!(scheme, "http" | "https") || authority[..at].contains(':'),
        None => false,
    }
}

/// The files of a library from a checkout's tar: regular files that are UTF-8 text (others
/// are left out, as the planner reads only `.otto` files; a `.otto` file that is not text
/// is refused), paths relative to the library's root. A symbolic link is refused.
pub fn files_of(tar_bytes: &[u8]) -> Result<MemSource, String> {
    let bad = |e: std::io::Error| format!("reading the library's files: {e}");
    let mut files = MemSource::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let mut clean = PathBuf::new();
        for part in path.components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                _ => return Err(format!("{}: a path outside the library", path.display())),
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(format!(
                "{} is a link: a library holds plain files only",
                clean.display()
            ));
        }
        if !kind.is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(bad)?;
        match String::from_utf8(bytes) {
            Ok(text) => files.insert(clean, text),
            Err(_) if clean.extension().is_some_and(|e| e == "otto") => {
                return Err(format!("{} is not UTF-8 text", clean.display()));
            }
            Err(_) => {}
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use otto_pipeline::Source as _;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.com")
            .env("GIT_COMMITTER_NAME", "Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.com")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Commits `files` (path, content) in the work tree `dir`; the commit's id.
    fn commit(dir: &Path, files: &[(&str, &[u8])]) -> String {
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        git(dir, &["add", "--all"]);
        git(dir, &["commit", "--quiet", "--allow-empty", "-m", "c"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    fn library_repo(tmp: &Path) -> (PathBuf, String) {
        let work = tmp.join("lib");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "-b", "main"]);
        let url = format!("file://{}", work.display());
        (work, url)
    }

    fn read(files: &MemSource, path: &str) -> String {
        files.read(Path::new(path)).unwrap()
    }

    #[tokio::test]
    async fn a_library_is_fetched_at_its_pinned_commit_and_a_moved_tag_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (work, url) = library_repo(tmp.path());
        let one = commit(
            &work,
            &[("deploy.otto", b"// one\n"), ("logo.png", b"\x89PNG\xff")],
        );
        git(&work, &["tag", "v1"]);
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let repos = Repos::new(&home);
        let files = repos.library(&url, &one).await.unwrap();
        assert_eq!(read(&files, "deploy.otto"), "// one\n");
        assert!(
            files.kind(Path::new("logo.png")).is_none(),
            "not text: left out"
        );

        // The tag moves to another commit, and the branch forgets `one`: the pin still
        // means `one`, from the warm mirror, and never what the tag names now.
        let two = commit(&work, &[("deploy.otto", b"// two\n")]);
        git(&work, &["tag", "--force", "v1", &two]);
        let files = repos.library(&url, &one).await.unwrap();
        assert_eq!(read(&files, "deploy.otto"), "// one\n");
        // A node that never saw `one` fetches it by its id, or refuses: never `two`.
        let cold = tmp.path().join("cold");
        std::fs::create_dir_all(&cold).unwrap();
        git(&work, &["reset", "--quiet", "--hard", &two]);
        match Repos::new(&cold).library(&url, &one).await {
            Ok(files) => assert_eq!(read(&files, "deploy.otto"), "// one\n"),
            Err(e) => assert!(e.contains(&one), "{e}"),
        }
        let files = repos.library(&url, &two).await.unwrap();
        assert_eq!(read(&files, "deploy.otto"), "// two\n");
    }

    #[tokio::test]
    async fn hostile_urls_missing_commits_links_and_huge_libraries_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let repos = Repos::new(&home);
        let id = "0123abcd".repeat(5);
        let trap = tmp.path().join("pwned");
        for (url, why) in [
            (
                format!("ext::sh -c touch% {}", trap.display()),
                "spaces".to_owned(),
            ),
            ("ext::sh".to_owned(), "transport helpers".to_owned()),
            (
                format!("--upload-pack=touch%{}", trap.display()),
                "start with '-'".to_owned(),
            ),
            (
                format!("file://{}", home.display()),
                "inside the node's home".to_owned(),
            ),
            (
                "https://ghp_t0ken@example.com/lib.git".to_owned(),
                "carries credentials".to_owned(),
            ),
            (
                "ssh://bob:s3cret@example.com/lib.git".to_owned(),
                "carries credentials".to_owned(),
            ),
        ] {
            let err = repos.library(&url, &id).await.unwrap_err();
            assert!(err.contains(&why), "{url}: {err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(!err.contains("t0ken") && !err.contains("s3cret"), "{err}");
        }
        assert!(!trap.exists(), "no command ran");
        assert!(!home.join("mirrors").exists(), "nothing was fetched");

        let (work, url) = library_repo(tmp.path());
        let plain = commit(&work, &[("deploy.otto", b"// ok\n")]);
        // A commit the repository does not have.
        let err = repos.library(&url, &id).await.unwrap_err();
        assert!(
            err.contains(&format!("commit {id} is not in {url}")),
            "{err}"
        );
        // A name instead of an id is never given to git.
        let err = repos.library(&url, "main").await.unwrap_err();
        assert!(err.contains("not a full commit id"), "{err}");

        // A link out of the library, even beside good files.
        std::os::unix::fs::symlink("/etc/passwd", work.join("passwd.otto")).unwrap();
        let linked = commit(&work, &[]);
        let err = repos.library(&url, &linked).await.unwrap_err();
        assert_eq!(
            err,
            "passwd.otto is a link: a library holds plain files only"
        );
        std::fs::remove_file(work.join("passwd.otto")).unwrap();

        // More than the library limit, in one file the planner never reads.
        let big = vec![b'x'; MAX_LIBRARY_BYTES + 1];
        let huge = commit(&work, &[("data/blob.txt", &big)]);
        let err = repos.library(&url, &huge).await.unwrap_err();
        assert!(err.contains("larger than 8 MiB"), "{err}");

        // A .otto file that is not text.
        git(&work, &["rm", "--quiet", "data/blob.txt"]);
        let binary = commit(&work, &[("bad.otto", b"\xff\xfe")]);
        let err = repos.library(&url, &binary).await.unwrap_err();
        assert_eq!(err, "bad.otto is not UTF-8 text");

        // The good commit is still had.
        let files = repos.library(&url, &plain).await.unwrap();
        assert_eq!(read(&files, "deploy.otto"), "// ok\n");
    }
}

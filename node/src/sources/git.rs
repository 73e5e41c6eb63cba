//! The git command line, run for the node's bare mirrors.
//!
//! Every call goes through [`command`]: the mirror is named with `--git-dir` (never found
//! from the current directory), inherited `GIT_*` variables that could point git elsewhere
//! are removed, only the `file`, `git`, `http`, `https` and `ssh` transports are allowed
//! (`GIT_ALLOW_PROTOCOL`; no `ext::` helper can run a command), no prompt ever waits on a
//! terminal, and each call has a deadline after which its whole process group is killed.
//! Nothing a forge sends is ever an argument: the remote's URL is in the mirror's
//! configuration (checked by [`check_url`] when the repository is added), refspecs are
//! fixed or built here from numbers, and commit ids are checked to be hex first.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

/// The transports git may use.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// What a mirror fetches: branches and tags, mirrored as they are on the remote.
const REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// The longest a fetch or `ls-remote` may take.
pub(crate) const NETWORK_DEADLINE: Duration = Duration::from_secs(600);

/// The most pack data one fetch may receive: a remote that sends more is cut off, what it
/// sent is removed and no ref moves. The same bound as a bundle served between nodes.
pub const MAX_FETCH_BYTES: u64 = 1 << 30;

/// The longest a local git command may take.
const LOCAL_DEADLINE: Duration = Duration::from_secs(300);

/// The most a git command may print on stderr that is kept for its error.
const MAX_STDERR: usize = 4096;

/// Variables that would make git use another repository, configuration or object store,
/// or run a program of the caller's choosing. Every git command Otto runs clears them: the
/// node's mirrors here, and `otto run` reading the user's work tree.
pub const CLEARED_ENV: [&str; 15] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_PROXY_COMMAND",
    "GIT_EXTERNAL_DIFF",
    "GIT_PAGER",
];

/// Why a git command failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// git ran and failed.
    #[error("git {what} failed: {stderr}")]
    Failed {
        /// Which command.
        what: &'static str,
        /// The end of what git printed, on one line.
        stderr: String,
    },
    /// A fetch received more pack data than allowed and was stopped.
    #[error(
        "git {what} received more than {} MiB from the remote and was stopped",
        limit >> 20
    )]
    FetchTooLarge {
        /// Which command.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// git took longer than its deadline and was stopped.
    #[error("git {0} took too long and was stopped")]
    Timeout(&'static str),
    /// The output was larger than allowed.
    #[error("git {what} printed more than {limit} bytes")]
    TooLarge {
        /// Which command.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Something else about the output or its handling.
    #[error("{0}")]
    Other(String),
}

/// Checks a repository URL given to `otto-node repo add`. Refused: an empty URL or one
/// with spaces or control characters, one starting with `-` (git would read it as an
/// option), a transport helper (`ext::…`, `fd::…`, any `name::address`), a scheme other
/// than `https`, `http`, `ssh`, `git` and `file`, and a local path inside `home` (the
/// node's own files are never a source). A local path is given as `file://` or absolute.
pub fn check_url(url: &str, home: &Path) -> Result<(), String> {
    otto_handoff::source::check_repo_url(url)?;
    let local = if let Some(rest) = url.strip_prefix("file://") {
        Some(PathBuf::from(rest))
    } else if url.starts_with('/') {
        Some(PathBuf::from(url))
    } else {
        None
    };
    if let Some(path) = local {
        let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_owned());
        let resolved = std::fs::canonicalize(&path).unwrap_or(path);
        if resolved.starts_with(&home) || home.starts_with(&resolved) {
            return Err(format!(
                "{} is inside the node's home {}: the node's own files are never a source",
                resolved.display(),
                home.display()
            ));
        }
    }
    Ok(())
}

pub use otto_handoff::source::is_commit_id;

/// A URL without `user[:password]@`: credentials never go into a plan.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A git command for the bare repository `git_dir`, hardened as the module says.
fn command(git_dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GCM_INTERACTIVE", "never")
        .args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "core.fsmonitor=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = git_dir {
        let mut flag = std::ffi::OsString::from("--git-dir=");
        flag.push(dir);
        cmd.arg(flag);
    }
    cmd
}

/// Runs `cmd` until it exits or `deadline` passes, keeping at most `max_out` bytes of its
/// stdout; a non-zero exit is an error with the end of its stderr.
async fn run(
    cmd: Command,
    what: &'static str,
    deadline: Duration,
    max_out: usize,
) -> Result<Vec<u8>, GitError> {
    run_guarded(cmd, what, deadline, max_out, None).await
}

/// How much a fetch may receive: the pack directory of the repository it writes into
/// and the most bytes of packs being received there. The fetch must keep every pack it
/// receives (`fetch.unpackLimit=1`), so all it receives goes to `tmp_pack_*` files there
/// until it is done.
struct Received<'a> {
    pack_dir: &'a Path,
    limit: u64,
}

/// How often a fetch's received bytes are looked at.
const RECEIVED_POLL: Duration = Duration::from_millis(100);

impl Received<'_> {
    /// The bytes of packs being received now.
    fn now(&self) -> u64 {
        self.partial()
            .filter_map(|path| std::fs::symlink_metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// The files git writes while it receives (a pack, then its index and reverse index).
    fn partial(&self) -> impl Iterator<Item = PathBuf> {
        std::fs::read_dir(self.pack_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().as_encoded_bytes().starts_with(b"tmp_"))
            .map(|entry| entry.path())
    }

    /// Waits until more than the limit has arrived.
    async fn exceeded(&self) {
        loop {
            tokio::time::sleep(RECEIVED_POLL).await;
            if self.now() > self.limit {
                return;
            }
        }
    }
}

/// [`run`], and with `received`, the fetch is stopped (its process group killed, what it
/// received removed) once more than the limit has arrived.
async fn run_guarded(
    mut cmd: Command,
    what: &'static str,
    deadline: Duration,
    max_out: usize,
    received: Option<Received<'_>>,
) -> Result<Vec<u8>, GitError> {
    let mut child = cmd.spawn().map_err(GitError::Spawn)?;
    let group = child.id();
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| GitError::Other("no stdout".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| GitError::Other("no stderr".into()))?;
    let work = async {
        let read_out = async {
            let mut out = Vec::new();
            let limit = u64::try_from(max_out).unwrap_or(u64::MAX).saturating_add(1);
            (&mut stdout).take(limit).read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let read_err = async {
            let mut err = Vec::new();
            stderr.read_to_end(&mut err).await?;
            Ok::<_, std::io::Error>(err)
        };
        let (out, err) = tokio::join!(read_out, read_err);
        (out, err)
    };
    let guarded = async {
        match &received {
            None => Some(work.await),
            Some(received) => tokio::select! {
                done = work => Some(done),
                () = received.exceeded() => None,
            },
        }
    };
    let (out, err) = match tokio::time::timeout(deadline, guarded).await {
        Ok(Some(done)) => done,
        Ok(None) => {
            kill_group(group);
            let _ = child.wait().await;
            let received = received.expect("only a guarded fetch is stopped for its size");
            for partial in received.partial() {
                let _ = std::fs::remove_file(partial);
            }
            return Err(GitError::FetchTooLarge {
                what,
                limit: received.limit,
            });
        }
        Err(_) => {
            kill_group(group);
            return Err(GitError::Timeout(what));
        }
    };
    let out = out.map_err(|e| GitError::Other(format!("reading git {what}'s output: {e}")))?;
    if out.len() > max_out {
        kill_group(group);
        return Err(GitError::TooLarge {
            what,
            limit: max_out,
        });
    }
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => status.map_err(GitError::Spawn)?,
        Err(_) => {
            kill_group(group);
            return Err(GitError::Timeout(what));
        }
    };
    if status.success() {
        return Ok(out);
    }
    let err = err.unwrap_or_default();
    let text = String::from_utf8_lossy(&err[err.len().saturating_sub(MAX_STDERR)..]);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_owned();
    Err(GitError::Failed { what, stderr: line })
}

fn kill_group(group: Option<u32>) {
    if let Some(pid) = group.and_then(|p| i32::try_from(p).ok())
        && let Some(pid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// A bare mirror of one remote repository, in the node's home.
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
    /// The most pack data one fetch into it may receive.
    fetch_limit: u64,
}

impl Mirror {
    /// The mirror in `dir` (made by [`Mirror::create`]).
    pub fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            fetch_limit: MAX_FETCH_BYTES,
        }
    }

    /// This mirror with another bound on what one fetch may receive than
    /// [`MAX_FETCH_BYTES`].
    #[cfg(test)]
    fn with_fetch_limit(self, fetch_limit: u64) -> Self {
        Self {
            fetch_limit,
            ..self
        }
    }

    /// Runs a `git fetch` (`cmd`, which names the remote and refspecs) into this mirror,
    /// keeping every pack it receives so that [`Received`] sees all of it.
    async fn run_fetch(&self, cmd: Command) -> Result<(), GitError> {
        let pack_dir = self.dir.join("objects/pack");
        let received = Received {
            pack_dir: &pack_dir,
            limit: self.fetch_limit,
        };
        run_guarded(cmd, "fetch", NETWORK_DEADLINE, 1 << 20, Some(received))
            .await
            .map(drop)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes an empty bare mirror of `url` in `dir`: objects are checked as they arrive
    /// (`fsckObjects`), and the archive attributes of the repository's own files
    /// (`export-ignore`, `export-subst`) are overridden so a checkout holds exactly the
    /// commit's files.
    pub async fn create(dir: PathBuf, url: &str) -> Result<Self, GitError> {
        let mirror = Self::create_local(dir).await?;
        mirror.config(&["remote.origin.url", url]).await?;
        for spec in REFSPECS {
            mirror
                .config(&["--add", "remote.origin.fetch", spec])
                .await?;
        }
        Ok(mirror)
    }

    /// Makes an empty bare repository in `dir` with no remote, set up as
    /// [`Mirror::create`] says: it only ever receives git bundles.
    pub async fn create_local(dir: PathBuf) -> Result<Self, GitError> {
        let mut init = command(None);
        init.args(["init", "--bare", "--quiet"]).arg(&dir);
        run(init, "init", LOCAL_DEADLINE, 4096).await?;
        let mirror = Self::at(dir);
        for key in ["transfer.fsckObjects", "fetch.fsckObjects"] {
            mirror.config(&[key, "true"]).await?;
        }
        mirror.config(&["core.hooksPath", "/dev/null"]).await?;
        let attributes = mirror.dir.join("info/attributes");
        std::fs::create_dir_all(mirror.dir.join("info"))
            .and_then(|()| std::fs::write(&attributes, "* -export-ignore -export-subst\n"))
            .map_err(|e| GitError::Other(format!("writing {}: {e}", attributes.display())))?;
        Ok(mirror)
    }

    async fn config(&self, args: &[&str]) -> Result<(), GitError> {
        let mut cmd = command(Some(&self.dir));
        cmd.arg("config").args(args);
        run(cmd, "config", LOCAL_DEADLINE, 4096).await.map(drop)
    }

    /// Fetches branches and tags from the remote (deleted ones are pruned), and the
    /// `extra` refs, each named as `refs/…` on both sides.
    pub async fn fetch(&self, extra: &[String]) -> Result<(), GitError> {
        let mut cmd = command(Some(&self.dir));
        cmd.args(["-c", "fetch.unpackLimit=1"])
            .args([
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
            ])
            .args(["--no-recurse-submodules", "origin"]);
        for reference in extra {
            cmd.arg(format!("+{reference}:{reference}"));
        }
        self.run_fetch(cmd).await
    }

    /// Fetches `commit` (a full commit id) from the remote by its id, kept under
    /// `refs/otto/commits/<commit>`: for a commit no branch or tag of the remote points to
    /// (the remote must allow fetching it by id).
    pub async fn fetch_commit(&self, commit: &str) -> Result<(), GitError> {
        let spec = commit_refspec(commit)?;
        let mut cmd = command(Some(&self.dir));
        cmd.args(["-c", "fetch.unpackLimit=1"]).args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "origin",
            &spec,
        ]);
        self.run_fetch(cmd).await
    }

    /// Takes `commit` out of the git bundle at `bundle` (a file of this node's): the
    /// bundle must verify (`git bundle verify`: its header, its prerequisites), and
    /// fetching the commit by its id from it must bring the commit and everything it
    /// reaches (checked as they arrive, `fsckObjects`); it is kept under
    /// `refs/otto/commits/<commit>`. No ref name in the bundle is ever used. Then the id
    /// must resolve to that very commit.
    pub async fn import_bundle(&self, bundle: &Path, commit: &str) -> Result<(), GitError> {
        let spec = commit_refspec(commit)?;
        let mut verify = command(Some(&self.dir));
        verify.args(["bundle", "verify", "--quiet"]).arg(bundle);
        run(verify, "bundle verify", LOCAL_DEADLINE, 1 << 20).await?;
        let mut fetch = command(Some(&self.dir));
        fetch
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
            ])
            .arg(bundle)
            .arg(&spec);
        run(fetch, "fetch", LOCAL_DEADLINE, 1 << 20).await?;
        self.resolve_commit(commit).await
    }

    /// Checks that the full id `commit` names a commit object of this repository, itself.
    pub async fn resolve_commit(&self, commit: &str) -> Result<(), GitError> {
        commit_refspec(commit)?;
        let mut cmd = command(Some(&self.dir));
        cmd.args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{commit}^{{commit}}"),
        ]);
        let out = run(cmd, "rev-parse", LOCAL_DEADLINE, 4096).await?;
        let resolved = String::from_utf8_lossy(&out).trim().to_owned();
        if resolved == commit {
            Ok(())
        } else {
            Err(GitError::Other(format!(
                "{commit} resolves to {resolved:?}, not to itself"
            )))
        }
    }

    /// Writes a git bundle holding `commit` (a full commit id this mirror has) and its
    /// whole history to `out`, through a scratch repository in `scratch` that borrows
    /// this mirror's objects (so no ref of the mirror changes) and is removed after.
    pub async fn create_bundle(
        &self,
        commit: &str,
        out: &Path,
        scratch: &Path,
    ) -> Result<(), GitError> {
        commit_refspec(commit)?;
        let made = async {
            let scratch = Self::create_local(scratch.to_owned()).await?;
            let alternates = scratch.dir.join("objects/info/alternates");
            let objects = std::fs::canonicalize(self.dir.join("objects"))
                .map_err(|e| GitError::Other(format!("finding the mirror's objects: {e}")))?;
            std::fs::write(&alternates, format!("{}\n", objects.display()))
                .map_err(|e| GitError::Other(format!("writing {}: {e}", alternates.display())))?;
            let mut update = command(Some(&scratch.dir));
            update.args(["update-ref", "refs/otto/commit", commit]);
            run(update, "update-ref", LOCAL_DEADLINE, 4096).await?;
            let mut create = command(Some(&scratch.dir));
            create
                .args(["bundle", "create", "--quiet"])
                .arg(out)
                .arg("refs/otto/commit");
            run(create, "bundle create", LOCAL_DEADLINE, 1 << 20)
                .await
                .map(drop)
        }
        .await;
        let _ = std::fs::remove_dir_all(scratch);
        made
    }

    /// The remote's branches and tags without fetching (`git ls-remote`): ref name to
    /// commit id, annotated tags peeled to their commit.
    pub async fn ls_remote(&self) -> Result<BTreeMap<String, String>, GitError> {
        let mut cmd = command(Some(&self.dir));
        cmd.args(["ls-remote", "--heads", "--tags", "origin"]);
        let out = run(cmd, "ls-remote", NETWORK_DEADLINE, 64 << 20).await?;
        Ok(parse_ls_remote(&String::from_utf8_lossy(&out)))
    }

    /// The remote's default branch (what its `HEAD` points to), if it says.
    pub async fn remote_head(&self) -> Result<Option<String>, GitError> {
        let mut cmd = command(Some(&self.dir));
        cmd.args(["ls-remote", "--symref", "origin", "HEAD"]);
        let out = run(cmd, "ls-remote", NETWORK_DEADLINE, 1 << 20).await?;
        Ok(String::from_utf8_lossy(&out).lines().find_map(|line| {
            let (target, name) = line.strip_prefix("ref: ")?.split_once('\t')?;
            (name == "HEAD")
                .then(|| target.strip_prefix("refs/heads/"))
                .flatten()
                .map(str::to_owned)
        }))
    }

    /// The mirror's branches, tags and the `refs/pull`-like refs it fetched: ref name to
    /// commit id, annotated tags peeled to their commit.
    pub async fn refs(&self) -> Result<BTreeMap<String, String>, GitError> {
        let mut cmd = command(Some(&self.dir));
        cmd.args([
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(*objectname)",
        ]);
        let out = run(cmd, "for-each-ref", LOCAL_DEADLINE, 64 << 20).await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split('\0');
                let (name, object, peeled) = (parts.next()?, parts.next()?, parts.next()?);
                let commit = if peeled.is_empty() { object } else { peeled };
                is_commit_id(commit).then(|| (name.to_owned(), commit.to_owned()))
            })
            .collect())
    }

    /// Whether the mirror has `commit` (a full commit id) as a commit.
    pub async fn has_commit(&self, commit: &str) -> bool {
        if !is_commit_id(commit) {
            return false;
        }
        let mut cmd = command(Some(&self.dir));
        cmd.args(["cat-file", "-e", &format!("{commit}^{{commit}}")]);
        run(cmd, "cat-file", LOCAL_DEADLINE, 4096).await.is_ok()
    }

    /// The committer time of `commit` (a full commit id), in seconds since the epoch.
    pub async fn commit_time(&self, commit: &str) -> Result<i64, GitError> {
        if !is_commit_id(commit) {
            return Err(GitError::Other(format!(
                "{commit:?} is not a full commit id"
            )));
        }
        let mut cmd = command(Some(&self.dir));
        cmd.args(["show", "--no-patch", "--format=%ct", commit]);
        let out = run(cmd, "show", LOCAL_DEADLINE, 4096).await?;
        let text = String::from_utf8_lossy(&out);
        text.trim().parse().map_err(|_| {
            GitError::Other(format!(
                "git show gave {:?}, not the commit time of {commit}",
                text.trim()
            ))
        })
    }

    /// The files of `commit` as a snapshot tar (the form `otto run` uploads): regular
    /// files, directories and symbolic links, each with the commit's time; at most
    /// `max_bytes`.
    pub async fn checkout(&self, commit: &str, max_bytes: usize) -> Result<Vec<u8>, GitError> {
        if !is_commit_id(commit) {
            return Err(GitError::Other(format!(
                "{commit:?} is not a full commit id"
            )));
        }
        let mut cmd = command(Some(&self.dir));
        cmd.args(["archive", "--format=tar", commit]);
        let tar = run(
            cmd,
            "archive",
            LOCAL_DEADLINE,
            max_bytes.saturating_add(1 << 20),
        )
        .await?;
        let commit = commit.to_owned();
        tokio::task::spawn_blocking(move || snapshot_of_archive(&tar, &commit, max_bytes))
            .await
            .map_err(|e| GitError::Other(e.to_string()))?
    }
}

/// `+<commit>:refs/otto/commits/<commit>`, once `commit` is checked to be a full commit id.
fn commit_refspec(commit: &str) -> Result<String, GitError> {
    if is_commit_id(commit) {
        Ok(format!("+{commit}:refs/otto/commits/{commit}"))
    } else {
        Err(GitError::Other(format!(
            "{commit:?} is not a full commit id"
        )))
    }
}

/// `git ls-remote` output as ref name to commit id (the peeled `^{}` line of an annotated
/// tag wins over the tag object).
pub fn parse_ls_remote(text: &str) -> BTreeMap<String, String> {
    let mut refs = BTreeMap::new();
    for line in text.lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if !is_commit_id(id) {
            continue;
        }
        if let Some(tag) = name.strip_suffix("^{}") {
            refs.insert(tag.to_owned(), id.to_owned());
        } else {
            refs.entry(name.to_owned()).or_insert_with(|| id.to_owned());
        }
    }
    refs
}

/// Rewrites `git archive`'s tar of `commit` as a snapshot: the pax header holding the
/// commit id is checked to name `commit` (the tree archived is that commit's) and left
/// out; anything but files, directories and symbolic links is refused.
fn snapshot_of_archive(
    tar_bytes: &[u8],
    commit: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, GitError> {
    let bad = |e: std::io::Error| GitError::Other(format!("reading git archive's output: {e}"));
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = tar::Builder::new(Vec::new());
    let mut named = false;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            let mut archived = None;
            if let Some(extensions) = entry.pax_extensions().map_err(bad)? {
                for extension in extensions {
                    let extension = extension.map_err(bad)?;
                    if extension.key() == Ok("comment") {
                        archived =
                            Some(String::from_utf8_lossy(extension.value_bytes()).into_owned());
                    }
                }
            }
            if archived.as_deref() != Some(commit) {
                return Err(GitError::Other(format!(
                    "git archive of {commit} says it archived {archived:?}"
                )));
            }
            named = true;
            continue;
        }
        if kind == tar::EntryType::XHeader {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(entry.header().mode().map_err(bad)?);
        header.set_mtime(entry.header().mtime().map_err(bad)?);
        header.set_uid(0);
        header.set_gid(0);
        match kind {
            tar::EntryType::Directory => {
                header.set_size(0);
                out.append_data(&mut header, &path, std::io::empty())
                    .map_err(bad)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .ok_or_else(|| {
                        GitError::Other(format!("{}: a link without a target", path.display()))
                    })?
                    .into_owned();
                header.set_size(0);
                out.append_link(&mut header, &path, &target).map_err(bad)?;
            }
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(bad)?;
                header.set_size(bytes.len() as u64);
                out.append_data(&mut header, &path, bytes.as_slice())
                    .map_err(bad)?;
            }
            other => {
                return Err(GitError::Other(format!(
                    "{}: git archive gave an entry of type {other:?}",
                    path.display()
                )));
            }
        }
        if out.get_ref().len() > max_bytes {
            return Err(GitError::TooLarge {
                what: "archive",
                limit: max_bytes,
            });
        }
    }
    if !named {
        return Err(GitError::Other(format!(
            "git archive of {commit} did not say which commit it archived"
        )));
    }
    let bytes = out.into_inner().map_err(bad)?;
    if bytes.len() > max_bytes {
        return Err(GitError::TooLarge {
            what: "archive",
            limit: max_bytes,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_urls_are_refused_with_a_reason() {
        let home = tempfile::tempdir().unwrap();
        let inside = format!("file://{}/store", home.path().display());
        for (url, why) in [
            ("", "1 to 2048"),
            ("--upload-pack=/tmp/x", "start with '-'"),
            ("-oProxyCommand=x", "start with '-'"),
            ("ext::sh -c touch% /tmp/pwned", "spaces"),
            ("ext::sh", "transport helpers"),
            ("fd::17", "transport helpers"),
            ("https://x/y\n", "control"),
            ("ftp://example.com/r.git", "scheme `ftp`"),
            ("file://relative/path", "absolute"),
            ("relative/path", "give a URL"),
            (inside.as_str(), "inside the node's home"),
        ] {
            let err = check_url(url, home.path()).expect_err(url);
            assert!(err.contains(why), "{url:?}: {err}");
        }
        let home_itself = home.path().display().to_string();
        assert!(check_url(&home_itself, home.path()).is_err());
        // A path outside that leads into the home through a symbolic link.
        let elsewhere = tempfile::tempdir().unwrap();
        let link = elsewhere.path().join("innocent.git");
        std::os::unix::fs::symlink(home.path(), &link).unwrap();
        let err = check_url(&format!("file://{}", link.display()), home.path()).unwrap_err();
        assert!(err.contains("inside the node's home"), "{err}");
        for ok in [
            "https://github.com/acme/app.git",
            "ssh://git@example.com/acme/app.git",
            "git@github.com:acme/app.git",
            "git://127.0.0.1:9418/app",
            "file:///srv/git/app.git",
            "/srv/git/app.git",
        ] {
            check_url(ok, home.path()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn credentials_never_reach_the_plan() {
        assert_eq!(
            without_credentials("https://bob:s3cret@git.example.com/acme/app.git"),
            "https://git.example.com/acme/app.git"
        );
        assert_eq!(
            without_credentials("https://token@git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            without_credentials("git@github.com:acme/app.git"),
            "git@github.com:acme/app.git"
        );
        assert_eq!(without_credentials("/srv/git/app"), "/srv/git/app");
    }

    #[test]
    fn ls_remote_output_peels_annotated_tags_and_skips_garbage() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let text = format!(
            "{a}\trefs/heads/main\n{b}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\nnot-an-id\trefs/heads/x\n\n"
        );
        let refs = parse_ls_remote(&text);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs["refs/heads/main"], a);
        assert_eq!(refs["refs/tags/v1"], c);
    }

    /// A work tree with two commits (`one`, then `two` adding `only-in-two.txt`); their ids.
    fn repository(dir: &Path) -> (String, String) {
        let git = |args: &[&str]| {
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
        };
        git(&["init", "--quiet", "-b", "main"]);
        std::fs::write(dir.join("version.txt"), "one\n").unwrap();
        git(&["add", "version.txt"]);
        git(&["commit", "--quiet", "-m", "one"]);
        let one = git(&["rev-parse", "HEAD"]);
        std::fs::write(dir.join("only-in-two.txt"), "two\n").unwrap();
        git(&["add", "only-in-two.txt"]);
        git(&["commit", "--quiet", "-m", "two"]);
        (one, git(&["rev-parse", "HEAD"]))
    }

    fn files_of(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_bundle_brings_exactly_the_commit_it_is_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let (one, two) = repository(&work);
        let source = Mirror::create(
            tmp.path().join("source.git"),
            &format!("file://{}", work.display()),
        )
        .await
        .unwrap();
        source.fetch(&[]).await.unwrap();
        let bundle_one = tmp.path().join("one.bundle");
        source
            .create_bundle(&one, &bundle_one, &tmp.path().join("scratch"))
            .await
            .unwrap();
        assert!(!tmp.path().join("scratch").exists());
        let bundle_two = tmp.path().join("two.bundle");
        source
            .create_bundle(&two, &bundle_two, &tmp.path().join("scratch"))
            .await
            .unwrap();
        // The mirror's refs did not change.
        assert!(
            source
                .refs()
                .await
                .unwrap()
                .keys()
                .all(|r| !r.starts_with("refs/otto"))
        );

        let owner = Mirror::create_local(tmp.path().join("owner.git"))
            .await
            .unwrap();
        // A commit that is not in the bundle (the bundle of `one` does not hold `two`,
        // although its only ref has the name every bundle of this node has).
        let err = owner.import_bundle(&bundle_one, &two).await.unwrap_err();
        assert!(err.to_string().contains("git fetch failed"), "{err}");
        assert!(!owner.has_commit(&two).await);
        // Garbage, and a bundle cut short, into a repository that holds nothing yet.
        let fresh = Mirror::create_local(tmp.path().join("fresh.git"))
            .await
            .unwrap();
        let garbage = tmp.path().join("garbage.bundle");
        std::fs::write(&garbage, b"# v2 git bundle\nnot a pack at all").unwrap();
        let err = fresh.import_bundle(&garbage, &one).await.unwrap_err();
        assert!(err.to_string().starts_with("git "), "{err}");
        let cut = tmp.path().join("cut.bundle");
        let bytes = std::fs::read(&bundle_two).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
        assert!(fresh.import_bundle(&cut, &two).await.is_err());
        assert!(!fresh.has_commit(&two).await);
        assert!(!fresh.has_commit(&one).await);
        // Not a commit id at all: refused before git runs.
        for bad in ["HEAD", "refs/otto/commit", "--upload-pack=x"] {
            let err = owner.import_bundle(&bundle_two, bad).await.unwrap_err();
            assert!(err.to_string().contains("not a full commit id"), "{err}");
        }

        // The right bundle: `two` arrives, and with it `one`, its parent.
        owner.import_bundle(&bundle_two, &two).await.unwrap();
        owner.resolve_commit(&one).await.unwrap();
        let tar = owner.checkout(&two, 1 << 20).await.unwrap();
        assert_eq!(files_of(&tar), ["only-in-two.txt", "version.txt"]);
        let tar = owner.checkout(&one, 1 << 20).await.unwrap();
        assert_eq!(files_of(&tar), ["version.txt"]);
    }

    #[tokio::test]
    async fn a_remote_that_sends_more_than_a_fetch_may_receive_is_cut_off_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        repository(&work);
        // 64 MiB that do not compress, in one more commit.
        let mut noise = vec![0u8; 64 << 20];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for chunk in noise.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(work.join("huge.bin"), &noise).unwrap();
        drop(noise);
        for args in [
            &["add", "huge.bin"][..],
            &["commit", "--quiet", "-m", "huge"],
        ] {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&work)
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
        }
        let mirror = Mirror::create(
            tmp.path().join("mirror.git"),
            &format!("file://{}", work.display()),
        )
        .await
        .unwrap()
        .with_fetch_limit(1 << 20);

        let err = mirror.fetch(&[]).await.unwrap_err();
        assert!(
            matches!(err, GitError::FetchTooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "git fetch received more than 1 MiB from the remote and was stopped"
        );
        // Nothing of it stays: no partial pack, no ref.
        let packs = mirror.dir().join("objects/pack");
        let left: Vec<_> = std::fs::read_dir(&packs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(mirror.refs().await.unwrap().is_empty());
    }

    #[test]
    fn an_archive_of_another_commit_than_asked_is_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XGlobalHeader);
        let record = format!("52 comment={}\n", "b".repeat(40));
        header.set_size(record.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "pax_global_header", record.as_bytes())
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let err = snapshot_of_archive(&tar, &"a".repeat(40), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("says it archived"), "{err}");
        snapshot_of_archive(&tar, &"b".repeat(40), 1 << 20).unwrap();
        let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
        let err = snapshot_of_archive(&empty, &"a".repeat(40), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("did not say"), "{err}");
    }
}

//! What `otto run` learns from the git work tree it runs in: repository, branch, commit,
//! and whether the directory it snapshots has changes the commit does not hold.
//!
//! The work tree is the user's, and its `.git/config` (or the user's own configuration)
//! may name programs git runs: an fsmonitor hook, clean filters, diff drivers, a pager,
//! hooks. Nothing here lets git run any of them: every call goes through [`git`], which
//! clears the `GIT_*` variables that point git elsewhere, turns the fsmonitor, hooks,
//! external diffs and the pager off, and replaces every filter driver the configuration
//! names with none. Only plumbing-like reads are used (`rev-parse`, `symbolic-ref`,
//! `config --get`, `check-ignore`, `status --porcelain`), never `git diff`: the digest of
//! the changes is computed here from the files themselves.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};
use otto_node::sources::git::CLEARED_ENV;
use sha2::{Digest as _, Sha256};

/// Settings given to every git call, over any configuration file: no program named by
/// the configuration runs.
const SAFE_CONFIG: [(&str, &str); 5] = [
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("diff.external", ""),
    ("core.untrackedCache", "false"),
];

/// How many changed paths the refusal of a dirty tree names.
const NAMED: usize = 1;

/// What the work tree says about the directory `otto run` snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkTree {
    /// The `origin` remote's URL without credentials, else the work tree's top directory.
    pub(crate) repository: String,
    /// The checked-out branch; `None` on a detached HEAD.
    pub(crate) branch: Option<String>,
    /// The full id of HEAD.
    pub(crate) commit: String,
    /// The changes under the directory, as `git status --porcelain` lists them.
    pub(crate) changes: Vec<Change>,
    /// The directory, relative to the work tree's top (empty for the top itself).
    pub(crate) prefix: String,
    /// The work tree's top directory.
    pub(crate) top: PathBuf,
}

/// A changed path, as `git status --porcelain` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// The two status letters (`" M"`, `"??"`, `"D "`, `"R "`, …).
    pub(crate) code: String,
    /// The path, relative to the work tree's top, for people (bytes that are not UTF-8
    /// replaced).
    pub(crate) path: String,
    /// The path as git printed it.
    raw: Vec<u8>,
}

impl WorkTree {
    /// Reads the work tree `dir` is in. `None` when `dir` is not in a git work tree, git
    /// is not installed, or the work tree ignores `dir` (e.g. a build directory under
    /// `target/`): its files are no commit's, and `otto run` goes on as outside git.
    pub(crate) fn of(dir: &Path) -> anyhow::Result<Option<Self>> {
        let inside = match git(dir, &["rev-parse", "--is-inside-work-tree"]) {
            Ok(out) => out,
            Err(Git::NotInstalled) | Err(Git::Failed(_)) => return Ok(None),
            Err(Git::Io(e)) => return Err(e).context("running git"),
        };
        if text(inside)? != "true" {
            return Ok(None);
        }
        // `check-ignore` exits 0 when the path is ignored, 1 when it is not.
        if git(dir, &["check-ignore", "-q", "--", "."]).is_ok() {
            return Ok(None);
        }
        let top = PathBuf::from(text(run(dir, &["rev-parse", "--show-toplevel"])?)?);
        let real_dir = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let real_top = std::fs::canonicalize(&top).unwrap_or_else(|_| top.clone());
        let Ok(rest) = real_dir.strip_prefix(&real_top) else {
            bail!(
                "{}: git says its work tree is {}, which does not hold it (core.worktree?)",
                dir.display(),
                top.display()
            );
        };
        let prefix = rest.to_string_lossy().into_owned();
        let commit = match git(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) {
            Ok(out) => text(out)?,
            Err(Git::Failed(_)) => bail!(
                "{} is in a git work tree with no commit yet: commit first (otto run records \
                 the commit it runs)",
                dir.display()
            ),
            Err(e) => return Err(e.into_anyhow("git rev-parse HEAD")),
        };
        let branch = match git(dir, &["symbolic-ref", "--quiet", "--short", "HEAD"]) {
            Ok(out) => Some(text(out)?),
            Err(Git::Failed(_)) => None,
            Err(e) => return Err(e.into_anyhow("git symbolic-ref HEAD")),
        };
        let repository = match git(dir, &["config", "--get", "remote.origin.url"]) {
            Ok(out) => otto_node::sources::git::without_credentials(&text(out)?),
            Err(Git::Failed(_)) => real_top.to_string_lossy().into_owned(),
            Err(e) => return Err(e.into_anyhow("git config")),
        };
        let status = run(
            dir,
            &[
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--ignore-submodules=dirty",
                "--no-renames",
                "--",
                ".",
            ],
        )?;
        Ok(Some(Self {
            repository,
            branch,
            commit,
            changes: parse_status(&status)?,
            prefix,
            top: real_top,
        }))
    }

    /// The refusal of a dirty tree, on one line.
    pub(crate) fn dirty_message(&self, dir: &Path) -> String {
        let named: Vec<String> = self
            .changes
            .iter()
            .take(NAMED)
            .map(|c| format!("{} {}", c.code.trim(), c.path))
            .collect();
        let more = match self.changes.len().saturating_sub(NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!(
            "{} has changes that commit {} does not hold ({}{more}): commit them, or run \
             with --dirty to run them and record their digest",
            dir.display(),
            short(&self.commit),
            named.join(", ")
        )
    }

    /// `sha256:<hex>` of the changes: for each changed path in byte order, the path, a
    /// NUL, what it is now (`deleted`, `file`, `executable`, `link`, `other`), a NUL, its
    /// length in bytes as decimal, a NUL, and its bytes (a link's target; nothing for the
    /// others). A file is read only when it is a regular file, never through a link.
    pub(crate) fn digest(&self) -> anyhow::Result<String> {
        let mut changes: Vec<&Change> = self.changes.iter().collect();
        changes.sort_unstable_by(|a, b| a.raw.cmp(&b.raw));
        changes.dedup_by(|a, b| a.raw == b.raw);
        let mut hash = Sha256::new();
        for change in changes {
            let path = change.path.as_str();
            let full = self.top.join(os_path(&change.raw));
            hash.update(&change.raw);
            hash.update([0]);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(meta) => Some(meta),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
            };
            let (kind, bytes): (&str, Vec<u8>) = match meta {
                None => ("deleted", Vec::new()),
                Some(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&full)
                        .with_context(|| format!("cannot read the link {path}"))?;
                    ("link", target.into_os_string().into_encoded_bytes())
                }
                Some(m) if m.is_file() => {
                    hash.update(if is_executable(&m) {
                        b"executable".as_slice()
                    } else {
                        b"file".as_slice()
                    });
                    hash.update([0]);
                    hash.update(m.len().to_string().as_bytes());
                    hash.update([0]);
                    let mut file = std::fs::File::open(&full)
                        .with_context(|| format!("cannot read {path}"))?;
                    let copied =
                        io::copy(&mut (&mut file).take(m.len()), &mut HashWriter(&mut hash))
                            .with_context(|| format!("cannot read {path}"))?;
                    if copied != m.len() {
                        bail!("{path} changed while it was read");
                    }
                    continue;
                }
                Some(_) => ("other", Vec::new()),
            };
            hash.update(kind.as_bytes());
            hash.update([0]);
            hash.update(bytes.len().to_string().as_bytes());
            hash.update([0]);
            hash.update(&bytes);
        }
        Ok(format!("sha256:{}", hex::encode(hash.finalize())))
    }
}

/// Checks `--commit` against HEAD: any name git resolves to HEAD's commit (a full or
/// abbreviated id, a branch, a tag) is taken; anything else is refused.
pub(crate) fn check_commit(dir: &Path, tree: &WorkTree, given: &str) -> anyhow::Result<()> {
    if given.starts_with('-') || given.is_empty() {
        bail!("--commit {given:?} is not a commit");
    }
    let spec = format!("{given}^{{commit}}");
    let resolved = match git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    ) {
        Ok(out) => text(out)?,
        Err(Git::Failed(_)) => bail!(
            "--commit {given}: no such commit in the work tree of {} (HEAD is {})",
            dir.display(),
            short(&tree.commit)
        ),
        Err(e) => return Err(e.into_anyhow("git rev-parse")),
    };
    if resolved != tree.commit {
        bail!(
            "--commit {given} is {}, but the work tree of {} has {} checked out: check it \
             out first (otto run runs the files that are there)",
            short(&resolved),
            dir.display(),
            short(&tree.commit)
        );
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Why a git call gave no output.
enum Git {
    /// There is no `git` to run.
    NotInstalled,
    /// git ran and exited non-zero (its stderr's last line).
    Failed(String),
    /// Something else went wrong.
    Io(io::Error),
}

impl Git {
    fn into_anyhow(self, what: &str) -> anyhow::Error {
        match self {
            Self::NotInstalled => anyhow!("{what}: git is not installed"),
            Self::Failed(line) => anyhow!("{what} failed: {line}"),
            Self::Io(e) => anyhow!("{what}: {e}"),
        }
    }
}

/// Runs git in `dir`, hardened as the module says, and returns its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, Git> {
    let filters = filter_drivers(dir)?;
    let mut config: Vec<(String, String)> = SAFE_CONFIG
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for driver in filters {
        for key in ["clean", "smudge", "process"] {
            config.push((format!("filter.{driver}.{key}"), String::new()));
        }
        config.push((format!("filter.{driver}.required"), "false".to_owned()));
    }
    let mut cmd = base(dir);
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd.args(["--no-pager"]).args(args);
    output(cmd)
}

/// The filter drivers git's configuration for `dir` names (`filter.<driver>.<key>`).
/// Reading the configuration runs nothing.
fn filter_drivers(dir: &Path) -> Result<Vec<String>, Git> {
    let mut cmd = base(dir);
    cmd.args(["config", "-z", "--name-only", "--get-regexp", r"^filter\."]);
    let out = match output(cmd) {
        Ok(out) => out,
        // `git config --get-regexp` exits 1 when nothing matches.
        Err(Git::Failed(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut drivers: Vec<String> = out
        .split(|&b| b == 0)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter_map(|name| {
            let rest = name.strip_prefix("filter.")?;
            let (driver, _key) = rest.rsplit_once('.')?;
            Some(driver.to_owned())
        })
        .collect();
    drivers.sort();
    drivers.dedup();
    Ok(drivers)
}

/// git in `dir` with the environment cleared of what points it elsewhere and nothing
/// asked of a terminal.
fn base(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn output(mut cmd: Command) -> Result<Vec<u8>, Git> {
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Git::NotInstalled),
        Err(e) => return Err(Git::Io(e)),
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_owned();
    Err(Git::Failed(line))
}

/// Runs git and turns a failure into an error.
fn run(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    git(dir, args).map_err(|e| e.into_anyhow(&format!("git {}", args[0])))
}

/// git's output as one trimmed line of UTF-8.
fn text(out: Vec<u8>) -> anyhow::Result<String> {
    let text = String::from_utf8(out).map_err(|_| anyhow!("git printed something not UTF-8"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Parses `git status --porcelain=v1 -z` (renames are off, so one path per entry).
fn parse_status(out: &[u8]) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for entry in out.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let (Some(code), Some(path)) = (entry.get(..2), entry.get(3..)) else {
            bail!("git status printed an entry otto cannot read");
        };
        changes.push(Change {
            code: String::from_utf8_lossy(code).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
            raw: path.to_vec(),
        });
    }
    Ok(changes)
}

#[cfg(unix)]
fn os_path(raw: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt as _;
    Path::new(std::ffi::OsStr::from_bytes(raw))
}

#[cfg(not(unix))]
fn os_path(raw: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(raw).into_owned())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Feeds what is written into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_entries_are_read_and_garbage_refused() {
        let changes = parse_status(b" M src/a.rs\0?? new file\0D  gone\0").unwrap();
        assert_eq!(
            changes,
            [
                Change {
                    code: " M".into(),
                    path: "src/a.rs".into(),
                    raw: b"src/a.rs".to_vec()
                },
                Change {
                    code: "??".into(),
                    path: "new file".into(),
                    raw: b"new file".to_vec()
                },
                Change {
                    code: "D ".into(),
                    path: "gone".into(),
                    raw: b"gone".to_vec()
                },
            ]
        );
        assert!(parse_status(b"x\0").is_err());
        assert!(parse_status(b"").unwrap().is_empty());
    }
}

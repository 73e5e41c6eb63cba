//! The repositories a node watches, and the bare mirror it keeps of each.
//!
//! `otto-node repo add` registers a repository: `<home>/repos/<name>/` holds its settings
//! (`repo.json`), its webhook secret (`webhook.secret`, mode 0600), its bare mirror
//! (`mirror.git`), what the node has already acted on (`seen.json`: each ref's last
//! commit; `deliveries.json`: the last webhook delivery ids) and the snapshots of commits it checked out
//! (`checkouts/<commit>`: the snapshot's blob digest).
//!
//! Commits of runs other nodes offered stages of are kept apart from those mirrors, per
//! repository URL, under `<home>/mirrors/<sha256 of the URL, 32 hex digits>/`:
//! `fetched.git` (fetched from the URL itself, when the policy for the asking org lists it
//! and the node has no repository with that URL), `received.git` (taken out of the asking
//! node's git bundles, by commit id; it has no remote), `checkouts/<commit>` and
//! `bundles/<commit>` (the digests of the snapshot and of the bundle made of a commit) and
//! `refused/<commit>` (why the commit could not be had, for the stage to say).
//!
//! Changes are found the same way whatever told the node to look (a webhook, a poll, a
//! local hook): fetch into the mirror, compare the mirror's refs with `seen`, act on the
//! refs whose commit changed, then record them. One lock per repository orders this, so
//! the same commit seen by a push and by a poll starts one run.

pub mod forge;
pub mod git;
pub mod libs;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use forge::Forge;
pub use git::{GitError, Mirror};

use otto_protocol::GitBundle;
use sha2::Digest as _;

use crate::blobs::{BlobStore, Digest};

/// How many webhook delivery ids a repository remembers, to refuse a replay.
const MAX_DELIVERIES: usize = 1000;

/// The longest webhook secret read from `--secret-file`.
pub const MAX_SECRET: usize = 4096;

/// A repository the node watches, as `repo.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Its name on this node: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub name: String,
    /// Where the node fetches from.
    pub url: String,
    /// Which forge sends its webhooks.
    pub forge: Forge,
    /// The branch a schedule runs on (the remote's default branch when added).
    pub branch: String,
    /// Poll with `git ls-remote` every this many seconds; `None`: no polling.
    #[serde(default)]
    pub poll_secs: Option<u64>,
    /// The forge's API, for commit statuses.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The vault secret holding the forge API token.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// When it was added, in milliseconds since the Unix epoch.
    pub added_at: u64,
}

/// What the node has acted on for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Each ref's commit when the node last looked.
    pub refs: BTreeMap<String, String>,
}

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The name is not a valid repository name.
    #[error(
        "the repository name {0:?} must be 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
    )]
    BadName(String),
    /// The URL is refused.
    #[error("the repository URL is refused: {0}")]
    BadUrl(String),
    /// Some other setting is refused.
    #[error("{0}")]
    Invalid(String),
    /// No repository has this name.
    #[error("no repository is named {0:?} on this node (see otto-node repo list)")]
    Unknown(String),
    /// A repository with this name exists.
    #[error("a repository named {0:?} exists already (remove it first with otto-node repo rm)")]
    Exists(String),
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A file of the repository could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepoError {
    let what = what.into();
    move |source| RepoError::Io { what, source }
}

/// Checks a repository name.
pub fn check_name(name: &str) -> Result<(), RepoError> {
    let mut bytes = name.bytes();
    let first = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if first && rest && name.len() <= 64 {
        Ok(())
    } else {
        Err(RepoError::BadName(name.chars().take(64).collect()))
    }
}

/// The name a repository gets from its URL when none is given: the last path segment
/// without `.git`, lowercased.
pub fn name_from_url(url: &str) -> Option<String> {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()?
        .trim_end_matches(".git")
        .to_ascii_lowercase();
    check_name(&last).ok().map(|()| last)
}

/// A branch or tag name as refs carry it: printable, no `..`, at most 255 bytes.
pub fn check_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '\\' && c != ':')
}

/// The repositories of one node. Cheap to clone.
#[derive(Clone)]
pub struct Repos(Arc<Inner>);

struct Inner {
    /// `<home>/repos`.
    dir: PathBuf,
    /// The node's home, which no repository URL may point into.
    home: PathBuf,
    /// One lock per repository name: held while its mirror is fetched and `seen` changes.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while a delivery id is recorded.
    deliveries: Mutex<()>,
}

/// A repository held under its lock: fetch, compare, record.
pub struct Locked<'a> {
    repos: &'a Repos,
    /// Its settings.
    pub config: RepoConfig,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Repos {
    /// The repositories under `<home>/repos`.
    pub fn new(home: &Path) -> Self {
        Self(Arc::new(Inner {
            dir: home.join("repos"),
            home: home.to_owned(),
            locks: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(()),
        }))
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.0.dir.join(name)
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// Every repository, by name.
    pub fn list(&self) -> Result<Vec<RepoConfig>, RepoError> {
        let entries = match std::fs::read_dir(&self.0.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("reading {}", self.0.dir.display()))(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(format!("reading {}", self.0.dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok()
                && let Ok(config) = self.get(&name)
            {
                out.push(config);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The repository named `name`.
    pub fn get(&self, name: &str) -> Result<RepoConfig, RepoError> {
        check_name(name)?;
        let file = self.repo_dir(name).join("repo.json");
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepoError::Unknown(name.to_owned()));
            }
            Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| RepoError::Invalid(format!("{} is unreadable: {e}", file.display())))
    }

    /// The repository whose URL is `url`, if the node has one.
    pub fn by_url(&self, url: &str) -> Option<RepoConfig> {
        self.list().ok()?.into_iter().find(|r| r.url == url)
    }

    /// The webhook secret of `name`.
    pub fn secret(&self, name: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, RepoError> {
        check_name(name)?;
        let file = self.repo_dir(name).join("webhook.secret");
        std::fs::read(&file)
            .map(zeroize::Zeroizing::new)
            .map_err(io(format!("reading {}", file.display())))
    }

    /// Records a webhook delivery id of `name` (the last [`MAX_DELIVERIES`] are kept, in
    /// `deliveries.json`); `false` when it was recorded before: a replay. Blocks.
    pub fn first_delivery(&self, name: &str, id: &str) -> Result<bool, RepoError> {
        check_name(name)?;
        let _guard = self.0.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.repo_dir(name).join("deliveries.json");
        let mut ids: VecDeque<String> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
        };
        if ids.iter().any(|d| d == id) {
            return Ok(false);
        }
        ids.push_back(id.to_owned());
        while ids.len() > MAX_DELIVERIES {
            ids.pop_front();
        }
        write_json(&file, &ids)?;
        Ok(true)
    }

    /// The mirror of `name`.
    pub fn mirror(&self, name: &str) -> Mirror {
        Mirror::at(self.repo_dir(name).join("mirror.git"))
    }

    /// Adds a repository: checks its settings, makes its mirror, fetches it once and
    /// records every ref as seen (so what is there already starts nothing). When
    /// `config.branch` is empty, the remote's default branch (else `main`) is taken.
    /// A failed add leaves nothing behind.
    pub async fn add(
        &self,
        mut config: RepoConfig,
        secret: &[u8],
    ) -> Result<RepoConfig, RepoError> {
        check_name(&config.name)?;
        git::check_url(&config.url, &self.0.home).map_err(RepoError::BadUrl)?;
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Err(RepoError::Invalid(format!(
                "the webhook secret must have 1 to {MAX_SECRET} bytes"
            )));
        }
        if !config.branch.is_empty() && !check_ref_name(&config.branch) {
            return Err(RepoError::Invalid(format!(
                "{:?} is not a branch name",
                config.branch
            )));
        }
        if let Some(api) = &config.api_url {
            crate::outbound::status::check_api_url(api).map_err(RepoError::Invalid)?;
        }
        if config.token_secret.is_some() && config.forge == Forge::Generic {
            return Err(RepoError::Invalid(
                "--token-secret is for commit statuses, which only github, gitlab and gitea take: give --forge".into(),
            ));
        }
        if config.poll_secs.is_some_and(|s| s < 10) {
            return Err(RepoError::Invalid("poll at most every 10 seconds".into()));
        }
        let lock = self.lock_of(&config.name);
        let _guard = lock.lock().await;
        let dir = self.repo_dir(&config.name);
        std::fs::create_dir_all(&self.0.dir)
            .map_err(io(format!("creating {}", self.0.dir.display())))?;
        let created = {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)
        };
        match created {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RepoError::Exists(config.name));
            }
            Err(e) => return Err(io(format!("creating {}", dir.display()))(e)),
        }
        let made = async {
            let mirror = Mirror::create(dir.join("mirror.git"), &config.url).await?;
            mirror.fetch(&[]).await?;
            if config.branch.is_empty() {
                config.branch = mirror
                    .remote_head()
                    .await
                    .ok()
                    .flatten()
                    .filter(|b| check_ref_name(b))
                    .unwrap_or_else(|| "main".to_owned());
            }
            let seen = Seen {
                refs: mirror.refs().await?,
            };
            write_private(&dir.join("webhook.secret"), secret)?;
            write_json(&dir.join("seen.json"), &seen)?;
            write_json(&dir.join("repo.json"), &config)?;
            Ok::<_, RepoError>(())
        }
        .await;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(config)
    }

    /// Removes a repository with its mirror.
    pub async fn remove(&self, name: &str) -> Result<RepoConfig, RepoError> {
        let config = self.get(name)?;
        let lock = self.lock_of(name);
        let _guard = lock.lock().await;
        let dir = self.repo_dir(name);
        // Renamed first, so a half-removed repository is never read.
        let gone = self
            .0
            .dir
            .join(format!(".removed-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &gone).map_err(io(format!("removing {}", dir.display())))?;
        std::fs::remove_dir_all(&gone).map_err(io(format!("removing {}", gone.display())))?;
        Ok(config)
    }

    /// Takes the lock of `name`, for one look at what changed.
    pub async fn lock(&self, name: &str) -> Result<Locked<'_>, RepoError> {
        self.get(name)?;
        let guard = self.lock_of(name).lock_owned().await;
        // Read again under the lock: it may have been removed meanwhile.
        let config = self.get(name)?;
        Ok(Locked {
            repos: self,
            config,
            _guard: guard,
        })
    }

    /// The snapshot of `commit` of the repository at `url`, as a blob: from the cache of
    /// checkouts, else made from the mirror (fetching first when the mirror lacks the
    /// commit). `Err` when the node has no repository with that URL or the commit is
    /// not there.
    pub async fn checkout(
        &self,
        url: &str,
        commit: &str,
        blobs: &BlobStore,
        max_bytes: usize,
    ) -> Result<Digest, RepoError> {
        let config = self.by_url(url).ok_or_else(|| {
            RepoError::Invalid(format!(
                "this node has no repository {url} (add it with otto-node repo add)"
            ))
        })?;
        if !git::is_commit_id(commit) {
            return Err(RepoError::Invalid(format!(
                "{commit:?} is not a full commit id"
            )));
        }
        let cached = self.repo_dir(&config.name).join("checkouts").join(commit);
        if let Some(digest) = std::fs::read_to_string(&cached)
            .ok()
            .and_then(|t| t.trim().parse::<Digest>().ok())
            .filter(|d| blobs.has(d))
        {
            return Ok(digest);
        }
        let mirror = self.mirror(&config.name);
        if !mirror.has_commit(commit).await {
            let _guard = self.lock_of(&config.name).lock_owned().await;
            mirror.fetch(&[]).await?;
            if !mirror.has_commit(commit).await {
                return Err(RepoError::Invalid(format!(
                    "commit {commit} is not in {url} (fetched just now)"
                )));
            }
        }
        let tar = mirror.checkout(commit, max_bytes).await?;
        let digest = blobs
            .put_bytes(&tar)
            .map_err(|e| RepoError::Invalid(format!("storing the checkout: {e}")))?;
        std::fs::create_dir_all(cached.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(&cached, digest.to_string()))
            .map_err(io(format!("writing {}", cached.display())))?;
        Ok(digest)
    }
}

impl Repos {
    /// The committer time of `commit` of the repository at `url`, from a mirror that has it.
    pub async fn commit_time(&self, url: &str, commit: &str) -> Result<i64, RepoError> {
        let mirror = self.mirror_with(url, commit).await.ok_or_else(|| {
            RepoError::Invalid(format!("this node has not got commit {commit} of {url}"))
        })?;
        Ok(mirror.commit_time(commit).await?)
    }
}

impl Repos {
    /// `<home>/mirrors/<32 hex digits of the URL's sha256>`.
    fn url_dir(&self, url: &str) -> PathBuf {
        let hash = sha2::Sha256::digest(url.as_bytes());
        let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.0.home.join("mirrors").join(hex)
    }

    /// The mirrors that may hold commits of `url`: the repository's own when the node has
    /// one with that URL, then those of offered runs, where they exist.
    fn mirrors_of(&self, url: &str) -> Vec<Mirror> {
        let mut mirrors = Vec::new();
        if let Some(config) = self.by_url(url) {
            mirrors.push(self.mirror(&config.name));
        }
        let dir = self.url_dir(url);
        for name in ["fetched.git", "received.git"] {
            if dir.join(name).is_dir() {
                mirrors.push(Mirror::at(dir.join(name)));
            }
        }
        mirrors
    }

    /// The first mirror of `url` that has `commit`.
    async fn mirror_with(&self, url: &str, commit: &str) -> Option<Mirror> {
        for mirror in self.mirrors_of(url) {
            if mirror.has_commit(commit).await {
                return Some(mirror);
            }
        }
        None
    }

    /// Fetches `commit` from `url` itself (the policy for the asking org lists the
    /// repository): into the repository's mirror when the node has one with that URL,
    /// else into `fetched.git`. The URL is checked again here, with the node's home
    /// (`file://` into it is refused).
    pub async fn fetch_commit(&self, url: &str, commit: &str) -> Result<(), RepoError> {
        git::check_url(url, &self.0.home).map_err(RepoError::BadUrl)?;
        if !git::is_commit_id(commit) {
            return Err(RepoError::Invalid(format!(
                "{commit:?} is not a full commit id"
            )));
        }
        let (mirror, lock) = match self.by_url(url) {
            Some(config) => (self.mirror(&config.name), self.lock_of(&config.name)),
            None => {
                let dir = self.url_dir(url);
                let lock = self.lock_of(&format!("/{}", dir.display()));
                let _guard = lock.lock().await;
                let path = dir.join("fetched.git");
                if !path.is_dir() {
                    std::fs::create_dir_all(&dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                    if let Err(e) = Mirror::create(path.clone(), url).await {
                        let _ = std::fs::remove_dir_all(&path);
                        return Err(e.into());
                    }
                }
                drop(_guard);
                (Mirror::at(path), lock)
            }
        };
        let _guard = lock.lock().await;
        if !mirror.has_commit(commit).await {
            mirror.fetch(&[]).await?;
        }
        if !mirror.has_commit(commit).await {
            // No branch or tag has it (any more): ask for it by its id.
            if let Err(e) = mirror.fetch_commit(commit).await {
                return Err(RepoError::Invalid(format!(
                    "commit {commit} is not in {url} (fetched just now: {e})"
                )));
            }
        }
        mirror.resolve_commit(commit).await?;
        self.clear_refusal(url, commit);
        Ok(())
    }

    /// Takes `commit` out of the git bundle at `bundle` (fetched from the asking node),
    /// into `received.git` of `url`; see [`Mirror::import_bundle`].
    pub async fn import_bundle(
        &self,
        url: &str,
        commit: &str,
        bundle: &Path,
    ) -> Result<(), RepoError> {
        let dir = self.url_dir(url);
        let lock = self.lock_of(&format!("/{}", dir.display()));
        let _guard = lock.lock().await;
        let path = dir.join("received.git");
        if !path.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            if let Err(e) = Mirror::create_local(path.clone()).await {
                let _ = std::fs::remove_dir_all(&path);
                return Err(e.into());
            }
        }
        Mirror::at(path).import_bundle(bundle, commit).await?;
        self.clear_refusal(url, commit);
        Ok(())
    }

    /// Records why `commit` of `url` could not be had: a stage that needs it fails with
    /// this reason.
    pub fn record_refusal(&self, url: &str, commit: &str, reason: &str) {
        let dir = self.url_dir(url).join("refused");
        if git::is_commit_id(commit) {
            let _ = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join(commit), reason.as_bytes()));
        }
    }

    fn clear_refusal(&self, url: &str, commit: &str) {
        if git::is_commit_id(commit) {
            let _ = std::fs::remove_file(self.url_dir(url).join("refused").join(commit));
        }
    }

    /// The snapshot of `commit` of `url` for a stage of a run another node offered: from a
    /// mirror that already has it (never fetched here: the exchange got it when it
    /// accepted the offer), checked out as [`Mirror::checkout`] says. `Err` says why not.
    pub async fn checkout_offered(
        &self,
        url: &str,
        commit: &str,
        blobs: &BlobStore,
        max_bytes: usize,
    ) -> Result<Digest, RepoError> {
        if !git::is_commit_id(commit) {
            return Err(RepoError::Invalid(format!(
                "{commit:?} is not a full commit id"
            )));
        }
        let dir = self.url_dir(url);
        let cached = dir.join("checkouts").join(commit);
        if let Some(digest) = std::fs::read_to_string(&cached)
            .ok()
            .and_then(|t| t.trim().parse::<Digest>().ok())
            .filter(|d| blobs.has(d))
        {
            return Ok(digest);
        }
        let Some(mirror) = self.mirror_with(url, commit).await else {
            let refused = std::fs::read_to_string(dir.join("refused").join(commit))
                .ok()
                .map(|r| r.chars().take(1024).collect::<String>());
            return Err(RepoError::Invalid(refused.unwrap_or_else(|| {
                format!("this node has not got commit {commit} of {url}")
            })));
        };
        let tar = mirror.checkout(commit, max_bytes).await?;
        let digest = blobs
            .put_bytes(&tar)
            .map_err(|e| RepoError::Invalid(format!("storing the checkout: {e}")))?;
        std::fs::create_dir_all(dir.join("checkouts"))
            .and_then(|()| std::fs::write(&cached, digest.to_string()))
            .map_err(io(format!("writing {}", cached.display())))?;
        Ok(digest)
    }

    /// A git bundle of `commit` of `url` (with its whole history) for the owner of a
    /// stage this node offers, stored as a blob: from the cache of bundles, else made from
    /// a mirror that has the commit. `Ok(None)` when no mirror here has it; `Err` when
    /// making it failed or it is larger than `max_bytes`.
    pub async fn bundle(
        &self,
        url: &str,
        commit: &str,
        blobs: &BlobStore,
        max_bytes: u64,
    ) -> Result<Option<GitBundle>, RepoError> {
        if !git::is_commit_id(commit) {
            return Ok(None);
        }
        let dir = self.url_dir(url);
        let cached = dir.join("bundles").join(commit);
        if let Some(digest) = std::fs::read_to_string(&cached)
            .ok()
            .and_then(|t| t.trim().parse::<Digest>().ok())
            .filter(|d| blobs.has(d))
            && let Ok(size) = blobs.size(&digest)
        {
            return Ok(Some(GitBundle {
                sha256: otto_protocol::Digest(*digest.as_bytes()),
                size,
            }));
        }
        let Some(mirror) = self.mirror_with(url, commit).await else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir.join("bundles"))
            .map_err(io(format!("creating {}", dir.display())))?;
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let out = dir
            .join("bundles")
            .join(format!(".{commit}.{unique}.bundle"));
        let scratch = dir.join(format!(".scratch-{unique}"));
        let made = mirror.create_bundle(commit, &out, &scratch).await;
        let stored = made.map_err(RepoError::from).and_then(|()| {
            let size = std::fs::metadata(&out)
                .map_err(io(format!("reading {}", out.display())))?
                .len();
            if size > max_bytes {
                return Err(RepoError::Invalid(format!(
                    "the git bundle of {commit} has {size} bytes, more than the {max_bytes}                      a bundle may have"
                )));
            }
            let file = std::fs::File::open(&out).map_err(io(format!("reading {}", out.display())))?;
            let digest = blobs
                .put(file)
                .map_err(|e| RepoError::Invalid(format!("storing the bundle: {e}")))?;
            std::fs::write(&cached, digest.to_string())
                .map_err(io(format!("writing {}", cached.display())))?;
            Ok(GitBundle {
                sha256: otto_protocol::Digest(*digest.as_bytes()),
                size,
            })
        });
        let _ = std::fs::remove_file(&out);
        stored.map(Some)
    }
}

impl Locked<'_> {
    /// The repository's mirror.
    pub fn mirror(&self) -> Mirror {
        self.repos.mirror(&self.config.name)
    }

    /// What the node has acted on.
    pub fn seen(&self) -> Result<Seen, RepoError> {
        let file = self.repos.repo_dir(&self.config.name).join("seen.json");
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| RepoError::Invalid(format!("{} is unreadable: {e}", file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Seen::default()),
            Err(e) => Err(io(format!("reading {}", file.display()))(e)),
        }
    }

    /// Records what the node has acted on.
    pub fn record(&self, seen: &Seen) -> Result<(), RepoError> {
        write_json(
            &self.repos.repo_dir(&self.config.name).join("seen.json"),
            seen,
        )
    }
}

/// What changed between `seen` and `now`: refs whose commit is new or different (deleted
/// refs start nothing).
pub fn changed(
    seen: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    now.iter()
        .filter(|(name, commit)| seen.get(*name) != Some(*commit))
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RepoError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| RepoError::Invalid(format!("writing {}: {e}", path.display())))?;
    write_private(path, &bytes)
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_refs_are_checked() {
        for ok in ["app", "my-app.v2", "a_b", "0x"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "App", "a/b", "../x", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            name_from_url("https://github.com/Acme/App.git").as_deref(),
            Some("app")
        );
        assert_eq!(name_from_url("git@host:acme/tool").as_deref(), Some("tool"));
        assert!(check_ref_name("release/1.x"));
        for bad in ["", "-x", "a..b", "a b", "a:b", "a\\b", "a\nb"] {
            assert!(!check_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_new_or_moved_refs_count_as_changed() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let seen = map(&[("refs/heads/main", "1"), ("refs/heads/old", "2")]);
        let now = map(&[("refs/heads/main", "3"), ("refs/tags/v1", "3")]);
        assert_eq!(
            changed(&seen, &now),
            vec![
                ("refs/heads/main".to_owned(), "3".to_owned()),
                ("refs/tags/v1".to_owned(), "3".to_owned())
            ]
        );
        assert!(changed(&now, &now).is_empty());
    }
}

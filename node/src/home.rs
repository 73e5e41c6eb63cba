//! The node's home directory: where everything a node keeps lives, its configuration
//! file, and [`init`], which creates a new home.
//!
//! ```text
//! <home>/                 mode 0700
//!   config.toml           the configuration (see [`Config`]); every field written out
//!   node.key              the node key, PKCS#8 PEM, 0600
//!   org.key               the org key, only on the org's first node, 0600
//!   node.cert             the node certificate signed by the org key (CBOR DSSE envelope)
//!   trust.toml            the trust store
//!   ca.pem, ca.key        the org CA that issues the HTTPS certificate of the webhook listener, 0600
//!   api.token             the API's bearer token, 64 hex digits, 0600
//!   api.addr              the API's address while the node runs ("127.0.0.1:PORT")
//!   mesh.addrs            the mesh's listen addresses while the node runs, one multiaddr a line
//!   mesh.last             the mesh addresses bound last; a restart binds the same ports again
//!   hooks.addr            the webhook listener's last address (reused after a restart)
//!   store.redb            the store
//!   blobs/                the blob store
//!   fetch/                artifacts and snapshots being fetched from other nodes (resumable)
//!   run/                  per-attempt unix sockets, 0700
//! ```
//!
//!
//! Stage workspaces live outside the home, in `[agent] work_dir` (default: `<home>-work`
//! next to it), so that the wall around a step can hide the whole home from it.
//!
//! Randomness and the clock come in as arguments; the binary passes the operating
//! system's generator and the current time.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use otto_trust::cert::{CertSpec, issue_cert, verify_presented_cert};
use otto_trust::keys::{NodeKey, OrgKey};
use otto_trust::persist::{self, PersistError};
use otto_trust::x509::{OrgCa, X509Error};
use otto_trust::{TrustStore, VerifiedCert};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::blobs::{BlobError, BlobStore};
use crate::store::{self, Store};

/// How long a node certificate made by [`init`] is valid: one year.
pub const NODE_CERT_SECS: u64 = 365 * 24 * 60 * 60;

/// How long the org CA made by [`init`] is valid: ten years.
pub const CA_SECS: u64 = 10 * 365 * 24 * 60 * 60;

/// The largest configuration file read, in bytes.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The default largest snapshot upload: 64 MiB.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;

/// The default largest JSON request body: 1 MiB.
pub const DEFAULT_MAX_JSON_BYTES: u64 = 1024 * 1024;

/// A node's home directory. Only names paths; nothing is read until asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

/// The node's configuration, `config.toml` in its home.
///
/// Unknown fields are refused, so a misspelt setting is an error rather than silently
/// ignored. Every field except the node's name and org has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who the node is.
    pub node: NodeConfig,
    /// The local HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The HTTPS listener for webhook callbacks.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// The agent processes that run stages.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The peer-to-peer mesh.
    #[serde(default)]
    pub mesh: MeshConfig,
    /// Where the messages of `notify { }` blocks may go.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The container engine that runs `runtime docker` stages.
    #[serde(default, skip_serializing_if = "ContainersConfig::is_default")]
    pub containers: ContainersConfig,
}

/// `[containers]`: the engine that runs the steps of `runtime docker` stages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    /// The engine: `podman`, `docker`, a path to either, or `none`; default podman, else
    /// docker, found on `PATH`. It counts only when it answers `version` at start.
    pub engine: Option<String>,
    /// Options given before every engine command (e.g. podman's `--root` for an image
    /// store of its own).
    pub options: Vec<String>,
}

impl ContainersConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[notify]`: where the messages of `notify { }` blocks (`slack`, `webhook`) may go. The
/// operator decides: an Ottofile only picks among these, and names no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The vault secret holding the Slack-compatible incoming-webhook URL that `slack`
    /// posts to; none: `slack` sends nothing.
    pub slack_url_secret: Option<String>,
    /// The URLs `webhook url: '...'` may name, each with the vault secret holding the key
    /// its messages are signed with.
    pub webhooks: Vec<NotifyWebhook>,
}

/// One URL a `webhook` message may go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyWebhook {
    /// The URL, exactly as an Ottofile names it (https, or http to this machine).
    pub url: String,
    /// The vault secret holding the HMAC-SHA256 key of `X-Otto-Signature-256`.
    pub secret: String,
}

/// `[node]`: who the node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name within its org (also in its certificate).
    pub name: String,
    /// The org's name.
    pub org: String,
    /// The stage owners this node runs (e.g. `["ops"]`); stages without an owner always
    /// run on the node that started the run.
    #[serde(default)]
    pub answers_to: Vec<String>,
    /// Whether the org a run's plan binds an upstream owner to may be one this node never
    /// pinned (`"bound"`: taken with the key the plan gives), or must be pinned here
    /// (`"pinned"`, the default).
    #[serde(default)]
    pub upstream_owners: otto_handoff::OwnerPolicy,
    /// The most bytes one attempt of a stage may write to its log (its records, headers
    /// included); past that one line says it was truncated. Default 128 MiB.
    #[serde(default = "default_max_log_bytes")]
    pub max_log_bytes: u64,
    /// After how many days the logs, workspaces and blobs of an ended run are removed
    /// (the node does it every day; `otto-node gc` on demand); 0 keeps them. Default 30.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The labels of this node's machine that `runtime computer { label = '…' }` matches
    /// (e.g. `["linux", "x86_64"]`); a stage whose label is not here is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// How long a stage this node moves on waits for a node that answers to its owner
    /// before it fails, saying no known node answers to it (an owner whose org is pinned
    /// but none of whose nodes is known yet). Default 300 (five minutes).
    #[serde(default = "default_owner_wait_secs")]
    pub owner_wait_secs: u64,
}

/// The default of `[node] owner_wait_secs`.
pub const DEFAULT_OWNER_WAIT_SECS: u64 = 300;

fn default_owner_wait_secs() -> u64 {
    DEFAULT_OWNER_WAIT_SECS
}

/// The default of `[node] retention_days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

fn default_retention_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

fn default_max_log_bytes() -> u64 {
    store::logs::DEFAULT_MAX_BYTES
}

/// `[api]`: the local HTTP API the `otto` CLI talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The address to listen on; a loopback address only. Port 0 takes any free port.
    pub listen: SocketAddr,
    /// The largest snapshot upload, in bytes.
    pub max_snapshot_bytes: u64,
    /// The largest JSON request body, in bytes.
    pub max_json_bytes: u64,
}

/// `[webhooks]`: the HTTPS listener external systems call back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The address to listen on. Port 0 reuses the port of the previous start when it is
    /// free, else takes any free port.
    pub listen: SocketAddr,
    /// The names (DNS names or IP addresses) in the listener's certificate.
    pub names: Vec<String>,
    /// The base URL shown in webhook URLs, when callers reach the node by another address
    /// (a proxy, a public name); default `https://<listen address>`.
    pub public_url: Option<String>,
}

/// `[agent]`: the processes that run stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The `otto-agent` executable; default: `$OTTO_AGENT`, else `otto-agent` next to
    /// the `otto-node` executable.
    pub path: Option<PathBuf>,
    /// Step package directories (each a package, or a directory of packages); relative
    /// paths are relative to the home.
    pub packages: Vec<PathBuf>,
    /// The largest artifact a stage may `archive`, in bytes of its tar; default 2 GiB.
    pub max_artifact_bytes: Option<u64>,
    /// Where stage workspaces (and their private directories) live, an absolute path
    /// outside the home; default `<home>-work` next to the home.
    pub work_dir: Option<PathBuf>,
    /// Directories every step may write besides its workspace (e.g. where a deploy step
    /// publishes); absolute paths.
    pub writable: Vec<PathBuf>,
    /// The user steps run as when the node runs as root.
    pub run_as: Option<String>,
    /// Whether a node that cannot wall steps in completely (a kernel without Landlock, or
    /// a root node with no `run_as`) refuses the
    /// stages of other orgs' runs.
    pub refuse_foreign_unwalled: bool,
    /// What one stage may use.
    pub limits: LimitsConfig,
    /// How many agents (stage attempts, polls, notify steps) run at once on this node;
    /// the others wait. Default: the number of CPU cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            path: None,
            packages: Vec::new(),
            max_artifact_bytes: None,
            work_dir: None,
            writable: Vec::new(),
            run_as: None,
            refuse_foreign_unwalled: true,
            limits: LimitsConfig::default(),
            slots: None,
        }
    }
}

/// `[agent.limits]`: what one stage may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The most processes and threads a stage's steps may add to their user's
    /// (`RLIMIT_NPROC`).
    pub processes: u64,
    /// The most data memory one step process may map, in bytes (`RLIMIT_DATA`).
    pub memory_bytes: u64,
    /// The most bytes of output a stage may log; the rest is dropped, and one line says so.
    pub output_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = otto_agent_protocol::Limits::default();
        Self {
            processes: limits.processes,
            memory_bytes: limits.memory_bytes,
            output_bytes: limits.output_bytes,
        }
    }
}

impl From<LimitsConfig> for otto_agent_protocol::Limits {
    fn from(limits: LimitsConfig) -> Self {
        Self {
            processes: limits.processes,
            memory_bytes: limits.memory_bytes,
            output_bytes: limits.output_bytes,
        }
    }
}

impl AgentConfig {
    /// [`Self::slots`], or the number of CPU cores.
    pub fn slots(&self) -> usize {
        self.slots.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

/// `[mesh]`: the libp2p mesh other nodes reach this one on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// The multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` or
    /// `/ip4/127.0.0.1/udp/0/quic-v1`. Port 0 takes any free port.
    pub listen: Vec<String>,
}

/// What [`init`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The org's name.
    pub org: String,
    /// The node's name.
    pub name: String,
    /// An existing org key file: the new node joins that org and the key is not copied
    /// into the home. Without it a new org key is made and kept in the home.
    pub org_key: Option<PathBuf>,
    /// The stage owners this node runs.
    pub answers_to: Vec<String>,
    /// The user steps run as (`[agent] run_as`), for a node that runs as root; the user
    /// must exist by the time the node starts ([`crate::step_user::ensure`]).
    pub run_as: Option<String>,
}

/// What [`init`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Initialized {
    /// The home directory.
    pub home: PathBuf,
    /// The node's name.
    pub node: String,
    /// The org's name.
    pub org: String,
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// The org key's id (`ed25519:<hex>`).
    pub org_key: String,
    /// Where the org key file is: in the home for a new org, else the file given.
    pub org_key_file: PathBuf,
}

/// The node's identity as loaded from its home.
pub struct Identity {
    /// The node key.
    pub key: NodeKey,
    /// The node certificate, checked against the node key.
    pub cert: VerifiedCert,
}

/// What went wrong with a home.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// `init` was pointed at a directory that already has files.
    #[error("{} already exists and is not empty; choose another --home", .0.display())]
    NotEmpty(PathBuf),
    /// The home has no configuration file.
    #[error("{} is not an otto node home (no config.toml); create one with `otto-node init`", .0.display())]
    NotAHome(PathBuf),
    /// No home was given and none can be found.
    #[error("no node home: pass --home or set OTTO_HOME")]
    NoHome,
    /// A name is not valid.
    #[error("invalid {what} {name:?}: use 1 to 64 ascii letters, digits, '-', '_' or '.'")]
    Name {
        /// What the name is for.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// `origin` among the owner names a node answers to: the name is the plan's, for the
    /// node that started the run, and a node's own names never make it one.
    #[error(
        "--answers-to origin: \"origin\" is reserved for the node that starts a run (stages without an owner run there); leave it out"
    )]
    ReservedOwner,
    /// The configuration is not valid.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A key, certificate or trust store file could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The node certificate could not be made or does not fit the node key.
    #[error("node certificate {}: {reason}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The org CA could not be made or read.
    #[error("org ca: {0}")]
    Ca(#[from] X509Error),
    /// The store could not be created.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The blob store could not be created.
    #[error("blob store: {0}")]
    Blobs(#[from] BlobError),
}

/// Creates a new node home at `root` (mode 0700): configuration, node key, org key (or
/// the given org's), node certificate valid for [`NODE_CERT_SECS`] from `now` (seconds
/// since the Unix epoch), empty trust store, org CA, API token, store and blob store.
///
/// Refuses a `root` that exists and is not empty. When it fails after creating `root`,
/// it removes what it created.
pub fn init(
    root: &Path,
    options: &InitOptions,
    rng: &mut impl CryptoRng,
    now: u64,
) -> Result<Initialized, HomeError> {
    check_name("org name", &options.org)?;
    check_name("node name", &options.name)?;
    for owner in &options.answers_to {
        check_name("owner name", owner)?;
        if owner == otto_pipeline::plan::ORIGIN {
            return Err(HomeError::ReservedOwner);
        }
    }
    // Read the org key before creating anything, so a bad key file leaves no trace.
    let existing_org = options
        .org_key
        .as_deref()
        .map(persist::load_org_key)
        .transpose()?;
    let created = match fs::read_dir(root) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(HomeError::NotEmpty(root.to_owned()));
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(root).map_err(io_err("create", root))?;
            true
        }
        Err(e) => return Err(io_err("read", root)(e)),
    };
    let home = Home::new(root);
    let result = home.fill(options, existing_org, rng, now);
    if result.is_err() {
        // Leave nothing half-made: remove what this call created.
        if created {
            let _ = fs::remove_dir_all(root);
        } else if let Ok(entries) = fs::read_dir(root) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
    result
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The home named by `flag` (from `--home` or `OTTO_HOME`), else `~/.otto`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self, HomeError> {
        if let Some(root) = flag {
            return Ok(Self::new(root));
        }
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(Self::new(PathBuf::from(home).join(".otto"))),
            _ => Err(HomeError::NoHome),
        }
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `node.key`.
    pub fn node_key_file(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// `org.key` (present only on an org's first node).
    pub fn org_key_file(&self) -> PathBuf {
        self.root.join("org.key")
    }

    /// `node.cert`.
    pub fn node_cert_file(&self) -> PathBuf {
        self.root.join("node.cert")
    }

    /// `trust.toml`.
    pub fn trust_file(&self) -> PathBuf {
        self.root.join("trust.toml")
    }

    /// `ca.pem`: the org CA's certificate, which webhook callers trust.
    pub fn ca_cert_file(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// `ca.key`: the org CA's private key.
    pub fn ca_key_file(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// `api.token`.
    pub fn api_token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// `api.addr`.
    pub fn api_addr_file(&self) -> PathBuf {
        self.root.join("api.addr")
    }

    /// `mesh.addrs`.
    pub fn mesh_addrs_file(&self) -> PathBuf {
        self.root.join("mesh.addrs")
    }

    /// `hooks.addr`.
    pub fn hooks_addr_file(&self) -> PathBuf {
        self.root.join("hooks.addr")
    }

    /// `store.redb`.
    pub fn store_file(&self) -> PathBuf {
        self.root.join(store::FILE_NAME)
    }

    /// `blobs/`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `logs/`: the stages' logs, a directory per run.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(store::logs::DIR_NAME)
    }

    /// The default work directory: `<home>-work`, next to the home and outside it.
    pub fn work_dir(&self) -> PathBuf {
        let mut name = self
            .root
            .file_name()
            .map_or_else(|| std::ffi::OsString::from("otto"), ToOwned::to_owned);
        name.push("-work");
        self.root.with_file_name(name)
    }

    /// `run/`.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Reads and checks `config.toml`.
    pub fn load_config(&self) -> Result<Config, HomeError> {
        let path = self.config_file();
        let text = match read_small(&path, MAX_CONFIG_LEN) {
            Ok(text) => text,
            Err(HomeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(HomeError::NotAHome(self.root.clone()));
            }
            Err(e) => return Err(e),
        };
        Config::from_toml(&text).map_err(|reason| HomeError::Config { path, reason })
    }

    /// Loads the node key and its certificate, and checks that the certificate is signed
    /// by the org key it names, certifies this node key and is valid at `now`.
    pub fn identity(&self, now: u64) -> Result<Identity, HomeError> {
        let key = persist::load_node_key(&self.node_key_file())?;
        let path = self.node_cert_file();
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let envelope = otto_protocol::decode_envelope(&bytes).map_err(|e| HomeError::Cert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let cert = verify_presented_cert(&envelope, now).map_err(|e| HomeError::Cert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if *cert.node_key() != key.public_key() {
            return Err(HomeError::Cert {
                path,
                reason: "it certifies another node key than node.key".into(),
            });
        }
        Ok(Identity { key, cert })
    }

    /// Rewrites the home's key files (`node.key`, `org.key` when present, `ca.key`) that
    /// are still PKCS#8 v2 documents, as older Otto wrote them, in the v1 form (RFC 8410)
    /// that OpenSSL and Python `cryptography` read. The keys do not change. Returns the
    /// files rewritten; the others are left untouched.
    pub fn migrate_keys(&self) -> Result<Vec<PathBuf>, HomeError> {
        if !self.config_file().exists() {
            return Err(HomeError::NotAHome(self.root.clone()));
        }
        let mut rewritten = Vec::new();
        for path in [
            self.node_key_file(),
            self.org_key_file(),
            self.ca_key_file(),
        ] {
            if path == self.org_key_file() && !path.exists() {
                continue;
            }
            if persist::migrate_key_file(&path)? {
                rewritten.push(path);
            }
        }
        Ok(rewritten)
    }

    /// The API token, made (64 random hex digits, mode 0600) if the home has none yet.
    pub fn ensure_api_token(
        &self,
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<String>, HomeError> {
        match self.read_api_token() {
            Ok(token) => Ok(token),
            Err(HomeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(bytes.as_mut_slice());
                let token = Zeroizing::new(hex::encode(bytes.as_slice()));
                persist::write_private_file(&self.api_token_file(), token.as_bytes())?;
                Ok(token)
            }
            Err(e) => Err(e),
        }
    }

    /// The API token from `api.token`, without surrounding whitespace.
    pub fn read_api_token(&self) -> Result<Zeroizing<String>, HomeError> {
        let path = self.api_token_file();
        let text = Zeroizing::new(read_small(&path, 4096)?);
        Ok(Zeroizing::new(text.trim().to_owned()))
    }

    /// The API address from `api.addr`, written by a running node.
    pub fn read_api_addr(&self) -> Result<SocketAddr, HomeError> {
        let path = self.api_addr_file();
        let text = read_small(&path, 4096)?;
        text.trim().parse().map_err(|_| HomeError::Config {
            path,
            reason: format!("{:?} is not an address", text.trim()),
        })
    }

    /// Writes the whole home's contents; `init` cleans up when this fails.
    fn fill(
        &self,
        options: &InitOptions,
        existing_org: Option<OrgKey>,
        rng: &mut impl CryptoRng,
        now: u64,
    ) -> Result<Initialized, HomeError> {
        set_mode(&self.root, 0o700)?;
        let mut config = Config::new(&options.name, &options.org, options.answers_to.clone());
        config.agent.run_as.clone_from(&options.run_as);
        persist::write_private_file(&self.config_file(), config.to_documented_toml().as_bytes())?;

        let node_key = NodeKey::generate(rng);
        persist::save_node_key(&self.node_key_file(), &node_key)?;
        let (org_key, org_key_file) = match (existing_org, &options.org_key) {
            (Some(key), Some(path)) => (key, path.clone()),
            _ => {
                let key = OrgKey::generate(rng);
                persist::save_org_key(&self.org_key_file(), &key)?;
                (key, self.org_key_file())
            }
        };
        let spec = CertSpec {
            node: options.name.clone(),
            org: options.org.clone(),
            node_key: node_key.public_key(),
            roles: Vec::new(),
            not_before: now,
            not_after: now + NODE_CERT_SECS,
        };
        let envelope = issue_cert(&spec, &org_key).map_err(|e| HomeError::Cert {
            path: self.node_cert_file(),
            reason: e.to_string(),
        })?;
        persist::write_private_file(
            &self.node_cert_file(),
            &otto_protocol::encode_envelope(&envelope),
        )?;
        // The node's own org is pinned from the start: its own receipts come back to it in
        // later offers' chains and must verify like anyone else's.
        let mut trust = TrustStore::new();
        trust
            .pin_org(&options.org, org_key.public_key(), now)
            .map_err(|e| HomeError::Config {
                path: self.trust_file(),
                reason: e.to_string(),
            })?;
        persist::save_trust_store(&self.trust_file(), &trust)?;

        let ca = OrgCa::generate(&options.org, rng, now, now + CA_SECS)?;
        persist::write_private_file(&self.ca_cert_file(), ca.cert_pem().as_bytes())?;
        persist::write_private_file(&self.ca_key_file(), ca.key_pem().as_bytes())?;

        self.ensure_api_token(rng)?;
        drop(Store::open(self.store_file())?);
        BlobStore::open(self.blobs_dir())?;
        let dir = self.run_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        set_mode(&dir, 0o700)?;
        Ok(Initialized {
            home: self.root.clone(),
            node: options.name.clone(),
            org: options.org.clone(),
            peer_id: node_key.peer_id().to_string(),
            org_key: org_key.keyid().to_owned(),
            org_key_file,
        })
    }
}

impl Config {
    /// The configuration of a new node, with every default.
    pub fn new(name: &str, org: &str, answers_to: Vec<String>) -> Self {
        Self {
            node: NodeConfig {
                name: name.to_owned(),
                org: org.to_owned(),
                answers_to,
                upstream_owners: otto_handoff::OwnerPolicy::default(),
                max_log_bytes: default_max_log_bytes(),
                retention_days: DEFAULT_RETENTION_DAYS,
                labels: Vec::new(),
                owner_wait_secs: DEFAULT_OWNER_WAIT_SECS,
            },
            api: ApiConfig::default(),
            webhooks: WebhookConfig::default(),
            agent: AgentConfig::default(),
            mesh: MeshConfig::default(),
            notify: NotifyConfig::default(),
            containers: ContainersConfig::default(),
        }
    }

    /// Parses and checks a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        config.check()?;
        Ok(config)
    }

    /// The configuration as TOML with a comment for every field, the way `init` writes it.
    pub fn to_documented_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let list = |vs: &[String]| {
            let items: Vec<String> = vs.iter().map(|v| s(v)).collect();
            format!("[{}]", items.join(", "))
        };
        let paths = |ps: &[PathBuf]| {
            let items: Vec<String> = ps.iter().map(|p| s(&p.to_string_lossy())).collect();
            format!("[{}]", items.join(", "))
        };
        let optional = |key: &str, value: Option<String>, example: &str| match value {
            Some(v) => format!("{key} = {}\n", s(&v)),
            None => format!("# {key} = {}\n", s(example)),
        };
        let mut out = String::new();
        out.push_str(
            "# Otto node configuration. Every setting is written out with its default;\n\
             # docs/operating.md describes them. Unknown settings are refused.\n\n",
        );
        out.push_str("[node]\n");
        out.push_str("# The node's name within its org; it is also in the node certificate.\n");
        out.push_str(&format!("name = {}\n", s(&self.node.name)));
        out.push_str("# The org's name.\n");
        out.push_str(&format!("org = {}\n", s(&self.node.org)));
        out.push_str(
            "# The stage owners this node runs (an Ottofile's `owner = '...'`). Stages\n\
             # without an owner always run on the node that started the run.\n",
        );
        out.push_str(&format!("answers_to = {}\n", list(&self.node.answers_to)));
        out.push_str(
            "# The org a run binds an upstream stage's owner to: \"pinned\" takes only orgs\n\
             # pinned here, \"bound\" also orgs never pinned, with the key the run gives\n\
             # (docs/security.md).\n",
        );
        out.push_str(&format!(
            "upstream_owners = {}\n",
            s(&self.node.upstream_owners.to_string())
        ));
        out.push_str(
            "# The most bytes one attempt of a stage may write to its log (logs/ in the\n\
             # home); past that one line says the log was truncated. Default: 128 MiB.\n",
        );
        out.push_str(&format!("max_log_bytes = {}\n", self.node.max_log_bytes));
        out.push_str(
            "# After how many days the logs, workspaces and blobs of an ended run are\n\
             # removed (the node does it every day; `otto-node gc` on demand); 0 keeps them.\n",
        );
        out.push_str(&format!("retention_days = {}\n", self.node.retention_days));
        out.push_str(
            "# The labels of this machine that `runtime computer { label = '...' }`\n\
             # matches (e.g. [\"linux\", \"x86_64\"]); other labels' stages are refused.\n",
        );
        out.push_str(&format!("labels = {}\n\n", list(&self.node.labels)));
        out.push_str("[api]\n");
        out.push_str(
            "# Where the local HTTP API listens: a loopback address only. Port 0 takes any\n\
             # free port; the node writes the address it got to api.addr in the home.\n",
        );
        out.push_str(&format!("listen = {}\n", s(&self.api.listen.to_string())));
        out.push_str("# The largest snapshot upload (`otto run`), in bytes.\n");
        out.push_str(&format!(
            "max_snapshot_bytes = {}\n",
            self.api.max_snapshot_bytes
        ));
        out.push_str("# The largest JSON request body, in bytes.\n");
        out.push_str(&format!("max_json_bytes = {}\n\n", self.api.max_json_bytes));
        out.push_str("[webhooks]\n");
        out.push_str(
            "# Where the HTTPS listener for webhook gate callbacks listens. Port 0 reuses\n\
             # the previous start's port when it is free (so webhook URLs survive a\n\
             # restart), else takes any free port.\n",
        );
        out.push_str(&format!(
            "listen = {}\n",
            s(&self.webhooks.listen.to_string())
        ));
        out.push_str(
            "# The DNS names and IP addresses in the listener's certificate, issued at\n\
             # every start by the org CA in ca.pem/ca.key.\n",
        );
        out.push_str(&format!("names = {}\n", list(&self.webhooks.names)));
        out.push_str(
            "# The base of the webhook URLs the node hands out, when callers reach it by\n\
             # another address (a proxy, a public name). Default: https://<listen>.\n",
        );
        out.push_str(&optional(
            "public_url",
            self.webhooks.public_url.clone(),
            "https://otto.example.com:8443",
        ));
        out.push_str("\n[agent]\n");
        out.push_str(
            "# The otto-agent executable. Default: $OTTO_AGENT, else otto-agent next to\n\
             # the otto-node executable.\n",
        );
        out.push_str(&optional(
            "path",
            self.agent
                .path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            "/usr/local/bin/otto-agent",
        ));
        out.push_str(
            "# Step package directories (a package, or a directory of packages); relative\n\
             # paths are relative to this home.\n",
        );
        out.push_str(&format!("packages = {}\n", paths(&self.agent.packages)));
        out.push_str(
            "# The largest artifact a stage may archive, in bytes (its tar). Default: 2 GiB.\n",
        );
        out.push_str(&match self.agent.max_artifact_bytes {
            Some(n) => format!("max_artifact_bytes = {n}\n"),
            None => "# max_artifact_bytes = 2147483648\n".to_owned(),
        });
        out.push_str(
            "# Where stage workspaces live: an absolute path outside this home, made by\n\
             # the node at start. Default: <home>-work next to the home.\n",
        );
        out.push_str(&optional(
            "work_dir",
            self.agent
                .work_dir
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            "/var/lib/otto/work",
        ));
        out.push_str(
            "# Directories every step may write besides its workspace (e.g. where a\n\
             # deploy step publishes); steps can write nothing else.\n",
        );
        out.push_str(&format!("writable = {}\n", paths(&self.agent.writable)));
        out.push_str(
            "# The user steps run as when the node runs as root; it needs no home, no\n\
             # login and no group of the node's (see docs/operating.md, The wall).\n",
        );
        out.push_str(&optional("run_as", self.agent.run_as.clone(), "otto-step"));
        out.push_str(
            "# Whether a node that cannot wall steps in completely (a kernel without\n\
             # Landlock, or a root node with no run_as) refuses the stages of other\n\
             # orgs' runs.\n",
        );
        out.push_str(&format!(
            "refuse_foreign_unwalled = {}\n",
            self.agent.refuse_foreign_unwalled
        ));
        out.push_str("\n[agent.limits]\n");
        out.push_str("# Processes and threads a stage may add to its user's (RLIMIT_NPROC).\n");
        out.push_str(&format!("processes = {}\n", self.agent.limits.processes));
        out.push_str("# Data memory of one step process, in bytes (RLIMIT_DATA).\n");
        out.push_str(&format!(
            "memory_bytes = {}\n",
            self.agent.limits.memory_bytes
        ));
        out.push_str("# Output a stage may log, in bytes; the rest is dropped with a note.\n");
        out.push_str(&format!(
            "output_bytes = {}\n",
            self.agent.limits.output_bytes
        ));
        out.push_str("\n[mesh]\n");
        out.push_str(
            "# The multiaddrs the mesh listens on for other nodes (TCP and QUIC). Port 0\n\
             # takes any free port; the node writes what it got to mesh.addrs. Listen on a\n\
             # reachable address (e.g. /ip4/0.0.0.0/tcp/4001) when other machines join.\n",
        );
        out.push_str(&format!("listen = {}\n", list(&self.mesh.listen)));
        out.push_str("\n[notify]\n");
        out.push_str(
            "# Where the messages of notify { } blocks may go; an Ottofile only picks among\n\
             # these. slack posts to the Slack-compatible incoming-webhook URL held in this\n\
             # vault secret (otto secrets set SLACK_WEBHOOK_URL).\n",
        );
        out.push_str(&optional(
            "slack_url_secret",
            self.notify.slack_url_secret.clone(),
            "SLACK_WEBHOOK_URL",
        ));
        out.push_str(
            "# The URLs webhook url: '...' may name, each signed (X-Otto-Signature-256) with\n\
             # the key in its vault secret, e.g.\n\
             # webhooks = [{ url = \"https://hooks.example.com/otto\", secret = \"HOOK_KEY\" }]\n",
        );
        let webhooks: Vec<String> = self
            .notify
            .webhooks
            .iter()
            .map(|w| format!("{{ url = {:?}, secret = {:?} }}", w.url, w.secret))
            .collect();
        out.push_str(&format!("webhooks = [{}]\n", webhooks.join(", ")));
        out.push_str("\n[containers]\n");
        out.push_str(
            "# The engine that runs `runtime docker` stages: \"podman\", \"docker\", a path\n\
             # to either, or \"none\". Default: podman, else docker, on PATH, if it answers\n\
             # `version` at start. Images must be present: they are never pulled.\n",
        );
        out.push_str(&optional(
            "engine",
            self.containers.engine.clone(),
            "podman",
        ));
        out.push_str("# Options before every engine command (e.g. podman's --root).\n");
        out.push_str(&format!("options = {}\n", list(&self.containers.options)));
        out
    }

    fn check(&self) -> Result<(), String> {
        for (what, name) in [("node.name", &self.node.name), ("node.org", &self.node.org)] {
            if !otto_trust::valid_name(name) {
                return Err(format!(
                    "{what} {name:?} is not a valid name (1 to 64 ascii letters, digits, '-', '_' or '.')"
                ));
            }
        }
        if let Some(label) = self.node.labels.iter().find(|l| !otto_trust::valid_name(l)) {
            return Err(format!(
                "node.labels {label:?} is not a valid label (1 to 64 ascii letters, digits, '-', '_' or '.')"
            ));
        }
        if !self.api.listen.ip().is_loopback() {
            return Err(format!(
                "api.listen {} is not a loopback address: the API listens on this machine only",
                self.api.listen
            ));
        }
        if self.webhooks.names.is_empty() {
            return Err("webhooks.names needs at least one name".into());
        }
        for secret in self
            .notify
            .slack_url_secret
            .iter()
            .chain(self.notify.webhooks.iter().map(|w| &w.secret))
        {
            crate::vault::validate_name(secret)
                .map_err(|e| format!("notify: the secret name {secret:?}: {e}"))?;
        }
        for hook in &self.notify.webhooks {
            crate::outbound::status::check_api_url(&hook.url)
                .map_err(|e| format!("notify.webhooks: {}", e.replace("API URL", "URL")))?;
        }
        if let Some(dir) = &self.agent.work_dir
            && !dir.is_absolute()
        {
            return Err(format!(
                "agent.work_dir {} must be an absolute path",
                dir.display()
            ));
        }
        if let Some(dir) = self.agent.writable.iter().find(|d| !d.is_absolute()) {
            return Err(format!(
                "agent.writable {} must be an absolute path",
                dir.display()
            ));
        }
        if let Some(user) = &self.agent.run_as
            && !otto_trust::valid_name(user)
        {
            return Err(format!("agent.run_as {user:?} is not a valid user name"));
        }
        if let Some(url) = &self.webhooks.public_url
            && !url.starts_with("https://")
        {
            return Err(format!(
                "webhooks.public_url {url:?} must start with https://"
            ));
        }
        if self.agent.slots == Some(0) {
            return Err("agent.slots must be at least 1".into());
        }
        for addr in &self.mesh.listen {
            if let Err(err) = addr.parse::<crate::mesh::Multiaddr>() {
                return Err(format!(
                    "mesh.listen {addr:?} is not a multiaddr ({err}); e.g. \"/ip4/127.0.0.1/tcp/0\""
                ));
            }
        }
        Ok(())
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        }
    }
}

impl MeshConfig {
    /// The listen addresses, parsed (they were checked when the configuration was read).
    pub fn listen_addrs(&self) -> Vec<crate::mesh::Multiaddr> {
        self.listen.iter().filter_map(|a| a.parse().ok()).collect()
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".to_owned(),
                "/ip4/127.0.0.1/udp/0/quic-v1".to_owned(),
            ],
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            names: vec!["127.0.0.1".into(), "localhost".into()],
            public_url: None,
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), HomeError> {
    if otto_trust::valid_name(name) {
        Ok(())
    } else {
        Err(HomeError::Name {
            what,
            name: name.to_owned(),
        })
    }
}

/// Reads a small text file, refusing one larger than `max` bytes.
fn read_small(path: &Path, max: u64) -> Result<String, HomeError> {
    use std::io::Read as _;
    let file = fs::File::open(path).map_err(io_err("read", path))?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(io_err("read", path))?;
    if text.len() as u64 > max {
        return Err(HomeError::Config {
            path: path.to_owned(),
            reason: format!("larger than {max} bytes"),
        });
    }
    Ok(text)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HomeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_err("set the mode of", path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HomeError + 'a {
    move |source| HomeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::SeedableRng as _;

    fn rng() -> impl CryptoRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn options() -> InitOptions {
        InitOptions {
            org: "acme".into(),
            name: "ops-1".into(),
            org_key: None,
            answers_to: vec!["ops".into()],
            run_as: None,
        }
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn init_makes_a_home_that_opens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let made = init(&root, &options(), &mut rng(), NOW).unwrap();
        let home = Home::new(&root);
        assert_eq!(made.node, "ops-1");
        assert_eq!(made.org_key_file, home.org_key_file());
        let config = home.load_config().unwrap();
        assert_eq!(config, Config::new("ops-1", "acme", vec!["ops".into()]));
        let id = home.identity(NOW + 10).unwrap();
        assert_eq!(id.cert.node(), "ops-1");
        assert_eq!(id.cert.org(), "acme");
        assert_eq!(id.key.peer_id().to_string(), made.peer_id);
        assert_eq!(home.read_api_token().unwrap().len(), 64);
        let trust = persist::load_trust_store(&home.trust_file()).unwrap();
        let own = trust
            .resolve_org("acme")
            .expect("the node's own org is pinned");
        assert_eq!(&own.key, id.cert.org_key());
        for file in [home.ca_cert_file(), home.ca_key_file(), home.trust_file()] {
            assert!(file.is_file(), "{}", file.display());
        }
        OrgCa::from_pem(
            &fs::read_to_string(home.ca_cert_file()).unwrap(),
            &fs::read_to_string(home.ca_key_file()).unwrap(),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&home.api_token_file()), 0o600);
            assert_eq!(mode(&home.ca_key_file()), 0o600);
            assert_eq!(mode(&home.node_key_file()), 0o600);
        }
    }

    #[test]
    fn a_home_with_pkcs8_v2_keys_still_opens_and_signs_and_migrates_once() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        init(&root, &options(), &mut rng(), NOW).unwrap();
        let home = Home::new(&root);
        let node = home.identity(NOW + 10).unwrap().key.public_key();
        assert_eq!(
            home.migrate_keys().unwrap(),
            Vec::<PathBuf>::new(),
            "a new home"
        );
        // The key files as older Otto wrote them: PKCS#8 v2, the public key attached.
        let as_v2 = |path: &Path| {
            use base64::Engine as _;
            let text = fs::read_to_string(path).unwrap();
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap();
            // A v1 document ends with the 32-byte seed.
            let seed: [u8; 32] = der[der.len() - 32..].try_into().unwrap();
            let v2 = ed25519_dalek::SigningKey::from_bytes(&seed)
                .to_pkcs8_pem(LineEnding::LF)
                .unwrap();
            persist::write_private_file(path, v2.as_bytes()).unwrap();
        };
        let files = [
            home.node_key_file(),
            home.org_key_file(),
            home.ca_key_file(),
        ];
        for file in &files {
            as_v2(file);
        }
        let id = home.identity(NOW + 10).unwrap();
        assert_eq!(id.key.public_key(), node);
        let sig = otto_trust::Signer::try_sign(&id.key, b"still signs").unwrap();
        node.verify(b"still signs", &sig.sig).unwrap();
        let ca = || {
            OrgCa::from_pem(
                &fs::read_to_string(home.ca_cert_file()).unwrap(),
                &fs::read_to_string(home.ca_key_file()).unwrap(),
            )
            .unwrap()
        };
        ca();
        assert_eq!(home.migrate_keys().unwrap(), files);
        assert_eq!(home.migrate_keys().unwrap(), Vec::<PathBuf>::new());
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            // A v1 Ed25519 document is 48 bytes: 64 base64 characters on one line.
            assert_eq!(text.lines().nth(1).unwrap().len(), 64, "{}", file.display());
        }
        assert_eq!(home.identity(NOW + 10).unwrap().key.public_key(), node);
        ca();
        let elsewhere = Home::new(dir.path().join("nothing"));
        assert!(matches!(
            elsewhere.migrate_keys(),
            Err(HomeError::NotAHome(_))
        ));
    }

    #[test]
    fn init_refuses_a_non_empty_home_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep"), "x").unwrap();
        let err = init(dir.path(), &options(), &mut rng(), NOW).unwrap_err();
        assert!(matches!(err, HomeError::NotEmpty(_)), "{err}");
        assert_eq!(fs::read_to_string(dir.path().join("keep")).unwrap(), "x");
    }

    #[test]
    fn init_refuses_origin_as_an_owner_name_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let options = InitOptions {
            answers_to: vec!["ops".into(), "origin".into()],
            ..options()
        };
        let err = init(&root, &options, &mut rng(), NOW).unwrap_err();
        assert!(matches!(err, HomeError::ReservedOwner), "{err}");
        assert!(err.to_string().contains("\"origin\" is reserved"), "{err}");
        assert!(!root.exists());
    }

    #[test]
    fn a_second_node_reuses_the_org_key_without_copying_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(&dir.path().join("a"), &options(), &mut rng(), NOW).unwrap();
        let mut second_options = options();
        second_options.name = "ops-2".into();
        second_options.org_key = Some(first.org_key_file.clone());
        let mut other_rng = rand::rngs::StdRng::seed_from_u64(99);
        let second = init(&dir.path().join("b"), &second_options, &mut other_rng, NOW).unwrap();
        assert_eq!(second.org_key, first.org_key);
        assert_ne!(second.peer_id, first.peer_id);
        let b = Home::new(dir.path().join("b"));
        assert!(!b.org_key_file().exists());
        let cert = b.identity(NOW).unwrap().cert;
        assert_eq!(cert.org_key().keyid(), first.org_key);
    }

    #[test]
    fn bad_names_and_bad_org_keys_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let mut bad = options();
        bad.name = "no spaces".into();
        assert!(matches!(
            init(&root, &bad, &mut rng(), NOW),
            Err(HomeError::Name { .. })
        ));
        let mut missing = options();
        missing.org_key = Some(dir.path().join("nope.key"));
        assert!(init(&root, &missing, &mut rng(), NOW).is_err());
        assert!(!root.exists());
    }

    #[test]
    fn config_refuses_unknown_fields_and_public_api_addresses() {
        let text = Config::new("n", "o", vec![]).to_documented_toml();
        assert!(Config::from_toml(&text).is_ok());
        let typo = text.replace("answers_to", "answer_to");
        assert!(Config::from_toml(&typo).unwrap_err().contains("answer_to"));
        let public = text.replace(
            "listen = \"127.0.0.1:0\"\n# The largest",
            "listen = \"0.0.0.0:80\"\n# The largest",
        );
        assert!(Config::from_toml(&public).unwrap_err().contains("loopback"));
        let bad_mesh = text.replace("/ip4/127.0.0.1/tcp/0", "127.0.0.1:0");
        assert!(
            Config::from_toml(&bad_mesh)
                .unwrap_err()
                .contains("mesh.listen")
        );
        let minimal = "[node]\nname = 'n'\norg = 'o'\n";
        assert_eq!(
            Config::from_toml(minimal).unwrap(),
            Config::new("n", "o", vec![])
        );
    }

    #[test]
    fn identity_refuses_a_certificate_for_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        init(&a, &options(), &mut rng(), NOW).unwrap();
        init(
            &b,
            &options(),
            &mut rand::rngs::StdRng::seed_from_u64(8),
            NOW,
        )
        .unwrap();
        fs::copy(
            Home::new(&b).node_cert_file(),
            Home::new(&a).node_cert_file(),
        )
        .unwrap();
        let err = Home::new(&a).identity(NOW).err().unwrap();
        assert!(err.to_string().contains("another node key"), "{err}");
    }
}

//! A local mesh of real Otto nodes: homes in one directory, `otto-node` processes started
//! on them, and the `otto`/`otto-node` commands run against each, as an operator would.
//!
//! ```text
//!   Net (a directory)
//!    ├── dev-1/        home of node dev-1 (otto-node init)     dev-1.log  its stderr
//!    └── ops-1/        home of node ops-1                       ops-1.log
//! ```
//!
//! A [`NodeProc`] owns its process: [`NodeProc::stop`] sends SIGTERM and, after a grace
//! period, SIGKILL; dropping it does the same, so an error or a panic in the code driving
//! the net leaves no node behind.
//!
//! A net made with [`Net::with_namespaces`] gives each node a network namespace of its
//! own ([`crate::netns`]): a host named after the node, on a switch only the net can see.
//! Before its first start the node's `[mesh] listen` is set to the host's address, and
//! the node and every `otto`/`otto-node` command for it run inside the namespace (`ip
//! netns exec`, which execs in place, so stopping by PID still reaches the node). Its API
//! listens on the namespace's own 127.0.0.1. The namespaces go when the net is dropped,
//! after its nodes.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::ops::{Index, IndexMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{Host, Topology};
use crate::process::{describe, output_within, tail, terminate};
use crate::{Bins, Error};

/// How long a node may take to write its API address after it was started.
pub const START_LIMIT: Duration = Duration::from_secs(30);

/// How long one `otto` or `otto-node` command may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How long a node has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The prefix of the network namespaces a net makes (`otto-PID-SEQ-…`).
pub const NETNS_PREFIX: &str = "otto";

/// The /24 the hosts of a net's namespaces have their addresses in.
pub const NETNS_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);

/// A directory of node homes and the nodes made in it.
#[derive(Debug)]
pub struct Net {
    dir: PathBuf,
    bins: Bins,
    nodes: Vec<NodeProc>,
    /// The nodes' namespaces, if any. Declared after `nodes`, so the nodes are stopped
    /// (dropped) before their namespaces are deleted.
    topology: Option<Topology>,
}

/// A node of a [`Net`], as [`Net::add`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

/// One node: its home and, while it runs, its `otto-node start` process.
#[derive(Debug)]
pub struct NodeProc {
    /// The org it belongs to.
    pub org: String,
    /// Its name within the org.
    pub name: String,
    /// Its home directory.
    pub home: PathBuf,
    /// The file its process writes its log to (every start appends).
    pub log: PathBuf,
    /// The org key that `otto-node init` made, `ed25519:<hex>`.
    pub org_key: String,
    /// Its libp2p peer id, as `otto-node init` printed it.
    pub peer_id: String,
    /// Start it with the testnet's control on (`otto-node start --testnet-control`, for
    /// partitions and the intruder's learning), which only a node started here may have.
    pub testnet_control: bool,
    /// The fail point armed at its next start (`OTTO_FAILPOINT`), if any.
    pub failpoint: Option<String>,
    bins: Bins,
    host: Option<Host>,
    child: Option<Child>,
}

impl Net {
    /// A net in `dir` (made if missing) that runs the executables in `bins`.
    pub fn new(dir: &Path, bins: Bins) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            bins,
            nodes: Vec::new(),
            topology: None,
        })
    }

    /// [`Self::new`] with a network namespace for each node it adds (see the module docs).
    /// Deletes the namespaces that dead processes left behind first. Needs what
    /// [`crate::netns::available`] checks.
    pub fn with_namespaces(dir: &Path, bins: Bins) -> Result<Self, Error> {
        let mut net = Self::new(dir, bins)?;
        crate::netns::cleanup_stale(NETNS_PREFIX)?;
        net.topology = Some(Topology::create(NETNS_PREFIX, NETNS_SUBNET)?);
        Ok(net)
    }

    /// The nodes' namespaces, for a net made with [`Self::with_namespaces`].
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// The net's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The executables it runs.
    pub fn bins(&self) -> &Bins {
        &self.bins
    }

    /// Makes the home of node `name` of org `org` (`otto-node init`), answering to the
    /// stage owners `answers_to`; not started.
    pub fn add(&mut self, org: &str, name: &str, answers_to: &[&str]) -> Result<NodeId, Error> {
        let host = self.new_host(name)?;
        let node = NodeProc::init_on(&self.bins, &self.dir, org, name, answers_to, &[], host)?;
        self.nodes.push(node);
        Ok(NodeId(self.nodes.len() - 1))
    }

    /// Makes the home of another node `name` of the org of `first`, whose home holds the
    /// org key (`otto-node init --org-key FIRST/org.key`); not started.
    pub fn add_to_org(
        &mut self,
        first: NodeId,
        name: &str,
        answers_to: &[&str],
    ) -> Result<NodeId, Error> {
        let org = self[first].org.clone();
        let key = self[first].home.join("org.key");
        let host = self.new_host(name)?;
        let node = NodeProc::init_on(
            &self.bins,
            &self.dir,
            &org,
            name,
            answers_to,
            &[OsStr::new("--org-key"), key.as_os_str()],
            host,
        )?;
        self.nodes.push(node);
        Ok(NodeId(self.nodes.len() - 1))
    }

    /// Starts every node that does not run, each waiting for its API address.
    pub fn start_all(&mut self) -> Result<(), Error> {
        for node in &mut self.nodes {
            node.start()?;
        }
        Ok(())
    }

    /// Lets `joiner`'s org hand stages to `inviter`: `inviter` issues an invite with
    /// `invite_args` (e.g. `--role deploy --stages 'Deploy*'`) and `joiner` joins with it,
    /// naming the inviter `alias`. Both must run.
    pub fn connect(
        &self,
        inviter: NodeId,
        joiner: NodeId,
        invite_args: &[&str],
        alias: &str,
    ) -> Result<(), Error> {
        let mut args = vec!["invite"];
        args.extend_from_slice(invite_args);
        let token = self[inviter].otto_node_ok(&args)?;
        let token = token.trim();
        self[joiner].otto_node_ok(&["join", token, "--alias", alias])?;
        Ok(())
    }

    /// Stops every node (SIGTERM, then SIGKILL after [`STOP_GRACE`]); the names of those
    /// that did not exit cleanly.
    pub fn stop_all(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|n| (!n.stop()).then_some(n.name.clone()))
            .collect()
    }

    /// Every node, in the order they were added.
    pub fn nodes(&self) -> &[NodeProc] {
        &self.nodes
    }

    /// A new host named `name` when the net has namespaces.
    fn new_host(&mut self, name: &str) -> Result<Option<Host>, Error> {
        self.topology.as_mut().map(|t| t.add_host(name)).transpose()
    }
}

impl Index<NodeId> for Net {
    type Output = NodeProc;

    fn index(&self, id: NodeId) -> &NodeProc {
        &self.nodes[id.0]
    }
}

impl IndexMut<NodeId> for Net {
    fn index_mut(&mut self, id: NodeId) -> &mut NodeProc {
        &mut self.nodes[id.0]
    }
}

impl NodeProc {
    /// Makes the home `dir/name` with `otto-node init` and names the log `dir/name.log`.
    pub fn init(
        bins: &Bins,
        dir: &Path,
        org: &str,
        name: &str,
        answers_to: &[&str],
    ) -> Result<Self, Error> {
        Self::init_with(bins, dir, org, name, answers_to, &[])
    }

    /// [`Self::init`] with more `otto-node init` arguments (`--org-key PATH`).
    pub fn init_with(
        bins: &Bins,
        dir: &Path,
        org: &str,
        name: &str,
        answers_to: &[&str],
        extra: &[&OsStr],
    ) -> Result<Self, Error> {
        Self::init_on(bins, dir, org, name, answers_to, extra, None)
    }

    /// [`Self::init_with`], inside `host`'s namespace when there is one, with the node's
    /// `[mesh] listen` set to the host's address.
    fn init_on(
        bins: &Bins,
        dir: &Path,
        org: &str,
        name: &str,
        answers_to: &[&str],
        extra: &[&OsStr],
        host: Option<Host>,
    ) -> Result<Self, Error> {
        let home = dir.join(name);
        let mut cmd = program(host.as_ref(), &bins.otto_node);
        // A testnet is one person's simulation of several orgs on one machine, in a
        // directory a step user may not be able to pass through (a checkout under /root):
        // its nodes name no step user, and as root they run every org's stages as root
        // without capabilities (`refuse_foreign_unwalled = false` below) and say so.
        cmd.args([
            "init",
            "--org",
            org,
            "--name",
            name,
            "--json",
            "--no-run-as",
        ])
        .arg("--home")
        .arg(&home);
        for owner in answers_to {
            cmd.args(["--answers-to", owner]);
        }
        cmd.args(extra);
        let stdout = ok(&mut cmd, None)?;
        let made: Value = serde_json::from_str(&stdout).map_err(|e| Error::Output {
            command: "otto-node init --json".into(),
            problem: e.to_string(),
        })?;
        let org_key = made["org_key"]
            .as_str()
            .ok_or_else(|| Error::Output {
                command: "otto-node init --json".into(),
                problem: format!("no org_key in {made}"),
            })?
            .to_owned();
        let peer_id = made["peer_id"].as_str().unwrap_or_default().to_owned();
        if let Some(host) = &host {
            listen_on(&home.join("config.toml"), host.ip())?;
        }
        if rustix::process::geteuid().is_root() {
            set_key(
                &home.join("config.toml"),
                "agent",
                "refuse_foreign_unwalled",
                "refuse_foreign_unwalled = false",
            )?;
        }
        Ok(Self {
            org: org.to_owned(),
            name: name.to_owned(),
            log: dir.join(format!("{name}.log")),
            home,
            org_key,
            peer_id,
            testnet_control: false,
            failpoint: None,
            bins: bins.clone(),
            host,
            child: None,
        })
    }

    /// Starts `otto-node start` on the home, its log appended to [`Self::log`], and waits
    /// (at most [`START_LIMIT`]) until it has written its API address.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let addr = self.home.join("api.addr");
        // A node killed with SIGKILL leaves its api.addr behind: wait for the new one.
        let _ = fs::remove_file(&addr);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| Error::Io {
                what: format!("opening {}", self.log.display()),
                source,
            })?;
        let _ = writeln!(log, "--- otto-testnet: starting {} ---", self.name);
        let mut cmd = program(self.host.as_ref(), &self.bins.otto_node);
        cmd.arg("start").arg("--home").arg(&self.home);
        if self.testnet_control {
            cmd.arg("--testnet-control");
        }
        cmd.env("OTTO_AGENT", &self.bins.otto_agent)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("OTTO_HOME")
            .env_remove("OTTO_NODE")
            .env_remove("OTTO_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(point) = &self.failpoint {
            cmd.env("OTTO_FAILPOINT", point);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: self.bins.otto_node.display().to_string(),
            source,
        })?;
        self.child = Some(child);
        let start = Instant::now();
        while !addr.is_file() {
            if let Some(status) = self.exited() {
                return Err(self.exited_error(status));
            }
            if start.elapsed() > START_LIMIT {
                self.stop();
                return Err(Error::Timeout {
                    what: format!("{} to write {}", self.name, addr.display()),
                    limit: START_LIMIT,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether its process runs.
    pub fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// Its host, when its net has namespaces: its process and commands run in the host's
    /// namespace.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// The PID of its process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The address of its HTTP API, while it runs.
    pub fn api_addr(&self) -> Option<String> {
        fs::read_to_string(self.home.join("api.addr"))
            .ok()
            .map(|a| a.trim().to_owned())
    }

    /// Fails with [`Error::NodeExited`] if its process has ended.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.exited() {
            Some(status) => Err(self.exited_error(status)),
            None => Ok(()),
        }
    }

    /// Stops its process by PID: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Returns
    /// whether it exited cleanly (true as well when it did not run).
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let (status, killed) = terminate(&mut child, STOP_GRACE);
        !killed && status.is_some_and(|s| s.success())
    }

    /// Kills its process with SIGKILL by PID, as a crash or a pulled plug would, and
    /// reaps it. Returns whether it was running.
    pub fn kill9(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Waits (at most `limit`) until its process ends by itself, reaps it and returns how
    /// it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, Error> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::Output {
                command: format!("waiting for {} to end", self.name),
                problem: "it does not run".into(),
            });
        };
        match crate::process::wait_within(&mut child, limit) {
            Some(status) => Ok(status),
            None => {
                self.child = Some(child);
                Err(Error::Timeout {
                    what: format!("{} to end", self.name),
                    limit,
                })
            }
        }
    }

    /// Lets the steps this node runs write `dir` too (`[agent] writable` in its
    /// configuration; read at its next start).
    pub fn allow_writes(&self, dir: &Path) -> Result<(), Error> {
        let config = self.home.join("config.toml");
        let value = toml::Value::Array(vec![toml::Value::String(dir.display().to_string())]);
        set_key(&config, "agent", "writable", &format!("writable = {value}"))
    }

    /// Runs `otto ARGS` with the node's home.
    pub fn otto(&self, args: &[&str]) -> Result<Output, Error> {
        self.otto_with_input(args, None)
    }

    /// Runs `otto ARGS` with the node's home and `input` on its standard input.
    pub fn otto_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output, Error> {
        output_within(
            &mut self.command(&self.bins.otto, args),
            input,
            COMMAND_LIMIT,
        )
    }

    /// `otto ARGS`, which must succeed; its standard output.
    pub fn otto_ok(&self, args: &[&str]) -> Result<String, Error> {
        ok(&mut self.command(&self.bins.otto, args), None)
    }

    /// `otto ARGS --json`, which must succeed and print JSON.
    pub fn otto_json(&self, args: &[&str]) -> Result<Value, Error> {
        let mut all = args.to_vec();
        all.push("--json");
        let mut cmd = self.command(&self.bins.otto, &all);
        let out = output_within(&mut cmd, None, COMMAND_LIMIT)?;
        // `otto status RUN` of a failed or cancelled run answers in full and exits 1.
        let answered =
            out.status.success() || (out.status.code() == Some(1) && !out.stdout.is_empty());
        if !answered {
            return Err(Error::Command {
                command: describe(&cmd),
                status: out.status,
                stderr: tail(&String::from_utf8_lossy(&out.stderr), 5),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Output {
            command: describe(&cmd),
            problem: e.to_string(),
        })
    }

    /// Runs `otto-node ARGS` with the node's home.
    pub fn otto_node(&self, args: &[&str]) -> Result<Output, Error> {
        output_within(
            &mut self.command(&self.bins.otto_node, args),
            None,
            COMMAND_LIMIT,
        )
    }

    /// `otto-node ARGS`, which must succeed; its standard output.
    pub fn otto_node_ok(&self, args: &[&str]) -> Result<String, Error> {
        ok(&mut self.command(&self.bins.otto_node, args), None)
    }

    /// Calls the node's HTTP API: `METHOD PATH` with the bearer token of its home and `body`
    /// as JSON; the status code and the body of the answer. The node must run.
    pub fn api(&self, method: &str, path: &str, body: &Value) -> Result<(u16, String), Error> {
        let fail = |problem: String| Error::Output {
            command: format!("{method} {path} on {}", self.name),
            problem,
        };
        let addr = self
            .api_addr()
            .ok_or_else(|| fail("the node does not run (no api.addr)".into()))?;
        let token =
            fs::read_to_string(self.home.join("api.token")).map_err(|source| Error::Io {
                what: format!("reading {}", self.home.join("api.token").display()),
                source,
            })?;
        let socket = addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| fail(format!("api.addr {addr:?}: {e}")))?;
        // The API listens on the loopback of the node's namespace, if it has one.
        let connect = move || TcpStream::connect_timeout(&socket, COMMAND_LIMIT);
        let mut tcp = match &self.host {
            Some(host) => host.within(connect)?,
            None => connect(),
        }
        .map_err(|e| fail(format!("connecting to {addr}: {e}")))?;
        tcp.set_read_timeout(Some(COMMAND_LIMIT))
            .and_then(|()| tcp.set_write_timeout(Some(COMMAND_LIMIT)))
            .map_err(|e| fail(e.to_string()))?;
        let body = body.to_string();
        write!(
            tcp,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            token.trim(),
            body.len()
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        tcp.take(1 << 20)
            .read_to_end(&mut raw)
            .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| fail("the answer is not HTTP".into()))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("no status in {head:?}")))?;
        Ok((status, rest.to_owned()))
    }

    /// [`Self::api`], which must answer 2xx; the answer's body as JSON.
    pub fn api_ok(&self, method: &str, path: &str, body: &Value) -> Result<Value, Error> {
        let (status, text) = self.api(method, path, body)?;
        let problem = if (200..300).contains(&status) {
            match serde_json::from_str(&text) {
                Ok(value) => return Ok(value),
                Err(e) => format!("{e}: {text}"),
            }
        } else {
            format!("{status}: {}", text.trim())
        };
        Err(Error::Output {
            command: format!("{method} {path} on {}", self.name),
            problem,
        })
    }

    /// The CA certificate (PEM) that the node's webhook listener's certificate chains to.
    pub fn ca_pem(&self) -> Result<String, Error> {
        let path = self.home.join("ca.pem");
        fs::read_to_string(&path).map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn command(&self, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = program(self.host.as_ref(), exe);
        cmd.args(args)
            .env("OTTO_HOME", &self.home)
            .env_remove("OTTO_NODE");
        cmd
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn exited_error(&mut self, status: ExitStatus) -> Error {
        self.child = None;
        Error::NodeExited {
            node: self.name.clone(),
            status,
            log: tail(&self.log_text(), 20),
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Unwinding or an early return: no time for a long goodbye.
            let _ = terminate(&mut child, Duration::from_secs(2));
        }
    }
}

/// A command running `exe`, inside `host`'s namespace when there is one.
fn program(host: Option<&Host>, exe: &Path) -> Command {
    host.map_or_else(|| Command::new(exe), |h| h.command(exe))
}

/// Sets `[mesh] listen` of the node configuration `config` to TCP and QUIC on `ip`, any
/// port, keeping the rest of the file (comments included) as it is.
fn listen_on(config: &Path, ip: Ipv4Addr) -> Result<(), Error> {
    let addrs = [
        format!("/ip4/{ip}/tcp/0"),
        format!("/ip4/{ip}/udp/0/quic-v1"),
    ];
    let line = format!("listen = [\"{}\", \"{}\"]", addrs[0], addrs[1]);
    set_key(config, "mesh", "listen", &line)?;
    let bad = |problem: String| Error::Output {
        command: format!("editing {}", config.display()),
        problem,
    };
    let text = fs::read_to_string(config).map_err(|e| Error::Io {
        what: format!("reading {}", config.display()),
        source: e,
    })?;
    let parsed: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let listen = parsed
        .get("mesh")
        .and_then(|m| m.get("listen"))
        .and_then(toml::Value::as_array);
    let written: Vec<&str> = listen
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str)
        .collect();
    if written != addrs {
        return Err(bad(format!(
            "[mesh] listen reads {written:?} after the edit"
        )));
    }
    Ok(())
}

/// Replaces the line of `key` in table `[table]` of the node configuration `config` with
/// `line`, keeping the rest of the file (comments included) as it is; the result must
/// still read as TOML.
fn set_key(config: &Path, table: &str, key: &str, line: &str) -> Result<(), Error> {
    let io = |what: &str, source| Error::Io {
        what: format!("{what} {}", config.display()),
        source,
    };
    let bad = |problem: String| Error::Output {
        command: format!("editing {}", config.display()),
        problem,
    };
    let text = fs::read_to_string(config).map_err(|e| io("reading", e))?;
    let header = format!("[{table}]");
    let mut in_table = false;
    let mut done = false;
    let mut out = String::with_capacity(text.len() + line.len());
    for l in text.lines() {
        let trimmed = l.trim();
        if trimmed.starts_with('[') {
            in_table = trimmed == header;
        }
        let is_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if in_table && !done && is_key {
            out.push_str(line);
            done = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    if !done {
        return Err(bad(format!("no `{key}` in its {header} table")));
    }
    toml::from_str::<toml::Table>(&out).map_err(|e| bad(e.to_string()))?;
    fs::write(config, out).map_err(|e| io("writing", e))
}

/// Runs `cmd` (bounded by [`COMMAND_LIMIT`]); its standard output if it succeeded, else
/// [`Error::Command`] with the end of its standard error.
fn ok(cmd: &mut Command, input: Option<&[u8]>) -> Result<String, Error> {
    let out = output_within(cmd, input, COMMAND_LIMIT)?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(cmd),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 5),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates `path` with `text`, making its directory.
pub fn write_file(path: &Path, text: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    File::create(path)
        .and_then(|mut f| f.write_all(text))
        .map_err(io)
}

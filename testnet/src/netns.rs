//! Network namespaces: each node on a network stack of its own, cabled to a switch that
//! only the test can see, so a test can pull a node's cable, cut two nodes apart and slow
//! a node's link down. It needs Linux, root, and iproute2's `ip` and `tc`; nothing else
//! (no nftables, no iptables). [`available`] says why it cannot run, so callers can skip.
//!
//! ```text
//!   namespace otto-4242-0-hub       one per topology; the host's own network is not touched
//!   ┌──────────────────────────────────────────┐
//!   │ br0 (bridge)                             │
//!   │   ├── v0        ├── v1        ├── v2     │   hub ends of the veth cables
//!   └───┼─────────────┼─────────────┼──────────┘
//!       │             │             │
//!     eth0 10.77.0.1  eth0 10.77.0.2  eth0 10.77.0.3   host ends, with lo up
//!   otto-4242-0-h0-dev-1  otto-4242-0-h1-ops-1  otto-4242-0-h2-ops-2
//! ```
//!
//! Every name starts with the caller's prefix and the PID of the process that made it
//! (`PREFIX-PID-SEQ-…`, SEQ counting the topologies of that process), so parallel runs never
//! clash and a leftover says whose it was: [`cleanup_stale`] deletes those whose process is
//! gone. Interfaces are created straight inside their namespaces, so their short names
//! (`eth0`, `vN`, `br0`, all well under the 15 bytes of IFNAMSIZ) clash with nothing.
//! Dropping a [`Topology`] deletes its namespaces, which takes their cables with them.
//!
//! # Faults
//!
//! - [`Topology::link_down`]: the hub end of the host's cable goes down. The host loses
//!   carrier: nothing gets in or out, as with a pulled plug. [`Topology::link_up`] undoes it.
//! - [`Topology::partition`]: each of the two hosts gets a permanent neighbour entry for the
//!   other's address with a MAC address no interface has. Their frames to each other are
//!   sent, flooded by the bridge and dropped by every receiver, so packets vanish silently
//!   and connections time out, as in a real partition (a blackhole route would instead fail
//!   `connect` at once with EINVAL). Every other pair still talks. [`Topology::heal`]
//!   removes the entries and ARP finds the real addresses again.
//! - [`Topology::impair`]: `tc netem` on the host's `eth0` delays every packet the host
//!   sends and drops the given share of them, so each round trip with that host grows by
//!   the delay. It needs a kernel with netem (`CONFIG_NET_SCH_NETEM`); [`netem_available`]
//!   says whether it has it.
//!
//! # How a [`Net`](crate::Net) uses it
//!
//! 1. `up --netns` and `run --netns` call [`available`] and, if it fails, exit 2 with
//!    the reason; [`Net::with_namespaces`](crate::Net::with_namespaces) then calls
//!    [`cleanup_stale`]`("otto")` and [`Topology::create`]`("otto", 10.77.0.0)`, held by
//!    the `Net` and declared after its nodes so the nodes are stopped before it drops.
//! 2. For each node, [`Topology::add_host`]`(node name)`, and after `otto-node init` (run
//!    in the host's namespace) the node's `config.toml` gets `[mesh] listen = ["/ip4/<host ip>/tcp/0",
//!    "/ip4/<host ip>/udp/0/quic-v1"]`, so `mesh.addrs` (and the invites made from them)
//!    carry addresses the other namespaces reach across the bridge.
//! 3. The node's process and its commands are built with [`Host::command`]. `ip netns exec` execs the program in
//!    place, so the PID the net stops is the node's own. The API stays on 127.0.0.1, which
//!    is the namespace's loopback: `otto` commands for a node run in its namespace too.
//!    Files (homes, logs, `api.addr`) are shared, since only the network is separate.
//!    The testnet's own calls to a node's API connect from a thread in the node's
//!    namespace ([`Host::within`]); so would a webhook call, which no scenario makes yet.
//! 4. `play::Netns` maps scenario steps onto the faults above: partition/heal between
//!    two nodes, latency/loss on both nodes' links (failing with the reason when the
//!    kernel has no netem). No step pulls a cable yet.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::Error;
use crate::process::{describe, output_within, tail};

/// How long one `ip` or `tc` command may take.
pub const TOOL_LIMIT: Duration = Duration::from_secs(10);

/// The name of a host's interface inside its namespace.
pub const HOST_IF: &str = "eth0";

/// The bridge in the hub namespace.
const BRIDGE: &str = "br0";

/// A locally administered MAC address that no interface of a topology has: frames sent to
/// it are dropped by everyone who receives them.
const NOWHERE_MAC: &str = "02:6f:74:74:6f:00";

/// The most hosts a topology holds: the addresses `.1` to `.254` of its /24.
pub const MAX_HOSTS: usize = 254;

/// How many bytes of a host's name go into its namespace's name.
const NAME_IN_NS: usize = 16;

/// Where named namespaces are mounted by `ip netns add`.
const NETNS_DIR: &str = "/run/netns";

/// Counts the topologies this process made, so two of them never share a name.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A switch in a namespace of its own and the hosts cabled to it, each in its own
/// namespace with an address of one /24. Dropping it deletes every namespace it made.
#[derive(Debug)]
pub struct Topology {
    stem: String,
    hub: String,
    subnet: Ipv4Addr,
    hosts: Vec<Host>,
    /// The namespaces made so far, in order (the hub first).
    made: Vec<String>,
}

/// A host of a [`Topology`]: a network namespace with one interface on the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    ns: String,
    ip: Ipv4Addr,
    cable: String,
}

/// Whether network namespaces can be made here: Linux, root, `ip` and `tc` found, and a
/// throwaway namespace can be created and deleted. Otherwise the reason, for a message
/// such as `skipped: --netns needs root (uid 0)`.
pub fn available() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("--netns needs Linux".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("--netns needs root (uid 0)".into());
    }
    for tool in ["ip", "tc"] {
        if find(tool).is_none() {
            return Err(format!(
                "--netns needs `{tool}` (iproute2), not found in PATH, /usr/sbin or /sbin"
            ));
        }
    }
    Throwaway::new("probe")
        .map(drop)
        .map_err(|e| format!("--netns cannot make a network namespace: {e}"))
}

/// Whether `tc netem` (needed by [`Topology::impair`]) works here, tried on the loopback
/// of a throwaway namespace; otherwise the reason.
pub fn netem_available() -> Result<(), String> {
    available()?;
    let probe = Throwaway::new("netem").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(tc());
    cmd.args(["-n", &probe.0, "qdisc", "add", "dev", "lo", "root", "netem"])
        .args(["delay", "1ms"]);
    run(&mut cmd)
        .map(drop)
        .map_err(|e| format!("tc netem is unavailable: {e}"))
}

/// The names of every network namespace that `ip netns add` made on this machine.
pub fn list() -> Result<Vec<String>, Error> {
    let out = run(Command::new(ip()).args(["netns", "list"]))?;
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Deletes the namespaces named `PREFIX-PID-…` whose process PID no longer runs, as a
/// killed testnet leaves them; the names deleted.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, Error> {
    let mut gone = Vec::new();
    for name in list()? {
        let Some(pid) = owner(prefix, &name) else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        delete(&name)?;
        gone.push(name);
    }
    Ok(gone)
}

impl Topology {
    /// Makes the hub namespace `PREFIX-PID-SEQ-hub` with a bridge, for hosts with the
    /// addresses of the /24 `subnet` (e.g. `10.77.0.0`). `prefix` is 1 to 12 lowercase
    /// letters or digits. Topologies are isolated from each other and from the host, so
    /// they may share a subnet.
    pub fn create(prefix: &str, subnet: Ipv4Addr) -> Result<Self, Error> {
        if prefix.is_empty()
            || prefix.len() > 12
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(invalid(
                format!("topology prefix {prefix:?}"),
                "must be 1 to 12 lowercase letters or digits",
            ));
        }
        if subnet.octets()[3] != 0 {
            return Err(invalid(
                format!("subnet {subnet}"),
                "must be the first address of a /24, e.g. 10.77.0.0",
            ));
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{prefix}-{}-{seq}", std::process::id());
        let hub = format!("{stem}-hub");
        let mut topology = Self {
            stem,
            hub: hub.clone(),
            subnet,
            hosts: Vec::new(),
            made: Vec::new(),
        };
        run(Command::new(ip()).args(["netns", "add", &hub]))?;
        topology.made.push(hub.clone());
        ip_in(&hub, &["link", "add", BRIDGE, "type", "bridge"])?;
        ip_in(&hub, &["link", "set", BRIDGE, "up"])?;
        Ok(topology)
    }

    /// Adds host `name` (any text; its letters and digits go into the namespace's name):
    /// a namespace with `lo` up and `eth0` cabled to the switch, with the next address of
    /// the subnet (`.1` for the first host).
    pub fn add_host(&mut self, name: &str) -> Result<Host, Error> {
        let index = self.hosts.len();
        let last = u8::try_from(index + 1)
            .ok()
            .filter(|_| index < MAX_HOSTS)
            .ok_or_else(|| {
                invalid(
                    format!("host {name:?}"),
                    "a topology holds at most 254 hosts",
                )
            })?;
        let label: String = name
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(NAME_IN_NS)
            .collect();
        let ns = format!("{}-h{index}-{label}", self.stem);
        let [a, b, c, _] = self.subnet.octets();
        let addr = Ipv4Addr::new(a, b, c, last);
        let cable = format!("v{index}");
        run(Command::new(ip()).args(["netns", "add", &ns]))?;
        self.made.push(ns.clone());
        run(Command::new(ip())
            .args(["link", "add", HOST_IF, "netns", &ns, "type", "veth"])
            .args(["peer", "name", &cable, "netns", &self.hub]))?;
        ip_in(&ns, &["addr", "add", &format!("{addr}/24"), "dev", HOST_IF])?;
        ip_in(&ns, &["link", "set", "lo", "up"])?;
        ip_in(&ns, &["link", "set", HOST_IF, "up"])?;
        ip_in(&self.hub, &["link", "set", &cable, "master", BRIDGE, "up"])?;
        let host = Host {
            name: name.to_owned(),
            ns,
            ip: addr,
            cable,
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Its hosts, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The names of the namespaces it made: the hub's first, then each host's.
    pub fn namespaces(&self) -> &[String] {
        &self.made
    }

    /// Pulls `host`'s cable: the hub end goes down, and nothing reaches or leaves the host.
    pub fn link_down(&self, host: &Host) -> Result<(), Error> {
        ip_in(&self.hub, &["link", "set", &host.cable, "down"])
    }

    /// Plugs `host`'s cable back in.
    pub fn link_up(&self, host: &Host) -> Result<(), Error> {
        ip_in(&self.hub, &["link", "set", &host.cable, "up"])
    }

    /// Cuts `a` and `b` apart: from now on their packets to each other vanish silently.
    /// Every other pair of hosts still talks. Doing it twice is harmless.
    pub fn partition(&self, a: &Host, b: &Host) -> Result<(), Error> {
        for (from, to) in [(a, b), (b, a)] {
            ip_in(
                &from.ns,
                &[
                    "neigh",
                    "replace",
                    &to.ip.to_string(),
                    "lladdr",
                    NOWHERE_MAC,
                    "dev",
                    HOST_IF,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        Ok(())
    }

    /// Undoes [`Self::partition`] of `a` and `b`; harmless if they were not cut apart.
    pub fn heal(&self, a: &Host, b: &Host) -> Result<(), Error> {
        for (from, to) in [(a, b), (b, a)] {
            let to = format!("{}/32", to.ip);
            ip_in(
                &from.ns,
                &[
                    "neigh",
                    "flush",
                    "to",
                    &to,
                    "dev",
                    HOST_IF,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        Ok(())
    }

    /// Delays every packet `host` sends by `latency` and drops `loss_percent` (0 to 100)
    /// of them, replacing any earlier impairment. Fails, saying so, on a kernel without
    /// netem (see [`netem_available`]).
    pub fn impair(&self, host: &Host, latency: Duration, loss_percent: f32) -> Result<(), Error> {
        if !(0.0..=100.0).contains(&loss_percent) {
            return Err(invalid(
                format!("loss of {loss_percent}% for {}", host.name),
                "must be 0 to 100",
            ));
        }
        let mut cmd = Command::new(tc());
        cmd.args(["-n", &host.ns, "qdisc", "replace", "dev", HOST_IF, "root"])
            .args(["netem", "delay", &format!("{}us", latency.as_micros())])
            .args(["loss", &format!("{loss_percent}%")]);
        run(&mut cmd).map(drop).map_err(|e| match e {
            Error::Command {
                command,
                status,
                stderr,
            } if stderr.contains("kind is unknown") => Error::Command {
                command,
                status,
                stderr: format!("{stderr} (this kernel has no netem: CONFIG_NET_SCH_NETEM)"),
            },
            other => other,
        })
    }

    /// Removes [`Self::impair`]'s delay and loss from `host`; harmless if there were none.
    pub fn clear(&self, host: &Host) -> Result<(), Error> {
        let shown = run(Command::new(tc())
            .args(["-n", &host.ns, "qdisc", "show"])
            .args(["dev", HOST_IF, "root"]))?;
        if String::from_utf8_lossy(&shown.stdout).contains("netem") {
            run(Command::new(tc()).args(["-n", &host.ns, "qdisc", "del", "dev", HOST_IF, "root"]))?;
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Hosts first: deleting a host's namespace deletes its cable, both ends.
        for ns in self.made.iter().rev() {
            let _ = delete(ns);
        }
    }
}

impl Host {
    /// The name it was added with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace's name (for `ip netns exec NAME …` by hand).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Its address on the switch.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// A command that runs `program` inside its namespace (`ip netns exec NS program`).
    /// `ip` execs the program in place, so the child's PID is the program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(ip());
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Runs `f` on a new thread moved into its namespace, and returns what `f` returns.
    /// Sockets made by `f` stay in the namespace, whichever thread uses them later.
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let path = Path::new(NETNS_DIR).join(&self.ns);
        let file = File::open(&path).map_err(|source| Error::Io {
            what: format!("opening {}", path.display()),
            source,
        })?;
        let entered = std::thread::spawn(move || {
            enter(&file).map(|()| f()).map_err(|source| Error::Io {
                what: format!("entering the namespace {}", path.display()),
                source,
            })
        });
        match entered.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A namespace made only to see that it can be, deleted when dropped.
struct Throwaway(String);

impl Throwaway {
    fn new(what: &str) -> Result<Self, Error> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("ottotry-{}-{seq}-{what}", std::process::id());
        run(Command::new(ip()).args(["netns", "add", &name]))?;
        Ok(Self(name))
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = delete(&self.0);
    }
}

/// Moves the calling thread into the network namespace `file` refers to.
#[cfg(target_os = "linux")]
fn enter(file: &File) -> io::Result<()> {
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    use std::os::fd::AsFd as _;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn enter(_: &File) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "network namespaces need Linux",
    ))
}

/// Deletes namespace `name`.
fn delete(name: &str) -> Result<(), Error> {
    run(Command::new(ip()).args(["netns", "delete", name])).map(drop)
}

/// Runs `ip -n NS ARGS`, which must succeed.
fn ip_in(ns: &str, args: &[&str]) -> Result<(), Error> {
    run(Command::new(ip()).args(["-n", ns]).args(args)).map(drop)
}

/// Runs `cmd` within [`TOOL_LIMIT`]; its output if it succeeded, else [`Error::Command`]
/// with the end of its standard error.
fn run(cmd: &mut Command) -> Result<Output, Error> {
    let out = output_within(cmd, None, TOOL_LIMIT)?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(cmd),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 5),
        });
    }
    Ok(out)
}

fn ip() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| find("ip").unwrap_or_else(|| "ip".into()))
}

fn tc() -> &'static Path {
    static TC: OnceLock<PathBuf> = OnceLock::new();
    TC.get_or_init(|| find("tc").unwrap_or_else(|| "tc".into()))
}

/// The executable `tool` in PATH, else in the sbin directories root's PATH may lack.
fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// An [`Error::Io`] for an argument out of range.
fn invalid(what: String, problem: &str) -> Error {
    Error::Io {
        what,
        source: io::Error::new(io::ErrorKind::InvalidInput, problem),
    }
}

/// The names in `ip netns list` output (`NAME` or `NAME (id: N)` a line).
fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The PID in a namespace name `PREFIX-PID-…`, if it has that form.
fn owner(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::thread;
    use std::time::Instant;

    /// How long a probe waits for a TCP handshake.
    const PROBE: Duration = Duration::from_secs(1);

    /// How long a restored path may take to carry packets again (ARP, carrier).
    const SETTLE: Duration = Duration::from_secs(10);

    // Topology of the reachability tests:
    //
    //   a 10.77.0.1 ──┐
    //   b 10.77.0.2 ──┼── br0 (hub)
    //   c 10.77.0.3 ──┘
    //   every host listens on its address; probes are TCP handshakes from another host.

    fn skip() -> bool {
        match available() {
            Ok(()) => false,
            Err(reason) => {
                println!("skipped: {reason}");
                true
            }
        }
    }

    /// A listener in `host`'s namespace on its address, accepting and closing forever.
    fn listen(host: &Host) -> SocketAddr {
        let ip = host.ip();
        let listener = host
            .within(move || TcpListener::bind((ip, 0)))
            .unwrap()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        addr
    }

    /// The time of a TCP handshake from `from` to `to`, or why there was none.
    fn handshake(from: &Host, to: SocketAddr) -> io::Result<Duration> {
        from.within(move || {
            let start = Instant::now();
            TcpStream::connect_timeout(&to, PROBE).map(|_| start.elapsed())
        })
        .unwrap()
    }

    fn reaches(from: &Host, to: SocketAddr) -> bool {
        handshake(from, to).is_ok()
    }

    /// Whether `from` reaches `to` within [`SETTLE`].
    fn reaches_again(from: &Host, to: SocketAddr) -> bool {
        let start = Instant::now();
        while start.elapsed() < SETTLE {
            if reaches(from, to) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn three() -> (Topology, [(Host, SocketAddr); 3]) {
        let mut topology = Topology::create("ottotest", Ipv4Addr::new(10, 77, 0, 0)).unwrap();
        let hosts = ["a", "b", "c"].map(|name| {
            let host = topology.add_host(name).unwrap();
            let addr = listen(&host);
            (host, addr)
        });
        (topology, hosts)
    }

    #[test]
    fn hosts_reach_each_other_and_a_partition_cuts_only_its_pair_until_healed() {
        if skip() {
            return;
        }
        let (topology, [(a, at_a), (b, at_b), (c, at_c)]) = three();
        assert_eq!(a.ip(), Ipv4Addr::new(10, 77, 0, 1));
        assert!(reaches(&a, at_b) && reaches(&b, at_a) && reaches(&c, at_b));

        topology.partition(&a, &b).unwrap();
        let cut = handshake(&a, at_b).unwrap_err();
        assert_eq!(
            cut.kind(),
            io::ErrorKind::TimedOut,
            "packets vanish silently"
        );
        assert!(!reaches(&b, at_a));
        assert!(
            reaches(&c, at_b) && reaches(&a, at_c),
            "other pairs still talk"
        );

        topology.heal(&a, &b).unwrap();
        assert!(reaches_again(&a, at_b) && reaches_again(&b, at_a));
        topology.heal(&a, &b).unwrap();
    }

    #[test]
    fn a_pulled_cable_cuts_a_host_from_everyone_until_plugged_back() {
        if skip() {
            return;
        }
        let (topology, [(a, at_a), (b, at_b), (c, at_c)]) = three();
        assert!(reaches(&a, at_b) && reaches(&b, at_a));

        topology.link_down(&a).unwrap();
        assert!(!reaches(&a, at_b) && !reaches(&a, at_c));
        assert!(!reaches(&b, at_a) && !reaches(&c, at_a));
        assert!(reaches(&b, at_c), "the others still talk");

        topology.link_up(&a).unwrap();
        assert!(reaches_again(&a, at_b) && reaches_again(&c, at_a));
    }

    #[test]
    fn commands_run_inside_the_hosts_namespace() {
        if skip() {
            return;
        }
        let mut topology = Topology::create("ottotest", Ipv4Addr::new(10, 77, 0, 0)).unwrap();
        let host = topology.add_host("Dev 1 (acme)").unwrap();
        assert!(host.namespace().ends_with("-h0-dev1acme"), "{host:?}");
        let mut cmd = host.command("ip");
        cmd.args(["-4", "-o", "addr", "show", "dev", HOST_IF]);
        let out = run(&mut cmd).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("10.77.0.1/24"), "{text}");
    }

    #[test]
    fn netem_adds_its_delay_to_every_round_trip_until_cleared() {
        if skip() {
            return;
        }
        if let Err(reason) = netem_available() {
            println!("skipped: {reason}");
            return;
        }
        let (topology, [(a, _), (_, at_b), _]) = three();
        let fastest = |n| (0..n).map(|_| handshake(&a, at_b).unwrap()).min().unwrap();
        let delay = Duration::from_millis(200);
        let before = fastest(3);
        topology.impair(&a, delay, 0.0).unwrap();
        let impaired = fastest(3);
        assert!(
            impaired >= before + delay / 2,
            "{impaired:?} with a {delay:?} delay, {before:?} without"
        );
        topology.clear(&a).unwrap();
        let after = fastest(3);
        assert!(after < before + delay / 2, "{after:?} once cleared");
        topology.clear(&a).unwrap();
    }

    #[test]
    fn impairing_without_netem_says_the_kernel_lacks_it() {
        if skip() {
            return;
        }
        if netem_available().is_ok() {
            println!("skipped: this kernel has netem");
            return;
        }
        let mut topology = Topology::create("ottotest", Ipv4Addr::new(10, 77, 0, 0)).unwrap();
        let host = topology.add_host("a").unwrap();
        let err = topology
            .impair(&host, Duration::from_millis(50), 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("CONFIG_NET_SCH_NETEM"), "{err}");
    }

    #[test]
    fn dropping_a_topology_deletes_its_namespaces() {
        if skip() {
            return;
        }
        let mut topology = Topology::create("ottotest", Ipv4Addr::new(10, 77, 0, 0)).unwrap();
        topology.add_host("a").unwrap();
        topology.add_host("b").unwrap();
        let made = topology.namespaces().to_vec();
        assert_eq!(made.len(), 3);
        let listed = list().unwrap();
        assert!(made.iter().all(|ns| listed.contains(ns)), "{listed:?}");
        drop(topology);
        let listed = list().unwrap();
        assert!(made.iter().all(|ns| !listed.contains(ns)), "{listed:?}");
    }

    #[test]
    fn stale_leftovers_of_dead_processes_are_deleted_and_live_ones_kept() {
        if skip() {
            return;
        }
        // A prefix of this process's own, so parallel test runs leave each other alone.
        let prefix = format!("stale{}", std::process::id());
        // Above the largest pid_max Linux allows, so no process has it.
        let dead = format!("{prefix}-4194400-0-hub");
        run(Command::new(ip()).args(["netns", "add", &dead])).unwrap();
        let live = Topology::create(&prefix, Ipv4Addr::new(10, 77, 0, 0)).unwrap();
        let gone = cleanup_stale(&prefix).unwrap();
        assert_eq!(gone, [dead.as_str()]);
        let listed = list().unwrap();
        assert!(!listed.contains(&dead));
        assert!(listed.contains(&live.namespaces()[0]));
    }

    #[test]
    fn bad_prefixes_and_subnets_are_refused_before_anything_is_made() {
        for prefix in ["", "Otto", "otto-x", "averyverylongprefix"] {
            let err = Topology::create(prefix, Ipv4Addr::new(10, 77, 0, 0)).unwrap_err();
            assert!(err.to_string().contains("prefix"), "{err}");
        }
        let err = Topology::create("otto", Ipv4Addr::new(10, 77, 0, 5)).unwrap_err();
        assert!(err.to_string().contains("/24"), "{err}");
    }

    #[test]
    fn leftover_names_are_read_with_their_owner() {
        let listed = parse_list("otto-12-0-hub (id: 3)\nother\n\notto-12-0-h1-a\n");
        assert_eq!(listed, ["otto-12-0-hub", "other", "otto-12-0-h1-a"]);
        assert_eq!(owner("otto", "otto-12-0-hub"), Some(12));
        assert_eq!(owner("otto", "otto2-12-0-hub"), None);
        assert_eq!(owner("otto", "otto-x-0-hub"), None);
        assert_eq!(owner("otto", "other"), None);
    }
}

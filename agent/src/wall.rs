//! The wall around each step process.
//!
//! The agent does not start a step's program directly: it starts itself as
//! `otto-agent --wall SPEC -- PROGRAM ARGS…`, a fresh single-threaded process that builds
//! the wall around itself ([`enter`]) and then replaces itself with the program (same
//! process id, same process group). The wall is:
//!
//! - Landlock: the step may write only its workspace, its private directory (secrets,
//!   scratch files, `TMPDIR`) and a few devices (`/dev/null`…), and may read everything
//!   else except the job's hidden directories (the node's home and its work directory,
//!   which holds every other stage's workspace and secrets). Landlock rules only allow, so
//!   "everything but these" is computed once per stage as a list of read roots: walking
//!   down from `/` towards each hidden directory, every sibling on the way is a root.
//!   Landlock's scopes also keep the step from signalling processes outside its wall, and
//!   its ptrace rule keeps it from tracing them or reading their `/proc/<pid>/{environ,mem}`.
//! - A mount namespace of its own in which the whole file system is read-only but for
//!   the directories the step may write (bound onto themselves and left writable), so that
//!   what Landlock does not govern (mode, owner, extended attributes and times of a file:
//!   `chmod`, `chown`, `setxattr`, `utime`) fails with `EROFS` outside them: a uid-0 step
//!   cannot chmod what root owns, a step user cannot chmod what its uid owns elsewhere.
//!   A root agent makes it with its own `CAP_SYS_ADMIN`; an agent that is not root first
//!   enters a user namespace that maps its uid and gid to themselves. Mounts are private
//!   first, so nothing done here is seen outside. The namespace is made once per stage,
//!   by a holder process (`otto-agent --wall-hold`, [`Holder`]) that lives as long as the
//!   stage, and each step's wall process enters it (`setns`): a mount namespace's end
//!   makes the last process that leaves it wait for the kernel (milliseconds), which
//!   would otherwise be paid by every step.
//! - The step's user (when the agent runs as root and the job names one).
//! - Limits: `RLIMIT_NPROC` (processes of the step's user, counted from how many it has
//!   when the stage starts), `RLIMIT_DATA` (memory per process), `RLIMIT_CORE` 0.
//! - `PR_SET_PDEATHSIG`: a step whose agent dies is killed (unless it changes user).
//! - No capabilities: the bounding and ambient sets are emptied and no_new_privs is set
//!   for every step; a step that keeps the agent's user (a root agent with no step user)
//!   also loses its effective, permitted and inheritable sets, so it runs as uid 0 with no
//!   capability (no raw sockets, no reading other root processes' `/proc/<pid>/environ`,
//!   no bypassing file permissions) and cannot gain one by `exec`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit};
use serde::{Deserialize, Serialize};

use crate::protocol::{Limits, StepUser, Wall};

/// The argument that makes `otto-agent` build a wall and run a program in it.
pub const WALL_ARG: &str = "--wall";

/// The Landlock ABI whose file system rights the wall handles (5: up to `IOCTL_DEV`).
const FS_ABI: ABI = ABI::V5;

/// Devices every step may write. Not `/dev/tty`: a step has no controlling terminal (its
/// wall process starts a session of its own), and one it could reach would let it type
/// commands into the shell of whoever started the node (`TIOCSTI`).
const DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

/// The argument that makes `otto-agent` print [`landlock_abi`] and exit: how the node
/// learns what wall its agents can build without linking this crate.
pub const WALL_ABI_ARG: &str = "--wall-abi";

/// The argument that makes `otto-agent` try [`read_only_mounts`] on itself and print
/// `ok`, or why it cannot, and exit: how the node learns whether its steps' file system
/// can be made read-only.
pub const WALL_MOUNTS_ARG: &str = "--wall-mounts";

/// The argument that makes `otto-agent` make the read-only mount namespace for a stage
/// and hold it until its stdin ends ([`hold`]).
pub const WALL_HOLD_ARG: &str = "--wall-hold";

/// `otto-agent --wall-hold PATHS`: makes the file system read-only but for `paths` (JSON,
/// a list) in namespaces of its own ([`read_only_mounts`]), says `ready` on stdout (or
/// why not, and fails), then waits for its stdin to end, holding the namespaces for the
/// steps that enter them. It dies with its agent.
pub fn hold(paths: &OsStr) -> io::Result<()> {
    use std::io::{Read as _, Write as _};
    let paths: Vec<PathBuf> = serde_json::from_slice(paths.as_bytes()).map_err(io::Error::other)?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    read_only_mounts(&paths)?;
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    let mut sink = [0u8; 64];
    while io::stdin().lock().read(&mut sink)? > 0 {}
    Ok(())
}

/// The process holding a stage's read-only mount namespace; ends it when dropped.
#[derive(Debug)]
pub(crate) struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        crate::process::spare(None);
    }
}

/// What `otto-agent --wall-mounts` prints: `ok`, or why the file system around steps
/// cannot be made read-only here. Run in a process of its own: it changes this process's
/// mount namespace (and user namespace, when not root).
pub fn probe_read_only_mounts() -> String {
    let dir = std::env::temp_dir();
    match read_only_mounts(std::slice::from_ref(&dir)) {
        Ok(()) => "ok".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// The highest Landlock ABI version the running kernel offers that the wall uses (1 to
/// 6); 0 when it has none (not built in, or not enabled at boot).
pub fn landlock_abi() -> i32 {
    let fs = [ABI::V5, ABI::V4, ABI::V3, ABI::V2, ABI::V1];
    let strict = || Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    let with_scopes = strict()
        .handle_access(AccessFs::from_all(FS_ABI))
        .and_then(|r| r.scope(Scope::from_all(ABI::V6)))
        .and_then(Ruleset::create);
    if with_scopes.is_ok() {
        return 6;
    }
    for (n, abi) in (1..=5).rev().zip(fs) {
        if strict()
            .handle_access(AccessFs::from_all(abi))
            .and_then(Ruleset::create)
            .is_ok()
        {
            return n;
        }
    }
    0
}

/// What every step of a stage is walled by; made once per stage, handed to each step's
/// `otto-agent --wall` on its command line, never as a file: anything the agent wrote where
/// a step can write, that step could rewrite to unwall the steps after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepWall {
    /// The directories steps may read (and execute from).
    read: Vec<PathBuf>,
    /// The directories steps may write.
    write: Vec<PathBuf>,
    /// Whether Landlock is used at all (the job asked for a wall and the kernel has it).
    landlock: bool,
    /// Whether the file system is made read-only but for `write` ([`read_only_mounts`]):
    /// whenever the job asks for a wall.
    #[serde(default)]
    read_only: bool,
    /// Whether a step that cannot be walled in fails rather than runs (the job's wall
    /// is required).
    #[serde(default)]
    required: bool,
    /// The process holding the stage's read-only mount namespace ([`Holder`]), which
    /// steps enter instead of making their own.
    #[serde(default)]
    enter: Option<u32>,
    user: Option<StepUser>,
    /// `RLIMIT_NPROC` for the step's user.
    nproc: Option<u64>,
    memory: u64,
    /// The workspace (canonical) and the directory each step sees it at, when the job
    /// names one ([`see_workspace_at`]).
    #[serde(default)]
    workspace: Option<(PathBuf, PathBuf)>,
}

impl StepWall {
    /// The wall for a stage whose steps write `writable` (the workspace and private
    /// directory), or no Landlock when `wall` is `None`. Fails when the job requires a
    /// wall the kernel cannot build.
    pub(crate) fn new(
        wall: Option<&Wall>,
        writable: &[&Path],
        limits: &Limits,
        workspace: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, String> {
        let abi = landlock_abi();
        let landlock = match wall {
            Some(wall) if abi == 0 && wall.required => {
                return Err(
                    "this kernel has no Landlock, and the node requires a wall around steps".into(),
                );
            }
            Some(_) => abi > 0,
            None => false,
        };
        let mut hidden = Vec::new();
        let mut read = Vec::new();
        if let Some(wall) = wall {
            for path in &wall.hidden {
                // A hidden directory that does not exist hides nothing.
                if let Ok(path) = fs::canonicalize(path) {
                    hidden.push(path);
                }
            }
            read = read_roots(Path::new("/"), &hidden);
        }
        let write = writable
            .iter()
            .map(|p| p.to_path_buf())
            .chain(DEVICES.iter().map(PathBuf::from))
            .chain(wall.iter().flat_map(|w| w.writable.iter().cloned()))
            .collect();
        let user = wall.and_then(|w| w.user);
        let uid = user.map_or_else(|| rustix::process::getuid().as_raw(), |u| u.uid);
        // Root ignores RLIMIT_NPROC; for anyone else it counts every task of the user, so
        // the limit starts from what the user runs now.
        let nproc = (uid != 0).then(|| tasks_of(uid).saturating_add(limits.processes));
        Ok(Self {
            read,
            write,
            landlock,
            read_only: wall.is_some(),
            required: wall.is_some_and(|w| w.required),
            enter: None,
            user,
            nproc,
            memory: limits.memory_bytes,
            workspace,
        })
    }

    /// Whether steps run inside Landlock.
    pub(crate) fn is_landlocked(&self) -> bool {
        self.landlock
    }

    /// Starts the process that holds the stage's read-only mount namespace for its steps
    /// to enter; none (each step makes its own) when it cannot be made.
    pub(crate) fn hold(&mut self) -> Option<Holder> {
        use std::io::BufRead as _;
        if !self.read_only {
            return None;
        }
        let paths = serde_json::to_string(&self.write).ok()?;
        let mut child = std::process::Command::new(std::env::current_exe().ok()?)
            .env_clear()
            .arg(WALL_HOLD_ARG)
            .arg(paths)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        // It says `ready` or ends (closing its stdout) within a few system calls.
        let said = child
            .stdout
            .take()
            .map(|out| io::BufReader::new(out).read_line(&mut line));
        // Spared by the sweep that ends each step's processes from now on.
        crate::process::spare(Some(child.id()));
        let holder = Holder(child);
        if !matches!(said, Some(Ok(_))) || line.trim() != "ready" {
            return None;
        }
        self.enter = Some(holder.0.id());
        Some(holder)
    }

    /// The wall as the SPEC argument of the steps' `otto-agent --wall`.
    pub(crate) fn spec(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| e.to_string())
    }
}

/// The command that runs `program` with `args` inside the wall `spec` describes. It starts
/// with an empty environment: the dynamic loader reads variables such as `LD_PRELOAD` when
/// `otto-agent --wall` itself starts, before the wall exists, so none of the step's may be
/// there. The step's environment goes to the wall process on its stdin ([`encode_env`])
/// and is applied only by the final `execve`, inside the wall, as the step's user; never
/// on the command line, which every process on the machine can read.
pub(crate) fn command(
    spec: &str,
    program: &Path,
    args: &[OsString],
) -> io::Result<tokio::process::Command> {
    let me = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(me);
    command
        .env_clear()
        .arg(WALL_ARG)
        .arg(spec)
        .arg("--")
        .arg(program)
        .args(args);
    Ok(command)
}

/// The most bytes of environment the wall process reads from its stdin.
const MAX_ENV_BYTES: u64 = 64 << 20;

/// `vars` as the wall process reads them from its stdin: `NAME=VALUE` entries, each ended
/// by a NUL byte (as in `/proc/<pid>/environ`). A name with `=` or NUL in it, or a value
/// with NUL in it, cannot be an environment variable and is left out.
pub(crate) fn encode_env<'a>(vars: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let (name, value) = (name.as_bytes(), value.as_bytes());
        if name.is_empty() || name.contains(&b'=') || name.contains(&0) || value.contains(&0) {
            continue;
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// The variables [`encode_env`] wrote.
fn decode_env(bytes: &[u8]) -> Vec<(OsString, OsString)> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let at = entry.iter().position(|b| *b == b'=').filter(|at| *at > 0)?;
            Some((
                OsString::from_vec(entry[..at].to_vec()),
                OsString::from_vec(entry[at + 1..].to_vec()),
            ))
        })
        .collect()
}

/// `otto-agent --wall SPEC -- PROGRAM ARGS…`: reads the step's environment from stdin to
/// its end, builds the wall `spec` (its JSON) describes around this process and replaces
/// it with `program`, its stdin `/dev/null`. Returns only on failure.
pub fn enter(spec: &OsStr, program: &OsString, args: &[OsString]) -> io::Error {
    use std::io::Read as _;
    // A session of its own, without the controlling terminal the node may have been
    // started from: a step that had it could push input into that terminal (TIOCSTI)
    // and so run commands as the operator.
    if let Err(error) = rustix::process::setsid() {
        return io::Error::other(format!("cannot start a session of its own: {error}"));
    }
    let mut input = Vec::new();
    if let Err(error) = io::stdin()
        .lock()
        .take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut input)
    {
        return io::Error::other(format!("cannot read the step's environment: {error}"));
    }
    if input.len() as u64 > MAX_ENV_BYTES {
        return io::Error::other("the step's environment is larger than 64 MiB");
    }
    match build(spec) {
        Ok((user, moved)) => {
            let mut command = std::process::Command::new(program);
            command
                .args(args)
                .env_clear()
                .envs(decode_env(&input))
                .stdin(std::process::Stdio::null());
            if let Some(cwd) = moved {
                command.env("PWD", cwd);
            }
            if let Some(user) = user {
                command.uid(user.uid).gid(user.gid);
            }
            // No descriptor but stdin, stdout and stderr reaches the step: one opened
            // before the wall (inherited from whoever started the node) would get past
            // Landlock and the read-only mounts, which check only when a file is opened.
            close_fds::CloseFdsBuilder::new().cloexecfrom(3);
            command.exec()
        }
        Err(error) => error,
    }
}

/// Applies the wall in `spec` to this process, all but the user switch, which comes with
/// `exec`; returns the user, and the directory it moved to when it sees the workspace at
/// the job's stable directory.
fn build(spec: &OsStr) -> io::Result<(Option<StepUser>, Option<PathBuf>)> {
    let wall: StepWall = serde_json::from_slice(spec.as_bytes()).map_err(io::Error::other)?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let limit = |resource, value| {
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
    };
    limit(Resource::Core, 0)?;
    limit(Resource::Data, wall.memory)?;
    if let Some(nproc) = wall.nproc {
        limit(Resource::Nproc, nproc)?;
    }
    // Before Landlock, which forbids a walled process to mount anything.
    let mut own_namespace = false;
    if wall.read_only {
        // The holder is the agent's child, not yet waited for, so its process id cannot
        // name another process. Where its namespaces cannot be entered, the step makes its
        // own rather than run with the file system writable.
        let made = match wall.enter {
            Some(holder) => enter_mounts(holder).or_else(|_| read_only_mounts(&wall.write)),
            None => read_only_mounts(&wall.write),
        };
        match made {
            Ok(()) => own_namespace = true,
            Err(error) if wall.required => {
                return Err(io::Error::other(format!(
                    "cannot make the file system read-only around the step: {error}"
                )));
            }
            // The node said so at start (`otto-agent --wall-mounts`).
            Err(_) => {}
        }
    }
    // After the read-only mounts, so that the workspace is bound there as the writable
    // bind they left it.
    let moved = wall
        .workspace
        .as_ref()
        .and_then(|(workspace, stable)| see_workspace_at(workspace, stable, own_namespace));
    if wall.landlock {
        let status = ruleset(&wall)
            .and_then(RulesetCreated::restrict_self)
            .map_err(|e| io::Error::other(format!("landlock: {e}")))?;
        if status.ruleset == RulesetStatus::NotEnforced {
            return Err(io::Error::other(
                "landlock: the kernel enforces none of the rules",
            ));
        }
    }
    // Last, once Landlock has opened the paths it needs (which may take a capability to
    // reach), and before the user switch, which still needs CAP_SETUID and CAP_SETGID.
    drop_capabilities(wall.user.is_some())?;
    Ok((wall.user, moved))
}

/// Binds `workspace` over `stable` in this process's own mount namespace (made here,
/// mounts private, unless `own_namespace` says [`read_only_mounts`] made one), and moves
/// from where it is in the workspace to the same place there: the step
/// then sees its workspace at the same path in every attempt, and tools that record
/// absolute paths (cargo's fingerprints) find them unchanged. Every step has its own
/// namespace, so a step sees only its own workspace at `stable` (another stage's, running
/// at the same time, stays in that stage's namespace), and its mounts are private: nothing
/// of them reaches the machine's namespace. The step has no capability afterwards, so it
/// cannot undo or add mounts. `None`, with nothing changed but possibly the namespace,
/// where this process may not mount (an agent that is not root, without the read-only
/// mounts' user namespace) or is not in the workspace: the step then runs at the
/// workspace's own path.
fn see_workspace_at(workspace: &Path, stable: &Path, own_namespace: bool) -> Option<PathBuf> {
    use rustix::mount::{MountPropagationFlags, mount_bind, mount_change};
    let cwd = std::env::current_dir().ok()?;
    let inside = cwd.strip_prefix(workspace).ok()?.to_owned();
    if !own_namespace {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).ok()?;
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .ok()?;
    }
    // The attempt's mount namespace (entered from its holder) has the bind already from
    // the step before: bound once, not once a step.
    let same = |a: &Path, b: &Path| {
        let (a, b) = (fs::metadata(a).ok(), fs::metadata(b).ok());
        a.zip(b)
            .is_some_and(|(a, b)| a.dev() == b.dev() && a.ino() == b.ino())
    };
    if !same(workspace, stable) {
        mount_bind(workspace, stable).ok()?;
    }
    let there = if inside.as_os_str().is_empty() {
        stable.to_owned()
    } else {
        stable.join(inside)
    };
    std::env::set_current_dir(&there).ok()?;
    Some(there)
}

/// Takes from this process every capability it could hand to the step, and the means to
/// gain one: empties the bounding and ambient sets and sets no_new_privs (a set-user-id
/// program or a file capability then grants nothing, and neither does `execve` as root).
/// When the step keeps this process's user (`switching_user` false: a root agent with no
/// step user, a root node without `[agent] run_as`), the effective, permitted and
/// inheritable sets are emptied too and read back, so such a step runs as uid 0 with no
/// capability at all; otherwise the switch to the step user at `exec` empties them.
fn drop_capabilities(switching_user: bool) -> io::Result<()> {
    use rustix::io::Errno;
    use rustix::thread::{self as t, CapabilitySet, CapabilitySets};
    let failed = |what: &str, e: Errno| io::Error::other(format!("{what}: {e}"));
    let held = t::capabilities(None).map_err(|e| failed("capget", e))?;
    if held.effective.contains(CapabilitySet::SETPCAP) {
        // Capability numbers the kernel knows run from 0 up; the first it does not know
        // answers EINVAL.
        for n in 0..64 {
            match t::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << n)) {
                Ok(()) => {}
                Err(Errno::INVAL) => break,
                Err(e) => return Err(failed("dropping the capability bounding set", e)),
            }
        }
    }
    match t::clear_ambient_capability_set() {
        // A kernel older than 4.3 has no ambient set.
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(failed("clearing the ambient capabilities", e)),
    }
    t::set_no_new_privs(true).map_err(|e| failed("setting no_new_privs", e))?;
    if !switching_user {
        let none = CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        };
        t::set_capabilities(None, none).map_err(|e| failed("capset", e))?;
        let left = t::capabilities(None).map_err(|e| failed("capget", e))?;
        if left != none {
            return Err(io::Error::other(format!(
                "capabilities are left after dropping them all: {left:?}"
            )));
        }
    }
    Ok(())
}

/// Makes this (single-threaded) process's view of the file system read-only but for
/// `writable` (directories or files; devices stay writable on a read-only mount): enters
/// a mount namespace of its own (and, when not root, a user namespace mapping its uid
/// and gid to themselves first, which gives it the right to), makes every mount private,
/// remounts each read-only, keeping its `nosuid`, `nodev` and `noexec`, then binds each
/// writable path onto itself and makes that bind writable again. The working directory is
/// entered again by its name, so that it is the bind, not the read-only mount under it.
pub fn read_only_mounts(writable: &[PathBuf]) -> io::Result<()> {
    use nix::sched::CloneFlags;
    use rustix::mount::{MountFlags, MountPropagationFlags};
    let step =
        |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let cwd = std::env::current_dir().map_err(step("reading the working directory"))?;
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    let admin = rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    });
    // An IPC namespace too: System V message queues, semaphores and shared memory a step
    // makes go with the stage instead of staying on the machine for any user to use.
    if admin {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC)
            .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNS|CLONE_NEWIPC): {e}")))?;
    } else {
        nix::sched::unshare(
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC,
        )
        .map_err(|e| {
            io::Error::other(format!(
                "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWIPC): {e} (user namespaces disabled?)"
            ))
        })?;
        fs::write("/proc/self/setgroups", "deny").map_err(step("/proc/self/setgroups"))?;
        fs::write("/proc/self/uid_map", format!("{0} {0} 1", uid.as_raw()))
            .map_err(step("/proc/self/uid_map"))?;
        fs::write("/proc/self/gid_map", format!("{0} {0} 1", gid.as_raw()))
            .map_err(step("/proc/self/gid_map"))?;
    }
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| io::Error::other(format!("making mounts private: {e}")))?;
    // Each mount as it is now; a path that is mounted over twice is remounted once, on
    // top, which is all a path reaches.
    let mounts = mounts()?;
    let mut done = std::collections::HashSet::new();
    for mount in &mounts {
        if !done.insert(&mount.point) {
            continue;
        }
        match rustix::mount::mount_remount(
            &mount.point,
            MountFlags::BIND | MountFlags::RDONLY | mount.kept,
            "",
        ) {
            Ok(()) => {}
            // Out of this user's reach, gone, or no longer a mount point (another mount
            // over a directory above it): nothing of it is reached by this path.
            Err(e)
                if [
                    rustix::io::Errno::NOENT,
                    rustix::io::Errno::ACCESS,
                    rustix::io::Errno::NOTDIR,
                    rustix::io::Errno::INVAL,
                    rustix::io::Errno::STALE,
                ]
                .contains(&e) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "remounting {} read-only: {e}",
                    mount.point.display()
                )));
            }
        }
    }
    for path in writable {
        // As mountinfo names it.
        let Ok(path) = fs::canonicalize(path) else {
            continue;
        };
        let path = &path;
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        if !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        rustix::mount::mount_bind(path, path)
            .map_err(|e| io::Error::other(format!("binding {}: {e}", path.display())))?;
        let kept = mounts_at(path)?.map_or(MountFlags::empty(), |m| m.kept);
        match rustix::mount::mount_remount(path, MountFlags::BIND | kept, "") {
            Ok(()) => {}
            // Read-only for good where it is mounted (locked when this user namespace
            // was made): it was not writable before either.
            Err(rustix::io::Errno::PERM) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "making {} writable: {e}",
                    path.display()
                )));
            }
        }
    }
    std::env::set_current_dir(&cwd).map_err(step("entering the working directory again"))?;
    Ok(())
}

/// Enters the namespaces process `holder` made with [`read_only_mounts`] (its user
/// namespace too, when this process is not root), and its working directory again by
/// name (`setns` moves this process to the namespace's root).
fn enter_mounts(holder: u32) -> io::Result<()> {
    use nix::sched::CloneFlags;
    let cwd = std::env::current_dir()?;
    let admin = rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    });
    let enter = |kind: &str, flag: CloneFlags| {
        let ns = fs::File::open(format!("/proc/{holder}/ns/{kind}"))
            .map_err(|e| io::Error::new(e.kind(), format!("the stage's {kind} namespace: {e}")))?;
        nix::sched::setns(&ns, flag)
            .map_err(|e| io::Error::other(format!("entering the stage's {kind} namespace: {e}")))
    };
    if !admin {
        enter("user", CloneFlags::CLONE_NEWUSER)?;
    }
    enter("mnt", CloneFlags::CLONE_NEWNS)?;
    enter("ipc", CloneFlags::CLONE_NEWIPC)?;
    std::env::set_current_dir(&cwd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("entering the working directory again: {e}"),
        )
    })
}

/// A mount, as `/proc/self/mountinfo` lists it.
struct Mount {
    point: PathBuf,
    /// Its flags that a remount must keep (a mount inherited into a user namespace cannot
    /// lose them).
    kept: rustix::mount::MountFlags,
}

/// The mounts of this process's namespace, in the order `/proc/self/mountinfo` lists them
/// (parents before what is mounted on them).
fn mounts() -> io::Result<Vec<Mount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("/proc/self/mountinfo: {e}")))?;
    Ok(text.lines().filter_map(parse_mount).collect())
}

/// The last (topmost) mount at `path`.
fn mounts_at(path: &Path) -> io::Result<Option<Mount>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.point == path))
}

/// One line of `/proc/self/mountinfo`: `ID PARENT MAJ:MIN ROOT POINT OPTIONS …`.
fn parse_mount(line: &str) -> Option<Mount> {
    use rustix::mount::MountFlags;
    let mut fields = line.split(' ');
    let point = fields.nth(4)?;
    let options = fields.next()?;
    let mut kept = MountFlags::empty();
    for option in options.split(',') {
        kept |= match option {
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "nosymfollow" => MountFlags::NOSYMFOLLOW,
            _ => MountFlags::empty(),
        };
    }
    Some(Mount {
        point: PathBuf::from(OsString::from_vec(unescape(point))),
        kept,
    })
}

/// A mountinfo field with its `\NNN` (octal) escapes of space, tab, newline and backslash
/// undone.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let n = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(n) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The Landlock ruleset: read roots, writable directories, scopes.
fn ruleset(wall: &StepWall) -> Result<RulesetCreated, landlock::RulesetError> {
    let all = AccessFs::from_all(FS_ABI);
    let read = AccessFs::from_read(FS_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::from_all(ABI::V6))?
        .create()?;
    ruleset = add_paths(ruleset, &wall.read, read)?;
    ruleset = add_paths(ruleset, &wall.write, all)?;
    Ok(ruleset)
}

/// Adds a rule for each path that can be opened; a file gets only file rights.
fn add_paths(
    mut ruleset: RulesetCreated,
    paths: &[PathBuf],
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, landlock::RulesetError> {
    let file_rights = AccessFs::from_file(FS_ABI);
    for path in paths {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        let Ok(fd) = PathFd::new(path) else {
            continue;
        };
        let access = if meta.is_dir() {
            access
        } else {
            access & file_rights
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
    }
    Ok(ruleset)
}

/// Every path under `dir` that holds none of `hidden`: `dir` itself when no hidden path is
/// under it, else its entries' roots, recursively. Symbolic links are left out: what they
/// point to is reached, and checked, under its own path.
pub(crate) fn read_roots(dir: &Path, hidden: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    collect_roots(dir, hidden, &mut roots, 0);
    roots
}

fn collect_roots(dir: &Path, hidden: &[PathBuf], roots: &mut Vec<PathBuf>, depth: usize) {
    if hidden.iter().any(|h| h == dir) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(dir)) || depth > 64 {
        roots.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        collect_roots(&entry.path(), hidden, roots, depth + 1);
    }
}

/// How many tasks (threads included) user `uid` runs now, from `/proc`.
pub(crate) fn tasks_of(uid: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut count = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path();
        if fs::metadata(&path).is_ok_and(|m| m.uid() == uid) {
            let threads = fs::read_dir(path.join("task")).map_or(1, |t| t.count());
            count += u64::try_from(threads).unwrap_or(1);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_survives_the_trip_through_stdin_and_bad_names_do_not() {
        let vars: [(&OsStr, &OsStr); 5] = [
            ("A".as_ref(), "1=2".as_ref()),
            ("EMPTY".as_ref(), "".as_ref()),
            ("B=C".as_ref(), "x".as_ref()),
            ("".as_ref(), "x".as_ref()),
            ("D".as_ref(), OsStr::from_bytes(b"a\0b")),
        ];
        let decoded = decode_env(&encode_env(vars));
        let expected: Vec<(OsString, OsString)> =
            vec![("A".into(), "1=2".into()), ("EMPTY".into(), "".into())];
        assert_eq!(decoded, expected);
    }

    #[test]
    fn read_roots_leave_out_hidden_directories_and_keep_their_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        for sub in ["a/home", "a/other", "b", "c/x"] {
            fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        fs::write(root.join("a/file"), "x").expect("write");
        std::os::unix::fs::symlink(root.join("a/home"), root.join("a/link")).expect("link");
        let hidden = [root.join("a/home"), root.join("c")];
        let mut roots = read_roots(&root, &hidden);
        roots.sort();
        assert_eq!(
            roots,
            [root.join("a/file"), root.join("a/other"), root.join("b")]
        );
    }
}

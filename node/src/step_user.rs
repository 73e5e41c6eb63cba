//! The step user (`[agent] run_as`): the unprivileged user a node running as root runs
//! steps as. `otto-node init` as root makes a user of the node's own ([`create_own`]),
//! `otto-node init --run-as NAME` creates NAME when it does not exist; the node checks at
//! start that it exists, is not root and can reach the work directory.
//!
//! One user per node: the steps of two nodes that share a user share its uid, and a step
//! of one could then open the files the other node's steps own (their workspaces, and
//! their private directories when it can find them).

use std::path::Path;
use std::process::{Command, Stdio};

use otto_agent_protocol::StepUser;

/// The user every root node's steps ran as before each node got its own ([`create_own`]);
/// homes that name it keep working, and tests that need a step user share it.
pub const DEFAULT_NAME: &str = "otto-step";

/// The longest user name `useradd` takes.
const MAX_USER_NAME: usize = 32;

/// The names [`create_own`] tries for node `node`, in order: `otto-step-NODE` (the node's
/// name in lower case, anything but letters, digits, `-` and `_` as `-`, cut so that the
/// whole name fits 32 bytes), then the same with `-2`, `-3`, … up to `-99`.
pub fn own_names(node: &str) -> impl Iterator<Item = String> {
    let mut base: String = node
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    base.insert_str(0, "otto-step-");
    (1..100u32).map(move |n| {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let mut name = base.clone();
        name.truncate(MAX_USER_NAME - suffix.len());
        let name = name.trim_end_matches('-');
        format!("{name}{suffix}")
    })
}

/// Creates a step user that belongs to node `node` alone: the first of [`own_names`] that
/// is no user yet, made with [`create`] (a name another init takes first is passed over,
/// never shared). `check` is asked about each name before it is made (e.g. whether such
/// a user could reach the work directory); its error stops the search. Returns the name
/// and ids.
pub fn create_own(
    node: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(String, StepUser), String> {
    for name in own_names(node) {
        if lookup(&name)?.is_some() {
            continue;
        }
        check(&name)?;
        match create(&name)? {
            Some(user) => return Ok((name, user)),
            None => continue,
        }
    }
    Err(format!(
        "every step user name for node {node:?} is taken (otto-step-…-99); name one with --run-as"
    ))
}

/// The user and group ids of user `name`: none when there is no such user; an error when
/// it is root (steps need an unprivileged user) or cannot be looked up.
pub fn lookup(name: &str) -> Result<Option<StepUser>, String> {
    let Some(entry) =
        nix::unistd::User::from_name(name).map_err(|e| format!("cannot look the user up: {e}"))?
    else {
        return Ok(None);
    };
    if entry.uid.is_root() {
        return Err("is root; steps need an unprivileged user".into());
    }
    Ok(Some(StepUser {
        uid: entry.uid.as_raw(),
        gid: entry.gid.as_raw(),
    }))
}

/// Creates `name` as a system user with no home, no login shell and no password (`useradd
/// --system --no-create-home --shell /usr/sbin/nologin`), or returns the one that exists.
/// Needs root and `useradd` (Debian's and Fedora's `passwd` package, BusyBox's `adduser`
/// is not enough).
pub fn ensure(name: &str) -> Result<StepUser, String> {
    if !otto_trust::valid_name(name) {
        return Err(format!("{name:?} is not a valid user name"));
    }
    if let Some(user) = lookup(name)? {
        return Ok(user);
    }
    match create(name)? {
        Some(user) => Ok(user),
        // Another init made it first.
        None => lookup(name)?.ok_or_else(|| "useradd succeeded but the user is not there".into()),
    }
}

/// Creates `name` as a system user (see [`ensure`]); `None` when a user of that name
/// exists (made by someone else, maybe at the same time).
fn create(name: &str) -> Result<Option<StepUser>, String> {
    if !otto_trust::valid_name(name) {
        return Err(format!("{name:?} is not a valid user name"));
    }
    if lookup(name)?.is_some() {
        return Ok(None);
    }
    let nologin = ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    // Another init may be making the same user at the same time: useradd then fails on
    // the lock or finds the user made, so a failure is looked at again (a few times).
    let mut failure = String::new();
    for _ in 0..5 {
        let output = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", nologin, "--"])
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run useradd to create it: {e}"))?;
        if output.status.success() {
            return lookup(name)?
                .map(Some)
                .ok_or_else(|| "useradd succeeded but the user is not there".into());
        }
        // useradd says 9 when the name is taken: someone else made it.
        if output.status.code() == Some(9) || lookup(name)?.is_some() {
            return Ok(None);
        }
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.lines().next().unwrap_or("").trim();
        failure = format!(
            "useradd could not create it ({}{}{said})",
            output.status,
            if said.is_empty() { "" } else { ": " }
        );
        if !said.contains("lock") {
            return Err(failure);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(failure)
}

/// Whether `user` may pass through every directory from `/` down to `dir` (those that
/// exist: a missing one is made later, readable by all); the reason when not.
pub fn reachable(dir: &Path, user: StepUser) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    for ancestor in dir.ancestors() {
        let meta = match std::fs::metadata(ancestor) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", ancestor.display())),
        };
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if meta.mode() & bit == 0 {
            return Err(format!(
                "{} is mode {:o}",
                ancestor.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// [`reachable`] for user `name`, or, while there is no such user, for a user still to be
/// made: it owns no directory and is in no group of one, so only the bits for others count.
pub fn reaches(name: &str, dir: &Path) -> Result<(), String> {
    let user = lookup(name)?.unwrap_or(StepUser {
        uid: u32::MAX - 1,
        gid: u32::MAX - 1,
    });
    reachable(dir, user)
}

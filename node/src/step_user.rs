//! The step user (`[agent] run_as`): the unprivileged user a node running as root runs
//! steps as. `otto-node init --run-as NAME` creates it when it does not exist; the node
//! checks at start that it exists, is not root and can reach the work directory.

use std::path::Path;
use std::process::{Command, Stdio};

use otto_agent_protocol::StepUser;

/// The step user `otto-node init` names when it runs as root and is given no `--run-as`.
pub const DEFAULT_NAME: &str = "otto-step";

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
            break;
        }
        if let Some(user) = lookup(name)? {
            return Ok(user);
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
    if !failure.is_empty() && lookup(name)?.is_none() {
        return Err(failure);
    }
    lookup(name)?.ok_or_else(|| "useradd succeeded but the user is not there".into())
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

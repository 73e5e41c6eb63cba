//! Child processes with bounded waits: run a command to its end within a limit, and stop
//! a long-running child by its PID, politely first.

use std::io::{Read, Write as _};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::Error;

/// How often a wait looks again.
const TICK: Duration = Duration::from_millis(20);

/// Runs `cmd` with `input` on its standard input (none: `/dev/null`) and collects its
/// output; kills it and fails with [`Error::Timeout`] if it is not done within `limit`.
pub fn output_within(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<Output, Error> {
    let shown = describe(cmd);
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // A child that exits without reading its input is its own business.
        let _ = stdin.write_all(bytes);
    }
    // Read both pipes on threads, so a chatty child never blocks on a full pipe.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let Some(status) = wait_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Timeout {
            what: format!("`{shown}` to finish"),
            limit,
        });
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Waits at most `limit` for `child` to exit; `None` if it still runs.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // The child cannot be waited for (it was reaped): nothing runs any more.
            Err(_) => return None,
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(TICK);
    }
}

/// Stops `child`: SIGTERM, then SIGKILL if it has not exited after `grace`. Returns how
/// it exited and whether it took SIGKILL.
pub fn terminate(child: &mut Child, grace: Duration) -> (Option<ExitStatus>, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (Some(status), false);
    }
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill_process(pid, Signal::TERM);
        if let Some(status) = wait_within(child, grace) {
            return (Some(status), false);
        }
    }
    let _ = child.kill();
    (child.wait().ok(), true)
}

/// A command as a person would type it (program name, not its path, and its arguments).
pub fn describe(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .map_or_else(
            || cmd.get_program().to_string_lossy(),
            |n| n.to_string_lossy(),
        )
        .into_owned();
    let mut words = vec![program];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
            words.push(format!("'{}'", arg.replace('\'', r"'\''")));
        } else {
            words.push(arg.into_owned());
        }
    }
    words.join(" ")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_outlives_its_limit_is_killed_and_named() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let err = output_within(&mut cmd, None, Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("`sleep 30` to finish"), "{err}");
    }

    #[test]
    fn input_reaches_the_command_and_output_comes_back() {
        let mut cmd = Command::new("cat");
        let out = output_within(&mut cmd, Some(b"hello"), Duration::from_secs(30)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn terminate_ends_a_child_that_ignores_sigterm_with_sigkill() {
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The shell says when its trap is in place (`exec` keeps the ignored signal).
        let mut ready = [0u8; 6];
        child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        let (status, killed) = terminate(&mut child, Duration::from_millis(300));
        assert!(status.is_some_and(|s| !s.success()));
        assert!(killed, "SIGTERM was ignored, so SIGKILL ended it");
    }

    #[test]
    fn terminate_stops_a_willing_child_with_sigterm_alone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let (status, killed) = terminate(&mut child, Duration::from_secs(30));
        assert!(status.is_some());
        assert!(!killed);
    }

    #[test]
    fn commands_are_shown_quoted_where_needed() {
        let mut cmd = Command::new("/usr/bin/otto");
        cmd.args(["logs", "RUN", "Deploy staging", "it's"]);
        assert_eq!(describe(&cmd), r"otto logs RUN 'Deploy staging' 'it'\''s'");
    }
}

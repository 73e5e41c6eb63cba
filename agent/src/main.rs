//! `otto-agent --socket PATH`: runs one stage attempt for the node serving `PATH`.
//!
//! Exit code 0 means the agent did its work and reported the result (whatever the stage's
//! outcome); 1 means the agent itself failed; 2 means bad arguments.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: otto-agent --socket PATH
       otto-agent --wall-abi
       otto-agent --wall-mounts

Runs one Otto stage attempt for the node serving PATH (a unix socket).
The node starts this program; there is no reason to run it by hand.
--wall-abi prints the Landlock ABI version the wall around steps uses
(0: the kernel has no Landlock, steps cannot be walled in).
--wall-mounts prints 'ok' when the file system around steps can be made
read-only but for their own directories, or why it cannot.

Log level: OTTO_LOG (e.g. OTTO_LOG=debug), default 'info'; logs go to stderr.";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == otto_agent::wall::WALL_ARG)
    {
        return wall(&args[1..]);
    }
    if args.len() == 1 && args[0] == otto_agent::wall::WALL_ABI_ARG {
        say_out(otto_agent::wall::landlock_abi());
        return ExitCode::SUCCESS;
    }
    if args.len() == 2 && args[0] == otto_agent::wall::WALL_HOLD_ARG {
        return match otto_agent::wall::hold(&args[1]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                say_out(error);
                ExitCode::FAILURE
            }
        };
    }
    if args.len() == 1 && args[0] == otto_agent::wall::WALL_MOUNTS_ARG {
        say_out(otto_agent::wall::probe_read_only_mounts());
        return ExitCode::SUCCESS;
    }
    let socket = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(socket)) => socket,
        Ok(Parsed::Help) => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            say(format_args!("otto-agent {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            say(format_args!("otto-agent: {message}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    // Nobody may read this process's memory through /proc or ptrace it (it holds the
    // job's secrets); and every process a step leaves behind is re-parented here, so
    // that it is found and killed when the step ends.
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .and_then(|()| rustix::process::set_child_subreaper(Some(rustix::process::getpid())))
    {
        say(format_args!(
            "otto-agent: cannot protect the agent: {error}"
        ));
        return ExitCode::FAILURE;
    }
    let filter = EnvFilter::try_from_env("OTTO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Stderr is a pipe to the node. When the node dies, writing to it fails: the log line
    // is lost, and nothing else may happen (by default a failed write is reported with
    // `eprintln!`, which panics, and the task that logged would die with it).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            say(format_args!(
                "otto-agent: cannot start the runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(otto_agent::run(&socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say(format_args!("otto-agent: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// `otto-agent --wall SPEC -- PROGRAM ARGS…`, which the agent runs for each step: exits
/// with 126 and a line on stderr (the step's log) when the wall cannot be built.
fn wall(args: &[OsString]) -> ExitCode {
    let (Some(spec), Some(dashes), Some(program)) = (args.first(), args.get(1), args.get(2)) else {
        say("otto-agent: --wall needs SPEC -- PROGRAM [ARGS…]");
        return ExitCode::from(2);
    };
    if dashes != "--" {
        say("otto-agent: --wall needs SPEC -- PROGRAM [ARGS…]");
        return ExitCode::from(2);
    }
    let error = otto_agent::wall::enter(spec, program, args.get(3..).unwrap_or_default());
    say(format_args!(
        "otto-agent: cannot run {} inside the wall: {error}",
        std::path::Path::new(program).display()
    ));
    ExitCode::from(126)
}

/// Writes a line to stdout.
fn say_out(text: impl Display) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Writes a line to stderr; a stderr nobody reads any more (a dead node) is fine.
fn say(text: impl Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

enum Parsed {
    Run(PathBuf),
    Help,
    Version,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut socket = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--socket" => {
                let value = args.next().ok_or("--socket needs a path")?;
                socket = Some(PathBuf::from(value));
            }
            other => match other.strip_prefix("--socket=") {
                Some(value) => socket = Some(PathBuf::from(value)),
                None => return Err(format!("unexpected argument '{other}'")),
            },
        }
    }
    socket
        .map(Parsed::Run)
        .ok_or_else(|| "--socket is required".into())
}

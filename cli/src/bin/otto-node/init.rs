//! `otto-node init`: create a node's home.

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use otto_node::daemon::{system_rng, unix_now};
use otto_node::home::{self, Home, InitOptions};
use otto_node::step_user;

/// Create a node's home: configuration, keys, certificate, trust store, CA, store.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node init --home ~/.otto --org acme --name ci-1
  otto-node init --home /srv/otto-ops --org acme --name ops-1 --answers-to ops
  otto-node init --home /srv/otto-2 --org acme --name ci-2 --org-key ~/.otto/org.key --json
  otto-node init --home /var/lib/otto --org acme --name ci-3 --run-as otto-step

The first node of an org makes the org key (org.key in its home; keep a copy somewhere
safe and off the node). Further nodes of the org are made with --org-key FILE: their
certificate is signed with that key, which is not copied into their home.
An existing non-empty directory is refused.
A node that runs as root runs steps as an unprivileged user of its own: as root, init
creates a new user otto-step-NODE (useradd --system --no-create-home; -2, -3… when the
name is taken, so no two nodes share one) unless --run-as USER names one (created when
it does not exist), and writes [agent] run_as; the user must be able to pass through the
directories above the home. --no-run-as leaves run_as unset: steps then run
as root without capabilities, and the node refuses other orgs' stages.")]
pub(crate) struct Args {
    /// The home directory to create [default: ~/.otto].
    #[arg(long, value_name = "DIR", env = "OTTO_HOME")]
    home: Option<PathBuf>,
    /// The org's name.
    #[arg(long, value_name = "NAME")]
    org: String,
    /// The node's name within its org.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The org key file of an existing org (for the org's second and later nodes).
    #[arg(long, value_name = "FILE")]
    org_key: Option<PathBuf>,
    /// A stage owner this node runs (repeatable), e.g. --answers-to ops.
    #[arg(long = "answers-to", value_name = "NAME")]
    answers_to: Vec<String>,
    /// Run steps as this unprivileged user (for a node that runs as root; created when
    /// missing) [default as root: a new user otto-step-NODE of this node's own].
    #[arg(long = "run-as", value_name = "USER")]
    run_as: Option<String>,
    /// As root: name no step user, so steps run as root without capabilities and the
    /// node refuses other orgs' stages (nothing changes for a node not run as root).
    #[arg(long = "no-run-as", conflicts_with = "run_as")]
    no_run_as: bool,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let home = Home::resolve(args.home)?;
    let root = rustix::process::geteuid().is_root();
    let run_as = match (&args.run_as, args.no_run_as) {
        (Some(name), _) => {
            step_user(&home, name).with_context(|| format!("--run-as {name}"))?;
            Some(name.clone())
        }
        (None, false) if root => Some(own_step_user(&home, &args.name).context(
            "steps of a root node run as a user of its own (--run-as USER names one, \
             --no-run-as runs them as root and refuses other orgs' stages)",
        )?),
        (None, _) => None,
    };
    let options = InitOptions {
        org: args.org,
        name: args.name,
        org_key: args.org_key,
        answers_to: args.answers_to,
        run_as: run_as.clone(),
    };
    let made = home::init(home.root(), &options, &mut system_rng(), unix_now())
        .with_context(|| format!("cannot create a node home in {}", home.root().display()))?;
    let mut out = io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "home": made.home,
            "node": made.node,
            "org": made.org,
            "peer_id": made.peer_id,
            "org_key": made.org_key,
            "run_as": run_as,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "created node {} of org {} in {}",
            made.node,
            made.org,
            made.home.display()
        )?;
        writeln!(out, "  peer id  {}", made.peer_id)?;
        writeln!(
            out,
            "  org key  {} ({})",
            made.org_key,
            made.org_key_file.display()
        )?;
        if let Some(user) = &run_as {
            writeln!(out, "  steps run as user {user}")?;
        }
        writeln!(
            out,
            "start it with: otto-node start --home {}",
            made.home.display()
        )?;
    }
    Ok(())
}

/// Creates a step user for node `node` alone ([`step_user::create_own`]), checked as
/// [`step_user`] checks a named one; returns its name.
fn own_step_user(home: &Home, node: &str) -> anyhow::Result<String> {
    let work_dir = std::path::absolute(home.work_dir())?;
    let (name, _) = step_user::create_own(node, |name| {
        step_user::reaches(name, &work_dir).map_err(|reason| {
            format!(
                "the step user could not reach the work directory {}: {reason}; make it \
                 searchable (chmod o+x) or put the home elsewhere",
                work_dir.display()
            )
        })
    })
    .map_err(anyhow::Error::msg)?;
    Ok(name)
}

/// Makes sure steps can run as user `name`: this process is root, the user can pass
/// through the directories above the home (the work directory is made next to it), and
/// the user exists (created when it does not). Checked before anything is made.
fn step_user(home: &Home, name: &str) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        anyhow::bail!(
            "only a node running as root can run steps as another user; init without --run-as \
             (steps then run as this user)"
        );
    }
    if !otto_trust::valid_name(name) {
        anyhow::bail!("{name:?} is not a valid user name");
    }
    // An existing user that is root is refused before anything else is said of it.
    step_user::lookup(name).map_err(anyhow::Error::msg)?;
    let work_dir = std::path::absolute(home.work_dir())?;
    step_user::reaches(name, &work_dir).map_err(|reason| {
        anyhow::anyhow!(
            "the step user could not reach the work directory {}: {reason}; make it \
             searchable (chmod o+x) or put the home elsewhere",
            work_dir.display()
        )
    })?;
    step_user::ensure(name).map_err(anyhow::Error::msg)?;
    Ok(())
}

//! `otto-node trust`: list the trust store, set aliases, revoke a node of this org.

use std::io::{self, Write as _};

use otto_node::api::{AliasRequest, RevokeRequest};
use otto_node::membership::{AliasView, Policy, PolicyRequest, Revoked, TrustView};

use crate::client::NodeArgs;
use crate::invite::{definitions_name, list_or_none};

/// Manage the trust store: pinned orgs, aliases, revocations.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node trust list
  otto-node trust list --json
  otto-node trust alias ops acme-ops
  otto-node trust revoke ops-2 --reason 'laptop stolen'
  otto-node trust revoke ed25519:3fa1…
  otto-node trust policy acme-dev --secrets DEPLOY_KEY,REGISTRY_TOKEN --max-parallel 4
  otto-node trust policy acme-dev --no-secrets
  otto-node trust policy acme-dev --repos https://git.example/acme/app.git

`alias NAME TARGET` gives a pinned org (or a node: its key id or its name in
`otto-node peers`) a second name, e.g. the owner name an Ottofile uses. `revoke NODE`
needs the org key (org.key in the home): it signs the org's next revocation list, applies
it here and delivers it to every known node, which then refuses the revoked node. A node
that cannot be reached now gets the list at its next connection with a node of this org.
`policy ORG` sets which of this node's secrets the org's stages may receive (--secrets
replaces the list), how many stages of one of its runs run here at once, and which git
repositories (exact URLs, --repos replaces the list) this node fetches itself when one of
the org's runs comes from a commit (for any other repository it takes the commit from a
git bundle the asking node sends); what it leaves out stays as it is.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the pinned orgs with their policies and revocations, the aliases, the approved
    /// definitions and the invites issued.
    #[command(after_help = "Examples:
  otto-node trust list
  otto-node trust list --json --home /srv/otto")]
    List {
        /// Print the trust store as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a pinned org or a node a second name.
    #[command(after_help = "Examples:
  otto-node trust alias ops acme-ops")]
    Alias {
        /// The alias, e.g. ops.
        name: String,
        /// A pinned org's name, a node key id (ed25519:…) or a known node's name.
        target: String,
    },
    /// Set which secrets a pinned org's stages may receive, how many of one of its runs
    /// run here at once, and which repositories this node fetches itself for its runs.
    #[command(after_help = "Examples:
  otto-node trust policy acme-dev --secrets DEPLOY_KEY,REGISTRY_TOKEN --max-parallel 4
  otto-node trust policy acme-dev --no-secrets
  otto-node trust policy acme-dev --repos https://git.example/acme/app.git
  otto-node trust policy acme-dev --no-repos")]
    Policy {
        /// The org: its pinned name or an alias.
        org: String,
        /// Secret names or globs its stages may receive, replacing the list (repeatable,
        /// or comma-separated).
        #[arg(long = "secrets", value_name = "NAME", value_delimiter = ',', num_args = 1.., conflicts_with = "no_secrets")]
        secrets: Vec<String>,
        /// Give its stages no secret at all.
        #[arg(long)]
        no_secrets: bool,
        /// How many stages of one of its runs run here at once (at least 1).
        #[arg(long = "max-parallel", value_name = "N")]
        max_parallel: Option<u32>,
        /// Git repositories (exact URLs) this node fetches itself when one of the org's
        /// runs comes from a commit of one, replacing the list (repeatable, or
        /// comma-separated); for any other it takes the asking node's git bundle.
        #[arg(long = "repos", value_name = "URL", value_delimiter = ',', num_args = 1.., conflicts_with = "no_repos")]
        repos: Vec<String>,
        /// Fetch no repository itself: take every commit from the asking node's bundles.
        #[arg(long)]
        no_repos: bool,
    },
    /// Revoke a node of this node's org (needs org.key in the home).
    #[command(after_help = "Examples:
  otto-node trust revoke ops-2 --reason 'laptop stolen'
  otto-node trust revoke ed25519:3fa1…")]
    Revoke {
        /// The node: its name in `otto-node peers`, or its key id (ed25519:…).
        #[arg(value_name = "NODE")]
        target: String,
        /// Why, for people reading the revocation list.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let mut out = io::stdout().lock();
    match args.command {
        Command::List { json } => {
            let trust: TrustView = client.get("/v1/trust")?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&trust)?)?;
            } else {
                print_trust(&mut out, &trust)?;
            }
        }
        Command::Alias { name, target } => {
            let alias: AliasView = client.post(
                "/v1/trust/aliases",
                &AliasRequest {
                    alias: name,
                    target,
                },
            )?;
            writeln!(out, "{} = {}", alias.alias, alias_target(&alias))?;
        }
        Command::Policy {
            org,
            secrets,
            no_secrets,
            max_parallel,
            repos,
            no_repos,
        } => {
            let secrets = if no_secrets {
                Some(Vec::new())
            } else {
                (!secrets.is_empty()).then_some(secrets)
            };
            let repos = if no_repos {
                Some(Vec::new())
            } else {
                (!repos.is_empty()).then_some(repos)
            };
            if secrets.is_none() && max_parallel.is_none() && repos.is_none() {
                anyhow::bail!(
                    "nothing to change: give --secrets, --no-secrets, --max-parallel, --repos or --no-repos"
                );
            }
            let request = PolicyRequest {
                org: org.clone(),
                secrets,
                max_parallel,
                repos,
            };
            let policy: Policy = client.post("/v1/trust/policy", &request)?;
            writeln!(out, "{org}: {}", limits_line(&policy))?;
        }
        Command::Revoke {
            target,
            reason,
            json,
        } => {
            let request = RevokeRequest {
                node: target,
                reason,
            };
            let revoked: Revoked = client.post("/v1/trust/revoke", &request)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&revoked)?)?;
                return Ok(());
            }
            let name = revoked
                .node
                .as_ref()
                .map(|name| format!("{name} ({})", revoked.node_key))
                .unwrap_or_else(|| revoked.node_key.clone());
            writeln!(
                out,
                "revoked {name}: revocation list {} of org {}",
                revoked.seq, revoked.org
            )?;
            writeln!(out, "  delivered to: {}", list_or_none(&revoked.delivered))?;
            let mut err = io::stderr().lock();
            for (node, reason) in &revoked.failed {
                writeln!(
                    err,
                    "warning: not delivered to {node}: {reason} (it gets the list at its next connection)"
                )?;
            }
        }
    }
    Ok(())
}

fn print_trust(out: &mut impl io::Write, trust: &TrustView) -> io::Result<()> {
    writeln!(out, "orgs:")?;
    for org in &trust.orgs {
        let own = if org.own { " (this node's org)" } else { "" };
        writeln!(out, "  {}{own}  {}", org.name, org.key)?;
        match &org.policy {
            Some(policy) => writeln!(
                out,
                "    may hand this node: stages {}; pipelines {}; environments {}; definitions {}",
                list_or_none(&policy.stages),
                list_or_none(&policy.pipelines),
                list_or_none(&policy.environments),
                definitions_name(policy.definitions)
            )
            .and_then(|()| writeln!(out, "    its stages: {}", limits_line(policy)))?,
            None if org.own => {}
            None => writeln!(out, "    may hand this node: nothing")?,
        }
        if let Some(seq) = org.revocation_seq {
            writeln!(out, "    revocation list {seq}:")?;
            for key in &org.revoked {
                let reason = if key.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", key.reason)
                };
                writeln!(out, "      revoked {}{reason}", key.node_key)?;
            }
        }
    }
    writeln!(out, "aliases:")?;
    if trust.aliases.is_empty() {
        writeln!(out, "  none")?;
    }
    for alias in &trust.aliases {
        writeln!(out, "  {} = {}", alias.alias, alias_target(alias))?;
    }
    writeln!(out, "approved definitions:")?;
    if trust.approvals.is_empty() {
        writeln!(out, "  none")?;
    }
    for approval in &trust.approvals {
        writeln!(out, "  {}", approval.digest)?;
    }
    writeln!(out, "invites:")?;
    if trust.invites.is_empty() {
        writeln!(out, "  none")?;
    }
    for invite in &trust.invites {
        let state = match (&invite.used_at, &invite.used_by) {
            (Some(_), Some(org)) => format!("used by {org}"),
            (Some(_), None) => "used".to_owned(),
            _ => format!(
                "open until {}",
                otto_protocol::time::utc_text(invite.expires_at)
            ),
        };
        writeln!(
            out,
            "  {}  role {}  {state}",
            invite.id,
            invite.roles.join(",")
        )?;
    }
    Ok(())
}

/// What a policy gives an org's stages: secrets, the cap on stages at once, and the
/// repositories this node fetches itself.
fn limits_line(policy: &Policy) -> String {
    let mut line = format!(
        "may receive secrets {}; at most {} of one run at once",
        list_or_none(&policy.secrets),
        policy.max_parallel
    );
    if !policy.repos.is_empty() {
        line.push_str(&format!(
            "; repositories fetched here: {}",
            policy.repos.join(", ")
        ));
    }
    line
}

/// `org NAME` or `node KEYID`.
fn alias_target(alias: &AliasView) -> String {
    match (&alias.org, &alias.node) {
        (Some(org), _) => format!("org {org}"),
        (None, Some(node)) => format!("node {node}"),
        (None, None) => "nothing".to_owned(),
    }
}

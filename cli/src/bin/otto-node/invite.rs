//! `otto-node invite`: issue a single-use, expiring invite token for another org's node.

use std::io::{self, Write as _};
use std::str::FromStr;

use anyhow::{anyhow, bail};
use otto_node::membership::{Definitions, InviteRequest, Invited, MAX_INVITE_SECS};

use crate::client::NodeArgs;

/// Invite another org's node: print a single-use, expiring token to give it out of band.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node invite --role deploy --stages 'Deploy*'
  otto-node invite --role deploy --stages Deploy --stages Smoke --pipelines 'shop-*' \\
      --envs staging,prod --expires 30m
  otto-node invite --role deploy --stages Deploy --definitions approved --json

The token is printed on standard output (the rest goes to standard error), so
TOKEN=$(otto-node invite ...) works. The joining org runs `otto-node join TOKEN` on its
node while this node runs; the token works once, until it expires (default 1h).

What the invite grants the joining org: handing this node the stages matching --stages
(required), of the pipelines matching --pipelines (default every pipeline), targeting
the environments in --envs (default none: only stages without an environment). With
--definitions approved this node also runs inline steps whose digest it approved
(`otto-node approve DIGEST`); by default it runs only blueprints it publishes. A handed
stage receives only the secrets --secrets names (default none: a stage whose environment
names a secret is refused with its name), and at most --max-parallel stages of one run
run here at once (default 2; the others wait). `otto-node trust policy` changes both later.")]
pub(crate) struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The role granted to the joining org, e.g. deploy (repeatable).
    #[arg(long, value_name = "ROLE", required = true)]
    role: Vec<String>,
    #[command(flatten)]
    scope: ScopeArgs,
    /// How long the token stays valid: a number and s, m, h or d (at most 30d).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    expires: Expiry,
    /// Print the token and what it grants as JSON.
    #[arg(long)]
    json: bool,
}

/// What a peer org may ask of this node: the flags `invite` and `join` share.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScopeArgs {
    /// Stage ids the peer org may hand to this node, globs with * and ? (repeatable).
    #[arg(long = "stages", value_name = "GLOB")]
    pub(crate) stages: Vec<String>,
    /// Pipelines whose stages it may hand over, globs (repeatable) [default: *].
    #[arg(long = "pipelines", value_name = "GLOB")]
    pub(crate) pipelines: Vec<String>,
    /// Environments the handed stages may target, comma-separated globs [default: none].
    #[arg(long = "envs", value_name = "LIST", value_delimiter = ',')]
    pub(crate) envs: Vec<String>,
    /// Which stage definitions this node runs for the peer org.
    #[arg(long, value_enum, default_value_t = DefinitionsArg::Owned)]
    pub(crate) definitions: DefinitionsArg,
    /// Secrets of this node the peer org's stages may receive, by name or glob
    /// (repeatable, or comma-separated) [default: none].
    #[arg(long = "secrets", value_name = "NAME", value_delimiter = ',', num_args = 1..)]
    pub(crate) secrets: Vec<String>,
    /// How many stages of one of the peer org's runs this node runs at once [default: 2].
    #[arg(long = "max-parallel", value_name = "N")]
    pub(crate) max_parallel: Option<u32>,
}

/// `--definitions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DefinitionsArg {
    /// Only blueprints this node publishes.
    Owned,
    /// Also inline steps whose digest this node approved.
    Approved,
}

/// `--expires`: a duration in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expiry(pub(crate) u64);

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let request = InviteRequest {
        roles: args.role,
        pipelines: args.scope.pipelines,
        stages: args.scope.stages,
        environments: args.scope.envs,
        definitions: args.scope.definitions.into(),
        secrets: args.scope.secrets,
        max_parallel: args.scope.max_parallel,
        expires_in_secs: args.expires.0,
    };
    let client = args.node.client()?;
    let invited: Invited = client.post("/v1/invites", &request)?;
    if args.json {
        writeln!(io::stdout().lock(), "{}", serde_json::to_string(&invited)?)?;
        return Ok(());
    }
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "invite for role {}: stages {}; pipelines {}; environments {}; definitions {}",
        invited.scope.roles.join(", "),
        invited.scope.stages.join(", "),
        invited.scope.pipelines.join(", "),
        list_or_none(&invited.scope.environments),
        definitions_name(invited.definitions),
    )?;
    writeln!(
        err,
        "its stages may receive secrets {}; at most {} stages of one run at once",
        list_or_none(&invited.secrets),
        invited.max_parallel
    )?;
    writeln!(
        err,
        "valid once, for {}; the joining org runs: otto-node join TOKEN",
        describe_secs(args.expires.0)
    )?;
    writeln!(io::stdout().lock(), "{}", invited.token)?;
    Ok(())
}

/// `none` for an empty list, else the items joined by commas.
pub(crate) fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The name of a definitions rule as the flag spells it.
pub(crate) fn definitions_name(definitions: Definitions) -> &'static str {
    match definitions {
        Definitions::Owned => "owned",
        Definitions::Approved => "approved",
    }
}

/// A duration in words, e.g. `1h`, `90s`.
fn describe_secs(secs: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

impl From<DefinitionsArg> for Definitions {
    fn from(arg: DefinitionsArg) -> Self {
        match arg {
            DefinitionsArg::Owned => Self::Owned,
            DefinitionsArg::Approved => Self::Approved,
        }
    }
}

impl FromStr for Expiry {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| anyhow!("{text:?} needs a unit: s, m, h or d (e.g. 1h)"))?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| anyhow!("{text:?} is not a duration like 30m or 1h"))?;
        let size = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => bail!("{text:?} has an unknown unit {unit:?}: use s, m, h or d"),
        };
        let secs = number.saturating_mul(size);
        if secs == 0 || secs > MAX_INVITE_SECS {
            bail!("an invite expires after 1s to 30d, not {text}");
        }
        Ok(Self(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_durations() {
        assert_eq!("1h".parse::<Expiry>().unwrap(), Expiry(3_600));
        assert_eq!("90s".parse::<Expiry>().unwrap(), Expiry(90));
        assert_eq!("30m".parse::<Expiry>().unwrap(), Expiry(1_800));
        assert_eq!("30d".parse::<Expiry>().unwrap(), Expiry(30 * 86_400));
        for bad in ["", "1", "h", "0s", "31d", "1w", "-1h", "1.5h"] {
            assert!(bad.parse::<Expiry>().is_err(), "{bad}");
        }
        assert_eq!(describe_secs(3_600), "1h");
        assert_eq!(describe_secs(90), "90s");
    }
}

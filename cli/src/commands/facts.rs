//! The runtime facts a pipeline is planned with, as `explain` and `run` take them.

use std::collections::BTreeMap;

use anyhow::bail;

/// `--branch`, `--tag`, `--env`, `--commit` and `--var NAME=VALUE`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FactsArgs {
    /// The branch being delivered.
    #[arg(long, value_name = "B")]
    pub(crate) branch: Option<String>,
    /// The tag being delivered.
    #[arg(long, value_name = "T")]
    pub(crate) tag: Option<String>,
    /// The target environment of the run.
    #[arg(long = "env", value_name = "E")]
    pub(crate) environment: Option<String>,
    /// The commit being delivered.
    #[arg(long, value_name = "C")]
    pub(crate) commit: Option<String>,
    /// A pipeline var, as NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub(crate) vars: Vec<(String, String)>,
}

impl FactsArgs {
    /// The vars as a map; a later `--var` for the same name wins.
    pub(crate) fn var_map(&self) -> BTreeMap<String, String> {
        self.vars.iter().cloned().collect()
    }
}

/// Parses `NAME=VALUE` for `--var`.
fn parse_var(s: &str) -> anyhow::Result<(String, String)> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("expected NAME=VALUE, got '{s}'");
    };
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("'{k}' is not a var name (letters, digits, '_' and '-')");
    }
    Ok((k.to_owned(), v.to_owned()))
}

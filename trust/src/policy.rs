//! Policies: what a peer org may ask of this node, and how a foreign stage must be defined.

use otto_protocol::{RejectCode, Scope};
use serde::{Deserialize, Serialize};

use crate::glob::matches_any;

/// What one peer org may ask of this node. Pipelines, stages and environments are lists of
/// glob patterns (see [`crate::glob`]); an empty list grants nothing, `["*"]` everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The roles granted to the peer org, e.g. `["deploy"]` (informational).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Pipelines the peer may hand stages of.
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// Stages the peer may hand to this node.
    #[serde(default)]
    pub stages: Vec<String>,
    /// Environments the handed stages may target.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Which stage definitions this node runs for the peer.
    #[serde(default)]
    pub definitions: Definitions,
    /// The secrets of this node that the peer's stages may receive, as globs of their
    /// names; empty (the default) gives none. A stage whose environment names any other
    /// secret is refused, with that secret's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// How many stages of one run of the peer's this node runs at once; the others wait.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// The git repositories (exact URLs) this node fetches itself when a run of the peer's
    /// comes from one; for any other repository it takes the commit from a git bundle the
    /// peer sends. Empty (the default): bundles only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
}

/// The default [`Policy::max_parallel`]: a wide matrix of a peer's runs two at a time.
pub const DEFAULT_MAX_PARALLEL: u32 = 2;

pub(crate) fn default_max_parallel() -> u32 {
    DEFAULT_MAX_PARALLEL
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            roles: Vec::new(),
            pipelines: Vec::new(),
            stages: Vec::new(),
            environments: Vec::new(),
            definitions: Definitions::default(),
            secrets: Vec::new(),
            max_parallel: DEFAULT_MAX_PARALLEL,
            repos: Vec::new(),
        }
    }
}

/// Which definitions of a foreign stage this node accepts from a peer org.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Definitions {
    /// Only blueprints this node publishes: the peer fills their vars and artifacts.
    #[default]
    Owned,
    /// Published blueprints, and inline steps whose digest this node approved.
    Approved,
}

/// How a stage handed to this node is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageDefinition<'a> {
    /// A blueprint this node publishes, by name.
    Blueprint(&'a str),
    /// Steps written by the peer, identified by their digest (e.g. `sha256:…`).
    Inline {
        /// The digest of the steps, as `otto-node approve` takes it.
        digest: &'a str,
    },
}

/// Why a peer's request is outside what this node allows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The peer org has no policy here, so it may ask nothing.
    #[error("org {org:?} has no policy on this node, so it may ask nothing of it")]
    NoPolicy {
        /// The peer org.
        org: String,
    },
    /// The pipeline matches none of the policy's pipeline globs.
    #[error("org {org:?} may not hand stages of pipeline {pipeline:?} to this node")]
    Pipeline {
        /// The peer org.
        org: String,
        /// The pipeline asked for.
        pipeline: String,
    },
    /// The stage matches none of the policy's stage globs.
    #[error("org {org:?} may not hand stage {stage:?} to this node")]
    Stage {
        /// The peer org.
        org: String,
        /// The stage asked for.
        stage: String,
    },
    /// The environment matches none of the policy's environment globs.
    #[error("org {org:?} may not target environment {environment:?} on this node")]
    Environment {
        /// The peer org.
        org: String,
        /// The environment asked for.
        environment: String,
    },
    /// The policy allows only this node's own blueprints, and the stage has inline steps.
    #[error("org {org:?} may only use blueprints this node publishes, not inline steps")]
    InlineSteps {
        /// The peer org.
        org: String,
    },
    /// The stage would receive a secret the policy does not give the peer.
    #[error("org {org:?} may not use secret {secret:?} of this node")]
    Secret {
        /// The peer org.
        org: String,
        /// The secret's name.
        secret: String,
    },
    /// The inline steps' digest was never approved here.
    #[error("stage definition not approved; run `otto-node approve {digest}` on this node")]
    NotApproved {
        /// The digest to approve.
        digest: String,
    },
}

impl ScopeError {
    /// The code a handoff reject carries for this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::InlineSteps { .. } | Self::NotApproved { .. } => {
                RejectCode::DefinitionNotApproved
            }
            _ => RejectCode::OutOfScope,
        }
    }
}

impl Policy {
    /// The policy granting exactly an offered scope, with the given definition rule, no
    /// secrets and the default [`Self::max_parallel`].
    pub fn from_scope(scope: &Scope, definitions: Definitions) -> Self {
        Self {
            roles: scope.roles.clone(),
            pipelines: scope.pipelines.clone(),
            stages: scope.stages.clone(),
            environments: scope.environments.clone(),
            definitions,
            ..Self::default()
        }
    }

    /// Checks that a stage of peer `org` may receive every secret in `secrets` (names):
    /// the first one no glob of [`Self::secrets`] matches is the error.
    pub fn check_secrets(&self, org: &str, secrets: &[String]) -> Result<(), ScopeError> {
        match secrets.iter().find(|s| !matches_any(&self.secrets, s)) {
            Some(secret) => Err(ScopeError::Secret {
                org: org.to_owned(),
                secret: secret.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The scope part of the policy, as it travels in invites and join responses.
    pub fn to_scope(&self) -> Scope {
        Scope {
            roles: self.roles.clone(),
            pipelines: self.pipelines.clone(),
            stages: self.stages.clone(),
            environments: self.environments.clone(),
        }
    }

    /// Checks a request of peer `org` against this policy. A stage with no environment
    /// passes the environment check.
    pub fn check(
        &self,
        org: &str,
        pipeline: &str,
        stage: &str,
        environment: Option<&str>,
    ) -> Result<(), ScopeError> {
        if !matches_any(&self.pipelines, pipeline) {
            return Err(ScopeError::Pipeline {
                org: org.to_owned(),
                pipeline: pipeline.to_owned(),
            });
        }
        if !matches_any(&self.stages, stage) {
            return Err(ScopeError::Stage {
                org: org.to_owned(),
                stage: stage.to_owned(),
            });
        }
        if let Some(environment) = environment
            && !matches_any(&self.environments, environment)
        {
            return Err(ScopeError::Environment {
                org: org.to_owned(),
                environment: environment.to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            roles: vec!["deploy".into()],
            pipelines: vec!["shop-*".into()],
            stages: vec!["Deploy*".into(), "Smoke".into()],
            environments: vec!["staging".into(), "prod-?".into()],
            definitions: Definitions::Owned,
            secrets: vec!["DEPLOY_KEY".into(), "REGISTRY_*".into()],
            max_parallel: 3,
            repos: vec!["https://git.example/shop.git".into()],
        }
    }

    #[test]
    fn only_the_secrets_the_policy_names_may_be_used() {
        let p = policy();
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(p.check_secrets("dev", &[]), Ok(()));
        assert_eq!(
            p.check_secrets("dev", &names(&["DEPLOY_KEY", "REGISTRY_TOKEN"])),
            Ok(())
        );
        assert_eq!(
            p.check_secrets("dev", &names(&["DEPLOY_KEY", "PROD_DB_PASSWORD"])),
            Err(ScopeError::Secret {
                org: "dev".into(),
                secret: "PROD_DB_PASSWORD".into()
            })
        );
        // A policy that names none gives none.
        assert!(
            Policy::default()
                .check_secrets("dev", &names(&["DEPLOY_KEY"]))
                .is_err()
        );
        let err = p
            .check_secrets("dev", &names(&["PROD_DB_PASSWORD"]))
            .unwrap_err();
        assert_eq!(err.reject_code(), RejectCode::OutOfScope);
        assert!(err.to_string().contains("PROD_DB_PASSWORD"), "{err}");
    }

    #[test]
    fn a_stored_policy_without_the_new_fields_reads_with_their_defaults() {
        let p: Policy = toml::from_str("stages = ['Deploy']\ndefinitions = 'approved'\n").unwrap();
        assert_eq!(p.secrets, Vec::<String>::new());
        assert_eq!(p.max_parallel, DEFAULT_MAX_PARALLEL);
    }

    #[test]
    fn in_scope_requests_pass() {
        let p = policy();
        assert_eq!(
            p.check("dev", "shop-web", "DeployEU", Some("staging")),
            Ok(())
        );
        assert_eq!(p.check("dev", "shop-api", "Smoke", Some("prod-1")), Ok(()));
        assert_eq!(p.check("dev", "shop-api", "Smoke", None), Ok(()));
    }

    #[test]
    fn each_dimension_is_checked() {
        let p = policy();
        assert_eq!(
            p.check("dev", "blog", "Deploy", Some("staging")),
            Err(ScopeError::Pipeline {
                org: "dev".into(),
                pipeline: "blog".into()
            })
        );
        assert_eq!(
            p.check("dev", "shop-web", "Build", Some("staging")),
            Err(ScopeError::Stage {
                org: "dev".into(),
                stage: "Build".into()
            })
        );
        assert_eq!(
            p.check("dev", "shop-web", "Deploy", Some("prod-10")),
            Err(ScopeError::Environment {
                org: "dev".into(),
                environment: "prod-10".into()
            })
        );
    }

    #[test]
    fn empty_policy_grants_nothing() {
        assert!(matches!(
            Policy::default().check("dev", "p", "s", None),
            Err(ScopeError::Pipeline { .. })
        ));
    }

    #[test]
    fn reject_codes() {
        let org = || "dev".to_owned();
        assert_eq!(
            ScopeError::NoPolicy { org: org() }.reject_code(),
            RejectCode::OutOfScope
        );
        assert_eq!(
            ScopeError::InlineSteps { org: org() }.reject_code(),
            RejectCode::DefinitionNotApproved
        );
        assert_eq!(
            ScopeError::NotApproved { digest: "d".into() }.reject_code(),
            RejectCode::DefinitionNotApproved
        );
    }

    #[test]
    fn scope_round_trip() {
        let p = policy();
        let back = Policy::from_scope(&p.to_scope(), Definitions::Owned);
        assert_eq!(back.to_scope(), p.to_scope());
        assert_eq!(back.secrets, Vec::<String>::new());
    }
}

//! The one component that decides which secret reaches which step.
//!
//! A stage gets exactly the secrets its environment names (`environments { production {
//! secrets { DEPLOY_TOKEN } } }` and `environment -> production`), which the planner lists
//! in the stage's `secrets`. Nothing else decides it: the engine asks [`for_stage`] when
//! it builds a job for an agent (the stage's attempt, its poll gates and its `notify`
//! steps), and uses the same values to mask the agent's output a second time.
//!
//! Secrets reach the agent as files in its private directory; they become environment
//! variables only when the job asks (`secret_env`), which no plan does yet, so
//! [`StageSecrets::env`] is always false. Keeping the decision here means a broker that
//! uses secrets on a step's behalf (an injecting HTTPS proxy, an SSH agent) can later
//! replace "give the value" without touching the engine.

use std::collections::BTreeMap;

use otto_agent_protocol::SecretValue;
use otto_agent_protocol::mask::Masker;
use otto_pipeline::plan::Stage;

use crate::vault::{Secret, Vault, VaultError};

/// The secrets one stage's agent receives.
pub struct StageSecrets {
    /// The values, by name, as the agent protocol carries them.
    pub values: BTreeMap<String, SecretValue>,
    /// Whether the agent also exports them as environment variables.
    pub env: bool,
}

/// Why a stage cannot have its secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The vault failed, or some named secrets are not in it.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A secret's value is not UTF-8 text, which the agent protocol cannot carry.
    #[error("secret {0} is not UTF-8 text")]
    NotText(String),
}

/// The secrets of `stage`'s environment, from the vault: all of them or an error naming
/// every missing one ([`VaultError::Missing`]), so a stage never starts with part of its
/// secrets. A stage without an environment, or whose environment names none, gets none.
pub fn secrets_for_stage(
    vault: &Vault,
    stage: &Stage,
) -> Result<BTreeMap<String, Secret>, VaultError> {
    if stage.secrets.is_empty() {
        return Ok(BTreeMap::new());
    }
    vault.secrets_for(&stage.secrets)
}

/// [`secrets_for_stage`] in the form an agent job carries.
pub fn for_stage(vault: &Vault, stage: &Stage) -> Result<StageSecrets, SecretsError> {
    let mut values = BTreeMap::new();
    for (name, secret) in secrets_for_stage(vault, stage)? {
        let text = secret
            .expose_str()
            .ok_or_else(|| SecretsError::NotText(name.clone()))?;
        values.insert(name, SecretValue::new(text));
    }
    Ok(StageSecrets { values, env: false })
}

impl StageSecrets {
    /// No secrets at all.
    pub fn none() -> Self {
        Self {
            values: BTreeMap::new(),
            env: false,
        }
    }

    /// A masker for these values, to mask the agent's output again before it is stored.
    pub fn masker(&self) -> Masker {
        Masker::new(self.values.values().map(SecretValue::expose))
    }
}

impl std::fmt::Debug for StageSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSecrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("env", &self.env)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use otto_pipeline::{Facts, MemSource, StepCatalog};
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;
    use crate::store::Store;

    fn stages() -> Vec<Stage> {
        let text = "environments {
  prod { secrets { TOKEN } }
  other { secrets { OTHER } }
}
stage('Deploy') { environment -> prod  steps { sh 'x' } }
stage('Build') { steps { sh 'y' } }
";
        let source = MemSource::new().with("p/Ottofile", text);
        let planned = otto_pipeline::plan(
            &source,
            std::path::Path::new("p/Ottofile"),
            &Facts::default(),
            &StepCatalog::builtins(),
        )
        .unwrap_or_else(|f| panic!("plan: {f}"));
        planned.plan.body.stages
    }

    #[test]
    fn a_stage_gets_only_its_environments_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store.redb")).expect("store");
        let vault = Vault::new(store, &[7; 32]);
        let mut rng = StdRng::seed_from_u64(1);
        vault.set("TOKEN", b"tok-value", &mut rng).expect("set");
        vault.set("OTHER", b"other-value", &mut rng).expect("set");
        let stages = stages();
        let deploy = for_stage(&vault, &stages[0]).expect("secrets");
        assert_eq!(deploy.values.keys().collect::<Vec<_>>(), ["TOKEN"]);
        assert_eq!(deploy.values["TOKEN"].expose(), "tok-value");
        assert!(!deploy.env);
        assert_eq!(deploy.masker().mask("x tok-value y"), "x *** y");
        assert!(
            for_stage(&vault, &stages[1])
                .expect("none")
                .values
                .is_empty()
        );
        assert!(!format!("{deploy:?}").contains("tok-value"));
    }

    #[test]
    fn a_missing_secret_names_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store.redb")).expect("store");
        let vault = Vault::new(store, &[7; 32]);
        let stages = stages();
        match for_stage(&vault, &stages[0]) {
            Err(SecretsError::Vault(VaultError::Missing(names))) => assert_eq!(names, ["TOKEN"]),
            other => panic!("expected missing secrets, got {other:?}"),
        }
    }
}

//! What this node can run: the steps it knows (the built-ins and its home's step
//! packages) and the runtimes it has. The API plans runs with this catalog, the engine
//! refuses a stage whose runtime is not here, and `otto explain --home` shows both before
//! anything runs.

use std::path::PathBuf;

use otto_pipeline::StepCatalog;
use otto_pipeline::plan::{self, RuntimeKind};

use crate::home::{Config, Home};

/// The runtimes this node has, for people.
pub const RUNTIMES: &str =
    "local processes only (runtime docker and runtime computer are not available)";

/// Why a stage cannot run on this node, if it cannot.
pub fn runtime_problem(stage: &plan::Stage) -> Option<String> {
    let runtime = &stage.runtime;
    match runtime.kind {
        RuntimeKind::Local => None,
        RuntimeKind::Docker => Some(format!(
            "this node runs stages as local processes only; runtime docker (image {}) is not available",
            runtime.image.as_deref().unwrap_or("?")
        )),
        RuntimeKind::Computer => Some(format!(
            "this node runs stages as local processes only; runtime computer (label {}) is not available",
            runtime.label.as_deref().unwrap_or("?")
        )),
    }
}

/// The step package directories a node's config names, resolved against its home.
pub fn package_dirs(home: &Home, config: &Config) -> Vec<PathBuf> {
    config
        .agent
        .packages
        .iter()
        .map(|p| home.root().join(p))
        .collect()
}

/// The built-in steps and the steps of these step package directories.
pub fn step_catalog(packages: &[PathBuf]) -> Result<StepCatalog, String> {
    let mut catalog = StepCatalog::builtins();
    for dir in packages {
        let loaded = otto_agent_protocol::packages::load_dir(dir)
            .map_err(|e| format!("step package: {e}"))?;
        for package in loaded {
            catalog.add(package.spec());
        }
    }
    Ok(catalog)
}

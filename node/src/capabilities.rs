//! What this node can run: the steps it knows (the built-ins and its home's step
//! packages) and the runtimes it has. The API plans runs with this catalog, the engine
//! refuses a stage whose runtime is not here, and `otto explain --home` shows both before
//! anything runs.

use std::path::PathBuf;

use otto_pipeline::StepCatalog;
use otto_pipeline::plan::{self, RuntimeKind};

use crate::api::types::WallInfo;
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

/// How the node of `home` walls in its steps, as `GET /v1/node` says once it runs,
/// worked out without starting it (for `otto explain --home`): the agent says which wall
/// it can build, the config the rest.
pub fn wall_info(home: &Home, config: &Config) -> WallInfo {
    let abi = crate::daemon::agent_path(config)
        .map_err(|e| e.to_string())
        .and_then(|agent| crate::engine::wall_abi(&agent));
    let (landlock_abi, missing) = match abi {
        Ok(abi) => (abi, crate::engine::wall_missing(abi)),
        Err(why) => (
            0,
            Some(format!("cannot ask the agent which wall it builds: {why}")),
        ),
    };
    WallInfo {
        walled: missing.is_none(),
        landlock_abi,
        missing,
        run_as: config.agent.run_as.clone(),
        work_dir: config
            .agent
            .work_dir
            .clone()
            .unwrap_or_else(|| home.work_dir())
            .display()
            .to_string(),
        refuse_foreign_unwalled: config.agent.refuse_foreign_unwalled,
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

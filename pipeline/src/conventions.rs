//! Zero-configuration plans: with no Ottofile, infer the pipeline from the files a
//! repository already has.
//!
//! Each convention recognises one stack by a marker file and writes an ordinary Ottofile
//! for it, which is then parsed and planned like any other. So an inferred plan is
//! explained, digested and run exactly as a written one would be, and `otto explain`
//! can show the text a user would write to take it over.

use std::path::Path;

use crate::source::{EntryKind, Source};

/// A convention that matched a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The convention's name, e.g. `cargo`.
    pub name: &'static str,
    /// Why it matched, e.g. "found Cargo.toml".
    pub reason: String,
    /// The Ottofile this convention stands for.
    pub ottofile: String,
}

/// The conventions in the order they are tried; the first that matches wins. More
/// specific stacks come first (a Rails app also has a Makefile sometimes).
pub const CONVENTIONS: &[&str] = &[
    "rails", "cargo", "npm", "go", "maven", "gradle", "python", "make",
];

/// Finds the convention for `dir`, if any.
pub fn detect(source: &dyn Source, dir: &Path) -> Option<Detected> {
    let probe = Probe { source, dir };
    rails(&probe)
        .or_else(|| cargo(&probe))
        .or_else(|| node(&probe))
        .or_else(|| go(&probe))
        .or_else(|| maven(&probe))
        .or_else(|| gradle(&probe))
        .or_else(|| python(&probe))
        .or_else(|| make(&probe))
}

/// Read access to the files of the directory being looked at.
struct Probe<'a> {
    source: &'a dyn Source,
    dir: &'a Path,
}

impl Probe<'_> {
    fn has(&self, name: &str) -> bool {
        self.source.kind(&self.dir.join(name)) == Some(EntryKind::File)
    }

    fn read(&self, name: &str) -> Option<String> {
        self.source.read(&self.dir.join(name)).ok()
    }
}

fn rails(p: &Probe<'_>) -> Option<Detected> {
    let gemfile = p.read("Gemfile")?;
    let names_rails = gemfile.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("gem 'rails'") || line.starts_with("gem \"rails\"")
    });
    if !names_rails {
        return None;
    }
    let key = if p.has("Gemfile.lock") {
        "  key = ['Gemfile.lock']"
    } else {
        ""
    };
    let ottofile = format!(
        "// Inferred by the rails convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ gems {{ paths = ['vendor/bundle/']{key} }} }}\n\
         \x20 steps {{\n\
         \x20   sh 'bundle config set --local path vendor/bundle'\n\
         \x20   sh 'bundle install'\n\
         \x20 }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use gems }}\n\
         \x20 steps {{ sh 'bundle exec rails test' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "rails",
        reason: "Gemfile names the rails gem".into(),
        ottofile,
    })
}

fn cargo(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("Cargo.toml") {
        return None;
    }
    let (locked, key) = if p.has("Cargo.lock") {
        (" --locked", "  key = ['Cargo.lock']")
    } else {
        ("", "")
    };
    let ottofile = format!(
        "// Inferred by the cargo convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ target {{ paths = ['target/']{key} }} }}\n\
         \x20 steps {{ sh 'cargo build --workspace --all-targets{locked}' }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use target }}\n\
         \x20 steps {{ sh 'cargo test --workspace{locked}' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "cargo",
        reason: "found Cargo.toml".into(),
        ottofile,
    })
}

fn node(p: &Probe<'_>) -> Option<Detected> {
    let manifest = p.read("package.json")?;
    let (tool, lockfile, install) = if p.has("pnpm-lock.yaml") {
        (
            "pnpm",
            Some("pnpm-lock.yaml"),
            "pnpm install --frozen-lockfile",
        )
    } else if p.has("yarn.lock") {
        ("yarn", Some("yarn.lock"), "yarn install --frozen-lockfile")
    } else if p.has("package-lock.json") {
        ("npm", Some("package-lock.json"), "npm ci")
    } else {
        ("npm", None, "npm install")
    };
    let scripts: Vec<String> = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| {
            v.get("scripts")
                .and_then(|s| s.as_object())
                .map(|s| s.keys().cloned().collect())
        })
        .unwrap_or_default();
    let run = |script: &str| {
        if tool == "npm" {
            format!("npm run {script}")
        } else {
            format!("{tool} run {script}")
        }
    };
    let key = lockfile
        .map(|l| format!("  key = ['{l}']"))
        .unwrap_or_default();
    let mut ottofile = format!(
        "// Inferred by the npm convention ({tool}).\n\
         stage('Install') {{\n\
         \x20 cache {{ node_modules {{ paths = ['node_modules/']{key} }} }}\n\
         \x20 steps {{ sh '{install}' }}\n\
         }}\n"
    );
    for (stage, script) in [("Build", "build"), ("Lint", "lint"), ("Test", "test")] {
        if scripts.iter().any(|s| s == script) {
            ottofile.push_str(&format!(
                "stage('{stage}') {{\n  cache {{ use node_modules }}\n  steps {{ sh '{}' }}\n}}\n",
                run(script)
            ));
        }
    }
    let reason = match lockfile {
        Some(l) => format!("found package.json and {l}"),
        None => "found package.json (no lockfile, so npm)".into(),
    };
    Some(Detected {
        name: "npm",
        reason,
        ottofile,
    })
}

fn go(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("go.mod") {
        return None;
    }
    let ottofile = "// Inferred by the go convention.\n\
                    stage('Build') { steps { sh 'go build ./...' } }\n\
                    stage('Test') { steps { sh 'go vet ./...'  sh 'go test ./...' } }\n"
        .to_owned();
    Some(Detected {
        name: "go",
        reason: "found go.mod".into(),
        ottofile,
    })
}

fn maven(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("pom.xml") {
        return None;
    }
    let mvn = if p.has("mvnw") { "./mvnw" } else { "mvn" };
    let ottofile = format!(
        "// Inferred by the maven convention.\n\
         stage('Build') {{ steps {{ sh '{mvn} -B -DskipTests package' }} }}\n\
         stage('Test') {{ steps {{ sh '{mvn} -B verify' }} }}\n"
    );
    Some(Detected {
        name: "maven",
        reason: "found pom.xml".into(),
        ottofile,
    })
}

fn gradle(p: &Probe<'_>) -> Option<Detected> {
    let file = ["build.gradle.kts", "build.gradle"]
        .into_iter()
        .find(|f| p.has(f))?;
    let gradle = if p.has("gradlew") {
        "./gradlew"
    } else {
        "gradle"
    };
    let ottofile = format!(
        "// Inferred by the gradle convention.\n\
         stage('Build') {{ steps {{ sh '{gradle} --no-daemon assemble' }} }}\n\
         stage('Test') {{ steps {{ sh '{gradle} --no-daemon check' }} }}\n"
    );
    Some(Detected {
        name: "gradle",
        reason: format!("found {file}"),
        ottofile,
    })
}

fn python(p: &Probe<'_>) -> Option<Detected> {
    let (install, key, reason) = if p.has("pyproject.toml") {
        (
            "python3 -m pip install -e .",
            "['pyproject.toml']",
            "found pyproject.toml",
        )
    } else if p.has("requirements.txt") {
        (
            "python3 -m pip install -r requirements.txt",
            "['requirements.txt']",
            "found requirements.txt",
        )
    } else {
        return None;
    };
    let ottofile = format!(
        "// Inferred by the python convention.\n\
         stage('Install') {{\n\
         \x20 cache {{ venv {{ paths = ['.venv/']  key = {key} }} }}\n\
         \x20 steps {{\n\
         \x20   sh 'python3 -m venv .venv'\n\
         \x20   sh '. .venv/bin/activate && {install}'\n\
         \x20 }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use venv }}\n\
         \x20 steps {{ sh '. .venv/bin/activate && python3 -m pytest' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "python",
        reason: reason.into(),
        ottofile,
    })
}

fn make(p: &Probe<'_>) -> Option<Detected> {
    let file = ["GNUmakefile", "Makefile", "makefile"]
        .into_iter()
        .find(|f| p.has(f))?;
    let text = p.read(file)?;
    let targets: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(['\t', ' ', '#', '.']))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t.trim()))
        .filter(|t| !t.is_empty() && !t.contains(['$', '%', '=', ' ']))
        .collect();
    let mut ottofile =
        "// Inferred by the make convention.\nstage('Build') { steps { sh 'make' } }\n".to_owned();
    let mut reason = format!("found {file}");
    if let Some(test) = ["test", "check"].into_iter().find(|t| targets.contains(t)) {
        ottofile.push_str(&format!(
            "stage('Test') {{ steps {{ sh 'make {test}' }} }}\n"
        ));
        reason.push_str(&format!(" with a `{test}` target"));
    }
    Some(Detected {
        name: "make",
        reason,
        ottofile,
    })
}

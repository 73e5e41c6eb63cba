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
    "rails", "bundler", "cargo", "npm", "go", "maven", "gradle", "python", "make",
];

/// What to write when no convention matches: the smallest Ottofile, on one line.
pub const MINIMAL_OTTOFILE: &str = "stage('Build') { steps { sh './build.sh' } }";

/// Finds the convention for `dir`, if any.
pub fn detect(source: &dyn Source, dir: &Path) -> Option<Detected> {
    let probe = Probe { source, dir };
    ruby(&probe)
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

/// Rails and other Bundler projects: gems installed into `vendor/bundle` (relocatable, so
/// cached), then the tests a person would run.
fn ruby(p: &Probe<'_>) -> Option<Detected> {
    let gemfile = p.read("Gemfile")?;
    let names_gem = |gem: &str| {
        gemfile.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with(&format!("gem '{gem}'")) || line.starts_with(&format!("gem \"{gem}\""))
        })
    };
    let lock = p.read("Gemfile.lock");
    let rails = names_gem("rails");
    // Gems a gemspec declares reach the lockfile, so it and the Gemfile tell what is used.
    let uses = |gem: &str| {
        names_gem(gem)
            || lock.as_deref().is_some_and(|l| {
                l.lines()
                    .any(|line| line.trim_start().starts_with(&format!("{gem} (")))
            })
    };
    let key = if lock.is_some() {
        "Gemfile.lock"
    } else {
        "Gemfile"
    };
    let (name, test, why) = if rails {
        let rails = if p.has("bin/rails") {
            "bin/rails"
        } else {
            "bundle exec rails"
        };
        (
            "rails",
            Some(format!("{rails} test")),
            "Gemfile names the rails gem".to_owned(),
        )
    } else if uses("rspec") && p.source.kind(&p.dir.join("spec")) == Some(EntryKind::Dir) {
        (
            "bundler",
            Some("bundle exec rspec".to_owned()),
            "found Gemfile; tests with rspec (named, with a spec/ directory)".to_owned(),
        )
    } else if p.has("Rakefile") {
        (
            "bundler",
            Some("bundle exec rake".to_owned()),
            "found Gemfile and Rakefile; tests with the Rakefile's default task".to_owned(),
        )
    } else {
        (
            "bundler",
            None,
            "found Gemfile; no Rakefile and no rspec with a spec/ directory, so no Test stage"
                .to_owned(),
        )
    };
    let mut ottofile = format!(
        "// Inferred by the {name} convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ gems {{ paths = ['vendor/bundle/']  key = ['{key}'] }} }}\n\
         \x20 steps {{\n\
         \x20   sh 'bundle config set --local path vendor/bundle'\n\
         \x20   sh 'bundle install'\n\
         \x20 }}\n\
         }}\n"
    );
    if let Some(test) = test {
        ottofile.push_str(&format!(
            "stage('Test') {{\n\
             \x20 cache {{ use gems }}\n\
             \x20 steps {{\n\
             \x20   sh 'bundle config set --local path vendor/bundle'\n\
             \x20   sh '{test}'\n\
             \x20 }}\n\
             }}\n"
        ));
    }
    Some(Detected {
        name,
        reason: format!("{why}; gems in vendor/bundle, cached by {key}"),
        ottofile,
    })
}

/// Where the cargo convention keeps Cargo's home: in the workspace, so that its download
/// cache can be cached (a walled step's own HOME is new in every attempt).
const CARGO_ENV: &str = "CARGO_HOME=\"$PWD/.cache/cargo\"";

fn cargo(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("Cargo.toml") {
        return None;
    }
    let (locked, key, keyed_by) = if p.has("Cargo.lock") {
        (" --locked", "  key = ['Cargo.lock']", "Cargo.lock")
    } else {
        ("", "  key = ['Cargo.toml']", "Cargo.toml")
    };
    // The registry's index and downloaded crates (not their unpacked sources, which cargo
    // makes again from them) and git checkouts' databases; build outputs in target/,
    // which a build with other inputs updates, so it is saved after every build without a
    // lockfile to key it.
    let target_key = if locked.is_empty() { "" } else { key };
    let ottofile = format!(
        "// Inferred by the cargo convention.\n\
         stage('Build') {{\n\
         \x20 cache {{\n\
         \x20   cargo {{ paths = ['.cache/cargo/registry/index/', '.cache/cargo/registry/cache/', '.cache/cargo/git/db/']{key} }}\n\
         \x20   target {{ paths = ['target/']{target_key} }}\n\
         \x20 }}\n\
         \x20 steps {{ sh '{CARGO_ENV} cargo build --workspace --all-targets{locked}' }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use cargo  use target }}\n\
         \x20 steps {{ sh '{CARGO_ENV} cargo test --workspace{locked}' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "cargo",
        reason: format!(
            "found Cargo.toml; downloaded crates in .cache/cargo, keyed by {keyed_by}, and target/"
        ),
        ottofile,
    })
}

fn node(p: &Probe<'_>) -> Option<Detected> {
    let manifest = p.read("package.json")?;
    // The tool's own download cache, kept in the workspace so it can be cached; never
    // node_modules, which `npm ci` deletes first.
    let (tool, lockfile, install, cache_dir) = if p.has("pnpm-lock.yaml") {
        (
            "pnpm",
            Some("pnpm-lock.yaml"),
            "pnpm install --frozen-lockfile --store-dir .pnpm-store",
            ".pnpm-store/",
        )
    } else if p.has("yarn.lock") {
        (
            "yarn",
            Some("yarn.lock"),
            "yarn install --frozen-lockfile --cache-folder .yarn-cache",
            ".yarn-cache/",
        )
    } else if p.has("package-lock.json") {
        (
            "npm",
            Some("package-lock.json"),
            "npm ci --cache .npm --prefer-offline --no-audit --no-fund",
            ".npm/",
        )
    } else {
        (
            "npm",
            None,
            "npm install --cache .npm --prefer-offline --no-audit --no-fund",
            ".npm/",
        )
    };
    let scripts: Vec<String> = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| {
            v.get("scripts")
                .and_then(|s| s.as_object())
                .map(|s| s.keys().cloned().collect())
        })
        .unwrap_or_default();
    // Without a lockfile the manifest decides what is installed, so it keys the cache.
    let key = lockfile.unwrap_or("package.json");
    let mut ottofile = format!(
        "// Inferred by the npm convention ({tool}).\n\
         stage('Install') {{\n\
         \x20 cache {{ {tool} {{ paths = ['{cache_dir}']  key = ['{key}'] }} }}\n\
         \x20 steps {{ sh '{install}' }}\n\
         }}\n"
    );
    // Build runs in Install's workspace, node_modules included; Lint and Test in Build's
    // (or Install's without a build script): neither needs the other's files, and a
    // workspace nobody starts from is not saved, so Lint's costs nothing.
    let mut from = "Install";
    let mut ran = Vec::new();
    for (stage, script) in [("Build", "build"), ("Lint", "lint"), ("Test", "test")] {
        if scripts.iter().any(|s| s == script) {
            ottofile.push_str(&format!(
                "stage('{stage}') {{\n  runtime {{ from '{from}' }}\n  steps {{ sh '{tool} run {script}' }}\n}}\n"
            ));
            if stage == "Build" {
                from = stage;
            }
            ran.push(script);
        }
    }
    let mut reason = match lockfile {
        Some(l) => format!("found package.json and {l}; the {tool} cache is keyed by {l}"),
        None => {
            "found package.json without a lockfile, so npm, its cache keyed by package.json".into()
        }
    };
    if ran.is_empty() {
        reason.push_str("; no build, lint or test script");
    } else {
        reason.push_str(&format!("; scripts {}", ran.join(", ")));
    }
    Some(Detected {
        name: "npm",
        reason,
        ottofile,
    })
}

/// The variables that keep Go's module and build caches in the workspace. `-trimpath`
/// keeps the workspace's path out of the build cache's keys, so a cache restored into
/// another run's workspace is still valid; `-modcacherw` leaves the module cache
/// writable, so it can be removed with the workspace.
const GO_ENV: &str = "GOMODCACHE=\"$PWD/.cache/go/mod\" GOCACHE=\"$PWD/.cache/go/build\" GOFLAGS=\"-modcacherw -trimpath\"";

fn go(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("go.mod") {
        return None;
    }
    let key = if p.has("go.sum") { "go.sum" } else { "go.mod" };
    let ottofile = format!(
        "// Inferred by the go convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ go {{ paths = ['.cache/go/']  key = ['{key}'] }} }}\n\
         \x20 steps {{ sh '{GO_ENV} go build ./...' }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use go }}\n\
         \x20 steps {{\n\
         \x20   sh '{GO_ENV} go vet ./...'\n\
         \x20   sh '{GO_ENV} go test ./...'\n\
         \x20 }}\n\
         }}\n"
    );
    Some(Detected {
        name: "go",
        reason: format!("found go.mod; module and build caches in .cache/go, keyed by {key}"),
        ottofile,
    })
}

/// The files present among `candidates`, quoted for an Ottofile list.
fn present(p: &Probe<'_>, candidates: &[&str]) -> Vec<String> {
    candidates
        .iter()
        .filter(|f| p.has(f))
        .map(|f| format!("'{f}'"))
        .collect()
}

fn maven(p: &Probe<'_>) -> Option<Detected> {
    if !p.has("pom.xml") {
        return None;
    }
    // The wrapper keeps the Maven it downloads under MAVEN_USER_HOME.
    let (mvn, wrapper) = if p.has("mvnw") {
        (
            "MAVEN_USER_HOME=\"$PWD/.cache/maven\" ./mvnw",
            ", run through mvnw",
        )
    } else {
        ("mvn", "")
    };
    let mvn = format!("{mvn} -B -Dmaven.repo.local=\"$PWD/.cache/maven/repository\"");
    let key = present(p, &["pom.xml", ".mvn/wrapper/maven-wrapper.properties"]).join(", ");
    let ottofile = format!(
        "// Inferred by the maven convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ maven {{ paths = ['.cache/maven/']  key = [{key}] }} }}\n\
         \x20 steps {{ sh '{mvn} -DskipTests package' }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use maven }}\n\
         \x20 steps {{ sh '{mvn} verify' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "maven",
        reason: format!(
            "found pom.xml{wrapper}; the local repository in .cache/maven, keyed by {}",
            key.replace('\'', "")
        ),
        ottofile,
    })
}

fn gradle(p: &Probe<'_>) -> Option<Detected> {
    let file = ["build.gradle.kts", "build.gradle"]
        .into_iter()
        .find(|f| p.has(f))?;
    let (gradle, wrapper) = if p.has("gradlew") {
        ("./gradlew", ", run through gradlew")
    } else {
        ("gradle", "")
    };
    let gradle = format!("GRADLE_USER_HOME=\"$PWD/.cache/gradle\" {gradle} --no-daemon");
    let key = present(
        p,
        &[
            "settings.gradle.kts",
            "settings.gradle",
            "build.gradle.kts",
            "build.gradle",
            "gradle.lockfile",
            "gradle/libs.versions.toml",
            "gradle/wrapper/gradle-wrapper.properties",
        ],
    )
    .join(", ");
    // Downloaded dependencies and the wrapper's distributions; not the rest of the user
    // home (daemon logs, native libraries, locks).
    let ottofile = format!(
        "// Inferred by the gradle convention.\n\
         stage('Build') {{\n\
         \x20 cache {{ gradle {{ paths = ['.cache/gradle/caches/modules-2/', '.cache/gradle/wrapper/dists/']  key = [{key}] }} }}\n\
         \x20 steps {{ sh '{gradle} assemble' }}\n\
         }}\n\
         stage('Test') {{\n\
         \x20 cache {{ use gradle }}\n\
         \x20 steps {{ sh '{gradle} check' }}\n\
         }}\n"
    );
    Some(Detected {
        name: "gradle",
        reason: format!(
            "found {file}{wrapper}; downloaded dependencies and distributions in .cache/gradle, keyed by {}",
            key.replace('\'', "")
        ),
        ottofile,
    })
}

/// The names of test extras and dependency groups, in the order they are looked for.
const PYTHON_TEST_GROUPS: [&str; 4] = ["test", "tests", "testing", "dev"];

/// Requirements files installed besides `requirements.txt`, when present.
const PYTHON_REQUIREMENTS: [&str; 6] = [
    "requirements.txt",
    "requirements-test.txt",
    "requirements-dev.txt",
    "test-requirements.txt",
    "dev-requirements.txt",
    "requirements/test.txt",
];

fn python(p: &Probe<'_>) -> Option<Detected> {
    let pyproject_text = p.read("pyproject.toml");
    let requirements: Vec<&str> = PYTHON_REQUIREMENTS
        .into_iter()
        .filter(|f| p.has(f))
        .collect();
    if pyproject_text.is_none() && requirements.is_empty() {
        return None;
    }
    let pyproject: Option<toml::Table> = pyproject_text.as_deref().and_then(|t| t.parse().ok());
    let section = |name: &str| pyproject.as_ref().and_then(|t| t.get(name));
    // A pyproject.toml that only configures tools is not a package to install.
    let installable = section("project").is_some() || section("build-system").is_some();
    let extra = section("project")
        .and_then(|p| p.get("optional-dependencies"))
        .and_then(toml::Value::as_table)
        .and_then(|extras| {
            PYTHON_TEST_GROUPS
                .into_iter()
                .find(|g| extras.contains_key(*g))
        });
    // PEP 735 groups: their plain requirement strings (pip before 25.1 has no --group).
    let group = section("dependency-groups")
        .and_then(toml::Value::as_table)
        .and_then(|groups| {
            PYTHON_TEST_GROUPS.into_iter().find_map(|g| {
                groups
                    .get(g)
                    .and_then(toml::Value::as_array)
                    .map(|a| (g, a))
            })
        })
        .map(|(name, items)| {
            let reqs: Vec<String> = items
                .iter()
                .filter_map(toml::Value::as_str)
                .filter(|r| is_plain_requirement(r))
                .map(str::to_owned)
                .collect();
            (name, reqs)
        });

    let mut packages: Vec<String> = Vec::new();
    let mut why: Vec<String> = Vec::new();
    if installable {
        match extra {
            Some(extra) => {
                packages.push(format!("\".[{extra}]\""));
                why.push(format!("pyproject.toml with test extras `{extra}`"));
            }
            None => {
                packages.push(".".into());
                why.push("pyproject.toml".into());
            }
        }
    }
    if let Some((name, reqs)) = &group {
        packages.extend(reqs.iter().map(|r| format!("\"{r}\"")));
        why.push(format!("dependency group `{name}`"));
    }
    for file in &requirements {
        packages.push(format!("-r {file}"));
    }
    if !requirements.is_empty() {
        why.push(requirements.join(", "));
    }

    // pytest when the project names it anywhere, else unittest's discovery.
    let mentions_pytest = pyproject_text
        .as_deref()
        .is_some_and(|t| t.contains("pytest"))
        || requirements
            .iter()
            .any(|f| p.read(f).is_some_and(|t| t.contains("pytest")))
        || ["pytest.ini", "conftest.py", "tests/conftest.py"]
            .into_iter()
            .any(|f| p.has(f))
        || p.read("setup.cfg")
            .is_some_and(|t| t.contains("[tool:pytest]"))
        || p.read("tox.ini").is_some_and(|t| t.contains("[pytest]"));
    let test = if mentions_pytest {
        packages.push("pytest".into());
        why.push("tests with pytest".into());
        "python -m pytest"
    } else if p.has("tests/__init__.py") {
        why.push("tests with unittest (pytest is not named)".into());
        "python -m unittest discover -s tests -t ."
    } else if p.source.kind(&p.dir.join("tests")) == Some(EntryKind::Dir) {
        why.push("tests with unittest (pytest is not named)".into());
        "python -m unittest discover -s tests"
    } else {
        why.push("tests with unittest (pytest is not named)".into());
        "python -m unittest discover"
    };
    let mut key: Vec<String> = Vec::new();
    if pyproject_text.is_some() {
        key.push("'pyproject.toml'".into());
    }
    key.extend(requirements.iter().map(|f| format!("'{f}'")));
    // One stage: a virtualenv holds absolute paths, so it is built where it is used,
    // from pip's download and wheel cache (kept in the workspace so it can be cached). The
    // variable carries the cache to the pip that installs build dependencies in a
    // subprocess, which does not get `--cache-dir` and would use the step's own HOME.
    let install = if packages.is_empty() {
        String::new()
    } else {
        format!(
            "\x20   sh 'PIP_CACHE_DIR=\"$PWD/.cache/pip\" .venv/bin/python -m pip install --cache-dir .cache/pip --disable-pip-version-check {}'\n",
            packages.join(" ")
        )
    };
    let ottofile = format!(
        "// Inferred by the python convention.\n\
         stage('Test') {{\n\
         \x20 cache {{ pip {{ paths = ['.cache/pip/']  key = [{}] }} }}\n\
         \x20 steps {{\n\
         \x20   sh 'python3 -m venv .venv'\n\
         {install}\
         \x20   sh '.venv/bin/{test}'\n\
         \x20 }}\n\
         }}\n",
        key.join(", ")
    );
    Some(Detected {
        name: "python",
        reason: format!("found {}", why.join("; ")),
        ottofile,
    })
}

/// A requirement string safe to pass to pip on a shell line in single quotes: a name,
/// extras, version specifiers and markers, without quotes, backslashes or `$`.
fn is_plain_requirement(req: &str) -> bool {
    !req.is_empty()
        && req.len() <= 200
        && req
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-[],<>=!~;:().*+@/".contains(c))
}

/// The targets a Makefile (or an automake `Makefile.in`) defines, roughly: the names
/// before `:` on lines that start a rule.
fn make_targets(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with(['\t', ' ', '#', '.']))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t.trim()))
        .filter(|t| !t.is_empty() && !t.contains(['$', '%', '=', ' ']))
        .collect()
}

fn make(p: &Probe<'_>) -> Option<Detected> {
    let makefile = ["GNUmakefile", "Makefile", "makefile"]
        .into_iter()
        .find(|f| p.has(f));
    // A `configure` script without a Makefile writes it: autotools and the like.
    let (build, text, mut reason) = match makefile {
        Some(file) => ("sh 'make'", p.read(file)?, format!("found {file}")),
        None if p.has("configure") => (
            "sh './configure'\n    sh 'make'",
            p.read("Makefile.in").unwrap_or_default(),
            "found configure and no Makefile: ./configure writes it".to_owned(),
        ),
        None => return None,
    };
    let targets = make_targets(&text);
    let mut ottofile = format!(
        "// Inferred by the make convention.\nstage('Build') {{\n  steps {{\n    {build}\n  }}\n}}\n"
    );
    if let Some(test) = ["test", "check"].into_iter().find(|t| targets.contains(t)) {
        // The tests run in the built tree (times kept, so make rebuilds nothing).
        ottofile.push_str(&format!(
            "stage('Test') {{\n  runtime {{ from 'Build' }}\n  steps {{ sh 'make {test}' }}\n}}\n"
        ));
        reason.push_str(&format!("; `make {test}` runs in the built tree"));
    } else {
        reason.push_str("; no `test` or `check` target, so no Test stage");
    }
    Some(Detected {
        name: "make",
        reason,
        ottofile,
    })
}

//! The plan for people: every stage in order with its owner, dependencies, handoffs,
//! gates (with what they give for the facts), environment, caches and resolved steps.

use std::fmt::Write as _;

use serde_json::Value;

use crate::plan::{self, Cache, Condition, Gate, Outcome, Plan, Runtime, RuntimeKind, Stage, Step};
use crate::planner::values::write_quoted;

/// Widest name column.
const MAX_NAME_WIDTH: usize = 40;

/// Stage lines list at most this many dependencies by name.
const MAX_NEEDS_SHOWN: usize = 3;

/// The plan as stable, aligned plain text (no colours, no absolute paths).
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    header(plan, &mut out);
    let width = plan
        .body
        .stages
        .iter()
        .map(|s| s.name.chars().count() + if s.parallel.is_some() { 2 } else { 0 })
        .max()
        .unwrap_or(0)
        .min(MAX_NAME_WIDTH);
    let stages = &plan.body.stages;
    let columns = Columns {
        number: stages.len().to_string().len().max(2),
        name: width,
        owner: stages
            .iter()
            .map(|s| s.owner_name().chars().count())
            .max()
            .unwrap_or(0),
    };
    for (i, stage) in stages.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| stages.get(p));
        if !stage.group.is_empty() && prev.is_none_or(|p| p.group != stage.group) {
            let _ = writeln!(out, "    group {}:", stage.group.join(" › "));
        }
        let starts_run =
            stage.parallel.is_some() && prev.is_none_or(|p| p.parallel != stage.parallel);
        if let Some(id) = stage.parallel.as_deref().filter(|_| starts_run) {
            let kind = if id.starts_with("each") {
                "each"
            } else {
                "parallel"
            };
            let _ = writeln!(out, "    {kind}:");
        }
        let tree = tree_marker(stages, i);
        stage_line(i + 1, tree, stage, &columns, &mut out);
        details(plan, stage, &mut out);
    }
    footer(plan, &mut out);
    out
}

/// The tree mark before a stage's name in a run of side-by-side stages. Each member of a
/// `parallel` or `each` may be a sequence: a stage that needs no other stage of the run
/// starts a branch (`├ `, or `└ ` for the last branch); the stages after it in its branch
/// are indented under it (`│ ` while more branches follow).
fn tree_marker(stages: &[Stage], i: usize) -> &'static str {
    let Some(id) = stages.get(i).and_then(|s| s.parallel.as_ref()) else {
        return "";
    };
    let in_run = |s: &Stage| s.parallel.as_ref() == Some(id);
    let start = stages[..i]
        .iter()
        .rposition(|s| !in_run(s))
        .map_or(0, |p| p + 1);
    let end = stages[i..]
        .iter()
        .position(|s| !in_run(s))
        .map_or(stages.len(), |p| i + p);
    let run = &stages[start..end];
    let starts_branch = |s: &Stage| !s.needs.iter().any(|n| run.iter().any(|r| &r.id == n));
    let later_branch = stages[i + 1..end].iter().any(starts_branch);
    match (starts_branch(&stages[i]), later_branch) {
        (true, true) => "├ ",
        (true, false) => "└ ",
        (false, true) => "│ ",
        (false, false) => "  ",
    }
}

fn header(plan: &Plan, out: &mut String) {
    let body = &plan.body;
    let _ = writeln!(out, "pipeline {}   digest {}", body.pipeline, plan.digest());
    let sources = &plan.provenance.sources;
    let mut line = match sources.split_first() {
        Some((root, [])) => format!("source {}", root.path),
        Some((root, rest)) => format!(
            "source {} (+{} library file{})",
            root.path,
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
        None => "source (none)".to_owned(),
    };
    if let Some(convention) = &plan.provenance.convention {
        let _ = write!(
            line,
            "   convention {} ({})",
            convention.name, convention.reason
        );
    }
    let _ = writeln!(out, "{line}");
    let facts = &body.facts;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not given)".to_owned());
    let _ = write!(
        out,
        "facts: branch={}, tag={}, environment={}, commit={}",
        show(&facts.branch),
        show(&facts.tag),
        show(&facts.environment),
        show(&facts.commit)
    );
    if !facts.vars.is_empty() {
        let vars: Vec<String> = facts
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}", literal(v)))
            .collect();
        let _ = write!(out, "; vars: {}", vars.join(", "));
    }
    out.push('\n');
    if !body.triggers.is_empty() {
        let triggers: Vec<String> = body.triggers.iter().map(|t| t.describe()).collect();
        let _ = writeln!(out, "triggers: {}", triggers.join("; "));
    }
    if let Some(c) = &body.concurrency {
        let _ = writeln!(out, "concurrency: {}", c.describe("run"));
    }
    if !body.libraries.is_empty() {
        let libs: Vec<String> = body
            .libraries
            .iter()
            .map(|l| format!("{} {}", l.name, short_digest(&l.digest)))
            .collect();
        let _ = writeln!(out, "libraries: {}", libs.join(", "));
    }
    let skipped = body.stages.iter().filter(|s| s.skipped).count();
    let _ = write!(
        out,
        "{} stage{}",
        body.stages.len(),
        if body.stages.len() == 1 { "" } else { "s" }
    );
    if skipped > 0 {
        let _ = write!(out, ", {skipped} skipped for these facts");
    }
    out.push_str("\n\n");
}

/// Widths of the aligned columns of stage lines.
struct Columns {
    number: usize,
    name: usize,
    owner: usize,
}

fn stage_line(number: usize, tree: &str, stage: &Stage, columns: &Columns, out: &mut String) {
    let name = format!("{tree}{}", stage.name);
    let pad = columns.name.saturating_sub(name.chars().count());
    let owner = stage.owner_name();
    let owner_pad = columns.owner.saturating_sub(owner.chars().count());
    let _ = write!(
        out,
        "{number:>w$}  {name}{}  {owner}{}",
        " ".repeat(pad),
        " ".repeat(owner_pad),
        w = columns.number
    );
    if !stage.needs.is_empty() {
        let shown: Vec<&str> = stage
            .needs
            .iter()
            .take(MAX_NEEDS_SHOWN)
            .map(String::as_str)
            .collect();
        let _ = write!(out, "  needs {}", shown.join(", "));
        if stage.needs.len() > MAX_NEEDS_SHOWN {
            let _ = write!(out, " +{} more", stage.needs.len() - MAX_NEEDS_SHOWN);
        }
    }
    if !stage.handoffs_from.is_empty() {
        let _ = write!(
            out,
            "  ⇢ handoff {} → {}",
            stage.handoffs_from.join(", "),
            stage.owner_name()
        );
    }
    if stage.skipped {
        out.push_str("  (skipped)");
    }
    out.push('\n');
}

fn details(plan: &Plan, stage: &Stage, out: &mut String) {
    const IN: &str = "      ";
    if let Some(when) = &stage.when {
        let _ = writeln!(out, "{IN}when {}", condition(when, plan));
    }
    if let Some(runtime) = runtime(&stage.runtime) {
        let _ = writeln!(out, "{IN}{runtime}");
    }
    if let Some(env) = &stage.environment {
        let mut line = format!("{IN}environment {env}");
        if let Some(def) = plan.body.environments.get(env) {
            let settings: Vec<String> = def
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !settings.is_empty() {
                let _ = write!(line, ": {}", settings.join(", "));
            }
        }
        if !stage.secrets.is_empty() {
            let _ = write!(
                line,
                "; secrets: {} (held by {})",
                stage.secrets.join(", "),
                stage.owner_name()
            );
        }
        let _ = writeln!(out, "{line}");
    }
    for cache in &stage.caches {
        let _ = writeln!(out, "{IN}{}", cache_line(cache));
    }
    for used in &stage.uses {
        let _ = writeln!(out, "{IN}uses {} ({})", used.path, used.sha256);
    }
    gates(plan, "enter", &stage.gates.enter, out);
    for step in &stage.steps {
        step_lines(step, IN, out);
    }
    gates(plan, "exit", &stage.gates.exit, out);
    for (when, steps) in [
        ("success", &stage.notify.success),
        ("failure", &stage.notify.failure),
        ("complete", &stage.notify.complete),
    ] {
        for step in steps {
            let mut text = String::new();
            step_lines(step, "", &mut text);
            for (i, line) in text.lines().enumerate() {
                let lead = if i == 0 {
                    format!("notify {when}: ")
                } else {
                    " ".repeat(9 + when.len())
                };
                let _ = writeln!(out, "{IN}{lead}{line}");
            }
        }
    }
    for (when, messages) in [
        ("success", &stage.notify.messages.success),
        ("failure", &stage.notify.messages.failure),
        ("complete", &stage.notify.messages.complete),
    ] {
        for message in messages {
            let text = match message {
                plan::Message::Slack { channel, text } => format!(
                    "slack{}{} (to this node's Slack webhook)",
                    text.as_ref().map(|t| format!(" {t:?}")).unwrap_or_default(),
                    channel
                        .as_ref()
                        .map(|c| format!(" channel {c}"))
                        .unwrap_or_default()
                ),
                plan::Message::Webhook { url } => {
                    format!("webhook {url} (signed; if this node allows the URL)")
                }
            };
            let _ = writeln!(out, "{IN}notify {when}: {text}");
        }
    }
    if let Some(timeout) = &stage.timeout {
        let _ = writeln!(out, "{IN}timeout {}", timeout.text);
    }
    if let Some(c) = &stage.concurrency {
        let _ = writeln!(out, "{IN}concurrency: {}", c.describe("running stage"));
    }
    if let Some(bp) = &stage.blueprint {
        let _ = writeln!(out, "{IN}from blueprint {} ({})", bp.name, bp.library);
    }
}

fn gates(plan: &Plan, kind: &str, gates: &[Gate], out: &mut String) {
    for (i, gate) in gates.iter().enumerate() {
        let lead = if i == 0 {
            format!("{kind}:")
        } else {
            String::new()
        };
        let _ = writeln!(out, "      {lead:<6} {}", gate_text(gate, plan));
    }
}

fn gate_text(gate: &Gate, plan: &Plan) -> String {
    match gate {
        Gate::Condition { text, result } => {
            let c = Condition {
                text: text.clone(),
                result: *result,
            };
            let mut s = condition(&c, plan);
            if *result == Outcome::Fail {
                s.push_str(": the run will stop here");
            }
            s
        }
        Gate::Input {
            message,
            approvers,
            timeout,
        } => {
            let mut s = format!("input {}  waits for approval", quoted(message));
            if !approvers.is_empty() {
                let _ = write!(s, " by {}", approvers.join(", "));
            }
            if let Some(t) = timeout {
                let _ = write!(s, " (timeout {})", t.text);
            }
            s
        }
        Gate::Webhook {
            description,
            timeout,
        } => {
            let mut s = "webhook".to_owned();
            if let Some(d) = description {
                let _ = write!(s, " {}", quoted(d));
            }
            s.push_str("  waits for a callback");
            if let Some(t) = timeout {
                let _ = write!(s, " (timeout {})", t.text);
            }
            s
        }
        Gate::Poll {
            command,
            url,
            every,
            timeout,
        } => {
            let mut s = match (command, url) {
                (Some(c), _) => format!("poll command {}", quoted(c)),
                (None, Some(u)) => format!("poll url {}", quoted(u)),
                (None, None) => "poll".to_owned(),
            };
            if let Some(e) = every {
                let _ = write!(s, " every {}", e.text);
            }
            if let Some(t) = timeout {
                let _ = write!(s, " (timeout {})", t.text);
            }
            s
        }
    }
}

/// A condition with its result and the facts it read.
fn condition(c: &Condition, plan: &Plan) -> String {
    let facts = &plan.body.facts;
    let read: Vec<String> = [
        ("branch", &facts.branch),
        ("tag", &facts.tag),
        ("environment", &facts.environment),
        ("commit", &facts.commit),
    ]
    .into_iter()
    .filter(|(name, _)| mentions_word(&c.text, name))
    .map(|(name, value)| match value {
        Some(v) => format!("{name}={v}"),
        None => format!("{name} not given"),
    })
    .collect();
    let facts = if read.is_empty() {
        String::new()
    } else {
        format!(" ({})", read.join(", "))
    };
    match c.result {
        Outcome::Pass => format!("{}  ✓ holds{facts}", c.text),
        Outcome::Fail => format!("{}  ✗ fails{facts}", c.text),
        Outcome::Unknown => format!("{}  ? decided at run time{facts}", c.text),
    }
}

/// Whether `word` appears in condition text as a bare word (not inside a quoted string).
fn mentions_word(text: &str, word: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    let mut current = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            current.push(c);
            continue;
        }
        if current == word {
            return true;
        }
        current.clear();
        quoted = c == '\'';
    }
    false
}

fn runtime(runtime: &Runtime) -> Option<String> {
    let kind = match runtime.kind {
        RuntimeKind::Local => None,
        RuntimeKind::Docker => Some(format!(
            "docker {}",
            runtime.image.as_deref().unwrap_or("?")
        )),
        RuntimeKind::Computer => Some(format!(
            "computer {}",
            runtime.label.as_deref().unwrap_or("?")
        )),
    };
    match (kind, &runtime.from) {
        (None, None) => None,
        (Some(k), None) => Some(format!("runtime {k}")),
        (None, Some(f)) => Some(format!("runtime from {f}")),
        (Some(k), Some(f)) => Some(format!("runtime {k}, from {f}")),
    }
}

fn cache_line(cache: &Cache) -> String {
    let mut s = format!("cache {}: {}", cache.name, cache.paths.join(", "));
    if !cache.key_files.is_empty() {
        let _ = write!(s, " (key {})", cache.key_files.join(", "));
    }
    s.push_str(if cache.defined_here {
        " (defined here)"
    } else {
        " (reused)"
    });
    s
}

fn step_lines(step: &Step, indent: &str, out: &mut String) {
    // A multi-line script reads best as the triple-quoted block it was written as.
    if let ([Value::String(script)], true, true) = (
        step.args.as_slice(),
        step.kwargs.is_empty(),
        step.block.is_empty(),
    ) && script.trim_end().contains('\n')
        && !script.contains("'''")
    {
        let _ = writeln!(out, "{indent}{} '''", step.symbol);
        for line in script.trim_end().lines() {
            let _ = writeln!(out, "{indent}  {line}");
        }
        let _ = writeln!(out, "{indent}'''");
        return;
    }
    let mut parts: Vec<String> = step.args.iter().map(literal).collect();
    parts.extend(
        step.kwargs
            .iter()
            .map(|(k, v)| format!("{k}: {}", literal(v))),
    );
    let _ = write!(out, "{indent}{}", step.symbol);
    if !parts.is_empty() {
        let _ = write!(out, " {}", parts.join(", "));
    }
    if step.block.is_empty() {
        out.push('\n');
        return;
    }
    out.push_str(" {\n");
    let inner = format!("{indent}  ");
    for s in &step.block {
        step_lines(s, &inner, out);
    }
    let _ = writeln!(out, "{indent}}}");
}

fn footer(plan: &Plan, out: &mut String) {
    let handoffs: Vec<String> = plan
        .handoffs()
        .map(|s| {
            format!(
                "{} → {} before {}",
                s.handoffs_from.join(", "),
                s.owner_name(),
                s.name
            )
        })
        .collect();
    out.push('\n');
    match handoffs.as_slice() {
        [] => out.push_str("handoffs: none (one owner runs every stage)\n"),
        [one] => {
            let _ = writeln!(out, "handoffs: {one}");
        }
        many => {
            out.push_str("handoffs:\n");
            for h in many {
                let _ = writeln!(out, "  {h}");
            }
        }
    }
    owners(plan, out);
}

/// The owner binding of a plan a node started: each owner name and its org, names without
/// one flagged. A plan no node started has none and shows nothing.
fn owners(plan: &Plan, out: &mut String) {
    let bound = &plan.body.owners;
    if bound.is_empty() {
        return;
    }
    out.push_str("owners:\n");
    for name in plan.owner_names() {
        match bound.get(name) {
            Some(b) => {
                let key = b.key.get(..24).unwrap_or(&b.key);
                let _ = writeln!(out, "  {name} → org {} ({key}…)", b.org);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {name} → NOT BOUND: the node that started the run knew no org by \
                     that name; each node checks its stages by its own knowledge of it"
                );
            }
        }
    }
}

/// A JSON value written as an Ottofile literal.
fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => quoted(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    write_quoted(s, &mut out);
    out
}

fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}…", hex.get(..12).unwrap_or(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_names_inside_strings_do_not_count() {
        assert!(mentions_word("branch == 'main'", "branch"));
        assert!(!mentions_word("'branch' == 'x'", "branch"));
        assert!(!mentions_word("'it\\'s branch' == 'x'", "branch"));
        assert!(mentions_word("!(tag != '')", "tag"));
        assert!(!mentions_word("tags == 'x'", "tag"));
    }
}

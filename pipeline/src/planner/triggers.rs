//! `triggers { }`: the events that start a pipeline, checked and put in the plan.

use std::str::FromStr as _;

use super::values::{Scope, Val};
use crate::ast::{ConfigEntry, Ident};
use crate::diagnostic::Diagnostic;
use crate::plan::{self, EventKind, Trigger};
use crate::steps::closest;

/// The events a trigger names, and the settings each takes.
const EVENTS: [(&str, EventKind, &[&str]); 4] = [
    ("push", EventKind::Push, &["branches"]),
    ("tag", EventKind::Tag, &["pattern"]),
    ("pull_request", EventKind::PullRequest, &["branches"]),
    ("schedule", EventKind::Schedule, &["cron", "timezone"]),
];

/// The plan's triggers from the file's `triggers { }` entries; problems go to `diags`.
pub(super) fn triggers(
    entries: &[ConfigEntry],
    scope: &Scope<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    for entry in entries {
        let (key, settings) = match entry {
            ConfigEntry::Block { key, entries } => (key, entries),
            ConfigEntry::Set { key, .. } => {
                diags.push(
                    Diagnostic::new(format!("trigger `{}` is not a block", key.name), key.span)
                        .with_hint(
                            "write each trigger as a block, e.g. push { branches = ['main'] }",
                        ),
                );
                continue;
            }
        };
        let Some(&(_, event, allowed)) = EVENTS.iter().find(|(name, ..)| *name == key.name) else {
            let names = EVENTS.iter().map(|(name, ..)| *name);
            let mut d = Diagnostic::new(format!("unknown trigger `{}`", key.name), key.span)
                .with_label("not an event Otto knows");
            d.hint = Some(match closest(&key.name, names.clone()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("the events: {}", names.collect::<Vec<_>>().join(", ")),
            });
            diags.push(d);
            continue;
        };
        let mut trigger = Trigger {
            branches: Vec::new(),
            cron: None,
            event,
            pattern: None,
            timezone: None,
        };
        for setting in settings {
            let (name, value) = match setting {
                ConfigEntry::Set { key: name, value } => (name, value),
                ConfigEntry::Block { key: name, .. } => {
                    diags.push(Diagnostic::new(
                        format!(
                            "`{}` in trigger `{}` takes a value: {} = ...",
                            name.name, key.name, name.name
                        ),
                        name.span,
                    ));
                    continue;
                }
            };
            if !allowed.contains(&name.name.as_str()) {
                let mut d = Diagnostic::new(
                    format!("trigger `{}` has no setting `{}`", key.name, name.name),
                    name.span,
                );
                d.hint = Some(match closest(&name.name, allowed.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("its settings: {}", allowed.join(", ")),
                });
                diags.push(d);
                continue;
            }
            let Some(value) = scope.eval(value, diags) else {
                continue;
            };
            match name.name.as_str() {
                "branches" => {
                    if let Some(list) = strings(&value, name, diags) {
                        for pattern in &list {
                            check_glob(pattern, name, diags);
                        }
                        trigger.branches.extend(list);
                    }
                }
                "pattern" => {
                    if let Some(text) = one_string(&value, name, diags) {
                        check_glob(&text, name, diags);
                        trigger.pattern = Some(text);
                    }
                }
                "cron" => {
                    if let Some(text) = one_string(&value, name, diags) {
                        check_cron(&text, name, diags);
                        trigger.cron = Some(text);
                    }
                }
                _ => trigger.timezone = one_string(&value, name, diags),
            }
        }
        if event == EventKind::Schedule {
            if trigger.cron.is_none() {
                diags.push(
                    Diagnostic::new("trigger `schedule` needs a `cron`", key.span)
                        .with_hint("schedule { cron = '0 3 * * *'  timezone = 'UTC' }"),
                );
            }
            trigger.timezone.get_or_insert_with(|| "UTC".to_owned());
        }
        out.push(trigger);
    }
    out
}

/// A string or a list of strings.
fn strings(value: &Val, name: &Ident, diags: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
    match value {
        Val::Str(s) => Some(vec![s.clone()]),
        Val::List(items) => items
            .iter()
            .map(|item| one_string(item, name, diags))
            .collect(),
        _ => one_string(value, name, diags).map(|s| vec![s]),
    }
}

fn one_string(value: &Val, name: &Ident, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match value {
        Val::Str(s) => Some(s.clone()),
        _ => {
            diags.push(Diagnostic::new(
                format!("`{}` takes text, e.g. '{}'", name.name, example(&name.name)),
                name.span,
            ));
            None
        }
    }
}

fn example(setting: &str) -> &'static str {
    match setting {
        "branches" => "release/*",
        "pattern" => "v*",
        "cron" => "0 3 * * *",
        _ => "UTC",
    }
}

fn check_glob(pattern: &str, name: &Ident, diags: &mut Vec<Diagnostic>) {
    if let Err(e) = plan::glob(pattern) {
        diags.push(
            Diagnostic::new(
                format!("`{pattern}` is not a valid pattern: {}", e.kind()),
                name.span,
            )
            .with_hint("`*` matches within a path segment, `**` across, `?` one character"),
        );
    }
}

fn check_cron(text: &str, name: &Ident, diags: &mut Vec<Diagnostic>) {
    if text.split_whitespace().count() != 5 {
        diags.push(
            Diagnostic::new(
                format!("`{text}` is not a five-field cron expression"),
                name.span,
            )
            .with_hint("minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"),
        );
    } else if let Err(e) = croner::Cron::from_str(text) {
        diags.push(Diagnostic::new(
            format!("`{text}` is not a valid cron expression: {e}"),
            name.span,
        ));
    }
}

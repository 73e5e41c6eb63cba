//! The Ottofile parser: the DESIGN.md example and every construct of the language.

use otto_pipeline::ast::{
    CacheEntry, CondKind, ConfigEntry, ExprKind, Fact, File, GateItem, Stage, StageItem, Use,
    VarType,
};
use otto_pipeline::parse;
use otto_pipeline::span::FileId;

/// The example of DESIGN.md §4, verbatim.
const DESIGN_EXAMPLE: &str = r#"use { stdlib  './otto/blueprints' }          // libraries: in-repo path or pinned external
configure { slack { channel = '#deploys' } }
environments {
  staging    { settings { HOSTNAME = 'staging.example.com' } }
  production { settings { HOSTNAME = "example.com"  RAILS_ENV = 'production' }
               secrets { DEPLOY_TOKEN } }           // names only, never values
}
pipeline {
  stages {
    stage {
      name = 'Build'
      cache { gems = ['vendor/'] }                  // a named cache; `cache { use gems }` reuses it
      steps {
        sh 'bundle install --path=vendor'
        archive path: 'dist/', name: 'site'         // keyword arguments
      }
    }
    parallel {
      stage { name = 'Unit'  runtime { from 'Build' }  steps { sh 'rake spec' } }
      stage { name = 'Lint'  steps { sh 'rubocop' } }
    }
    each('linux', 'macos') {                        // matrix: `it` is the current value
      stage { name = concat('Package ', it)  steps { sh 'make package' } }
    }
    stage {
      name = 'Deploy production'
      owner = 'ops'                                 // run by the node that 'ops' names
      environment -> production
      gates {
        enter { branch == 'main'                    // each line a condition; all must hold
                input 'Ship it?' }                  // a person approves (CLI, API)
        exit  { webhook { description = 'health check calls back'  timeout = '30m' } }
      }
      steps { unarchive name: 'site'  sh './deploy.sh' }
      notify { failure { echo 'deploy failed' } }
    }
  }
}
"#;

fn parse_ok(text: &str) -> File {
    let (file, diagnostics) = parse(FileId(0), text);
    assert!(
        diagnostics.is_empty(),
        "unexpected diagnostics: {diagnostics:#?}"
    );
    file
}

fn str_of(kind: &ExprKind) -> &str {
    match kind {
        ExprKind::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn design_example_parses_with_the_expected_shape() {
    let file = parse_ok(DESIGN_EXAMPLE);

    assert!(matches!(file.uses[0], Use::Stdlib(_)));
    assert!(matches!(&file.uses[1], Use::Path(p) if p.value == "./otto/blueprints"));
    let [ConfigEntry::Block { key, entries }] = file.configure.as_slice() else {
        panic!("configure: {:?}", file.configure)
    };
    assert_eq!(key.name, "slack");
    assert!(matches!(&entries[0], ConfigEntry::Set { key, value }
        if key.name == "channel" && str_of(&value.kind) == "#deploys"));

    let names: Vec<_> = file
        .environments
        .iter()
        .map(|e| e.name.name.as_str())
        .collect();
    assert_eq!(names, ["staging", "production"]);
    let production = &file.environments[1];
    assert_eq!(production.settings.len(), 2);
    assert_eq!(production.settings[1].0.name, "RAILS_ENV");
    assert_eq!(production.secrets[0].name, "DEPLOY_TOKEN");
    assert!(production.inline_secret_values.is_empty());

    let pipeline = file.pipeline.expect("a pipeline");
    assert_eq!(pipeline.name, None);
    assert_eq!(pipeline.items.len(), 4);

    let StageItem::Stage(build) = &pipeline.items[0] else {
        panic!("build")
    };
    assert_eq!(str_of(&build.name.as_ref().unwrap().kind), "Build");
    assert!(
        matches!(&build.caches[0], CacheEntry::Define { name, key: None, .. } if name.name == "gems")
    );
    assert_eq!(build.steps.len(), 2);
    let archive = &build.steps[1];
    assert_eq!(archive.symbol.name, "archive");
    assert!(archive.args.is_empty());
    let kwargs: Vec<_> = archive
        .kwargs
        .iter()
        .map(|(k, _)| k.name.as_str())
        .collect();
    assert_eq!(kwargs, ["path", "name"]);

    let StageItem::Parallel { items, .. } = &pipeline.items[1] else {
        panic!("parallel")
    };
    assert_eq!(items.len(), 2);
    let StageItem::Stage(unit) = &items[0] else {
        panic!("unit")
    };
    assert_eq!(
        unit.runtime.as_ref().unwrap().from.as_ref().unwrap().value,
        "Build"
    );

    let StageItem::Each { values, items, .. } = &pipeline.items[2] else {
        panic!("each")
    };
    assert_eq!(values.len(), 2);
    assert_eq!(str_of(&values[1].kind), "macos");
    let StageItem::Stage(package) = &items[0] else {
        panic!("package")
    };
    let ExprKind::Call { name, args } = &package.name.as_ref().unwrap().kind else {
        panic!("call")
    };
    assert_eq!(name.name, "concat");
    assert_eq!(args[1].kind, ExprKind::It);

    let StageItem::Stage(deploy) = &pipeline.items[3] else {
        panic!("deploy")
    };
    assert_eq!(str_of(&deploy.owner.as_ref().unwrap().kind), "ops");
    assert_eq!(deploy.environment.as_ref().unwrap().name, "production");
    assert_eq!(deploy.enter.len(), 2);
    let GateItem::Cond(cond) = &deploy.enter[0] else {
        panic!("cond")
    };
    let CondKind::Eq(left, right) = &cond.kind else {
        panic!("eq")
    };
    assert_eq!(left.kind, ExprKind::Fact(Fact::Branch));
    assert_eq!(str_of(&right.kind), "main");
    assert!(matches!(&deploy.enter[1], GateItem::Input { args, .. } if args.is_empty()));
    let [GateItem::Webhook { fields, .. }] = deploy.exit.as_slice() else {
        panic!("exit")
    };
    assert_eq!(fields[1].0.name, "timeout");
    let steps: Vec<_> = deploy
        .steps
        .iter()
        .map(|s| s.symbol.name.as_str())
        .collect();
    assert_eq!(steps, ["unarchive", "sh"]);
    assert_eq!(deploy.notify.failure[0].symbol.name, "echo");
    assert!(deploy.notify.success.is_empty());
}

// ---- helpers ----

fn stages(file: &File) -> &[StageItem] {
    &file.pipeline.as_ref().expect("a pipeline").items
}

fn stage(item: &StageItem) -> &Stage {
    match item {
        StageItem::Stage(stage) => stage,
        other => panic!("not a stage: {other:?}"),
    }
}

fn only_stage(text: &str) -> Stage {
    let file = parse_ok(text);
    let items = stages(&file);
    assert_eq!(items.len(), 1, "{items:?}");
    stage(&items[0]).clone()
}

/// The value of `sh VALUE` in `steps { }` at top level.
fn value_of(value: &str) -> ExprKind {
    let text = format!("steps {{ sh {value} }}");
    let stage = only_stage(&text);
    assert_eq!(stage.steps[0].args.len(), 1, "{:?}", stage.steps[0]);
    stage.steps[0].args[0].kind.clone()
}

fn s(value: &str) -> ExprKind {
    ExprKind::Str(value.to_owned())
}

// ---- lexical ----

#[test]
fn comments_nest_and_run_to_end_of_line() {
    let stage = only_stage(
        "/* outer /* inner */ still a comment */ stage { // name = 'no'\n name = 'yes' }",
    );
    assert_eq!(stage.name.unwrap().kind, s("yes"));
}

#[test]
fn single_and_double_quotes_are_the_same() {
    assert_eq!(value_of(r#""say 'hi'""#), s("say 'hi'"));
    assert_eq!(value_of(r#"'say "hi"'"#), s("say \"hi\""));
}

#[test]
fn strings_may_span_lines() {
    assert_eq!(value_of("'a\nb'"), s("a\nb"));
}

#[test]
fn escapes_are_decoded() {
    assert_eq!(
        value_of(r#"'\\ \' \" \n \t \r \0 \u{e9} \u{1F600}'"#),
        s("\\ ' \" \n \t \r \0 é 😀")
    );
}

#[test]
fn triple_quoted_strings_drop_the_first_newline_and_common_indentation() {
    let text = "steps {\n  sh '''\n      make\n        make install\n\n      echo \"done\" 'ok'\n      '''\n}";
    let stage = only_stage(text);
    assert_eq!(
        stage.steps[0].args[0].kind,
        s("make\n  make install\n\necho \"done\" 'ok'\n")
    );
    // Backslashes are literal and the other quote kind needs no escape.
    assert_eq!(value_of(r#""""a\nb ''' c""""#), s(r"a\nb ''' c"));
}

#[test]
fn numbers_are_whole_and_may_be_negative() {
    assert_eq!(value_of("0"), ExprKind::Int(0));
    assert_eq!(value_of("42"), ExprKind::Int(42));
    assert_eq!(value_of("-7"), ExprKind::Int(-7));
    assert_eq!(value_of("9223372036854775807"), ExprKind::Int(i64::MAX));
    assert_eq!(value_of("-9223372036854775808"), ExprKind::Int(i64::MIN));
}

#[test]
fn booleans_lists_calls_it_and_vars() {
    assert_eq!(value_of("true"), ExprKind::Bool(true));
    assert_eq!(value_of("false"), ExprKind::Bool(false));
    let ExprKind::List(elements) = value_of("['a', 1, [true], ]") else {
        panic!("list")
    };
    assert_eq!(elements.len(), 3);
    assert_eq!(elements[1].kind, ExprKind::Int(1));
    assert!(matches!(&elements[2].kind, ExprKind::List(inner) if inner.len() == 1));
    assert_eq!(value_of("[]"), ExprKind::List(vec![]));
    let ExprKind::Call { name, args } = value_of("join(vars.targets, upper(it), '-')") else {
        panic!("call")
    };
    assert_eq!(name.name, "join");
    assert!(matches!(&args[0].kind, ExprKind::Var(v) if v.name == "targets"));
    assert!(
        matches!(&args[1].kind, ExprKind::Call { name, args } if name.name == "upper" && args[0].kind == ExprKind::It)
    );
    assert_eq!(
        value_of("lower()"),
        ExprKind::Call {
            name: ident_of("lower()"),
            args: vec![]
        }
    );
}

fn ident_of(value: &str) -> otto_pipeline::ast::Ident {
    let text = format!("steps {{ sh {value} }}");
    let stage = only_stage(&text);
    match &stage.steps[0].args[0].kind {
        ExprKind::Call { name, .. } => name.clone(),
        other => panic!("not a call: {other:?}"),
    }
}

#[test]
fn identifiers_may_contain_dashes() {
    let stage = only_stage("steps { cargo-build release: true }");
    assert_eq!(stage.steps[0].symbol.name, "cargo-build");
    assert_eq!(stage.steps[0].kwargs[0].0.name, "release");
}

// ---- steps ----

#[test]
fn arguments_after_the_first_need_a_comma_so_steps_can_share_a_line() {
    let stage = only_stage(
        "steps { unarchive name: 'site'  sh './deploy.sh'  archive path: 'dist/', name: 'site' }",
    );
    let symbols: Vec<_> = stage.steps.iter().map(|s| s.symbol.name.as_str()).collect();
    assert_eq!(symbols, ["unarchive", "sh", "archive"]);
    assert_eq!(stage.steps[0].kwargs.len(), 1);
    assert_eq!(stage.steps[1].args[0].kind, s("./deploy.sh"));
    assert_eq!(stage.steps[2].kwargs.len(), 2);
}

#[test]
fn steps_take_positional_and_keyword_arguments_in_any_mix() {
    let stage = only_stage("steps { echo 'a', 'b', level: 2, 'c' }");
    let step = &stage.steps[0];
    assert_eq!(step.args.len(), 3);
    assert_eq!(step.kwargs[0].0.name, "level");
    assert_eq!(step.kwargs[0].1.kind, ExprKind::Int(2));
}

#[test]
fn steps_without_arguments_and_nested_blocks() {
    let stage = only_stage(
        "steps { checkout  dir 'sub' { sh 'make'  dir 'deeper' { sh 'ls' } }  cleanup { echo 'x' } }",
    );
    let symbols: Vec<_> = stage.steps.iter().map(|s| s.symbol.name.as_str()).collect();
    assert_eq!(symbols, ["checkout", "dir", "cleanup"]);
    assert!(stage.steps[0].args.is_empty() && stage.steps[0].block.is_none());
    let block = stage.steps[1].block.as_ref().expect("a block");
    assert_eq!(block.len(), 2);
    assert_eq!(block[1].block.as_ref().unwrap()[0].args[0].kind, s("ls"));
    assert_eq!(stage.steps[2].block.as_ref().unwrap().len(), 1);
}

#[test]
fn a_bare_identifier_after_a_step_starts_the_next_step() {
    let stage = only_stage("steps { checkout branch 'x' }");
    let symbols: Vec<_> = stage.steps.iter().map(|s| s.symbol.name.as_str()).collect();
    assert_eq!(symbols, ["checkout", "branch"]);
}

// ---- stages ----

#[test]
fn stage_name_shorthand() {
    let stage = only_stage("stage('Build') { steps { sh 'make' } }");
    assert_eq!(stage.name.unwrap().kind, s("Build"));
    let stage = only_stage("stage(concat('Package ', 'x')) { }");
    assert!(matches!(stage.name.unwrap().kind, ExprKind::Call { .. }));
}

#[test]
fn top_level_steps_and_stages_without_wrappers() {
    let file = parse_ok(
        "steps { sh 'one' }\nstage('Two') { }\nparallel { stage('A') {} stage('B') {} }\nsteps { sh 'three' }",
    );
    let items = stages(&file);
    assert_eq!(items.len(), 4);
    assert_eq!(stage(&items[0]).name, None);
    assert_eq!(stage(&items[0]).steps[0].args[0].kind, s("one"));
    assert_eq!(stage(&items[1]).name.as_ref().unwrap().kind, s("Two"));
    assert!(matches!(&items[2], StageItem::Parallel { items, .. } if items.len() == 2));
    assert_eq!(stage(&items[3]).name, None);
    assert_eq!(file.pipeline.unwrap().name, None);
}

#[test]
fn pipeline_block_with_name_steps_and_nested_stages_wrappers() {
    let file = parse_ok(
        "pipeline { name = 'webapp'  stages { stage('A') {} stages { stage('B') {} } }  stage('C') {}  steps { sh 'x' } }",
    );
    let pipeline = file.pipeline.as_ref().unwrap();
    assert_eq!(pipeline.name.as_ref().unwrap().value, "webapp");
    let names: Vec<_> = pipeline
        .items
        .iter()
        .map(|i| stage(i).name.as_ref().map(|n| n.kind.clone()))
        .collect();
    assert_eq!(names, [Some(s("A")), Some(s("B")), Some(s("C")), None]);
}

#[test]
fn a_file_without_stages_has_no_pipeline() {
    let file = parse_ok("blueprint { name = 'x'  stage('A') {} }");
    assert!(file.pipeline.is_none());
    assert_eq!(parse_ok("").pipeline, None);
    assert_eq!(parse_ok("// only a comment\n"), File::default());
}

#[test]
fn grouping_stage_holds_sub_stages_in_order() {
    let stage = only_stage(
        "stage { name = 'Deploy'  owner = 'ops'  stage('Canary') {}  parallel { stage('EU') {} stage('US') {} }  from './verify' }",
    );
    assert_eq!(stage.children.len(), 3);
    assert!(matches!(stage.children[1], StageItem::Parallel { .. }));
    assert!(matches!(stage.children[2], StageItem::From { .. }));
}

#[test]
fn each_takes_several_values_and_nests() {
    let file =
        parse_ok("each('linux', 'macos', vars.extra) { each(1, 2) { stage { name = it } } }");
    let StageItem::Each { values, items, .. } = &stages(&file)[0] else {
        panic!("each")
    };
    assert_eq!(values.len(), 3);
    assert!(
        matches!(&items[0], StageItem::Each { values, .. } if values[1].kind == ExprKind::Int(2))
    );
}

#[test]
fn several_steps_blocks_concatenate() {
    let stage = only_stage("stage { steps { sh 'a' } name = 'x' steps { sh 'b' sh 'c' } }");
    assert_eq!(stage.steps.len(), 3);
}

#[test]
fn owner_timeout_and_environment_arrow() {
    let stage = only_stage("stage { owner = vars.team timeout = '30m' environment->staging }");
    assert!(matches!(stage.owner.unwrap().kind, ExprKind::Var(_)));
    assert_eq!(stage.timeout.unwrap().kind, s("30m"));
    assert_eq!(stage.environment.unwrap().name, "staging");
}

// ---- blueprints and from ----

#[test]
fn blueprint_with_vars_and_stages() {
    let file = parse_ok(
        "blueprint {
           name = 'rails'
           vars {
             ruby { type string  default '3.3'  description 'Ruby version' }
             jobs { type number default 4 }
             strict { type bool }
             targets { type list default ['a'] }
             plain = 'x'
             count = 3
             flag = false
             list = ['a', 'b']
           }
           stages { stage { name = 'Test'  steps { sh concat('ruby-', vars.ruby) } } }
           stage('More') {}
         }",
    );
    let blueprint = &file.blueprints[0];
    assert_eq!(blueprint.name.as_ref().unwrap().value, "rails");
    let vars: Vec<_> = blueprint
        .vars
        .iter()
        .map(|v| (v.name.name.as_str(), v.ty))
        .collect();
    assert_eq!(
        vars,
        [
            ("ruby", VarType::String),
            ("jobs", VarType::Number),
            ("strict", VarType::Bool),
            ("targets", VarType::List),
            ("plain", VarType::String),
            ("count", VarType::Number),
            ("flag", VarType::Bool),
            ("list", VarType::List),
        ]
    );
    assert_eq!(
        blueprint.vars[0].description.as_ref().unwrap().value,
        "Ruby version"
    );
    assert_eq!(blueprint.vars[0].default.as_ref().unwrap().kind, s("3.3"));
    assert_eq!(blueprint.vars[2].default, None);
    assert_eq!(blueprint.items.len(), 2);
    assert!(file.pipeline.is_none());
}

#[test]
fn top_level_vars() {
    let file = parse_ok("vars { region { default 'eu' } replicas = 2 }");
    assert_eq!(file.vars.len(), 2);
    assert_eq!(file.vars[0].ty, VarType::String);
    assert_eq!(file.vars[1].ty, VarType::Number);
}

#[test]
fn from_with_and_without_args() {
    let file = parse_ok("from 'rails'\nfrom './ci/npm' { node = '22'  jobs = 2 }");
    let items = stages(&file);
    assert!(
        matches!(&items[0], StageItem::From { target, args, .. } if target.value == "rails" && args.is_empty())
    );
    let StageItem::From { target, args, .. } = &items[1] else {
        panic!("from")
    };
    assert_eq!(target.value, "./ci/npm");
    assert_eq!(args[0].0.name, "node");
    assert_eq!(args[1].1.kind, ExprKind::Int(2));
}

// ---- when and conditions ----

#[test]
fn when_conditions_one_per_line() {
    let stage = only_stage("stage { when { branch == 'main' tag != '' } }");
    assert_eq!(stage.when.len(), 2);
    assert!(matches!(stage.when[1].kind, CondKind::Ne(..)));
}

#[test]
fn condition_precedence_not_binds_tighter_than_and_tighter_than_or() {
    let stage = only_stage(
        "stage { when { !vars.skip && branch in ['main', 'next'] || (environment == 'prod' || commit == 'x') } }",
    );
    let CondKind::Or(left, right) = &stage.when[0].kind else {
        panic!("or")
    };
    let CondKind::And(not, inside) = &left.kind else {
        panic!("and")
    };
    assert!(matches!(&not.kind, CondKind::Not(v) if matches!(v.kind, CondKind::Value(_))));
    assert!(
        matches!(&inside.kind, CondKind::In(_, list) if matches!(list.kind, ExprKind::List(_)))
    );
    assert!(matches!(right.kind, CondKind::Or(..)));
}

#[test]
fn values_as_conditions() {
    let stage = only_stage("stage { when { true  vars.deploy  !false } }");
    assert_eq!(stage.when.len(), 3);
    assert!(matches!(&stage.when[0].kind, CondKind::Value(v) if v.kind == ExprKind::Bool(true)));
}

// ---- runtime, caches ----

#[test]
fn runtime_forms() {
    let stage = only_stage("stage { runtime { from 'Build'  docker { image = 'ruby:3.3' } } }");
    let runtime = stage.runtime.unwrap();
    assert_eq!(runtime.from.unwrap().value, "Build");
    assert_eq!(runtime.docker.unwrap().0.kind, s("ruby:3.3"));
    assert!(runtime.computer.is_none());
    let stage = only_stage("stage { runtime { computer { label = 'linux' } } }");
    let runtime = stage.runtime.unwrap();
    assert_eq!(runtime.computer.unwrap().0.kind, s("linux"));
    assert!(runtime.from.is_none());
}

#[test]
fn cache_define_use_and_long_form() {
    let stage = only_stage(
        "stage { cache { gems = ['vendor/']  use npm  node { paths = ['node_modules/'] key = ['package-lock.json'] }  bare { paths = 'x' } } }",
    );
    let [gems, npm, node, bare] = stage.caches.as_slice() else {
        panic!("{:?}", stage.caches)
    };
    assert!(matches!(gems, CacheEntry::Define { name, key: None, .. } if name.name == "gems"));
    assert!(matches!(npm, CacheEntry::Use(name) if name.name == "npm"));
    assert!(matches!(node, CacheEntry::Define { name, key: Some(_), .. } if name.name == "node"));
    assert!(matches!(bare, CacheEntry::Define { key: None, .. }));
}

#[test]
fn a_cache_may_be_named_use() {
    let stage = only_stage("stage { cache { use = ['x'] } }");
    assert!(matches!(&stage.caches[0], CacheEntry::Define { name, .. } if name.name == "use"));
}

// ---- gates and notify ----

#[test]
fn all_gate_items() {
    let stage = only_stage(
        "stage { gates {
            enter { branch == 'main'  input 'Ship it?', approvers: ['alice', 'bob'], timeout: '1h'  tag != '' }
            exit {
              input 'Looks good?'
              webhook { description = 'health check'  timeout = '30m' }
              poll { command = './healthy.sh'  every = '10s'  timeout = '5m' }
              poll { url = 'https://example.com/health' }
            }
            enter { vars.go }
        } }",
    );
    assert_eq!(stage.enter.len(), 4);
    let GateItem::Input { message, args, .. } = &stage.enter[1] else {
        panic!("input")
    };
    assert_eq!(message.kind, s("Ship it?"));
    let keys: Vec<_> = args.iter().map(|(k, _)| k.name.as_str()).collect();
    assert_eq!(keys, ["approvers", "timeout"]);
    assert!(matches!(stage.enter[2], GateItem::Cond(_)));
    assert_eq!(stage.exit.len(), 4);
    assert!(matches!(&stage.exit[0], GateItem::Input { args, .. } if args.is_empty()));
    assert!(matches!(&stage.exit[1], GateItem::Webhook { fields, .. } if fields.len() == 2));
    assert!(matches!(&stage.exit[2], GateItem::Poll { fields, .. } if fields[1].0.name == "every"));
    assert!(matches!(&stage.exit[3], GateItem::Poll { fields, .. } if fields[0].0.name == "url"));
}

#[test]
fn notify_success_failure_complete() {
    let stage = only_stage(
        "stage { notify { success { echo 'ok' } failure { echo 'no'  sh 'page' } complete { echo 'done' } } }",
    );
    assert_eq!(stage.notify.success.len(), 1);
    assert_eq!(stage.notify.failure.len(), 2);
    assert_eq!(stage.notify.complete[0].symbol.name, "echo");
}

// ---- use, configure, environments ----

#[test]
fn use_stdlib_paths_and_pinned_external() {
    let digest = "0123456789abcdef".repeat(4);
    let text = format!(
        "use {{ stdlib './a' '../b/c.otto' 'https://example.com/rails.git' sha256 '{digest}' }}\nuse {{ '.' }}"
    );
    let file = parse_ok(&text);
    assert!(matches!(file.uses[0], Use::Stdlib(_)));
    assert!(matches!(&file.uses[1], Use::Path(p) if p.value == "./a"));
    assert!(matches!(&file.uses[2], Use::Path(p) if p.value == "../b/c.otto"));
    let Use::External {
        location, sha256, ..
    } = &file.uses[3]
    else {
        panic!("external")
    };
    assert_eq!(location.value, "https://example.com/rails.git");
    assert_eq!(sha256.value, digest);
    assert!(matches!(&file.uses[4], Use::Path(p) if p.value == "."));
}

#[test]
fn configure_is_free_form() {
    let file = parse_ok(
        "configure { slack { channel = '#ci'  mention { on_failure = true } }  retries = 2 }\nconfigure { x = [] }",
    );
    assert_eq!(file.configure.len(), 3);
    let ConfigEntry::Block { entries, .. } = &file.configure[0] else {
        panic!("block")
    };
    assert!(
        matches!(&entries[1], ConfigEntry::Block { key, entries } if key.name == "mention" && entries.len() == 1)
    );
    assert!(
        matches!(&file.configure[1], ConfigEntry::Set { key, value } if key.name == "retries" && value.kind == ExprKind::Int(2))
    );
}

#[test]
fn inline_secret_values_are_recorded_by_span_and_dropped() {
    let text = "environments { prod { secrets { A  B = 'hunter2'  C } settings { X = 1 } } }";
    let file = parse_ok(text);
    let env = &file.environments[0];
    let names: Vec<_> = env.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A", "C"]);
    let [span] = env.inline_secret_values.as_slice() else {
        panic!("one inline value")
    };
    assert_eq!(
        &text[span.start as usize..span.end as usize],
        "B = 'hunter2'"
    );
    assert!(!format!("{file:?}").contains("hunter2"));
    assert_eq!(env.settings[0].0.name, "X");
}

// ---- spans ----

#[test]
fn spans_cover_what_was_written() {
    let text = "pipeline {\n  stage('A') { steps { sh 'x', y: 1 } }\n}";
    let file = parse_ok(text);
    let slice = |span: otto_pipeline::span::Span| &text[span.start as usize..span.end as usize];
    let pipeline = file.pipeline.as_ref().unwrap();
    assert_eq!(slice(pipeline.span), text);
    let stage = stage(&pipeline.items[0]);
    assert_eq!(slice(stage.span), "stage('A') { steps { sh 'x', y: 1 } }");
    assert_eq!(slice(stage.steps[0].span), "sh 'x', y: 1");
    assert_eq!(slice(stage.steps[0].args[0].span), "'x'");
    assert_eq!(slice(stage.name.as_ref().unwrap().span), "'A'");
}

#[test]
fn stdlib_blueprints_parse_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut seen = 0;
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "otto") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let (file, diagnostics) = parse(FileId(0), &text);
            assert!(
                diagnostics.is_empty(),
                "{}: {diagnostics:#?}",
                path.display()
            );
            assert_eq!(file.blueprints.len(), 1, "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "no stdlib files in {}", dir.display());
}

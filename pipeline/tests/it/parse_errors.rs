//! Every diagnostic the lexer and parser report: where (line:column), what, and the
//! label or hint that tells the user what to do.

use std::path::PathBuf;

use otto_pipeline::diagnostic::Diagnostic;
use otto_pipeline::parse;
use otto_pipeline::render::{one_line, render_all};
use otto_pipeline::span::SourceMap;

/// Parses `text` and returns the diagnostics with their sources.
fn diagnose(text: &str) -> (Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let id = sources.add(PathBuf::from("Ottofile"), text.to_owned());
    let (_, diagnostics) = parse(id, text);
    (diagnostics, sources)
}

/// The diagnostics as `Ottofile:LINE:COL: MESSAGE` lines.
fn errors(text: &str) -> Vec<String> {
    let (diagnostics, sources) = diagnose(text);
    diagnostics.iter().map(|d| one_line(d, &sources)).collect()
}

/// The only diagnostic for `text`, asserting its location and message.
fn single(text: &str, at: &str, message: &str) -> Diagnostic {
    let (diagnostics, sources) = diagnose(text);
    assert_eq!(
        diagnostics.len(),
        1,
        "{}",
        render_all(&diagnostics, &sources)
    );
    assert_eq!(
        one_line(&diagnostics[0], &sources),
        format!("Ottofile:{at}: {message}")
    );
    diagnostics[0].clone()
}

fn hint(diagnostic: &Diagnostic) -> &str {
    diagnostic.hint.as_deref().unwrap_or_default()
}

fn label(diagnostic: &Diagnostic) -> &str {
    diagnostic.label.as_deref().unwrap_or_default()
}

// ---- lexical ----

#[test]
fn unexpected_character() {
    let d = single(
        "stage { steps { sh 'a'; } }",
        "1:23",
        "unexpected character `;`",
    );
    assert!(hint(&d).contains("no separator"));
    let d = single(
        "stage { when { vars.a & vars.b } }",
        "1:23",
        "unexpected character `&`",
    );
    assert_eq!(hint(&d), "write `&&` for \"and\"");
    single(
        "steps {\n  sh 'x' \u{0}\n}",
        "2:10",
        "unexpected character `\\u{0}`",
    );
    single("steps { sh 'x' } é", "1:18", "unexpected character `é`");
}

#[test]
fn unterminated_string_is_reported_at_its_start() {
    let (diagnostics, sources) = diagnose("steps {\n  sh 'make\n}\n");
    let first = one_line(&diagnostics[0], &sources);
    assert_eq!(first, "Ottofile:2:6: unterminated string");
    assert_eq!(label(&diagnostics[0]), "this string is never closed");
    let (diagnostics, sources) = diagnose("steps { sh \"\"\"\n make\n");
    assert_eq!(
        one_line(&diagnostics[0], &sources),
        "Ottofile:1:12: unterminated string"
    );
}

#[test]
fn unterminated_block_comment_is_reported_at_its_start() {
    let d = single(
        "steps { sh 'x' }\n/* a /* nested */ comment",
        "2:1",
        "unterminated block comment",
    );
    assert!(hint(&d).contains("nest"));
}

#[test]
fn decimal_numbers_are_rejected() {
    let d = single(
        "steps { retry 1.5 }",
        "1:15",
        "only whole numbers are supported",
    );
    assert_eq!(label(&d), "decimal number");
}

#[test]
fn numbers_with_letters_are_rejected_with_a_hint_to_quote() {
    let d = single("stage { timeout = 10s }", "1:19", "invalid number `10s`");
    assert!(hint(&d).contains("'10s'"));
}

#[test]
fn numbers_that_overflow_are_rejected() {
    single(
        "steps { n 9223372036854775808 }",
        "1:11",
        "number is too large",
    );
}

#[test]
fn bad_escapes() {
    let d = single(r"steps { sh 'a\qb' }", "1:14", r"unknown escape `\q`");
    assert!(hint(&d).contains(r"\u{HEX}"));
    single(
        r"steps { sh 'a\u{110000}' }",
        "1:14",
        "invalid unicode escape",
    );
    single(r"steps { sh '\u41' }", "1:13", "invalid unicode escape");
}

// ---- structure ----

#[test]
fn missing_brace_after_stage_suggests_the_shorthand() {
    let d = single(
        "stage name 'Deploy' { steps { sh 'x' } }",
        "1:7",
        "expected `{` after `stage`, found `name`",
    );
    assert_eq!(label(&d), "expected `{`");
    assert_eq!(
        hint(&d),
        "write stage('Deploy') { or name = 'Deploy' inside the block"
    );
}

#[test]
fn expected_a_value() {
    let d = single(
        "stage { owner = ops }",
        "1:17",
        "expected a value (a string, number, boolean, list, function call, `it` or `vars.NAME`), found `ops`",
    );
    assert_eq!(label(&d), "expected a value");
    assert!(hint(&d).contains("'ops'"));
    let d = single(
        "stage { when { enviroment == 'x' } }",
        "1:16",
        "expected a value (a string, number, boolean, list, function call, `it` or `vars.NAME`), found `enviroment`",
    );
    assert!(hint(&d).starts_with("did you mean `environment`?"));
}

#[test]
fn unknown_stage_body_keyword_suggests_the_closest() {
    let d = single(
        "stage {\n  name = 'x'\n  stpes { sh 'make' }\n}",
        "3:3",
        "unknown keyword `stpes` in a stage body",
    );
    assert_eq!(hint(&d), "did you mean `steps`?");
    let d = single(
        "stage { zzz }",
        "1:9",
        "unknown keyword `zzz` in a stage body",
    );
    assert!(hint(&d).starts_with("expected `name`, `owner`"));
}

#[test]
fn unknown_keywords_elsewhere_suggest_the_closest() {
    let cases = [
        (
            "pipline { }",
            "1:1",
            "unknown keyword `pipline` in the file",
            "`pipeline`",
        ),
        (
            "stage { gates { entr { } } }",
            "1:17",
            "unknown keyword `entr` in `gates`",
            "`enter`",
        ),
        (
            "stage { runtime { dokcer { image = 'x' } } }",
            "1:19",
            "unknown keyword `dokcer` in a runtime",
            "`docker`",
        ),
        (
            "stage { notify { failed { echo 'x' } } }",
            "1:18",
            "unknown keyword `failed` in `notify`",
            "`failure`",
        ),
        (
            "environments { prod { setting { A = 1 } } }",
            "1:23",
            "unknown keyword `setting` in an environment",
            "`settings`",
        ),
        (
            "vars { x { typ string } }",
            "1:12",
            "unknown keyword `typ` in a var declaration",
            "`type`",
        ),
        (
            "stage { cache { c { path = ['x'] } } }",
            "1:21",
            "unknown keyword `path` in a cache",
            "`paths`",
        ),
        (
            "parallel { stag { } }",
            "1:12",
            "unknown keyword `stag` in a list of stages",
            "`stage`",
        ),
        (
            "stage { gates { exit { webhok { } } } }",
            "1:24",
            "unknown keyword `webhok` in an exit gate",
            "`webhook`",
        ),
        (
            "stage { gates { enter { inptu 'ok?' } } }",
            "1:25",
            "unknown keyword `inptu` in an enter gate",
            "`input`",
        ),
    ];
    for (text, at, message, suggestion) in cases {
        let d = single(text, at, message);
        assert_eq!(hint(&d), format!("did you mean {suggestion}?"), "{text}");
    }
}

#[test]
fn duplicate_single_valued_keys() {
    let d = single(
        "stage {\n  name = 'a'\n  name = 'b'\n}",
        "3:3",
        "`name =` is set twice in this stage",
    );
    assert_eq!(
        hint(&d),
        "it is first set at line 2, column 3; keep one of them"
    );
    single(
        "stage { owner = 'a' owner = 'b' }",
        "1:21",
        "`owner =` is set twice in this stage",
    );
    single(
        "stage('A') { name = 'B' }",
        "1:14",
        "`name =` is set twice in this stage",
    );
    single(
        "stage { environment -> a environment -> b }",
        "1:26",
        "`environment ->` is set twice in this stage",
    );
    single(
        "steps { archive name: 'a', name: 'b' }",
        "1:28",
        "`name:` is set twice in this `archive` step",
    );
    single(
        "pipeline { name = 'a' name = 'b' }",
        "1:23",
        "`name =` is set twice in a pipeline",
    );
    single(
        "vars { x { default 1 default 2 } }",
        "1:22",
        "`default` is set twice in the var `x`",
    );
}

#[test]
fn external_use_without_sha256() {
    let d = single(
        "use { stdlib 'https://example.com/lib.git' }",
        "1:14",
        "external library must be pinned: add sha256 '<digest>'",
    );
    assert_eq!(label(&d), "not pinned");
}

#[test]
fn bad_sha256_digest() {
    let d = single(
        "use { 'https://example.com/lib.git' sha256 'abc123' }",
        "1:44",
        "malformed sha256 digest",
    );
    assert_eq!(label(&d), "expected 64 lowercase hexadecimal digits");
    assert_eq!(hint(&d), "it has 6 characters");
    let upper = "ABCDEF0123456789".repeat(4);
    let d = single(
        &format!("use {{ 'x' sha256 '{upper}' }}"),
        "1:18",
        "malformed sha256 digest",
    );
    assert_eq!(hint(&d), "write the digest in lowercase");
    let d = single(
        &format!("use {{ 'x' sha256 'sha256:{}' }}", "a".repeat(64)),
        "1:18",
        "malformed sha256 digest",
    );
    assert!(hint(&d).contains("without `sha256:`"));
    single(
        &format!("use {{ 'x' sha256 '{}' }}", "g".repeat(64)),
        "1:18",
        "malformed sha256 digest",
    );
}

#[test]
fn a_commit_pin_is_a_full_commit_id_never_a_name_that_moves() {
    let digest = "a".repeat(64);
    for (commit, why) in [
        ("v1.0", "'v1.0' is no full commit id"),
        ("main", "'main' is no full commit id"),
        ("0123abc", "'0123abc' is no full commit id"),
        (&"0123ABCD".repeat(5), "write the commit id in lowercase"),
        (&"g".repeat(40), "is no full commit id"),
    ] {
        let d = single(
            &format!("use {{ 'https://e.com/l.git' commit '{commit}' sha256 '{digest}' }}"),
            "1:36",
            "malformed commit pin",
        );
        assert!(hint(&d).contains(why), "{commit}: {}", hint(&d));
    }
    let commit = "0123abcd".repeat(5);
    let d = single(
        &format!("use {{ 'https://e.com/l.git' commit '{commit}' }}"),
        "1:7",
        "external library must be pinned: add sha256 '<digest>'",
    );
    assert_eq!(label(&d), "pinned to a commit, not to its content");
    single(
        &format!(
            "use {{ 'https://e.com/l.git' commit '{commit}' sha256 '{digest}' commit '{commit}' }}"
        ),
        "1:153",
        "this pin is written twice",
    );
}

#[test]
fn in_repository_paths_are_not_pinned() {
    single(
        &format!("use {{ './lib' sha256 '{}' }}", "a".repeat(64)),
        "1:15",
        "an in-repository path is not pinned",
    );
}

#[test]
fn conditions_are_not_allowed_in_exit_gates() {
    let d = single(
        "stage { gates { exit { branch == 'main' input 'ok?' } } }",
        "1:24",
        "conditions are not allowed in an exit gate",
    );
    assert!(hint(&d).contains("enter"));
}

#[test]
fn webhook_and_poll_belong_in_exit_gates() {
    single(
        "stage { gates { enter { webhook { timeout = '1m' } } } }",
        "1:25",
        "a `webhook` gate belongs in `exit`",
    );
    single(
        "stage { gates { enter { poll { every = '1m' } } } }",
        "1:25",
        "a `poll` gate belongs in `exit`",
    );
}

#[test]
fn input_options_are_keyword_arguments() {
    let d = single(
        "stage { gates { enter { input 'ok?', ['alice'] } } }",
        "1:38",
        "expected an option name after `,`, found `[`",
    );
    assert!(hint(&d).contains("approvers:"));
}

#[test]
fn unclosed_block_at_end_of_file() {
    let d = single(
        "pipeline {\n  stage {\n    steps { sh 'x' }\n",
        "4:1",
        "unexpected end of file",
    );
    assert_eq!(label(&d), "expected `}`");
    assert_eq!(hint(&d), "the `{` at line 2, column 9 is never closed");
}

#[test]
fn stray_closing_brace() {
    single("stage { }\n}\n", "2:1", "unexpected `}`");
}

#[test]
fn stages_inside_and_outside_a_pipeline_block() {
    single(
        "pipeline { stage { } }\nstage { }",
        "2:1",
        "stages are written both inside and outside a `pipeline` block",
    );
    single(
        "steps { sh 'x' }\npipeline { stage { } }",
        "2:1",
        "stages are written both inside and outside a `pipeline` block",
    );
    single(
        "pipeline { }\npipeline { }",
        "2:1",
        "a second `pipeline` block",
    );
}

#[test]
fn smaller_structural_errors() {
    let cases = [
        ("each() { }", "1:1", "`each` needs at least one value"),
        ("each { }", "1:6", "expected `(` after `each`, found `{`"),
        (
            "stage { runtime { docker { } } }",
            "1:19",
            "`docker` needs `image = ...`",
        ),
        (
            "stage { cache { c { key = ['x'] } } }",
            "1:17",
            "cache `c` needs `paths = [...]`",
        ),
        (
            "stage { cache { c ['x'] } }",
            "1:19",
            "expected `=` or `{` after the cache name `c`, found `[`",
        ),
        (
            "vars { x { type text } }",
            "1:17",
            "unknown var type `text`",
        ),
        (
            "parallel { steps { sh 'x' } }",
            "1:12",
            "`steps` must be inside a stage here",
        ),
        (
            "steps { sh ['a' 'b'] }",
            "1:17",
            "expected `,` or `]` in the list, found string \"b\"",
        ),
        (
            "steps { sh concat('a' 'b') }",
            "1:23",
            "expected `,` or `)` in the arguments of `concat`, found string \"b\"",
        ),
        (
            "stage { when { vars } }",
            "1:21",
            "expected `.` after `vars`, found `}`",
        ),
        (
            "stage { when { branch = 'main' } }",
            "1:23",
            "expected `==` in the condition, found `=`",
        ),
        (
            "stage { environment production }",
            "1:21",
            "expected `->` after `environment`, found `production`",
        ),
        (
            "from rails",
            "1:6",
            "expected a string after `from`, found `rails`",
        ),
        (
            "steps { 'sh' }",
            "1:9",
            "expected a step, found string \"sh\"",
        ),
        (
            "configure { a }",
            "1:15",
            "expected `=` or `{` after `a`, found `}`",
        ),
        (
            "stage { name: 'x' }",
            "1:13",
            "expected `=` after `name`, found `:`",
        ),
        (
            "stage { when { (branch == 'a' } }",
            "1:31",
            "expected `)` to close the condition, found `}`",
        ),
        (
            "'x'",
            "1:1",
            "expected a top-level item (`use`, `configure`, `environments`, `triggers`, `concurrency`, `vars`, `blueprint`, `step`, `pipeline`, `stage`, `parallel`, `each`, `from`, `stages` or `steps`), found string \"x\"",
        ),
    ];
    for (text, at, message) in cases {
        single(text, at, message);
    }
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error_not_a_crash() {
    let deep = |open: &str, close: &str, n: usize| {
        format!("steps {{ sh {}{} }}", open.repeat(n), close.repeat(n))
    };
    let (diagnostics, _) = diagnose(&deep("[", "]", 100));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    for text in [
        deep("[", "]", 100_000),
        deep("f(", ")", 100_000),
        format!(
            "stage {{ when {{ {}true{} }} }}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
        format!("stage {{ when {{ {}true }} }}", "!".repeat(100_000)),
        format!("stage {{ when {{ true{} }} }}", " && true".repeat(100_000)),
        format!("{}{}", "stage { ".repeat(100_000), "}".repeat(100_000)),
        format!(
            "steps {{ {}{} }}",
            "dir { ".repeat(100_000),
            "}".repeat(100_000)
        ),
        format!(
            "configure {{ {}{} }}",
            "a { ".repeat(100_000),
            "}".repeat(100_000)
        ),
    ] {
        let (diagnostics, sources) = diagnose(&text);
        let messages: Vec<_> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["nesting is too deep"], "{}", &text[..40]);
        assert!(one_line(&diagnostics[0], &sources).starts_with("Ottofile:1:"));
    }
}

// ---- recovery ----

#[test]
fn recovery_reports_independent_errors_in_one_run() {
    let text = "\
use { 'https://example.com/x.git' }
stage {
  name = 'Build'
  stpes { sh 'make' }
  owner = 'ops'
}
stage name 'Test' {
  steps { sh 'rake' }
}
stage {
  name = 'Deploy'
  gates { exit { branch == 'main' } }
  steps { sh 'deploy', retries: 1.5 }
  timeout = 30m
}
";
    assert_eq!(
        errors(text),
        [
            "Ottofile:1:7: external library must be pinned: add sha256 '<digest>'",
            "Ottofile:4:3: unknown keyword `stpes` in a stage body",
            "Ottofile:7:7: expected `{` after `stage`, found `name`",
            "Ottofile:12:18: conditions are not allowed in an exit gate",
            "Ottofile:13:33: only whole numbers are supported",
            "Ottofile:14:13: invalid number `30m`",
        ]
    );
    // The good parts around the errors are kept.
    let (file, _) = parse(otto_pipeline::span::FileId(0), text);
    let items = &file.pipeline.expect("a pipeline").items;
    assert_eq!(items.len(), 2);
}

#[test]
fn recovery_inside_nested_blocks_resumes_in_the_enclosing_block() {
    let text = "stage {\n  steps { sh 'a', }\n  owner = 'ops'\n  notify { failure { 42 } }\n  steps { echo 'still here' }\n}";
    assert_eq!(
        errors(text),
        [
            "Ottofile:2:19: expected a value (a string, number, boolean, list, function call, `it` or `vars.NAME`), found `}`",
            "Ottofile:4:22: expected a step, found number 42",
        ]
    );
    let (file, _) = parse(otto_pipeline::span::FileId(0), text);
    let otto_pipeline::ast::StageItem::Stage(stage) = &file.pipeline.unwrap().items[0] else {
        panic!("a stage")
    };
    assert!(stage.owner.is_some());
    assert_eq!(stage.steps.len(), 1);
    assert_eq!(stage.steps[0].symbol.name, "echo");
}

#[test]
fn diagnostics_are_capped() {
    let text = "steps { sh 'x' }\n".to_owned() + &"stage { nope }\n".repeat(500);
    let (diagnostics, _) = diagnose(&text);
    assert_eq!(diagnostics.len(), otto_pipeline::parser::MAX_DIAGNOSTICS);
    let last = diagnostics.last().unwrap();
    assert_eq!(last.message, "too many problems; stopped reading here");
    let junk = "\u{1}".repeat(10_000);
    assert_eq!(
        diagnose(&junk).0.len(),
        otto_pipeline::parser::MAX_DIAGNOSTICS
    );
}

#[test]
fn rendered_parse_error_reads_like_rustc() {
    let (diagnostics, sources) = diagnose("stage {\n\tstpes { sh 'make' }\n}\n");
    assert_eq!(
        render_all(&diagnostics, &sources),
        "error: unknown keyword `stpes` in a stage body\n  --> Ottofile:2:2\n  |\n2 |     stpes { sh 'make' }\n  |     ^^^^^ unknown keyword\n  = hint: did you mean `steps`?\n"
    );
}

//! Properties of the parser over generated input: it never panics, and comments and
//! whitespace between tokens change nothing but spans.

use otto_pipeline::lexer::{TokenKind, tokenize};
use otto_pipeline::parse;
use otto_pipeline::span::FileId;
use proptest::prelude::*;

/// A file that uses most of the language.
const EXAMPLE: &str = r#"use { stdlib  './otto/blueprints' }
configure { slack { channel = '#deploys' } }
environments {
  staging    { settings { HOSTNAME = 'staging.example.com' } }
  production { settings { HOSTNAME = "example.com"  RAILS_ENV = 'production' }
               secrets { DEPLOY_TOKEN } }
}
vars { region { type string default 'eu' description 'where' }  replicas = 2 }
blueprint { name = 'bp'  vars { v = 'x' }  stage('From bp') { steps { echo vars.v } } }
pipeline {
  name = 'webapp'
  stages {
    stage {
      name = 'Build'
      cache { gems = ['vendor/']  node { paths = ['node_modules/'] key = ['package-lock.json'] } }
      steps {
        sh 'bundle install --path=vendor'
        archive path: 'dist/', name: 'site'
        dir 'sub' { sh """
          make
          make install
          """ }
      }
    }
    parallel {
      stage { name = 'Unit'  runtime { from 'Build' docker { image = 'ruby' } }  steps { sh 'rake spec' } }
      stage('Lint') { cache { use gems } runtime { computer { label = 'linux' } } steps { sh 'rubocop' } }
    }
    each('linux', 'macos', -1) {
      stage { name = concat('Package ', it)  when { !(vars.skip) && branch in ['main', 'next'] || tag != '' } steps { sh 'make package' } }
    }
    from './verify' { level = 3  strict = true }
    stage {
      name = 'Deploy production'
      owner = 'ops'
      timeout = '1h'
      environment -> production
      gates {
        enter { branch == 'main'
                input 'Ship it?', approvers: ['alice'], timeout: '1h' }
        exit  { webhook { description = 'health check calls back'  timeout = '30m' }
                poll { command = './healthy.sh'  every = '10s' } }
      }
      steps { unarchive name: 'site'  sh './deploy.sh' }
      notify { failure { echo 'deploy failed' } success { echo "ok\n" } complete { echo '\u{1F680}' } }
      stage('Sub') { }
    }
  }
}
"#;

/// Separators that may stand between any two tokens.
const SEPARATORS: &[&str] = &[
    " ",
    "\n",
    "\t",
    "  \r\n    ",
    " // a comment { ' \"\n",
    "/* block */",
    "/* nested /* inner */ } ' */",
    "\n\n// two\n// lines\n",
];

/// The example's tokens as written.
fn token_texts() -> Vec<&'static str> {
    let (tokens, diagnostics) = tokenize(FileId(0), EXAMPLE);
    assert!(diagnostics.is_empty());
    tokens
        .iter()
        .map(|t| &EXAMPLE[t.span.start as usize..t.span.end as usize])
        .collect()
}

/// A token that can touch its neighbours without changing how they lex.
fn is_bracket(text: &str) -> bool {
    matches!(text, "{" | "}" | "(" | ")" | "[" | "]" | ",")
}

/// The Debug text of a value with every span blanked out.
fn without_spans(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        rest = &rest[at..];
        let end = rest.find('}').map_or(rest.len(), |e| e + 1);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn kinds(text: &str) -> Vec<TokenKind<'_>> {
    tokenize(FileId(0), text)
        .0
        .into_iter()
        .map(|t| t.kind)
        .collect()
}

#[test]
fn the_example_parses_cleanly() {
    let (_, diagnostics) = parse(FileId(0), EXAMPLE);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
}

#[test]
fn span_blanking_works() {
    assert_eq!(
        without_spans("A { span: Span { file: FileId(0), start: 1, end: 2 }, b: 3 }"),
        "A { span: Span, b: 3 }"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = parse(FileId(0), &text);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_characters(text in proptest::collection::vec(any::<char>(), 0..300)) {
        let text: String = text.into_iter().collect();
        let _ = parse(FileId(0), &text);
    }

    #[test]
    fn parse_never_panics_on_token_soup(
        picks in proptest::collection::vec(0usize..72, 0..200),
        separators in proptest::collection::vec(0usize..SEPARATORS.len(), 200),
    ) {
        const WORDS: &[&str] = &[
            "{", "}", "(", ")", "[", "]", ",", ":", "=", "->", "==", "!=", "&&", "||", "!", ".",
            "'s'", "\"d\"", "'''\n  t\n'''", "42", "-7", "1.5", "true", "it", "vars", "in",
            "use", "configure", "environments", "vars", "blueprint", "pipeline", "stages",
            "stage", "parallel", "each", "from", "steps", "name", "owner", "timeout",
            "environment", "when", "runtime", "docker", "computer", "cache", "gates", "enter",
            "exit", "input", "webhook", "poll", "notify", "success", "failure", "settings",
            "secrets", "sha256", "stdlib", "type", "default", "sh", "concurrency", "group",
            "cancel_in_progress",
        ];
        let mut text = String::new();
        for (i, pick) in picks.iter().enumerate() {
            text.push_str(WORDS[pick % WORDS.len()]);
            text.push_str(SEPARATORS[separators[i] % SEPARATORS.len()]);
        }
        let _ = parse(FileId(0), &text);
    }

    #[test]
    fn parse_never_panics_on_mutations_of_the_example(
        edits in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<char>()), 1..12),
    ) {
        let mut text: Vec<char> = EXAMPLE.chars().collect();
        for (op, at, c) in edits {
            let len = text.len();
            match op {
                0 => text.insert(at.index(len + 1), c),
                1 if len > 0 => { text.remove(at.index(len)); }
                _ if len > 0 => text[at.index(len)] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        let (_, diagnostics) = parse(FileId(0), &text);
        prop_assert!(diagnostics.len() <= otto_pipeline::parser::MAX_DIAGNOSTICS);
        for d in &diagnostics {
            if let Some(span) = d.span {
                prop_assert!(span.start <= span.end && span.end as usize <= text.len());
            }
        }
    }

    #[test]
    fn comments_and_whitespace_between_tokens_change_nothing_but_spans(
        choices in proptest::collection::vec(0usize..SEPARATORS.len() + 2, 400),
    ) {
        let tokens = token_texts();
        let mut text = String::new();
        for (i, token) in tokens.iter().enumerate() {
            text.push_str(token);
            let Some(next) = tokens.get(i + 1) else { break };
            let choice = choices[i % choices.len()];
            if choice >= SEPARATORS.len() {
                // No separator at all where a bracket or comma makes one unnecessary,
                // else a plain space.
                if !(is_bracket(token) || is_bracket(next)) {
                    text.push(' ');
                }
            } else {
                text.push_str(SEPARATORS[choice]);
            }
        }
        prop_assert_eq!(kinds(&text), kinds(EXAMPLE));
        let (original, _) = parse(FileId(0), EXAMPLE);
        let (varied, diagnostics) = parse(FileId(0), &text);
        prop_assert!(diagnostics.is_empty(), "{:?}", diagnostics);
        prop_assert_eq!(without_spans(&format!("{varied:?}")), without_spans(&format!("{original:?}")));
    }
}

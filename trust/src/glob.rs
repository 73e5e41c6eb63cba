//! The glob patterns of policies: `*` matches any run of characters (also none), `?`
//! matches exactly one character, and every other character matches itself. There are no
//! character classes, no escapes and no special meaning for `/`.
//!
//! Otto matches pipeline, stage and environment names, not paths, so this small language
//! is all a policy needs; it is written here (instead of using `globset`) to keep the trust
//! crate free of a regex engine and to make matching obviously linear in memory and
//! quadratic at worst in time, whatever a peer sends.

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern position after it, and the text
    // position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again.
                Some((after, swallowed)) => {
                    p = after;
                    t = swallowed + 1;
                    star = Some((after, swallowed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether `text` matches any of `patterns`.
pub fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| matches(p, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_stars_and_question_marks() {
        let cases = [
            ("deploy", "deploy", true),
            ("deploy", "Deploy", false),
            ("deploy", "deploy-eu", false),
            ("*", "", true),
            ("*", "anything at all", true),
            ("", "", true),
            ("", "x", false),
            ("deploy-*", "deploy-eu", true),
            ("deploy-*", "deploy-", true),
            ("deploy-*", "deploy", false),
            ("*-prod", "eu-prod", true),
            ("*-prod", "eu-prod-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("a*b*c", "abcbc", true),
            ("?", "x", true),
            ("?", "", false),
            ("??", "x", false),
            ("st?ge", "stage", true),
            ("st?ge", "stäge", true),
            ("**", "x", true),
            ("*a", "aaaa", true),
            ("a/*", "a/b/c", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn pathological_patterns_finish() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(200));
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn any_of_a_list() {
        let list = vec!["build".to_owned(), "deploy-*".to_owned()];
        assert!(matches_any(&list, "deploy-eu"));
        assert!(!matches_any(&list, "test"));
        assert!(!matches_any(&[], "test"));
    }
}

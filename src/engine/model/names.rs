//! Naming rules for metrics and path components, and the patterns that
//! select path components. Path components become directory names in
//! cc-backend's checkpoint layout and tags in its line protocol, so they must
//! never be able to escape a directory or break a line.

use crate::engine::error::EngineError;

/// Longest metric name or path component, in bytes (fits cc-backend's u8 and
/// u16 length fields).
pub const MAX_NAME_LEN: usize = 255;
/// Deepest path below the root (cc-backend uses at most four levels).
pub const MAX_PATH_DEPTH: usize = 16;

/// What is wrong with a name's length, if anything (both kinds of name).
/// What metric names and path components must both avoid: a bad length,
/// and `.` or `..`.
fn shared_problem(name: &str) -> Option<String> {
    length_problem(name).or_else(|| {
        (name == "." || name == "..").then(|| "'.' and '..' are not allowed".to_owned())
    })
}

fn length_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "it is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    None
}

/// The parameter that names a new metric (`define_metric(name, ...)`), as
/// errors about a metric name start with it.
const METRIC_ARGUMENT: &str = "name";

/// Metric names: 1 to 255 bytes of ASCII letters, digits, `_`, `.`, `-`, `:`,
/// and not `.` or `..` (a metric name is also a file name in cc-backend's
/// checkpoint layout).
pub fn validate_metric_name(name: &str) -> Result<(), EngineError> {
    let bad = |reason: String| EngineError::InvalidName {
        argument: METRIC_ARGUMENT.to_owned(),
        what: "metric name".to_owned(),
        value: name.to_owned(),
        reason,
    };
    if let Some(reason) = shared_problem(name) {
        return Err(bad(reason));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':')))
    {
        return Err(bad(format!(
            "character {c:?} is not allowed; use ASCII letters, digits, '_', '.', '-' or ':'"
        )));
    }
    Ok(())
}

/// Path components: non-empty, at most 255 bytes, not `.` or `..`, and free of
/// `/`, `\`, NUL and other control characters.
pub fn validate_path<S: AsRef<str>>(path: &[S], argument: &str) -> Result<(), EngineError> {
    if path.len() > MAX_PATH_DEPTH {
        return Err(EngineError::argument(
            argument,
            format!(
                "path has {} components; the limit is {MAX_PATH_DEPTH}",
                path.len()
            ),
        ));
    }
    for (index, component) in path.iter().enumerate() {
        validate_component(component.as_ref(), index, argument)?;
    }
    Ok(())
}

fn validate_component(name: &str, index: usize, argument: &str) -> Result<(), EngineError> {
    let bad = |reason: String| EngineError::InvalidName {
        argument: argument.to_owned(),
        what: format!("path component {index}"),
        value: name.to_owned(),
        reason,
    };
    if let Some(reason) = shared_problem(name) {
        return Err(bad(reason));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(bad(format!("character {c:?} is not allowed")));
    }
    Ok(())
}

/// Whether a path component is a pattern: it holds one of fnmatch's
/// special characters `*`, `?` or `[`. Stored names may hold them too (no
/// rule ever forbade them, and logs that created such series must replay);
/// a pattern matches them literally with `[*]`, `[?]` and `[[]`.
pub fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// Whether `path` matches `pattern` level by level: as many names as
/// pattern components, each matching its component (see [`matches`]).
pub fn path_matches<S: AsRef<str>, T: AsRef<str>>(pattern: &[S], path: &[T]) -> bool {
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(path)
            .all(|(p, name)| matches(p.as_ref(), name.as_ref()))
}

/// One element of a name pattern.
enum Token {
    Char(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters, the empty one too.
    Star,
    /// `[...]`: one character in (or, negated with `[!...]`, not in) the
    /// inclusive ranges; a single character is a range of one.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(want) => *want == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// `pattern` as tokens, by Python's `fnmatch` rules: a `]` right after `[`
/// or `[!` belongs to the set, `a-z` is a range (one whose ends are reversed
/// is empty), `-` first or last is itself, and a `[` with no closing `]` is
/// an ordinary character.
fn tokens(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' if matches!(out.last(), Some(Token::Star)) => {}
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => {
                let mut j = i;
                if p.get(j) == Some(&'!') {
                    j += 1;
                }
                if p.get(j) == Some(&']') {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push(Token::Char('['));
                    continue;
                }
                let negated = p[i] == '!';
                let set = &p[i + usize::from(negated)..j];
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < set.len() {
                    if k + 2 < set.len() && set[k + 1] == '-' {
                        ranges.push((set[k], set[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((set[k], set[k]));
                        k += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = j + 1;
            }
            c => out.push(Token::Char(c)),
        }
    }
    out
}

/// Whether `name` matches the fnmatch-style `pattern`, case-sensitively:
/// `*` matches any run of characters, `?` one character, `[seq]` one
/// character in seq (`[a-z]` a range), `[!seq]` one not in seq.
pub fn matches(pattern: &str, name: &str) -> bool {
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    // The last star seen and where in the name its run would end next:
    // every token but a star takes exactly one character, so on a mismatch
    // it is enough to let the last star take one more.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(token) if token.accepts(name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        let Some((star_t, star_n)) = star else {
            return false;
        };
        star = Some((star_t, star_n + 1));
        t = star_t + 1;
        n = star_n + 1;
    }
    tokens[t..].iter().all(|token| matches!(token, Token::Star))
}

/// The "/"-joined form of a path, for messages.
pub fn display_path<S: AsRef<str>>(path: &[S]) -> String {
    let parts: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_rules() {
        for good in ["cpu_load", "mem.bw", "nv-sm:clock", "a"] {
            assert!(validate_metric_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "cpu load",
            "a/b",
            "a,b",
            "x=1",
            "é",
            &"m".repeat(256),
        ] {
            let err = validate_metric_name(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("name: invalid metric name"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn path_components_that_could_escape_a_directory_are_rejected() {
        assert!(validate_path(&["emmy", "e0102", "cpu3"], "path").is_ok());
        assert!(validate_path(&["accelerator00000000:3b:00.0"], "path").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb"] {
            let err = validate_path(&["emmy", bad], "path").unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("path: invalid path component 1"),
                "{err}"
            );
        }
        let deep: Vec<String> = (0..17).map(|i| format!("l{i}")).collect();
        assert!(validate_path(&deep, "path").is_err());
    }

    /// Cases checked against Python's `fnmatch.fnmatchcase`.
    #[test]
    fn patterns_match_names_as_fnmatch_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("e01*", "e0102", true),
            ("e01*", "e0201", false),
            ("*", "", true),
            ("*", "anything", true),
            ("cpu?", "cpu3", true),
            ("cpu?", "cpu12", false),
            ("cpu*", "cpu", true),
            ("*0*2", "e0102", true),
            ("*a*b*c", "xaxbxbxc", true),
            ("*a*b*c", "xaxbxbxd", false),
            ("e0[0-1]*", "e0102", true),
            ("e0[!0-1]*", "e0102", false),
            ("e0[!0-1]*", "e0302", true),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[z-a]", "m", false),
            ("a[*]b", "a*b", true),
            ("a[*]b", "axb", false),
            ("a[b", "a[b", true),
            ("[", "[", true),
            ("E*", "e0102", false),
            ("accelerator*:3b:00.0", "accelerator00000000:3b:00.0", true),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern:?} vs {name:?}");
        }
        assert!(is_pattern("e01*") && is_pattern("cpu?") && is_pattern("a[b"));
        assert!(!is_pattern("e0102") && !is_pattern("accelerator00000000:3b:00.0"));
        assert!(path_matches(
            &["emmy", "e01*", "cpu*"],
            &["emmy", "e0102", "cpu3"]
        ));
        assert!(!path_matches(&["emmy", "*"], &["emmy", "e0102", "cpu3"]));
        assert!(!path_matches(&["emmy", "*", "*"], &["emmy", "e0102"]));
    }
}

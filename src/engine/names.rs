//! Naming rules for metrics and path components. Path components become
//! directory names in cc-backend's checkpoint layout and tags in its line
//! protocol, so they must never be able to escape a directory or break a line.

use super::error::EngineError;

/// Longest metric name or path component, in bytes (fits cc-backend's u8 and
/// u16 length fields).
pub const MAX_NAME_LEN: usize = 255;
/// Deepest path below the root (cc-backend uses at most four levels).
pub const MAX_PATH_DEPTH: usize = 16;

/// What is wrong with a name's length, if anything (both kinds of name).
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
    if let Some(reason) = length_problem(name) {
        return Err(bad(reason));
    }
    if name == "." || name == ".." {
        return Err(bad("'.' and '..' are not allowed".to_owned()));
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
    if let Some(reason) = length_problem(name) {
        return Err(bad(reason));
    }
    if name == "." || name == ".." {
        return Err(bad("'.' and '..' are not allowed".to_owned()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(bad(format!("character {c:?} is not allowed")));
    }
    Ok(())
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
}

//! SWR's naming rules, checked at ingress by the SWR kinds. From the SDK's field docs
//! (`huaweicloudsdkswr` v2: `CreateNamespaceRequestBody.namespace`,
//! `CreateRepoRequestBody.repository`):
//!
//! - an organization (namespace): starts with a lower-case letter; then lower-case letters,
//!   digits, `.`, `_` or `-`; ends with a lower-case letter or digit; 1 to 64 characters; at
//!   most two `_` in a row, and `.`, `_`, `-` never next to each other;
//! - a repository: the same, but it may start with a digit, may also hold `/` (a path part,
//!   itself a separator), and is 1 to 128 characters;
//! - a tag (Docker's rule): a letter, digit or `_`, then letters, digits, `_`, `.` or `-`, at
//!   most 128 characters.

/// Checks an organization name; the error says what is wrong, without naming the parameter.
pub fn check_namespace(name: &str) -> Result<(), String> {
    check_name(name, 64, false, b"._-")
}

/// Checks a repository name (path parts separated by `/` allowed).
pub fn check_repository(name: &str) -> Result<(), String> {
    check_name(name, 128, true, b"._-/")
}

/// Checks an image tag.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let Some(first) = tag.bytes().next() else {
        return Err("must not be empty".into());
    };
    if tag.len() > 128 {
        return Err(format!("{tag:?} is longer than 128 characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(format!("{tag:?} must start with a letter, a digit or `_`"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{tag:?} holds {c:?}; a tag takes letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// Checks a glob over tags: tag characters plus `*`, `?`, `[`, `]`, `!`, `{`, `}`, `,`, and a
/// pattern that compiles.
pub fn check_tag_glob(glob: &str) -> Result<globset::GlobMatcher, String> {
    if glob.is_empty() {
        return Err("must not be empty".into());
    }
    if glob.len() > 256 {
        return Err(format!("{glob:?} is longer than 256 characters"));
    }
    if let Some(c) = glob.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '.' | '-' | '*' | '?' | '[' | ']' | '!' | '{' | '}' | ','
            ))
    }) {
        return Err(format!(
            "{glob:?} holds {c:?}, which is neither a tag character nor a glob one"
        ));
    }
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{glob:?} is not a valid glob: {e}"))
}

fn check_name(name: &str, max: usize, digit_first: bool, seps: &[u8]) -> Result<(), String> {
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err("must not be empty".into());
    };
    if bytes.len() > max {
        return Err(format!("{name:?} is longer than {max} characters"));
    }
    let lower_or_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(first.is_ascii_lowercase() || (digit_first && first.is_ascii_digit())) {
        return Err(format!(
            "{name:?} must start with a lower-case letter{}",
            if digit_first { " or a digit" } else { "" }
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii() && (lower_or_digit(*c as u8) || seps.contains(&(*c as u8)))))
    {
        let allowed: Vec<String> = seps.iter().map(|b| format!("`{}`", *b as char)).collect();
        return Err(format!(
            "{name:?} holds {c:?}; allowed are lower-case letters, digits and {}",
            allowed.join(", ")
        ));
    }
    if !bytes.last().is_some_and(|b| lower_or_digit(*b)) {
        return Err(format!(
            "{name:?} must end with a lower-case letter or a digit"
        ));
    }
    // Each run of separators is one separator, or exactly two underscores.
    for run in name
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|r| !r.is_empty())
    {
        if run.len() > 1 && run != "__" {
            return Err(format!(
                "{name:?} holds {run:?}: separators may not be next to each other (only `__` is)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_the_sdk_rule() {
        for ok in ["a", "team-a", "team.a_b", "team__b", "t1"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "1team", "Team", "team-", "team--a", "team___a", "team._a", "team/a", "té",
        ] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
        assert!(check_namespace(&"a".repeat(64)).is_ok());
        assert!(check_namespace(&"a".repeat(65)).is_err());
    }

    #[test]
    fn repositories_take_path_parts_and_a_leading_digit() {
        for ok in ["web", "tools/builder", "1app", "a.b/c_d/e-f", "a__b"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/web", "web/", "a//b", "a/-b", "Web", "a b", "_a"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_repository(&"a".repeat(129)).is_err());
    }

    #[test]
    fn tags_and_globs() {
        for ok in ["v1.0.0", "latest", "_x", "1.2-rc.1", "V2"] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".v1", "-x", "v1:2", "v 1", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        let m = check_tag_glob("v1.*").unwrap();
        assert!(m.is_match("v1.0") && m.is_match("v1.2.3") && !m.is_match("v10"));
        assert!(check_tag_glob("v1.[0-2]").unwrap().is_match("v1.1"));
        assert!(check_tag_glob("v1/x").is_err());
        assert!(check_tag_glob("v1.[").is_err());
        assert!(check_tag_glob("").is_err());
    }
}

//! The API server's rules for label keys, label values and object names, so that objects
//! it would reject are rejected here too, naming the field (`observer check` must not judge
//! a policy the cluster would never have).

/// Why a label key is not a qualified name (`[prefix/]name`), if it is not.
pub(crate) fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && let Some(problem) = dns_subdomain_problem(prefix)
    {
        return Some(format!("prefix {prefix:?}: {problem}"));
    }
    name_part_problem(name)
}

/// Why a label value is not valid (empty, or a name part), if it is not.
pub(crate) fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    name_part_problem(value)
}

/// Why an object name is not a DNS-1123 subdomain, if it is not.
pub(crate) fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some("must be at most 253 characters".into());
    }
    for label in name.split('.') {
        let alphanumeric_ends = label
            .chars()
            .next()
            .zip(label.chars().last())
            .is_some_and(|(a, b)| is_lower_alnum(a) && is_lower_alnum(b));
        if !alphanumeric_ends || !label.chars().all(|c| is_lower_alnum(c) || c == '-') {
            return Some(
                "must be lower-case letters, digits, '-' and '.', starting and ending with a \
                 letter or digit"
                    .into(),
            );
        }
    }
    None
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The name part of a qualified name, and a label value: 1-63 characters, alphanumeric at
/// both ends, `-`, `_` and `.` inside.
fn name_part_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("name must not be empty".into());
    }
    if name.len() > 63 {
        return Some("must be at most 63 characters".into());
    }
    let ends = name
        .chars()
        .next()
        .zip(name.chars().last())
        .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
    if !ends
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(
            "must be letters, digits, '-', '_' and '.', starting and ending with a letter or \
             digit"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_names_follow_the_api_server() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "k8s-app",
            "a_b.c",
            "example.com/x",
        ] {
            assert_eq!(label_key_problem(good), None, "{good}");
        }
        for bad in [
            "bad key!",
            "-app",
            "app-",
            "Example.com/x",
            "a/b/c",
            "",
            &"x".repeat(64),
        ] {
            assert!(label_key_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("v1.2_beta-3"), None);
        assert!(label_value_problem("-bad-").is_some());
        assert_eq!(dns_subdomain_problem("allow-web.v2"), None);
        assert!(dns_subdomain_problem("Allow_Web").is_some());
    }
}

//! Label selectors in the Kubernetes string syntax (`kubectl -l`): requirements separated
//! by commas, each `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
//! `key notin (a,b)`, `key` or `!key`. All must hold. Pure.

use std::collections::BTreeMap;

/// One requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Requirement {
    /// `key=value`, `key==value`, `key in (...)`: the label is one of the values.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (...)`: the label is absent or none of the values.
    NotIn(String, Vec<String>),
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    Absent(String),
}

/// A selector: requirements that must all hold.
pub(super) type LabelSelector = Vec<Requirement>;

/// True when `labels` satisfy every requirement.
pub(super) fn matches(selector: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|r| match r {
        Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
        Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
        Requirement::Exists(key) => labels.contains_key(key),
        Requirement::Absent(key) => !labels.contains_key(key),
    })
}

/// Parses a selector; the error says what is wrong.
pub(super) fn parse(text: &str) -> Result<LabelSelector, &'static str> {
    let mut requirements = Vec::new();
    for term in split_terms(text)? {
        requirements.push(requirement(term.trim())?);
    }
    if requirements.is_empty() {
        return Err("is empty");
    }
    Ok(requirements)
}

/// The comma-separated terms, commas inside parentheses kept in their term.
fn split_terms(text: &str) -> Result<Vec<&str>, &'static str> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0u32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("has nested parentheses"),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("has a ')' without its '('"),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("has a '(' without its ')'");
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn requirement(term: &str) -> Result<Requirement, &'static str> {
    if term.is_empty() {
        return Err("has an empty requirement");
    }
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::Absent(key_of(key.trim())?));
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = term.split_once(op) {
            let value = value.trim();
            if !value.chars().all(label_char) {
                return Err("has a value that is not a label value");
            }
            let (key, values) = (key_of(key.trim())?, vec![value.to_string()]);
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if let Some(open) = term.find('(') {
        let mut words = term[..open].split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err("is not \"key in (a,b)\" or \"key notin (a,b)\"");
        };
        let inner = term[open + 1..]
            .strip_suffix(')')
            .ok_or("has text after its ')'")?;
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err("has an empty set of values");
        }
        if !values.iter().all(|v| v.chars().all(label_char)) {
            return Err("has a value that is not a label value");
        }
        let key = key_of(key)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            _ => Err("is not \"key in (a,b)\" or \"key notin (a,b)\""),
        };
    }
    Ok(Requirement::Exists(key_of(term)?))
}

fn key_of(key: &str) -> Result<String, &'static str> {
    if key.is_empty() || !key.chars().all(|c| label_char(c) || c == '/') {
        return Err("has a key that is not a label key");
    }
    Ok(key.to_string())
}

fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_of_the_kubernetes_syntax_matches_as_kubectl_does() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        for (selector, on_web, on_db) in [
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app in (web, api)", true, false),
            ("app notin (web,api)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=front", true, false),
            ("app in (web,db),!tier", false, true),
            ("tier!=back", true, true),
            ("app.kubernetes.io/name", false, false),
        ] {
            let parsed = parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(matches(&parsed, &web), on_web, "{selector} on web");
            assert_eq!(matches(&parsed, &db), on_db, "{selector} on db");
        }
    }

    #[test]
    fn bad_syntax_is_an_error_saying_what_is_wrong() {
        for (selector, problem) in [
            ("", "has an empty requirement"),
            ("app in (web", "has a '(' without its ')'"),
            ("app in ()", "has an empty set of values"),
            (
                "app between (a,b)",
                "is not \"key in (a,b)\" or \"key notin (a,b)\"",
            ),
            ("app=we b", "has a value that is not a label value"),
            ("a,,b", "has an empty requirement"),
            ("=web", "has a key that is not a label key"),
        ] {
            assert_eq!(parse(selector), Err(problem), "{selector}");
        }
    }
}

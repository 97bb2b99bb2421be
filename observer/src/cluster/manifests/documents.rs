//! Splitting file text into documents, each parsed on its own so that one broken document
//! does not hide the others.

use serde_json::Value;

use super::unique::Unique;
use super::{LoadError, LoadErrorKind, Location};

/// One parsed document and where it came from.
pub(super) struct Document {
    pub(super) value: Value,
    pub(super) location: Location,
}

/// Parses every document of a file. Empty documents are skipped and not counted.
pub(super) fn split(file: &str, text: &str) -> Vec<Result<Document, LoadError>> {
    if file.to_ascii_lowercase().ends_with(".json") {
        json_documents(file, text)
    } else {
        yaml_documents(file, text)
    }
}

fn json_documents(file: &str, text: &str) -> Vec<Result<Document, LoadError>> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Unique>();
    for (i, item) in stream.enumerate() {
        let location = Location {
            file: file.to_owned(),
            document: Some(i + 1),
            line: None,
        };
        match item {
            Ok(Unique(value)) => out.push(Ok(Document { value, location })),
            Err(e) => {
                // A JSON stream cannot resynchronise after a syntax error.
                out.push(Err(LoadError {
                    location,
                    kind: LoadErrorKind::Syntax(e.to_string()),
                }));
                break;
            }
        }
    }
    out
}

/// Flow collections (`[...]`, `{...}`) nested deeper than this are refused unparsed. The
/// parser's own limit is 128 levels of any kind; Kubernetes objects need a dozen.
const MAX_FLOW_DEPTH: usize = 100;

/// The first line (1-based, within `body`) where flow collections nest deeper than
/// [`MAX_FLOW_DEPTH`], and the depth there. Brackets in quoted scalars and comments do
/// not count; one pass over the text.
fn too_deep(body: &str) -> Option<(usize, usize)> {
    let mut depth: usize = 0;
    for (i, line) in body.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous.is_whitespace() => break,
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((i + 1, depth));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    None
}

/// A line that starts a new YAML document (`---`, optionally followed by content).
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
        || line.trim_end() == "..."
}

/// Whether a chunk holds nothing but separators, blank lines and comments.
fn is_blank(chunk: &[&str]) -> bool {
    chunk.iter().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn yaml_documents(file: &str, text: &str) -> Vec<Result<Document, LoadError>> {
    // Chunks keep their separator line so YAML line numbers stay meaningful.
    let lines: Vec<&str> = text.lines().collect();
    let mut starts: Vec<usize> = vec![0];
    starts.extend((1..lines.len()).filter(|&i| lines.get(i).is_some_and(|l| is_separator(l))));
    starts.push(lines.len());
    let mut out = Vec::new();
    let mut index = 0;
    for w in starts.windows(2) {
        let &[start, end] = w else { continue };
        let chunk = lines.get(start..end).unwrap_or_default();
        if is_blank(chunk) {
            continue;
        }
        index += 1;
        let location = Location {
            file: file.to_owned(),
            document: Some(index),
            line: Some(start + 1),
        };
        let mut body = String::new();
        for l in chunk {
            body.push_str(if l.trim_end() == "..." { "" } else { l });
            body.push('\n');
        }
        if let Some((line, depth)) = too_deep(&body) {
            // The parser's time grows with the square of flow nesting (100,000 levels
            // took minutes): refuse before parsing, in one pass.
            out.push(Err(LoadError {
                location,
                kind: LoadErrorKind::Syntax(format!(
                    "nested deeper than {MAX_FLOW_DEPTH} levels ({depth} at line {})",
                    start + line
                )),
            }));
            continue;
        }
        match serde_yaml_ng::from_str::<Unique>(&body).map(|u| u.0) {
            Ok(value) => out.push(Ok(Document { value, location })),
            Err(e) => {
                // The parser counts lines from the document's start: make them the file's.
                let message = e.to_string();
                let message = match (e.location(), message.rsplit_once(" at line ")) {
                    (Some(at), Some((what, _))) => format!(
                        "{what} at line {} column {}",
                        at.line() + start,
                        at.column()
                    ),
                    _ => message,
                };
                out.push(Err(LoadError {
                    location,
                    kind: LoadErrorKind::Syntax(message),
                }));
            }
        }
    }
    out
}

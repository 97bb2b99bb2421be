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
        match serde_yaml_ng::from_str::<Unique>(&body).map(|u| u.0) {
            Ok(value) => out.push(Ok(Document { value, location })),
            Err(_) => {
                // Re-parse with leading newlines so the message's line numbers are
                // absolute within the file (only on the rare error path).
                let padded = "\n".repeat(start) + &body;
                let message = match serde_yaml_ng::from_str::<Unique>(&padded) {
                    Err(e) => e.to_string(),
                    Ok(_) => "invalid YAML".to_owned(),
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

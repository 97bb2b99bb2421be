//! The thin I/O layer: read files and directories, then parse.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{LoadError, LoadErrorKind, Location, Manifests, parse_into};

/// Expands directories (non-recursively) to their `*.yaml`, `*.yml` and `*.json` files,
/// sorted by name; other paths are kept as given.
pub fn expand_paths(paths: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, io::Error)>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(Ok(p.clone()));
            continue;
        }
        match fs::read_dir(p) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file() && is_manifest(f))
                    .collect();
                files.sort();
                out.extend(files.into_iter().map(Ok));
            }
            Err(e) => out.push(Err((p.clone(), e))),
        }
    }
    out
}

/// Reads a regular file. Anything else (a FIFO would block the read for ever, a device
/// could be endless) is refused.
fn read_regular(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a manifest must be a file or a directory of files)",
        ));
    }
    fs::read_to_string(path)
}

fn is_manifest(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

/// Reads and parses every file; unreadable files become [`LoadErrorKind::Io`] errors.
pub fn load_paths(paths: &[PathBuf]) -> Manifests {
    let mut out = Manifests::default();
    for item in expand_paths(paths) {
        let read = item.and_then(|p| match read_regular(&p) {
            Ok(text) => Ok((p, text)),
            Err(e) => Err((p, e)),
        });
        match read {
            Ok((path, text)) => parse_into(&path.display().to_string(), &text, &mut out),
            Err((path, e)) => out.errors.push(LoadError {
                location: Location {
                    file: path.display().to_string(),
                    document: None,
                    line: None,
                },
                kind: LoadErrorKind::Io(e),
            }),
        }
    }
    out
}

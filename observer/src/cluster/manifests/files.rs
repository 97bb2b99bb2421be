//! The thin I/O layer: read files and directories, then parse.
//!
//! A directory is read one level deep, as `kubectl apply -f DIR` does without `-R`: its
//! `*.yaml`, `*.yml` and `*.json` regular files (links followed), sorted by name. Every
//! other entry (a subdirectory, another extension, a FIFO or device, a dangling link or a
//! link loop) is skipped and named in a warning, so that a policy left in a subdirectory is
//! never ignored silently. A path given explicitly must be a regular file or a directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{LoadError, LoadErrorKind, LoadWarning, Location, Manifests, parse_into};

/// What the given paths expand to.
#[derive(Debug, Default)]
pub struct Expanded {
    /// Files to read, in order; a path that cannot be listed or read is an error.
    pub files: Vec<Result<PathBuf, (PathBuf, io::Error)>>,
    /// Directory entries not read, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

impl Expanded {
    /// The skipped entries as load warnings.
    pub fn warnings(&self) -> impl Iterator<Item = LoadWarning> + '_ {
        self.skipped.iter().map(|(path, why)| LoadWarning {
            location: Location {
                file: path.display().to_string(),
                document: None,
                line: None,
            },
            message: format!("skipped: {why}"),
        })
    }
}

/// Expands directories (one level) to their manifest files; other paths are kept as given.
pub fn expand_paths(paths: &[PathBuf]) -> Expanded {
    let mut out = Expanded::default();
    for p in paths {
        if !p.is_dir() {
            out.files.push(Ok(p.clone()));
            continue;
        }
        match fs::read_dir(p) {
            Ok(entries) => {
                let mut files = Vec::new();
                for entry in entries {
                    let path = match entry {
                        Ok(entry) => entry.path(),
                        Err(e) => {
                            out.files.push(Err((p.clone(), e)));
                            continue;
                        }
                    };
                    match skip_reason(&path) {
                        Some(why) => out.skipped.push((path, why)),
                        None => files.push(path),
                    }
                }
                files.sort();
                out.skipped.sort();
                out.files.extend(files.into_iter().map(Ok));
            }
            Err(e) => out.files.push(Err((p.clone(), e))),
        }
    }
    out
}

/// Why a directory entry is not read, if it is not.
fn skip_reason(path: &Path) -> Option<&'static str> {
    // Follows links: a link to a manifest is read like the manifest.
    let Ok(meta) = fs::metadata(path) else {
        return Some("a link that leads nowhere (dangling, or a loop)");
    };
    if meta.is_dir() {
        return Some("a subdirectory (directories are read one level deep; name it to read it)");
    }
    if !meta.is_file() {
        return Some("not a regular file (a FIFO, socket or device)");
    }
    if !is_manifest(path) {
        return Some("not a .yaml, .yml or .json file");
    }
    None
}

/// Reads a regular file. Anything else (a FIFO would block the read for ever, a device
/// could be endless) is refused.
pub(crate) fn read_regular(path: &Path) -> io::Result<String> {
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

/// Reads and parses every file; unreadable files become [`LoadErrorKind::Io`] errors and
/// skipped directory entries warnings.
pub fn load_paths(paths: &[PathBuf]) -> Manifests {
    load_paths_strict(paths, false)
}

/// [`load_paths`], refusing objects with unknown fields when `strict`.
pub fn load_paths_strict(paths: &[PathBuf], strict: bool) -> Manifests {
    let mut out = Manifests {
        strict,
        ..Manifests::default()
    };
    let expanded = expand_paths(paths);
    out.warnings.extend(expanded.warnings());
    for item in expanded.files {
        match item {
            Ok(path) => load_file(&path, &mut out),
            Err((path, e)) => out.errors.push(io_error(&path, e)),
        }
    }
    out
}

/// Reads and parses one file into `out`.
pub(crate) fn load_file(path: &Path, out: &mut Manifests) {
    match read_regular(path) {
        Ok(text) => parse_into(&path.display().to_string(), &text, out),
        Err(e) => out.errors.push(io_error(path, e)),
    }
}

fn io_error(path: &Path, e: io::Error) -> LoadError {
    LoadError {
        location: Location {
            file: path.display().to_string(),
            document: None,
            line: None,
        },
        kind: LoadErrorKind::Io(e),
    }
}

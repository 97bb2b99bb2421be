//! Manifests as a live source (`observer run --manifests`): each file's last good content,
//! kept while a newer version does not parse, and change detection that a same-size
//! replacement with its modification time kept (`rsync -a`, `touch -r`) cannot fool.
//!
//! A file is re-read when its stamp changes: size, modification and status-change times,
//! inode. The status-change time moves on every write and rename and cannot be set back
//! by users, so no replacement goes unseen. What is read counts as a change only when its
//! content hash differs from the last read. A file whose new content has a syntax error or
//! cannot be read keeps its last good content in the state, and is reported stale until it
//! parses again: a half-written file never takes its policies out of the verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files::{expand_paths, read_regular};
use super::{LoadErrorKind, Manifests, parse_into};
use crate::cluster::state::ClusterObjects;

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: (u64, u64),
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
            inode: (m.dev(), m.ino()),
        })
    }
}

/// The state of one file.
#[derive(Debug)]
struct FileState {
    stamp: Option<Stamp>,
    hash: Option<u64>,
    /// The objects of its last version that parsed, and how many of them were invalid.
    good: Option<(ClusterObjects, usize)>,
    /// Why its latest version is not in use, while it is not.
    stale: Option<String>,
}

/// Every file's state, across reloads.
#[derive(Debug, Default)]
pub struct LiveManifests {
    files: BTreeMap<PathBuf, FileState>,
    /// Refuse objects with unknown fields instead of warning (`--strict`).
    strict: bool,
}

/// A reload that changed something.
#[derive(Debug, Default)]
pub struct Reload {
    /// The state: every file's objects (the last good ones for stale files), sorted.
    pub objects: ClusterObjects,
    /// Files whose latest version is not in use, with why.
    pub stale: Vec<(PathBuf, String)>,
    /// Objects left out as invalid, over all files in use.
    pub invalid: usize,
    /// What this reload found, to log: warnings (skipped entries and documents) and
    /// errors of the files it read.
    pub messages: Vec<String>,
}

impl LiveManifests {
    /// A source that refuses objects with unknown fields when `strict`.
    pub fn new(strict: bool) -> Self {
        Self {
            strict,
            ..Self::default()
        }
    }

    /// Looks at `paths` again; `None` when no file changed since the last call.
    pub fn reload(&mut self, paths: &[PathBuf]) -> Option<Reload> {
        let expanded = expand_paths(paths);
        let mut messages: Vec<String> = expanded
            .warnings()
            .map(|w| format!("warning: {w}"))
            .collect();
        let mut seen = BTreeSet::new();
        let mut changed = false;
        for item in expanded.files {
            let (path, unreadable) = match item {
                Ok(path) => (path, None),
                Err((path, e)) => (path, Some(e.to_string())),
            };
            seen.insert(path.clone());
            let state = self.files.entry(path.clone()).or_insert_with(|| {
                changed = true;
                FileState {
                    stamp: None,
                    hash: None,
                    good: None,
                    stale: None,
                }
            });
            changed |= refresh(&path, state, unreadable, self.strict, &mut messages);
        }
        let before = self.files.len();
        self.files.retain(|path, _| seen.contains(path));
        changed |= self.files.len() != before;
        if !changed {
            return None;
        }
        let mut reload = Reload {
            messages,
            ..Reload::default()
        };
        for (path, state) in &self.files {
            if let Some((objects, invalid)) = &state.good {
                reload.objects.extend(objects);
                reload.invalid += invalid;
            }
            if let (Some(why), Some(_)) = (&state.stale, &state.good) {
                reload.stale.push((path.clone(), why.clone()));
            }
        }
        reload.objects.sort();
        Some(reload)
    }
}

/// Brings one file's state up to date; true when what it contributes changed.
fn refresh(
    path: &Path,
    state: &mut FileState,
    unreadable: Option<String>,
    strict: bool,
    messages: &mut Vec<String>,
) -> bool {
    let name = path.display();
    let read = match unreadable {
        Some(e) => Err(e),
        None => Stamp::of(path)
            .map_err(|e| e.to_string())
            .and_then(|stamp| {
                if state.stamp == Some(stamp) {
                    return Ok(None);
                }
                state.stamp = Some(stamp);
                read_regular(path).map(Some).map_err(|e| e.to_string())
            }),
    };
    let text = match read {
        Ok(None) => return false,
        Ok(Some(text)) => text,
        Err(e) => return keep_or_fail(path, state, format!("cannot be read: {e}"), messages),
    };
    let hash = {
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    };
    if state.hash == Some(hash) {
        // Touched, or replaced by the same content.
        return false;
    }
    state.hash = Some(hash);
    let mut parsed = Manifests {
        strict,
        ..Manifests::default()
    };
    parse_into(&name.to_string(), &text, &mut parsed);
    messages.extend(parsed.warnings.iter().map(|w| format!("warning: {w}")));
    messages.extend(parsed.errors.iter().map(|e| format!("error: {e}")));
    let syntax = parsed
        .errors
        .iter()
        .find(|e| matches!(e.kind, LoadErrorKind::Syntax(_)))
        .map(|e| format!("does not parse: {e}"));
    if let Some(why) = syntax
        && state.good.is_some()
    {
        return keep_or_fail(path, state, why, messages);
    }
    if state.stale.take().is_some() {
        messages.push(format!(
            "info: {name}: parses again; its new content is in use"
        ));
    }
    let invalid = parsed.errors.len();
    state.good = Some((parsed.objects, invalid));
    true
}

/// A file whose latest version cannot be used: its last good content stays (reported as
/// stale); without one, it contributes nothing.
fn keep_or_fail(
    path: &Path,
    state: &mut FileState,
    why: String,
    messages: &mut Vec<String>,
) -> bool {
    let name = path.display();
    if state.good.is_none() {
        messages.push(format!("error: {name}: {why}"));
        let was_stale = state.stale.replace(why).is_some();
        return !was_stale;
    }
    let first = state.stale.is_none();
    if first {
        messages.push(format!(
            "warning: {name}: {why}; keeping its last good content until it parses again"
        ));
    }
    state.stale = Some(why);
    // The state is the same as before (the last good content), only now stale.
    first
}

#[cfg(test)]
mod tests;

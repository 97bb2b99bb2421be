//! Manifest loader: YAML (multi-document) and JSON text → typed k8s-openapi objects.
//!
//! Supported kinds: those of the registry (`crate::cluster::kinds`): `Namespace`, `Pod`,
//! `Node`, `Service` (v1), `NetworkPolicy` (networking.k8s.io/v1), `ReplicaSet` (apps/v1),
//! `Job` (batch/v1), Calico's policy kinds (`projectcalico.org/v3`), AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy and ClusterNetworkPolicy, and lists of them (`v1 List` and
//! the typed `...List` kinds). Other kinds are skipped with a warning. A malformed
//! document or invalid object is reported (file, 1-based document index, field) and
//! skipped; everything else still loads. Objects are validated here with the same code
//! the engine uses, so whatever loads can be compiled.

mod changes;
mod documents;
mod files;
mod live;
mod objects;
mod unique;

use std::fmt;

use thiserror::Error;

use super::state::ClusterObjects;
use crate::policy::{FieldError, ObjectError, SnapshotInput};

pub use changes::ManifestChanges;
pub use files::{Expanded, expand_paths, load_paths, load_paths_strict};
pub use live::{LiveManifests, Reload};

/// Objects loaded from one or more files, with what went wrong.
#[derive(Debug, Default)]
pub struct Manifests {
    /// The objects that loaded (policies validated, not defaulted).
    pub objects: ClusterObjects,
    /// Skipped documents that are not errors (unsupported kinds).
    pub warnings: Vec<LoadWarning>,
    /// Documents or objects that were skipped because they are invalid.
    pub errors: Vec<LoadError>,
    /// Refuse objects with unknown fields (`--strict`), instead of warning about them.
    pub strict: bool,
}

impl Manifests {
    /// The loaded objects as one cluster state, the same shape every source publishes
    /// (moved, not copied: a large cluster's objects are tens of megabytes).
    pub fn into_objects(self) -> ClusterObjects {
        let mut objects = self.objects;
        objects.sort();
        objects
    }

    /// Converts the objects for [`crate::policy::PolicySnapshot::build`].
    pub fn snapshot_input(&self) -> (SnapshotInput, Vec<ObjectError>) {
        let o = &self.objects;
        SnapshotInput::from_objects(&o.namespaces, &o.pods, &o.nodes, &o.policies)
    }
}

/// Where in the input something happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name as given.
    pub file: String,
    /// 1-based document index within the file, if known.
    pub document: Option<usize>,
    /// 1-based line in the file where the document starts, if known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(l) = self.line {
            write!(f, " (from line {l})")?;
        }
        Ok(())
    }
}

/// A document or object that could not be loaded.
#[derive(Debug, Error)]
#[error("{location}: {kind}")]
pub struct LoadError {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: LoadErrorKind,
}

/// The kinds of load failure.
#[derive(Debug, Error)]
pub enum LoadErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[source] std::io::Error),
    /// YAML or JSON syntax error (e.g. a truncated document).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A field has the wrong type or shape, or `kind` is missing.
    #[error("{field}: {message}")]
    Schema {
        /// Dotted field path, e.g. `spec.ingress[0].ports[0].port`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The object parsed but fails validation (e.g. bad operator, bad CIDR, no name).
    #[error("invalid {kind}: {error}")]
    Invalid {
        /// Object kind.
        kind: &'static str,
        /// The offending field.
        error: FieldError,
    },
}

/// A document that was skipped on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// Where.
    pub location: Location,
    /// Why it was skipped.
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Parses one file's text into `out`. Names ending in `.json` are read as JSON (one or
/// more concatenated values); anything else as YAML with `---` separated documents. A
/// leading UTF-8 byte order mark (as some Windows editors write) is not content.
pub fn parse_into(file_name: &str, text: &str, out: &mut Manifests) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for doc in documents::split(file_name, text) {
        match doc {
            Ok(d) => objects::load_document(d.value, &d.location, out),
            Err(e) => out.errors.push(e),
        }
    }
}

/// Parses one file's text.
pub fn parse(file_name: &str, text: &str) -> Manifests {
    let mut out = Manifests::default();
    parse_into(file_name, text, &mut out);
    out
}

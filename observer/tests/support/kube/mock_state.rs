//! The object store and watch bookkeeping of the mock API server.
//!
//! Models the parts of the apiserver's storage that clients depend on: one
//! global resourceVersion bumped by every write, a bounded event history that
//! watches replay from, and compaction (history expiry) that makes a watch
//! from an older version fail with 410 Gone.
//!
//! Lists and watches select like the apiserver's: a namespaced collection path
//! (`/api/v1/namespaces/{ns}/pods`) serves that namespace's objects, and field
//! and label selectors (equality terms) filter them. A watch sees an object
//! that starts or stops matching its selection as ADDED or DELETED.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

/// The collections the mock serves: (kind, apiVersion, collection path).
pub const KINDS: &[(&str, &str, &str)] = &[
    ("Pod", "v1", "/api/v1/pods"),
    ("Namespace", "v1", "/api/v1/namespaces"),
    ("Node", "v1", "/api/v1/nodes"),
    ("Service", "v1", "/api/v1/services"),
    (
        "NetworkPolicy",
        "networking.k8s.io/v1",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ),
    (
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ),
    ("ReplicaSet", "apps/v1", "/apis/apps/v1/replicasets"),
    ("Job", "batch/v1", "/apis/batch/v1/jobs"),
    // Custom resources, as a cluster with their CRDs serves them (the other policy kinds
    // of the registry are not served: 404, as without their CRDs).
    (
        "GlobalNetworkPolicy",
        "projectcalico.org/v3",
        "/apis/projectcalico.org/v3/globalnetworkpolicies",
    ),
    (
        "ClusterNetworkPolicy",
        "policy.networking.k8s.io/v1alpha2",
        "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    ),
];

/// The kinds of [`KINDS`] that are cluster-scoped: they have no namespaced
/// collection path (the apiserver answers 404 there).
pub const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "GlobalNetworkPolicy",
    "ClusterNetworkPolicy",
];

/// Looks up the kind served at a cluster-wide collection path.
pub fn kind_for_path(path: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, _, p)| *p == path)
        .map(|(k, _, _)| *k)
}

/// Looks up the kind served at a collection path, cluster-wide (namespace
/// `None`) or namespaced (`/api/v1/namespaces/{ns}/pods`,
/// `/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`, ...).
pub fn collection_for_path(path: &str) -> Option<(&'static str, Option<String>)> {
    if let Some(kind) = kind_for_path(path) {
        return Some((kind, None));
    }
    KINDS
        .iter()
        .filter(|(kind, _, _)| !CLUSTER_SCOPED.contains(kind))
        .find_map(|(kind, _, collection)| {
            let (prefix, resource) = collection.rsplit_once('/')?;
            let namespace = path
                .strip_prefix(prefix)?
                .strip_prefix("/namespaces/")?
                .strip_suffix(resource)?
                .strip_suffix('/')?;
            (!namespace.is_empty() && !namespace.contains('/'))
                .then(|| (*kind, Some(namespace.to_owned())))
        })
}

fn api_version(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map_or("v1", |(_, v, _)| *v)
}

/// One request the server received, for assertions.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Kind of the collection requested.
    pub kind: String,
    /// Whether it was a watch (else a list).
    pub watch: bool,
    /// The `resourceVersion` query parameter.
    pub resource_version: Option<String>,
    /// The `continue` query parameter.
    pub continue_token: Option<String>,
    /// The `limit` query parameter.
    pub limit: Option<usize>,
    /// The `fieldSelector` query parameter.
    pub field_selector: Option<String>,
    /// The `labelSelector` query parameter.
    pub label_selector: Option<String>,
    /// The namespace of a namespaced collection path (`None`: cluster-wide).
    pub namespace: Option<String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// What a watch connection is told to do next.
pub enum Chunk {
    /// Write this line.
    Line(String),
    /// Break the connection mid-stream, as a network failure would.
    Abort,
}

/// An open watch connection.
pub struct Watcher {
    pub kind: &'static str,
    pub bookmarks: bool,
    /// What it selects: events are filtered (and turned into ADDED/DELETED as
    /// objects enter or leave it) by this.
    pub selection: Selection,
    pub tx: UnboundedSender<Chunk>,
}

/// What a list or watch selects: a namespace (namespaced path), a field
/// selector and a label selector.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only objects of this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// A `a.b=c,d=e` field selector.
    pub fields: Option<String>,
    /// A label selector, already checked by [`parse_label_selector`].
    pub labels: Option<String>,
}

impl Selection {
    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && matches_selector(obj, self.fields.as_deref())
            && self
                .labels
                .as_deref()
                .is_none_or(|labels| matches_labels(obj, labels))
    }
}

/// One term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelTerm {
    /// `k=v` or `k==v`.
    Equals(String, String),
    /// `k!=v` (also true when the label is absent).
    NotEquals(String, String),
    /// `k`: the label is set.
    Exists(String),
    /// `!k`: the label is not set.
    NotExists(String),
}

/// Parses a label selector of equality terms (`k=v`, `k==v`, `k!=v`, `k`,
/// `!k`, comma-separated); set-based terms (`k in (a,b)`) are refused, so that
/// a test never passes on a selector the mock silently misreads.
pub fn parse_label_selector(selector: &str) -> Result<Vec<LabelTerm>, String> {
    if selector.contains('(') || selector.contains(')') {
        return Err(format!(
            "set-based label selector {selector:?} is not supported by the mock"
        ));
    }
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(format!("bad label selector {selector:?}"))
        } else {
            Ok(k.to_owned())
        }
    };
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Ok(LabelTerm::NotEquals(key(k)?, v.trim().to_owned()))
            } else if let Some((k, v)) = term.split_once("==") {
                Ok(LabelTerm::Equals(key(k)?, v.trim().to_owned()))
            } else if let Some((k, v)) = term.split_once('=') {
                Ok(LabelTerm::Equals(key(k)?, v.trim().to_owned()))
            } else if let Some(k) = term.strip_prefix('!') {
                Ok(LabelTerm::NotExists(key(k)?))
            } else {
                Ok(LabelTerm::Exists(key(term)?))
            }
        })
        .collect()
}

/// Whether `obj`'s labels match `selector` (an unparsable one matches nothing).
pub fn matches_labels(obj: &Value, selector: &str) -> bool {
    let Ok(terms) = parse_label_selector(selector) else {
        return false;
    };
    let label = |k: &str| obj["metadata"]["labels"][k].as_str();
    terms.iter().all(|term| match term {
        LabelTerm::Equals(k, v) => label(k) == Some(v.as_str()),
        LabelTerm::NotEquals(k, v) => label(k) != Some(v.as_str()),
        LabelTerm::Exists(k) => label(k).is_some(),
        LabelTerm::NotExists(k) => label(k).is_none(),
    })
}

/// One write, as the history keeps it: watches replay it through their
/// selection.
struct Change {
    rv: u64,
    kind: &'static str,
    /// ADDED, MODIFIED or DELETED.
    event: &'static str,
    /// The object as written (as deleted, for DELETED).
    object: Value,
    /// The object before the write (`None` for ADDED).
    previous: Option<Value>,
}

impl Change {
    /// The watch line `selection` sees of this change, if any: like the
    /// apiserver's watch cache, an object that starts matching is ADDED, one
    /// that stops matching is DELETED (its previous state, at this version).
    fn line_for(&self, selection: &Selection) -> Option<String> {
        let now = self.event != "DELETED" && selection.matches(&self.object);
        let before = self
            .previous
            .as_ref()
            .is_some_and(|previous| selection.matches(previous));
        match (now, before) {
            (true, false) => Some(event_line("ADDED", &self.object)),
            (true, true) => Some(event_line(self.event, &self.object)),
            (false, true) => {
                let mut gone = self.previous.clone().unwrap_or_default();
                gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                Some(event_line("DELETED", &gone))
            }
            (false, false) => None,
        }
    }
}

type Key = (String, String);

/// All server state, behind one lock so that every operation is atomic with
/// respect to watch registration.
#[derive(Default)]
pub struct MockState {
    pub rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    objects: BTreeMap<&'static str, BTreeMap<Key, Value>>,
    /// Every write since compaction.
    history: Vec<Change>,
    pub watchers: Vec<Watcher>,
    pub requests: Vec<RequestRecord>,
    /// Kinds answered with 403 Forbidden, as with missing RBAC.
    pub forbidden: BTreeSet<&'static str>,
    /// Kinds answered with 404 Not Found, as before their CRD is installed.
    pub not_served: BTreeSet<&'static str>,
    /// Kinds whose lists get headers and then nothing, for ever.
    pub hang_lists: BTreeSet<&'static str>,
    /// Kinds whose watches end at once, with no event.
    pub short_watches: BTreeSet<&'static str>,
}

fn key_of(obj: &Value) -> Key {
    let field = |f: &str| obj["metadata"][f].as_str().unwrap_or_default().to_owned();
    (field("namespace"), field("name"))
}

/// Whether `obj` matches a simple `a.b=c,d=e` field selector.
pub fn matches_selector(obj: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let Some((path, want)) = term.split_once('=') else {
            return false;
        };
        let pointer = format!("/{}", path.replace('.', "/"));
        obj.pointer(&pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            == want
    })
}

pub fn event_line(kind: &str, object: &Value) -> String {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    line
}

impl MockState {
    /// Adds or replaces an object (by its `kind`), emitting ADDED or MODIFIED.
    /// Returns the new resourceVersion.
    pub fn apply(&mut self, mut obj: Value) -> u64 {
        let kind = kind_of(&obj);
        self.rv += 1;
        obj["apiVersion"] = json!(api_version(kind));
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let previous = self
            .objects
            .entry(kind)
            .or_default()
            .insert(key_of(&obj), obj.clone());
        let event = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(kind, event, obj, previous);
        self.rv
    }

    /// Deletes an object, emitting DELETED. Returns the new resourceVersion,
    /// or `None` if no such object exists.
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Option<u64> {
        let kind = KINDS.iter().find(|(k, _, _)| *k == kind)?.0;
        let key = (namespace.to_owned(), name.to_owned());
        let previous = self.objects.get_mut(kind)?.remove(&key)?;
        self.rv += 1;
        // Like the apiserver, the DELETED object carries the deletion's version.
        let mut obj = previous.clone();
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, "DELETED", obj, Some(previous));
        Some(self.rv)
    }

    fn record(
        &mut self,
        kind: &'static str,
        event: &'static str,
        object: Value,
        previous: Option<Value>,
    ) {
        let change = Change {
            rv: self.rv,
            kind,
            event,
            object,
            previous,
        };
        self.watchers.retain(|w| {
            w.kind != kind
                || change
                    .line_for(&w.selection)
                    .is_none_or(|line| w.tx.send(Chunk::Line(line)).is_ok())
        });
        self.history.push(change);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that
    /// asked for bookmarks.
    pub fn bookmark(&mut self) -> u64 {
        let rv = self.rv.to_string();
        self.watchers.retain(|w| {
            if !w.bookmarks {
                return true;
            }
            let object = json!({
                "kind": w.kind, "apiVersion": api_version(w.kind),
                "metadata": { "resourceVersion": rv },
            });
            w.tx.send(Chunk::Line(event_line("BOOKMARK", &object)))
                .is_ok()
        });
        self.rv
    }

    /// Sends a raw line to every watch of `kind`, bypassing history: for
    /// malformed events.
    pub fn inject_raw(&mut self, kind: &str, line: &str) {
        for w in self.watchers.iter().filter(|w| w.kind == kind) {
            let _ = w.tx.send(Chunk::Line(format!("{line}\n")));
        }
    }

    /// Sends `bytes` bytes with no newline to every watch of `kind`, in 64 KiB chunks.
    pub fn inject_unterminated(&mut self, kind: &str, bytes: usize) {
        let chunk = "x".repeat(64 << 10);
        for w in self.watchers.iter().filter(|w| w.kind == kind) {
            for _ in 0..bytes.div_ceil(chunk.len()) {
                let _ = w.tx.send(Chunk::Line(chunk.clone()));
            }
        }
    }

    /// Forgets all history: watches from any earlier version now get 410.
    pub fn expire_history(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Ends every open watch cleanly, after what was already queued for it.
    pub fn drop_watches(&mut self) {
        self.watchers.clear();
    }

    /// Breaks every open watch connection without ending the response.
    pub fn abort_watches(&mut self) {
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(Chunk::Abort);
        }
    }

    /// Current objects of `kind` matching the field `selector`, sorted by key.
    pub fn list(&self, kind: &str, selector: Option<&str>) -> Vec<Value> {
        self.select(
            kind,
            &Selection {
                fields: selector.map(str::to_owned),
                ..Selection::default()
            },
        )
    }

    /// Current objects of `kind` that `selection` selects, sorted by key.
    pub fn select(&self, kind: &str, selection: &Selection) -> Vec<Value> {
        self.objects
            .get(kind)
            .map(|objs| {
                objs.values()
                    .filter(|o| selection.matches(o))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Watch lines after `from` for `kind` as `selection` sees them, or `None`
    /// if `from` is compacted.
    pub fn history_since(
        &self,
        kind: &str,
        from: u64,
        selection: &Selection,
    ) -> Option<Vec<String>> {
        if from < self.compacted {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|change| change.rv > from && change.kind == kind)
                .filter_map(|change| change.line_for(selection))
                .collect(),
        )
    }

    /// `name`s of the current objects of `kind`, as `namespace/name`.
    pub fn names(&self, kind: &str) -> Vec<String> {
        self.list(kind, None)
            .iter()
            .map(|o| {
                let (ns, name) = key_of(o);
                format!("{ns}/{name}")
            })
            .collect()
    }
}

fn kind_of(obj: &Value) -> &'static str {
    let kind = obj["kind"].as_str().unwrap_or_default();
    KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(k, _, _)| *k)
        .unwrap_or_else(|| panic!("mock apiserver does not serve kind {kind:?}"))
}

/// The 410 Gone status sent as a watch ERROR event.
pub fn expired_status(from: u64, compacted: u64) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {from} ({compacted})"),
        "reason": "Expired", "code": 410,
    })
}

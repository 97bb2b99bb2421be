//! The object store and watch bookkeeping of the mock API server.
//!
//! Models the parts of the apiserver's storage that clients depend on: one
//! global resourceVersion bumped by every write, a bounded event history that
//! watches replay from, and compaction (history expiry) that makes a watch
//! from an older version fail with 410 Gone.

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

/// Looks up the kind served at a collection path.
pub fn kind_for_path(path: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, _, p)| *p == path)
        .map(|(k, _, _)| *k)
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
    pub selector: Option<String>,
    pub tx: UnboundedSender<Chunk>,
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
    /// (resourceVersion, kind, JSON watch line) of every write since compaction.
    history: Vec<(u64, &'static str, String)>,
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
        self.record(kind, event, &obj);
        self.rv
    }

    /// Deletes an object, emitting DELETED. Returns the new resourceVersion,
    /// or `None` if no such object exists.
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Option<u64> {
        let kind = KINDS.iter().find(|(k, _, _)| *k == kind)?.0;
        let key = (namespace.to_owned(), name.to_owned());
        let mut obj = self.objects.get_mut(kind)?.remove(&key)?;
        self.rv += 1;
        // Like the apiserver, the DELETED object carries the deletion's version.
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, "DELETED", &obj);
        Some(self.rv)
    }

    fn record(&mut self, kind: &'static str, event: &str, obj: &Value) {
        let line = event_line(event, obj);
        self.history.push((self.rv, kind, line.clone()));
        self.watchers.retain(|w| {
            w.kind != kind
                || !matches_selector(obj, w.selector.as_deref())
                || w.tx.send(Chunk::Line(line.clone())).is_ok()
        });
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

    /// Current objects of `kind` matching `selector`, sorted by key.
    pub fn list(&self, kind: &str, selector: Option<&str>) -> Vec<Value> {
        self.objects
            .get(kind)
            .map(|objs| {
                objs.values()
                    .filter(|o| matches_selector(o, selector))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Watch lines after `from` for `kind`, or `None` if `from` is compacted.
    pub fn history_since(
        &self,
        kind: &str,
        from: u64,
        selector: Option<&str>,
    ) -> Option<Vec<String>> {
        if from < self.compacted {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|(rv, k, line)| {
                    *rv > from && *k == kind && selector.is_none_or(|s| line_matches(line, s))
                })
                .map(|(_, _, line)| line.clone())
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

fn line_matches(line: &str, selector: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|ev| matches_selector(&ev["object"], Some(selector)))
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

//! Dispatch of one document by `kind`, typed deserialization and validation.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{LoadError, LoadErrorKind, LoadWarning, Location, Manifests};
use crate::policy::{FieldError, NamespaceInfo, NodeInfo, PodInfo, compile};

const NETWORKING_V1: &str = "networking.k8s.io/v1";
const DISCOVERY_V1: &str = "discovery.k8s.io/v1";
const APPS_V1: &str = "apps/v1";
const BATCH_V1: &str = "batch/v1";

/// The kinds we load, keyed by (apiVersion, kind).
#[derive(Clone, Copy)]
enum Kind {
    Namespace,
    Pod,
    Node,
    NetworkPolicy,
    Service,
    EndpointSlice,
    ReplicaSet,
    Job,
}

impl Kind {
    fn from(api_version: &str, kind: &str) -> Option<Self> {
        match (api_version, kind) {
            ("v1", "Namespace") => Some(Self::Namespace),
            ("v1", "Pod") => Some(Self::Pod),
            ("v1", "Node") => Some(Self::Node),
            (NETWORKING_V1, "NetworkPolicy") => Some(Self::NetworkPolicy),
            ("v1", "Service") => Some(Self::Service),
            (DISCOVERY_V1, "EndpointSlice") => Some(Self::EndpointSlice),
            (APPS_V1, "ReplicaSet") => Some(Self::ReplicaSet),
            (BATCH_V1, "Job") => Some(Self::Job),
            _ => None,
        }
    }

    /// Item kind of a typed list such as `PodList`.
    fn of_list(api_version: &str, list_kind: &str) -> Option<(&'static str, &'static str)> {
        match (api_version, list_kind) {
            ("v1", "NamespaceList") => Some(("v1", "Namespace")),
            ("v1", "PodList") => Some(("v1", "Pod")),
            ("v1", "NodeList") => Some(("v1", "Node")),
            (NETWORKING_V1, "NetworkPolicyList") => Some((NETWORKING_V1, "NetworkPolicy")),
            ("v1", "ServiceList") => Some(("v1", "Service")),
            (DISCOVERY_V1, "EndpointSliceList") => Some((DISCOVERY_V1, "EndpointSlice")),
            (APPS_V1, "ReplicaSetList") => Some((APPS_V1, "ReplicaSet")),
            (BATCH_V1, "JobList") => Some((BATCH_V1, "Job")),
            _ => None,
        }
    }
}

/// Loads one document (an object, a list, or null) into `out`.
pub(super) fn load_document(value: Value, location: &Location, out: &mut Manifests) {
    Ctx { location, out }.load(value, "", None);
}

struct Ctx<'a> {
    location: &'a Location,
    out: &'a mut Manifests,
}

impl Ctx<'_> {
    fn error(&mut self, kind: LoadErrorKind) {
        self.out.errors.push(LoadError {
            location: self.location.clone(),
            kind,
        });
    }

    fn schema(&mut self, field: String, message: impl Into<String>) {
        self.error(LoadErrorKind::Schema {
            field,
            message: message.into(),
        });
    }

    /// `prefix` is the path of this object inside the document (`items[2].` in lists);
    /// `defaults` supplies apiVersion/kind for items of typed lists, which often omit them.
    fn load(&mut self, value: Value, prefix: &str, defaults: Option<(&str, &str)>) {
        let mut map = match value {
            Value::Null if prefix.is_empty() => return,
            Value::Object(m) => m,
            other => {
                let field = if prefix.is_empty() {
                    "<document>".to_owned()
                } else {
                    prefix.trim_end_matches('.').to_owned()
                };
                self.schema(
                    field,
                    format!("expected an object, got {}", type_name(&other)),
                );
                return;
            }
        };
        if let Some((api, kind)) = defaults {
            map.entry("apiVersion").or_insert_with(|| api.into());
            map.entry("kind").or_insert_with(|| kind.into());
        }
        let (api, kind) = match (text(&map, "apiVersion"), text(&map, "kind")) {
            (_, None) => {
                self.schema(format!("{prefix}kind"), "missing or not a string");
                return;
            }
            (api, Some(kind)) => (api.unwrap_or_default().to_owned(), kind.to_owned()),
        };
        if kind == "List" || Kind::of_list(&api, &kind).is_some() {
            return self.load_list(map, prefix, Kind::of_list(&api, &kind));
        }
        match Kind::from(&api, &kind) {
            Some(k) => self.load_object(k, Value::Object(map), prefix),
            None => {
                let name = map
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("<unnamed>");
                let message =
                    format!("{prefix}skipped unsupported kind {kind} ({api}) named {name:?}");
                self.out.warnings.push(LoadWarning {
                    location: self.location.clone(),
                    message: message.trim_start().to_owned(),
                });
            }
        }
    }

    fn load_list(
        &mut self,
        mut map: Map<String, Value>,
        prefix: &str,
        defaults: Option<(&'static str, &'static str)>,
    ) {
        match map.remove("items") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.load(item, &format!("{prefix}items[{i}]."), defaults);
                }
            }
            Some(other) => {
                self.schema(
                    format!("{prefix}items"),
                    format!("expected a list, got {}", type_name(&other)),
                );
            }
        }
    }

    fn load_object(&mut self, kind: Kind, value: Value, prefix: &str) {
        let result = match kind {
            Kind::Namespace => typed(value, prefix).and_then(|o| {
                validate(NamespaceInfo::from_k8s(&o), "Namespace", prefix)?;
                self.out.objects.namespaces.push(o);
                Ok(())
            }),
            Kind::Pod => typed(value, prefix).and_then(|o| {
                validate(PodInfo::from_k8s(&o), "Pod", prefix)?;
                self.out.objects.pods.push(o);
                Ok(())
            }),
            Kind::Node => typed(value, prefix).and_then(|o| {
                validate(NodeInfo::from_k8s(&o), "Node", prefix)?;
                self.out.objects.nodes.push(o);
                Ok(())
            }),
            Kind::NetworkPolicy => typed(value, prefix).and_then(|o| {
                validate(compile(&o), "NetworkPolicy", prefix)?;
                self.out.objects.policies.push(o);
                Ok(())
            }),
            // Read for identity (services, workloads); their own checks happen where used.
            Kind::Service => typed(value, prefix).map(|o| self.out.objects.services.push(o)),
            Kind::EndpointSlice => {
                typed(value, prefix).map(|o| self.out.objects.endpoint_slices.push(o))
            }
            Kind::ReplicaSet => typed(value, prefix).map(|o| self.out.objects.replica_sets.push(o)),
            Kind::Job => typed(value, prefix).map(|o| self.out.objects.jobs.push(o)),
        };
        if let Err(e) = result {
            self.error(e);
        }
    }
}

fn text<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    map.get(key).and_then(Value::as_str)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Deserializes with field-path tracking so wrong types are reported by field.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, LoadErrorKind> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." if prefix.is_empty() => "<document>".to_owned(),
            "." => prefix.trim_end_matches('.').to_owned(),
            p => format!("{prefix}{p}"),
        };
        LoadErrorKind::Schema {
            field,
            message: e.into_inner().to_string(),
        }
    })
}

fn validate<T>(
    result: Result<T, FieldError>,
    kind: &'static str,
    prefix: &str,
) -> Result<(), LoadErrorKind> {
    result.map(drop).map_err(|mut error| {
        error.field = format!("{prefix}{}", error.field);
        LoadErrorKind::Invalid { kind, error }
    })
}

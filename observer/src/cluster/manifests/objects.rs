//! Dispatch of one document by `kind`, typed deserialization and validation.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{LoadError, LoadErrorKind, LoadWarning, Location, Manifests};
use crate::cluster::kinds::{ClusterKind, KindInfo, KindVisitor, visit_kinds, watched_kinds};
use crate::policy::FieldError;

/// The registry kind a document's (apiVersion, kind) names, and the item kind of a typed
/// list such as `PodList`.
fn registry_kind<'k>(kinds: &'k [KindInfo], api_version: &str, kind: &str) -> Option<&'k KindInfo> {
    kinds
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

fn list_item_kind<'k>(
    kinds: &'k [KindInfo],
    api_version: &str,
    list_kind: &str,
) -> Option<&'k KindInfo> {
    let item = list_kind.strip_suffix("List")?;
    registry_kind(kinds, api_version, item)
}

/// Loads one document (an object, a list, or null) into `out`.
pub(super) fn load_document(value: Value, location: &Location, out: &mut Manifests) {
    let kinds = watched_kinds();
    Ctx {
        location,
        out,
        kinds: &kinds,
    }
    .load(value, "", None);
}

struct Ctx<'a> {
    location: &'a Location,
    out: &'a mut Manifests,
    /// The registry's kinds, as documents name them.
    kinds: &'a [KindInfo],
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
        let kinds = self.kinds;
        let list_item = list_item_kind(kinds, &api, &kind);
        if kind == "List" || list_item.is_some() {
            let defaults = list_item.map(|k| (k.api_version.as_str(), k.kind));
            return self.load_list(map, prefix, defaults);
        }
        match registry_kind(kinds, &api, &kind) {
            Some(k) => self.load_object(k.kind, &k.api_version, Value::Object(map), prefix),
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
        defaults: Option<(&str, &str)>,
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

    /// Loads an object of a registry kind: typed, checked as the view will read it, and
    /// added to the state.
    fn load_object(&mut self, kind: &str, api_version: &str, value: Value, prefix: &str) {
        struct Load<'c, 'a> {
            ctx: &'c mut Ctx<'a>,
            kind: &'c str,
            api_version: &'c str,
            value: Option<Value>,
            prefix: &'c str,
        }
        impl KindVisitor for Load<'_, '_> {
            fn visit<K: ClusterKind>(&mut self) {
                // Kinds share names across groups (Calico's NetworkPolicy).
                if K::KIND != self.kind || K::api_version(&()) != self.api_version {
                    return;
                }
                let Some(value) = self.value.take() else {
                    return;
                };
                let input = value.clone();
                let object = match typed::<K>(value, self.prefix).and_then(|object| {
                    validate(object.check(), K::KIND, self.prefix).map(|()| object)
                }) {
                    Ok(object) => object,
                    Err(e) => return self.ctx.error(e),
                };
                // Fields the type does not have are dropped by decoding: a misspelt
                // `podSelecter` would leave `podSelector` empty and select every pod.
                let unknown = serde_json::to_value(&object)
                    .map(|decoded| unknown_fields(&input, &decoded, self.prefix))
                    .unwrap_or_default();
                if self.ctx.out.strict && !unknown.is_empty() {
                    return self.ctx.error(LoadErrorKind::Schema {
                        field: unknown.join(", "),
                        message: format!("unknown field of {} (--strict)", K::KIND),
                    });
                }
                for field in unknown {
                    let message = format!(
                        "unknown field {field} of {} ignored (as kubectl apply warns; --strict refuses it)",
                        K::KIND
                    );
                    self.ctx.out.warnings.push(LoadWarning {
                        location: self.ctx.location.clone(),
                        message,
                    });
                }
                K::of_mut(&mut self.ctx.out.objects).push(Arc::new(object));
            }
        }
        visit_kinds(&mut Load {
            ctx: self,
            kind,
            api_version,
            value: Some(value),
            prefix,
        });
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

fn validate(
    result: Result<(), FieldError>,
    kind: &'static str,
    prefix: &str,
) -> Result<(), LoadErrorKind> {
    result.map_err(|mut error| {
        error.field = format!("{prefix}{}", error.field);
        LoadErrorKind::Invalid { kind, error }
    })
}

/// Paths of the fields of `input` that decoding dropped (absent from `decoded`, the typed
/// object written back). Null fields are not fields.
fn unknown_fields(input: &Value, decoded: &Value, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, decoded, prefix.trim_end_matches('.'), &mut out);
    out
}

fn walk(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (input, decoded) {
        (Value::Object(input), Value::Object(decoded)) => {
            for (key, value) in input {
                if value.is_null() {
                    continue;
                }
                match decoded.get(key) {
                    Some(d) => walk(value, d, &join(key), out),
                    None => out.push(join(key)),
                }
            }
        }
        (Value::Array(input), Value::Array(decoded)) => {
            for (i, (value, d)) in input.iter().zip(decoded).enumerate() {
                walk(value, d, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

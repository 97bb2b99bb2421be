//! Decoding API objects one at a time, so that one object the observer cannot decode
//! never fails the list it came in.
//!
//! kube decodes a list response as a whole: with plain typed objects, a single object
//! with a field of the wrong shape fails the list, the watcher retries it forever, and
//! the kind never becomes ready. Wrapping each object in [`Lenient`] turns that object
//! into an [`Lenient::Undecodable`] entry, kept with its metadata so it can be named,
//! counted and left out, while the rest of the list is used. An update that does not
//! decode carries the object's last version that did, which stays in use.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{Deserialize, DeserializeOwned, Deserializer};

/// An object of kind `K` as the API sent it.
#[derive(Clone, Debug)]
pub(crate) enum Lenient<K> {
    /// Decoded as `K` (shared: states hand the same allocation on).
    Decoded(Arc<K>),
    /// Not a valid `K`: its metadata (as far as it decodes) and why.
    Undecodable {
        /// The object's metadata, or empty metadata when even that does not decode
        /// (boxed: the rare case should not make every stored object larger).
        metadata: Box<ObjectMeta>,
        /// The decoder's message, naming the field.
        error: Arc<str>,
        /// The last version of the same object that decoded, if any: an update that does
        /// not decode keeps it in use rather than dropping a live object.
        last_good: Option<Arc<K>>,
    },
}

impl<K> Lenient<K> {
    /// The version to use: the decoded object, or the last one that decoded.
    pub(crate) fn usable(&self) -> Option<&Arc<K>> {
        match self {
            Self::Decoded(object) => Some(object),
            Self::Undecodable { last_good, .. } => last_good.as_ref(),
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only input that is not JSON at all fails here, and with it the whole response.
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(match K::deserialize(&value) {
            Ok(object) => Self::Decoded(Arc::new(object)),
            Err(error) => Self::Undecodable {
                metadata: value
                    .get("metadata")
                    .map(identity)
                    .unwrap_or_default()
                    .into(),
                error: error.to_string().into(),
                last_good: None,
            },
        })
    }
}

/// The object's metadata, or, when that does not decode as a whole (a label that is a
/// number, say), the fields that identify it: the store's key needs name and namespace,
/// and the watcher needs the resource version (without one it would relist the kind).
fn identity(metadata: &serde_json::Value) -> ObjectMeta {
    ObjectMeta::deserialize(metadata).unwrap_or_else(|_| {
        let field = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        ObjectMeta {
            name: field("name"),
            namespace: field("namespace"),
            uid: field("uid"),
            resource_version: field("resourceVersion"),
            ..ObjectMeta::default()
        }
    })
}

impl<K: Resource<DynamicType = ()> + Clone> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Decoded(object) => object.meta(),
            Self::Undecodable { metadata, .. } => metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            // Copies only when the object is already shared (never while it is decoded
            // and trimmed, before it enters a store).
            Self::Decoded(object) => Arc::make_mut(object).meta_mut(),
            Self::Undecodable { metadata, .. } => metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::Lenient;

    #[test]
    fn a_list_with_one_bad_object_keeps_the_others_and_names_the_bad_one() {
        let list = r#"[
            {"metadata":{"name":"good","namespace":"shop"},"spec":{"containers":[]}},
            {"metadata":{"name":"bad","namespace":"shop"},"spec":{"containers":"not-a-list"}},
            {"metadata":{"name":7},"spec":{}},
            {"metadata":{"name":"odd","namespace":"shop","resourceVersion":"9","labels":{"n":1}}}
        ]"#;
        let objects: Vec<Lenient<Pod>> = serde_json::from_str(list).expect("a JSON list");
        assert_eq!(
            objects[0].usable().and_then(|p| p.metadata.name.as_deref()),
            Some("good")
        );
        match &objects[1] {
            Lenient::Undecodable {
                metadata, error, ..
            } => {
                assert_eq!(metadata.name.as_deref(), Some("bad"));
                assert!(error.contains("sequence"), "{error}");
            }
            other => panic!("decoded: {other:?}"),
        }
        match &objects[2] {
            Lenient::Undecodable { metadata, .. } => assert_eq!(metadata.name, None),
            other => panic!("decoded: {other:?}"),
        }
        // Metadata that does not decode as a whole still yields what identifies it.
        match &objects[3] {
            Lenient::Undecodable { metadata, .. } => {
                assert_eq!(metadata.name.as_deref(), Some("odd"));
                assert_eq!(metadata.namespace.as_deref(), Some("shop"));
                assert_eq!(metadata.resource_version.as_deref(), Some("9"));
            }
            other => panic!("decoded: {other:?}"),
        }
    }
}

//! The policy kinds the tiered engine judges (`crate::policy::tiered`), as cluster objects:
//! Calico `projectcalico.org/v3` NetworkPolicy, GlobalNetworkPolicy, Tier and the staged
//! kinds; AdminNetworkPolicy and BaselineAdminNetworkPolicy (`v1alpha1`);
//! ClusterNetworkPolicy (`v1alpha2`). They are custom resources, so one generic type holds
//! them: the metadata, typed, and the spec as JSON, which the tiered engine's compiler
//! reads (and a manifest's `check` runs, so errors name the field).

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};

use k8s_openapi::api::networking::v1::NetworkPolicySpec;

use super::ClusterKind;
use crate::cluster::state::ClusterObjects;
use crate::policy::FieldError;
use crate::policy::tiered::objects::{AdminSpec, CalicoPolicySpec, TierSpec};

/// What names a policy kind in the API.
pub trait PolicyKindInfo: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// The kind.
    const KIND: &'static str;
    /// Its API group.
    const GROUP: &'static str;
    /// Its version.
    const VERSION: &'static str;
    /// Its collection's name.
    const PLURAL: &'static str;
    /// Whether it is namespaced.
    const NAMESPACED: bool;

    /// The spec as the tiered engine reads it (decoded into its typed shape and encoded
    /// again), so that a field it does not know is missing from it; `None` when the spec
    /// does not decode (the object's `check` reports that).
    fn normalize(spec: &serde_json::Value) -> Option<serde_json::Value>;

    /// Its objects in a state.
    fn of(objects: &ClusterObjects) -> &Vec<Arc<PolicyObject<Self>>>;

    /// Its objects in a state, to fill.
    fn of_mut(objects: &mut ClusterObjects) -> &mut Vec<Arc<PolicyObject<Self>>>;
}

/// An object of policy kind `M`: metadata and the spec as authored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(bound = "")]
pub struct PolicyObject<M: PolicyKindInfo> {
    /// `apiVersion`, as written.
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    /// `kind`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec, as JSON.
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(skip)]
    marker: PhantomData<M>,
}

impl<M: PolicyKindInfo> PolicyObject<M> {
    /// The object as the tiered engine's compiler takes it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": format!("{}/{}", M::GROUP, M::VERSION),
            "kind": M::KIND,
            "metadata": {"name": self.metadata.name, "namespace": self.metadata.namespace},
            "spec": self.spec,
        })
    }
}

/// Serialized with the spec as the engine reads it: the manifest loader compares that with
/// the input to warn about unknown fields (a misspelt `selecter` would otherwise leave
/// `selector` absent, which selects every pod).
impl<M: PolicyKindInfo> Serialize for PolicyObject<M> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
            api_version: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kind: &'a Option<String>,
            metadata: &'a ObjectMeta,
            spec: serde_json::Value,
        }
        Out {
            api_version: &self.api_version,
            kind: &self.kind,
            metadata: &self.metadata,
            spec: M::normalize(&self.spec).unwrap_or_else(|| self.spec.clone()),
        }
        .serialize(serializer)
    }
}

impl<M: PolicyKindInfo> Resource for PolicyObject<M> {
    type DynamicType = ();
    type Scope = kube::core::DynamicResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(M::KIND)
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(M::GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(M::VERSION)
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(M::PLURAL)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<M: PolicyKindInfo> ClusterKind for PolicyObject<M> {
    const KIND: &'static str = M::KIND;
    const NAMESPACED: bool = M::NAMESPACED;
    // Custom resources: a cluster without their CRD does not serve them.
    const OPTIONAL: bool = true;

    fn of(objects: &ClusterObjects) -> &Vec<Arc<Self>> {
        M::of(objects)
    }

    fn of_mut(objects: &mut ClusterObjects) -> &mut Vec<Arc<Self>> {
        M::of_mut(objects)
    }

    fn trim(&mut self, kept_annotations: &[String]) {
        super::impls::trim_meta(&mut self.metadata, kept_annotations);
    }

    fn tiered_json(&self) -> Option<serde_json::Value> {
        Some(self.to_json())
    }

    /// Compiles the object as the tiered engine will, so that a bad selector, action or
    /// port is reported with its field.
    fn check(&self) -> Result<(), FieldError> {
        let compiled = crate::policy::tiered::compile_objects(&[self.to_json()]);
        match compiled.errors.first() {
            None => Ok(()),
            Some(error) => Err(error.field_error()),
        }
    }
}

macro_rules! policy_kind {
    ($(#[$doc:meta])* $marker:ident, $alias:ident, $field:ident, $spec:ty, $kind:literal, $group:literal, $version:literal, $plural:literal, $namespaced:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $marker;

        impl PolicyKindInfo for $marker {
            const KIND: &'static str = $kind;
            const GROUP: &'static str = $group;
            const VERSION: &'static str = $version;
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $namespaced;

            fn normalize(spec: &serde_json::Value) -> Option<serde_json::Value> {
                let typed: $spec = serde_json::from_value(spec.clone()).ok()?;
                serde_json::to_value(typed).ok()
            }

            fn of(objects: &ClusterObjects) -> &Vec<Arc<PolicyObject<Self>>> {
                &objects.$field
            }

            fn of_mut(objects: &mut ClusterObjects) -> &mut Vec<Arc<PolicyObject<Self>>> {
                &mut objects.$field
            }
        }

        $(#[$doc])*
        pub type $alias = PolicyObject<$marker>;
    };
}

policy_kind!(
    /// Calico `NetworkPolicy`.
    CalicoNetworkPolicyKind, CalicoNetworkPolicy, calico_policies, CalicoPolicySpec, "NetworkPolicy", "projectcalico.org", "v3",
    "networkpolicies", true
);
policy_kind!(
    /// Calico `GlobalNetworkPolicy`.
    CalicoGlobalNetworkPolicyKind, CalicoGlobalNetworkPolicy, calico_global_policies, CalicoPolicySpec, "GlobalNetworkPolicy",
    "projectcalico.org", "v3", "globalnetworkpolicies", false
);
policy_kind!(
    /// Calico `Tier`.
    CalicoTierKind, CalicoTier, calico_tiers, TierSpec, "Tier", "projectcalico.org", "v3", "tiers", false
);
policy_kind!(
    /// Calico `StagedNetworkPolicy`.
    StagedNetworkPolicyKind, StagedNetworkPolicy, staged_policies, CalicoPolicySpec, "StagedNetworkPolicy", "projectcalico.org",
    "v3", "stagednetworkpolicies", true
);
policy_kind!(
    /// Calico `StagedGlobalNetworkPolicy`.
    StagedGlobalNetworkPolicyKind, StagedGlobalNetworkPolicy, staged_global_policies, CalicoPolicySpec, "StagedGlobalNetworkPolicy",
    "projectcalico.org", "v3", "stagedglobalnetworkpolicies", false
);
policy_kind!(
    /// Calico `StagedKubernetesNetworkPolicy`.
    StagedKubernetesNetworkPolicyKind, StagedKubernetesNetworkPolicy, staged_kubernetes_policies, NetworkPolicySpec,
    "StagedKubernetesNetworkPolicy", "projectcalico.org", "v3",
    "stagedkubernetesnetworkpolicies", true
);
policy_kind!(
    /// `AdminNetworkPolicy` (v1alpha1).
    AdminNetworkPolicyKind, AdminNetworkPolicy, admin_policies, AdminSpec, "AdminNetworkPolicy",
    "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", false
);
policy_kind!(
    /// `BaselineAdminNetworkPolicy` (v1alpha1).
    BaselineAdminNetworkPolicyKind, BaselineAdminNetworkPolicy, baseline_admin_policies, AdminSpec, "BaselineAdminNetworkPolicy",
    "policy.networking.k8s.io", "v1alpha1", "baselineadminnetworkpolicies", false
);
policy_kind!(
    /// `ClusterNetworkPolicy` (v1alpha2).
    ClusterNetworkPolicyKind, ClusterNetworkPolicy, cluster_network_policies, AdminSpec, "ClusterNetworkPolicy",
    "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies", false
);

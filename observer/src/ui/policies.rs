//! Declared policies as the console shows them: found by the kind, namespace and name a
//! verdict names, as JSON (apiVersion, kind, metadata's name and namespace, spec) and as
//! YAML, with their rules per direction. Pure.

use serde_json::{Value, json};

use crate::cluster::kinds::policy_objects::{PolicyKindInfo, PolicyObject};
use crate::cluster::state::ClusterObjects;
use crate::policy::PolicyKind;

/// A declared policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    /// Its kind.
    pub kind: PolicyKind,
    /// Its namespace; None for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The object: apiVersion, kind, metadata (name, namespace), spec.
    pub object: Value,
}

impl Declared {
    /// The object as YAML (empty if it cannot be written, which JSON values always can).
    pub fn yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.object).unwrap_or_default()
    }

    /// The rules of `direction` (`ingress` or `egress`), as the spec lists them.
    pub fn rules(&self, direction: &str) -> &[Value] {
        self.object["spec"][direction]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }
}

/// The policy a verdict names, if the state holds it.
pub fn find(
    objects: &ClusterObjects,
    kind: PolicyKind,
    namespace: Option<&str>,
    name: &str,
) -> Option<Declared> {
    let object = match kind {
        PolicyKind::NetworkPolicy => objects
            .policies
            .iter()
            .find(|p| {
                p.metadata.name.as_deref() == Some(name)
                    && p.metadata.namespace.as_deref() == namespace
            })
            .map(|p| {
                json!({
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": serde_json::to_value(&p.spec).unwrap_or(Value::Null),
                })
            }),
        PolicyKind::CalicoNetworkPolicy => tiered(&objects.calico_policies, namespace, name),
        PolicyKind::GlobalNetworkPolicy => tiered(&objects.calico_global_policies, None, name),
        PolicyKind::AdminNetworkPolicy => tiered(&objects.admin_policies, None, name),
        PolicyKind::BaselineAdminNetworkPolicy => {
            tiered(&objects.baseline_admin_policies, None, name)
        }
        PolicyKind::ClusterNetworkPolicy => tiered(&objects.cluster_network_policies, None, name),
    }?;
    Some(Declared {
        kind,
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        object,
    })
}

fn tiered<M: PolicyKindInfo>(
    policies: &[std::sync::Arc<PolicyObject<M>>],
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    policies
        .iter()
        .find(|p| {
            p.metadata.name.as_deref() == Some(name) && p.metadata.namespace.as_deref() == namespace
        })
        .map(|p| {
            let mut object = p.to_json();
            if namespace.is_none()
                && let Some(metadata) = object["metadata"].as_object_mut()
            {
                metadata.remove("namespace");
            }
            object
        })
}

/// The declared policies that could select pods of `namespace`: its own and the
/// cluster-scoped ones.
pub fn candidates(objects: &ClusterObjects, namespace: &str) -> Vec<Declared> {
    let mut names: Vec<(PolicyKind, Option<String>, String)> = Vec::new();
    let mut add = |kind, ns: Option<&String>, name: Option<&String>| {
        if let Some(name) = name
            && ns.is_none_or(|ns| ns == namespace)
        {
            names.push((kind, ns.cloned(), name.clone()));
        }
    };
    for p in &objects.policies {
        add(
            PolicyKind::NetworkPolicy,
            p.metadata.namespace.as_ref(),
            p.metadata.name.as_ref(),
        );
    }
    for p in &objects.calico_policies {
        let kind = PolicyKind::CalicoNetworkPolicy;
        add(
            kind,
            p.metadata.namespace.as_ref(),
            p.metadata.name.as_ref(),
        );
    }
    for (kind, metas) in [
        (
            PolicyKind::GlobalNetworkPolicy,
            objects
                .calico_global_policies
                .iter()
                .map(|p| &p.metadata)
                .collect::<Vec<_>>(),
        ),
        (
            PolicyKind::AdminNetworkPolicy,
            objects.admin_policies.iter().map(|p| &p.metadata).collect(),
        ),
        (
            PolicyKind::BaselineAdminNetworkPolicy,
            objects
                .baseline_admin_policies
                .iter()
                .map(|p| &p.metadata)
                .collect(),
        ),
        (
            PolicyKind::ClusterNetworkPolicy,
            objects
                .cluster_network_policies
                .iter()
                .map(|p| &p.metadata)
                .collect(),
        ),
    ] {
        for meta in metas {
            add(kind, None, meta.name.as_ref());
        }
    }
    names
        .into_iter()
        .filter_map(|(kind, ns, name)| find(objects, kind, ns.as_deref(), &name))
        .collect()
}

/// A kind as verdicts name it (`PolicyKind::name`), read back.
pub fn kind_named(name: &str) -> Option<PolicyKind> {
    PolicyKind::ALL.into_iter().find(|k| k.name() == name)
}

/// A rule in one line: its JSON, compact.
pub fn rule_text(rule: &Value) -> String {
    serde_json::to_string(rule).unwrap_or_default()
}

/// Port numbers a rule names anywhere under a key that says "port" (`port`, `ports`,
/// `endPort`, Calico's `"80:90"` ranges by their first port, the admin kinds'
/// `portNumber: {port}`, `portRange: {start, end}`, `destinationPort: {number}`), for the
/// viewer's probes. Named ports are not resolved.
pub fn rule_ports(rule: &Value, into: &mut Vec<u16>) {
    match rule {
        Value::Object(map) => {
            for (key, value) in map {
                if key.to_ascii_lowercase().contains("port") {
                    numbers(value, into);
                }
                rule_ports(value, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| rule_ports(v, into)),
        _ => {}
    }
}

fn numbers(value: &Value, into: &mut Vec<u16>) {
    match value {
        Value::Number(n) => {
            if let Some(port) = n.as_u64().and_then(|p| u16::try_from(p).ok()) {
                into.push(port);
            }
        }
        Value::String(text) => {
            let first = text.split(':').next().unwrap_or_default();
            if let Ok(port) = first.parse() {
                into.push(port);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| numbers(v, into)),
        Value::Object(map) => map.values().for_each(|v| numbers(v, into)),
        _ => {}
    }
}

/// The protocols a rule names (any case): TCP always, UDP and SCTP when written.
pub fn rule_protocols(rule: &Value) -> Vec<crate::flow::IpProtocol> {
    use crate::flow::IpProtocol;
    let text = rule_text(rule).to_ascii_uppercase();
    let mut protocols = vec![IpProtocol::TCP];
    for (name, protocol) in [("UDP", IpProtocol::UDP), ("SCTP", IpProtocol::SCTP)] {
        if text.contains(name) {
            protocols.push(protocol);
        }
    }
    protocols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_found_by_what_a_verdict_names_with_its_rules_and_ports() {
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
            metadata: {name: api, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  \
            - ports: [{port: 8080}, {port: 9000, endPort: 9010}]\n---\n\
            apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
            metadata: {name: no-db}\nspec:\n  selector: \"app == 'db'\"\n  egress:\n  \
            - action: Allow\n    destination: {ports: [\"53\", \"6000:6010\"]}\n";
        let objects = crate::cluster::manifests::parse("p.yaml", yaml).into_objects();
        let api = find(&objects, PolicyKind::NetworkPolicy, Some("shop"), "api").expect("api");
        assert_eq!(api.rules("ingress").len(), 1);
        assert!(api.yaml().contains("name: api"), "{}", api.yaml());
        let mut ports = Vec::new();
        rule_ports(&api.rules("ingress")[0], &mut ports);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports, [8080, 9000, 9010]);
        let global = find(&objects, PolicyKind::GlobalNetworkPolicy, None, "no-db").expect("gnp");
        let mut ports = Vec::new();
        rule_ports(&global.rules("egress")[0], &mut ports);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports, [53, 6000]);
        assert!(find(&objects, PolicyKind::NetworkPolicy, Some("shop"), "nope").is_none());
        assert_eq!(
            kind_named("GlobalNetworkPolicy"),
            Some(PolicyKind::GlobalNetworkPolicy)
        );
    }
}

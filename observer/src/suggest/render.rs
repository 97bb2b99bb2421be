//! Suggestions as YAML ready for `kubectl apply`: Kubernetes `networking.k8s.io/v1`
//! NetworkPolicies, the evidence of each rule in comments and the observation window in
//! annotations. Strings are written as JSON strings (valid YAML double-quoted scalars), so
//! no label value can break the document. Deterministic: same suggestions, same bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::generate::{PortRange, SuggestedRule, Suggestion};
use super::learn::{EdgeStats, Peer};

/// The annotation keys on each policy.
pub const ANNOTATION_PREFIX: &str = "observer.k8s.io";

/// `s` as a quoted YAML (JSON) string.
pub(super) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn labels(map: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {}", quoted(k), quoted(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn evidence(stats: &EdgeStats) -> String {
    format!(
        "{} flows, {} packets, {} bytes, {} .. {}, e.g. {}",
        stats.flows, stats.packets, stats.bytes, stats.first_seen, stats.last_seen, stats.example
    )
}

/// The comments above a policy: what it was learned for, a note on its selector, and the
/// traffic no rule covers (each line starting with `unruled`, when the format has no rule
/// for it).
pub(super) fn header(out: &mut String, s: &Suggestion, unruled: Option<&str>) {
    let _ = writeln!(
        out,
        "# Suggested by observer from observed traffic: {} ({}).",
        s.subject,
        s.stability.name()
    );
    if let Some(note) = &s.selector_note {
        let _ = writeln!(out, "# Note: {note}");
    }
    for t in unruled.map_or(&[][..], |_| &s.not_expressible) {
        let message = t
            .icmp
            .map(|(kind, code)| format!(" type {kind} code {code}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# {}: {:?} {}{message} with {}",
            unruled.unwrap_or_default(),
            t.direction,
            t.protocol,
            peer_name(&t.peer)
        );
    }
}

/// `apiVersion`, `kind: NetworkPolicy` and the metadata: name, namespace, and the
/// annotations of the observation.
pub(super) fn metadata(out: &mut String, s: &Suggestion, api_version: &str, name: &str) {
    let _ = writeln!(out, "apiVersion: {api_version}");
    let _ = writeln!(out, "kind: NetworkPolicy");
    let _ = writeln!(out, "metadata:");
    let _ = writeln!(out, "  name: {}", quoted(name));
    let _ = writeln!(out, "  namespace: {}", quoted(&s.subject.namespace));
    let _ = writeln!(out, "  annotations:");
    for (key, value) in annotations(s) {
        let _ = writeln!(out, "    {}: {}", quoted(&key), quoted(&value));
    }
}

/// The annotations of the observation: window, nodes, stability, workload.
fn annotations(s: &Suggestion) -> BTreeMap<String, String> {
    let nodes: Vec<&str> = s.nodes.iter().map(String::as_str).collect();
    [
        ("observed-from", s.window.0.to_string()),
        ("observed-until", s.window.1.to_string()),
        ("observed-by-nodes", nodes.join(",")),
        ("stability", s.stability.name().to_string()),
        ("workload", s.subject.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{ANNOTATION_PREFIX}/{k}"), v))
    .collect()
}

pub(super) fn peer_name(peer: &Peer) -> String {
    match peer {
        Peer::Workload(w) => w.to_string(),
        Peer::Node { name, ip } => format!("node {name} ({ip})"),
        Peer::External { network, prefix } => format!("{network}/{prefix}"),
    }
}

/// One policy document (ending with `---`).
pub fn kubernetes(s: &Suggestion) -> String {
    let mut out = String::new();
    header(
        &mut out,
        s,
        Some("Not expressible in NetworkPolicy, not in a rule"),
    );
    metadata(&mut out, s, "networking.k8s.io/v1", &s.name);
    let _ = writeln!(out, "spec:");
    let _ = writeln!(out, "  podSelector:");
    let _ = writeln!(out, "    matchLabels: {}", labels(&s.selector));
    let _ = writeln!(out, "  policyTypes: [Ingress, Egress]");
    for (field, peers_field, rules) in
        [("ingress", "from", &s.ingress), ("egress", "to", &s.egress)]
    {
        if rules.is_empty() {
            let _ = writeln!(out, "  {field}: []");
            continue;
        }
        let _ = writeln!(out, "  {field}:");
        for rule in rules {
            write_rule(&mut out, s, peers_field, rule);
        }
    }
    out.push_str("---\n");
    out
}

fn write_rule(out: &mut String, s: &Suggestion, peers_field: &str, rule: &SuggestedRule) {
    let _ = writeln!(
        out,
        "  # {}: {}",
        peer_name(&rule.peer),
        evidence(&rule.evidence)
    );
    let _ = writeln!(out, "  - {peers_field}:");
    match &rule.peer {
        Peer::Workload(w) if w.namespace == s.subject.namespace => {
            let _ = writeln!(
                out,
                "    - podSelector: {{matchLabels: {}}}",
                labels(&rule.peer_labels)
            );
        }
        Peer::Workload(w) => {
            let namespace = BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                w.namespace.clone(),
            )]);
            let _ = writeln!(
                out,
                "    - namespaceSelector: {{matchLabels: {}}}",
                labels(&namespace)
            );
            let _ = writeln!(
                out,
                "      podSelector: {{matchLabels: {}}}",
                labels(&rule.peer_labels)
            );
        }
        Peer::Node { ip, .. } => {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            let _ = writeln!(
                out,
                "    # A node's address: CNIs differ on whether policy applies to it."
            );
            let _ = writeln!(
                out,
                "    - ipBlock: {{cidr: {}}}",
                quoted(&format!("{ip}/{prefix}"))
            );
        }
        Peer::External { network, prefix } => {
            let _ = writeln!(
                out,
                "    - ipBlock: {{cidr: {}}}",
                quoted(&format!("{network}/{prefix}"))
            );
        }
    }
    let _ = writeln!(out, "    ports:");
    for PortRange {
        protocol,
        first,
        last,
    } in &rule.ports
    {
        if let Some(name) = rule.port_names.get(&(*protocol, *first)) {
            let _ = writeln!(
                out,
                "    - {{protocol: {protocol}, port: {}}}  # {first}",
                quoted(name)
            );
        } else if first == last {
            let _ = writeln!(out, "    - {{protocol: {protocol}, port: {first}}}");
        } else {
            let _ = writeln!(
                out,
                "    - {{protocol: {protocol}, port: {first}, endPort: {last}}}"
            );
        }
    }
}

/// The same policy as a Kubernetes object, for the proof (the YAML reads back to it: the
/// tests check that it does).
pub fn network_policy(s: &Suggestion) -> NetworkPolicy {
    let selector = |labels: &BTreeMap<String, String>| LabelSelector {
        match_labels: Some(labels.clone()),
        ..LabelSelector::default()
    };
    let peer = |rule: &SuggestedRule| -> NetworkPolicyPeer {
        match &rule.peer {
            Peer::Workload(w) => NetworkPolicyPeer {
                namespace_selector: (w.namespace != s.subject.namespace).then(|| {
                    selector(&BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        w.namespace.clone(),
                    )]))
                }),
                pod_selector: Some(selector(&rule.peer_labels)),
                ..NetworkPolicyPeer::default()
            },
            Peer::Node { ip, .. } => NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            },
            Peer::External { network, prefix } => NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: format!("{network}/{prefix}"),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            },
        }
    };
    let ports = |rule: &SuggestedRule| -> Vec<NetworkPolicyPort> {
        rule.ports
            .iter()
            .map(|p| NetworkPolicyPort {
                protocol: Some(p.protocol.to_string()),
                port: Some(match rule.port_names.get(&(p.protocol, p.first)) {
                    Some(name) => IntOrString::String(name.clone()),
                    None => IntOrString::Int(i32::from(p.first)),
                }),
                end_port: (p.last != p.first).then_some(i32::from(p.last)),
            })
            .collect()
    };
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            namespace: Some(s.subject.namespace.clone()),
            annotations: Some(annotations(s)),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&s.selector)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(
                s.ingress
                    .iter()
                    .map(|r| NetworkPolicyIngressRule {
                        from: Some(vec![peer(r)]),
                        ports: Some(ports(r)),
                    })
                    .collect(),
            ),
            egress: Some(
                s.egress
                    .iter()
                    .map(|r| NetworkPolicyEgressRule {
                        to: Some(vec![peer(r)]),
                        ports: Some(ports(r)),
                    })
                    .collect(),
            ),
        }),
    }
}

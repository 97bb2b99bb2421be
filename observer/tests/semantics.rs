//! Semantics the corpus does not score: nodes, hostNetwork, IPv6, endPort, named ports on
//! egress, selector operators, defaulting corner cases.

use observer::cluster::manifests;
use observer::policy::{
    Category, DirectionDecision, Endpoint, FlowQuery, PolicySnapshot, Protocol, RuleAction, decide,
    evaluate,
};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}, {type: Hostname, address: n1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web, tier: front}}
spec:
  nodeName: n1
  containers:
  - name: c
    image: i
    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: app, labels: {app: db}}
spec:
  nodeName: n2
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 9090}]}]
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: other, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: other, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, image: i}]}
status: {podIP: 192.168.0.1}
"#;

fn snap(policies: &str) -> PolicySnapshot {
    let text = format!("{CLUSTER}\n---\n{policies}");
    let m = manifests::parse("test.yaml", &text);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let (input, errors) = m.snapshot_input();
    assert!(errors.is_empty(), "{errors:?}");
    PolicySnapshot::build(&input)
}

fn ep(s: &PolicySnapshot, name: &str) -> Endpoint {
    if let Ok(ip) = name.parse() {
        return s.resolve_ip(ip);
    }
    if let Some(node) = name.strip_prefix("node:") {
        let id = s.node_id(node).expect("node");
        return Endpoint::Node { id, ip: None };
    }
    let (ns, pod) = name.split_once('/').expect("ns/pod");
    Endpoint::Pod {
        id: s.pod_id(ns, pod).expect("pod"),
        ip: None,
    }
}

fn q(s: &PolicySnapshot, from: &str, to: &str, port: u16, protocol: Protocol) -> FlowQuery {
    FlowQuery {
        src: ep(s, from),
        dst: ep(s, to),
        port,
        protocol,
    }
}

fn allowed(s: &PolicySnapshot, from: &str, to: &str, port: u16, protocol: Protocol) -> bool {
    let query = q(s, from, to, port, protocol);
    let full = evaluate(s, &query).allowed;
    assert_eq!(full, decide(s, &query).allowed, "decide and evaluate agree");
    full
}

use Protocol::{Tcp, Udp};

const DENY_ALL: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: app}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"#;

#[test]
fn node_exemption_only_for_own_node() {
    let s = snap(DENY_ALL);
    let v = evaluate(&s, &q(&s, "node:n1", "app/web", 8080, Tcp));
    assert!(v.allowed);
    assert_eq!(v.category, Category::NodeExempt);
    assert_eq!(v.ingress.decision, DirectionDecision::Exempt);
    // By IP as well: 192.168.0.1 is n1 (the hostNetwork pod shares it; the node wins).
    let v = evaluate(&s, &q(&s, "192.168.0.1", "app/web", 8080, Tcp));
    assert_eq!(v.category, Category::NodeExempt);
    // Another node is just an outside address.
    let v = evaluate(&s, &q(&s, "node:n2", "app/web", 8080, Tcp));
    assert!(!v.allowed);
    assert_eq!(v.category, Category::Decided);
    // Egress from the pod to its node is not exempt.
    assert!(!allowed(&s, "app/web", "node:n1", 10250, Tcp));
}

#[test]
fn host_network_pods_are_undefined() {
    let s = snap("");
    let v = evaluate(&s, &q(&s, "other/agent", "app/web", 8080, Tcp));
    assert_eq!(v.category, Category::Undefined);
    assert!(!v.allowed, "undefined is never reported as allowed");
    assert_eq!(v.ingress.decision, DirectionDecision::NotIsolated);
}

#[test]
fn ipv6_ip_blocks_and_flow_address() {
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6-only, namespace: app}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: "fd00::/64", except: ["fd00::2/128"]}}]}]
"#,
    );
    assert!(
        allowed(&s, "app/db", "fd00::1", 80, Tcp),
        "v6 pod IP inside block"
    );
    assert!(!allowed(&s, "app/db", "fd00::2", 80, Tcp), "excepted");
    assert!(
        !allowed(&s, "app/db", "10.0.0.1", 80, Tcp),
        "v4 address of same pod"
    );
    assert!(
        allowed(&s, "app/db", "app/web", 80, Tcp),
        "named pod: any of its IPs"
    );
    assert!(!allowed(&s, "app/db", "2001:db8::1", 80, Tcp));
}

#[test]
fn end_port_and_protocol_only_ports() {
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8000, endPort: 8080}, {protocol: UDP}]}]
"#,
    );
    assert!(allowed(&s, "other/client", "app/web", 8000, Tcp));
    assert!(allowed(&s, "other/client", "app/web", 8080, Tcp));
    assert!(!allowed(&s, "other/client", "app/web", 8081, Tcp));
    assert!(!allowed(
        &s,
        "other/client",
        "app/web",
        8050,
        Protocol::Sctp
    ));
    assert!(allowed(&s, "other/client", "app/web", 1, Udp));
}

#[test]
fn named_ports_resolve_on_destination() {
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-http, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]
"#,
    );
    // "http" is 9090 on db (the destination), 8080 on web (the source).
    assert!(allowed(&s, "app/web", "app/db", 9090, Tcp));
    assert!(!allowed(&s, "app/web", "app/db", 8080, Tcp));
    // Outside addresses have no named ports.
    assert!(!allowed(&s, "app/web", "8.8.8.8", 9090, Tcp));
    // Protocol must match: dns is UDP on web, but this rule is TCP.
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-tcp, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: dns}]}]
"#,
    );
    assert!(!allowed(&s, "other/client", "app/web", 53, Tcp));
    assert!(!allowed(&s, "other/client", "app/web", 53, Udp));
}

#[test]
fn set_based_selectors_and_missing_keys() {
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: expr, namespace: app}
spec:
  podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [a]}]}
      podSelector: {matchExpressions: [{key: app, operator: In, values: [client, x]}]}
"#,
    );
    // web has tier → not selected → not isolated.
    let v = evaluate(&s, &q(&s, "app/db", "app/web", 80, Tcp));
    assert_eq!(v.ingress.decision, DirectionDecision::NotIsolated);
    // db lacks tier → selected. "other" has no team label: NotIn matches.
    assert!(allowed(&s, "other/client", "app/db", 80, Tcp));
    assert!(!allowed(&s, "app/web", "app/db", 80, Tcp));
}

#[test]
fn verdict_lists_all_allowing_rules_and_isolating_policies() {
    let s = snap(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-allow, namespace: app}
spec: {podSelector: {}, ingress: [{ports: [{port: 1}]}, {}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-allow, namespace: app}
spec: {podSelector: {matchLabels: {app: db}}, ingress: [{}]}
"#,
    );
    let v = evaluate(&s, &q(&s, "other/client", "app/db", 80, Tcp));
    assert_eq!(v.ingress.decision, DirectionDecision::Allowed, "{v:?}");
    let got: Vec<_> = v
        .ingress
        .tiers
        .iter()
        .map(|r| (r.policy.name, r.rule_index, r.action))
        .collect();
    assert_eq!(
        got,
        [
            ("a-allow", Some(0), RuleAction::Allow),
            ("b-allow", Some(1), RuleAction::Allow)
        ]
    );
    assert_eq!(v.egress.decision, DirectionDecision::NotIsolated);
}

#[test]
fn external_ends_are_one_sided() {
    let s = snap(DENY_ALL);
    let v = evaluate(&s, &q(&s, "8.8.8.8", "app/web", 80, Tcp));
    assert_eq!(v.egress.decision, DirectionDecision::NotApplicable);
    assert_eq!(v.ingress.decision, DirectionDecision::Denied);
    // The isolating policy's implicit default denies: no rule index.
    assert_eq!(v.ingress.tiers.len(), 1, "{v:?}");
    assert_eq!(v.ingress.tiers[0].rule_index, None);
    assert_eq!(v.ingress.tiers[0].action, RuleAction::Deny);
    let v = evaluate(&s, &q(&s, "other/client", "8.8.8.8", 80, Tcp));
    assert!(v.allowed);
    assert_eq!(v.ingress.decision, DirectionDecision::NotApplicable);
}

#[test]
fn calico_network_policy_is_loaded_as_calico_not_as_kubernetes_policy() {
    let m = manifests::parse(
        "calico.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: app}\nspec: {selector: all()}\n",
    );
    assert!(m.objects.policies.is_empty());
    assert_eq!(m.objects.calico_policies.len(), 1);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
}

#[test]
fn an_unknown_field_of_a_calico_policy_is_warned_about() {
    // `selecter` would leave `selector` absent, which selects every pod.
    let m = manifests::parse(
        "calico.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: app}\n\
         spec: {selecter: \"app == 'db'\", ingress: [{action: Allow, sourse: {}}]}\n",
    );
    let warnings: Vec<String> = m.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.contains("spec.selecter")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.ingress[0].sourse")),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn a_bad_calico_selector_is_reported_with_its_field_and_position() {
    let m = manifests::parse(
        "calico.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny}\n\
         spec: {selector: \"app == 'web' &&\", types: [Ingress]}\n",
    );
    assert!(m.objects.calico_global_policies.is_empty());
    let error = m
        .errors
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(error.contains("calico.yaml"), "{error}");
    assert!(error.contains("spec.selector"), "{error}");
    assert!(error.contains("at position"), "{error}");
}

#[test]
fn missing_spec_is_default_deny_ingress() {
    let s = snap(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: empty, namespace: app}\n",
    );
    assert!(!allowed(&s, "other/client", "app/web", 80, Tcp));
    assert!(allowed(&s, "app/web", "other/client", 80, Tcp));
}

#[test]
fn snapshot_is_a_plain_shareable_value() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<PolicySnapshot>();
}

//! Synthetic cluster manifests for benchmarks: many namespaces, pods and policies of
//! realistic shapes, as one multi-document YAML text.

use std::fmt::Write;

/// Size of a synthetic cluster.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Namespaces.
    pub namespaces: usize,
    /// Pods, spread evenly over the namespaces.
    pub pods: usize,
    /// NetworkPolicies, spread evenly over the namespaces.
    pub policies: usize,
}

/// The IPv4 address of pod number `i` (10.0.0.0/8, skipping .0 and .255).
pub fn pod_ip(i: usize) -> std::net::Ipv4Addr {
    let n = i as u32;
    std::net::Ipv4Addr::new(
        10,
        (n / 62_500) as u8 + 1,
        ((n / 250) % 250) as u8,
        (n % 250) as u8 + 1,
    )
}

/// Namespace of pod number `i`.
pub fn pod_namespace(shape: &Shape, i: usize) -> String {
    format!("ns-{}", i % shape.namespaces)
}

/// The manifests: Namespaces (labelled by team), ReplicaSets, Pods (labelled by app,
/// owned by a ReplicaSet, with named container ports), and policies cycling through
/// default-deny, same-namespace, cross-namespace by label with ports, and ipBlock egress.
pub fn cluster_yaml(shape: &Shape) -> String {
    let mut out = String::with_capacity(shape.pods * 700);
    for n in 0..shape.namespaces {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n}, labels: {{team: t{}}}}}\n---\n",
            n % 20
        );
        for app in 0..5 {
            let _ = write!(
                out,
                "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: app{app}-7f9c\n  namespace: ns-{n}\n  \
                 ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: app{app}, uid: d-{n}-{app}, controller: true}}]\n\
                 spec: {{selector: {{matchLabels: {{app: app{app}}}}}}}\n---\n"
            );
        }
    }
    for i in 0..shape.pods {
        let app = (i / shape.namespaces) % 5;
        let ns = pod_namespace(shape, i);
        let ip = pod_ip(i);
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app{app}-7f9c-{i}\n  namespace: {ns}\n  uid: pod-{i}\n  \
             labels: {{app: app{app}, tier: t{}}}\n  \
             ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: app{app}-7f9c, uid: rs-{i}, controller: true}}]\n\
             spec:\n  nodeName: node-{}\n  serviceAccountName: app{app}\n  containers:\n  - name: main\n    image: app\n    \
             ports: [{{name: http, containerPort: 8080}}, {{name: metrics, containerPort: 9090}}, {{name: dns, containerPort: 53, protocol: UDP}}]\n\
             status: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n---\n",
            app % 3,
            i % 50
        );
    }
    for k in 0..shape.policies {
        let n = k % shape.namespaces;
        let spec = match (k / shape.namespaces) % 4 {
            0 => "podSelector: {}\n  policyTypes: [Ingress]".to_string(),
            1 => format!(
                "podSelector: {{matchLabels: {{app: app{}}}}}\n  ingress:\n  - from: [{{podSelector: {{}}}}]",
                k % 5
            ),
            2 => format!(
                "podSelector: {{matchLabels: {{app: app{}}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchExpressions: [{{key: team, operator: In, values: [t1, t2, t3]}}]}}\n      podSelector: {{matchLabels: {{app: app{}}}}}\n    ports: [{{port: http}}, {{port: 9000, endPort: 9100}}]",
                k % 5,
                (k + 1) % 5
            ),
            _ => format!(
                "podSelector: {{matchLabels: {{tier: t{}}}}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.200.0.0/16]}}}}]\n    ports: [{{port: 443}}, {{port: 53, protocol: UDP}}]",
                k % 3
            ),
        };
        let _ = write!(
            out,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: policy-{k}, namespace: ns-{n}}}\nspec:\n  {spec}\n---\n"
        );
    }
    out
}

//! Property tests over random small clusters and policies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use observer::policy::{
    CompiledPolicy, ContainerPort, DirectionDecision, Endpoint, FlowQuery, NamespaceInfo, PodInfo,
    PolicySnapshot, Protocol, SnapshotInput, Verdict, compile, evaluate,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

fn labels(keys: &'static [(&'static str, &'static [&'static str])]) -> BoxedStrategy<Labels> {
    let per_key: Vec<_> = keys
        .iter()
        .map(|(k, vals)| opt(prop::sample::select(*vals)).prop_map(move |v| (*k, v)))
        .collect();
    per_key
        .prop_map(|kv| {
            kv.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
                .collect()
        })
        .boxed()
}

type Labels = BTreeMap<String, String>;

const POD_KEYS: &[(&str, &[&str])] =
    &[("app", &["web", "db", "api"]), ("tier", &["front", "back"])];
const NS_KEYS: &[(&str, &[&str])] = &[("env", &["prod", "dev"]), ("team", &["x", "y"])];

fn selector(keys: &'static [(&'static str, &'static [&'static str])]) -> BoxedStrategy<Value> {
    let key = prop::sample::select(keys.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    let value = prop::sample::select(vec![
        "web", "db", "api", "front", "back", "prod", "dev", "x", "y",
    ]);
    let expr = (
        key.clone(),
        0..4usize,
        prop::collection::vec(value.clone(), 1..3),
    )
        .prop_map(|(k, op, vals)| match op {
            0 => json!({"key": k, "operator": "In", "values": vals}),
            1 => json!({"key": k, "operator": "NotIn", "values": vals}),
            2 => json!({"key": k, "operator": "Exists"}),
            _ => json!({"key": k, "operator": "DoesNotExist"}),
        });
    (
        opt(prop::collection::btree_map(key, value, 0..2)),
        opt(prop::collection::vec(expr, 0..2)),
    )
        .prop_map(|(ml, me)| json!({"matchLabels": ml, "matchExpressions": me}))
        .boxed()
}

fn peer() -> BoxedStrategy<Value> {
    prop_oneof![
        selector(POD_KEYS).prop_map(|p| json!({"podSelector": p})),
        selector(NS_KEYS).prop_map(|n| json!({"namespaceSelector": n})),
        (selector(NS_KEYS), selector(POD_KEYS))
            .prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        prop::sample::select(vec![
            json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}),
            json!({"ipBlock": {"cidr": "10.0.2.7/8"}}),
            json!({"ipBlock": {"cidr": "192.168.0.0/16"}}),
            json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}),
        ]),
    ]
    .boxed()
}

fn port() -> BoxedStrategy<Value> {
    let protocol = opt(prop::sample::select(vec!["TCP", "UDP"]));
    let number = prop_oneof![
        Just(json!(null)),
        Just(json!(80)),
        Just(json!(53)),
        Just(json!("http")),
        Just(json!("dns")),
    ];
    (protocol, number, any::<bool>())
        .prop_map(|(protocol, port, range)| {
            let end = (range && port.is_u64()).then(|| json!(8080));
            json!({"protocol": protocol, "port": port, "endPort": end})
        })
        .boxed()
}

fn rules(peer_key: &'static str) -> BoxedStrategy<Option<Vec<Value>>> {
    let rule = (
        opt(prop::collection::vec(peer(), 0..3)),
        opt(prop::collection::vec(port(), 0..3)),
    )
        .prop_map(move |(peers, ports)| json!({peer_key: peers, "ports": ports}));
    opt(prop::collection::vec(rule, 0..3))
}

fn policy(name: String) -> BoxedStrategy<Value> {
    let types = prop::sample::select(vec![
        json!(null),
        json!([]),
        json!(["Ingress"]),
        json!(["Egress"]),
        json!(["Ingress", "Egress"]),
    ]);
    (
        prop::sample::select(NAMESPACES.to_vec()),
        selector(POD_KEYS),
        types,
        rules("from"),
        rules("to"),
    )
        .prop_map(move |(ns, sel, types, ingress, egress)| {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"podSelector": sel, "policyTypes": types, "ingress": ingress, "egress": egress}})
        })
        .boxed()
}

fn policies() -> BoxedStrategy<Vec<Value>> {
    (0..6usize)
        .prop_flat_map(|n| (0..n).map(|i| policy(format!("p{i}"))).collect::<Vec<_>>())
        .boxed()
}

#[derive(Debug, Clone)]
struct Cluster {
    namespaces: Vec<Arc<NamespaceInfo>>,
    pods: Vec<Arc<PodInfo>>,
}

fn cluster() -> BoxedStrategy<Cluster> {
    let pod = (
        prop::sample::select(NAMESPACES.to_vec()),
        labels(POD_KEYS),
        prop::sample::select(vec![80u16, 8080]),
    );
    (
        prop::collection::vec(labels(NS_KEYS), 3),
        prop::collection::vec(pod, 1..6),
    )
        .prop_map(|(ns_labels, pods)| Cluster {
            namespaces: NAMESPACES
                .iter()
                .zip(ns_labels)
                .map(|(n, l)| Arc::new(NamespaceInfo::new(*n, l)))
                .collect(),
            pods: pods
                .into_iter()
                .enumerate()
                .map(|(i, (ns, labels, http))| {
                    let ip: IpAddr = format!("10.0.{}.{}", i % 3, i + 1)
                        .parse()
                        .expect("valid IP");
                    let port = |name: &str, port, protocol| ContainerPort {
                        name: Some(name.to_owned()),
                        port,
                        protocol,
                    };
                    Arc::new(PodInfo {
                        namespace: ns.to_owned(),
                        name: format!("pod{i}"),
                        labels,
                        ips: vec![ip],
                        ports: vec![
                            port("http", http, Protocol::Tcp),
                            port("dns", 53, Protocol::Udp),
                        ],
                        ..PodInfo::default()
                    })
                })
                .collect(),
        })
        .boxed()
}

fn compiled(values: &[Value]) -> Vec<Arc<CompiledPolicy>> {
    values
        .iter()
        .map(|v| {
            let np: NetworkPolicy =
                serde_json::from_value(v.clone()).expect("generated policy parses");
            Arc::new(compile(&np).unwrap_or_else(|e| panic!("generated policy is valid: {e} {v}")))
        })
        .collect()
}

fn snapshot(c: &Cluster, policies: &[Value]) -> PolicySnapshot {
    PolicySnapshot::build(&SnapshotInput {
        namespaces: c.namespaces.clone(),
        pods: c.pods.clone(),
        nodes: Vec::new(),
        policies: compiled(policies),
    })
}

/// Every pod and two outside addresses, as sources and destinations.
fn queries(snap: &PolicySnapshot, c: &Cluster) -> Vec<FlowQuery> {
    let mut ends: Vec<Endpoint> = c
        .pods
        .iter()
        .filter_map(|p| snap.pod_id(&p.namespace, &p.name))
        .map(|id| Endpoint::Pod { id, ip: None })
        .collect();
    for ip in ["192.168.3.4", "10.0.1.200"] {
        ends.push(snap.resolve_ip(ip.parse().expect("valid IP")));
    }
    let mut out = Vec::new();
    for &src in &ends {
        for &dst in &ends {
            for (port, protocol) in [
                (53, Protocol::Udp),
                (80, Protocol::Tcp),
                (8080, Protocol::Tcp),
                (9000, Protocol::Tcp),
            ] {
                out.push(FlowQuery {
                    src,
                    dst,
                    port,
                    protocol,
                });
            }
        }
    }
    out
}

fn verdicts<'s>(snap: &'s PolicySnapshot, c: &Cluster) -> Vec<Verdict<&'s str>> {
    queries(snap, c).iter().map(|q| evaluate(snap, q)).collect()
}

/// The subject pod of a direction: destination for ingress, source for egress.
fn subject<'s>(snap: &'s PolicySnapshot, e: &Endpoint) -> Option<&'s PodInfo> {
    match e {
        Endpoint::Pod { id, .. } => snap.pod(*id),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn permuting_policies_changes_nothing(
        (c, (ps, shuffled)) in (cluster(), policies().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())))
    ) {
        let (a, b) = (snapshot(&c, &ps), snapshot(&c, &shuffled));
        prop_assert_eq!(verdicts(&a, &c), verdicts(&b, &c));
    }

    #[test]
    fn duplicating_a_policy_changes_nothing(c in cluster(), ps in policies(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!ps.is_empty());
        let base = snapshot(&c, &ps);
        let before = verdicts(&base, &c);
        let original = ps[pick.index(ps.len())].clone();
        // Same name: a replacement by an identical object.
        let mut same = ps.clone();
        same.push(original.clone());
        let same_snap = snapshot(&c, &same);
        prop_assert_eq!(&before, &verdicts(&same_snap, &c));
        // New name: the union gains nothing new.
        let mut copy = original;
        copy["metadata"]["name"] = json!("copy");
        let mut renamed = ps.clone();
        renamed.push(copy);
        let dup = snapshot(&c, &renamed);
        for (x, y) in before.iter().zip(verdicts(&dup, &c)) {
            prop_assert_eq!(x.allowed, y.allowed);
            prop_assert_eq!(x.category, y.category);
            prop_assert_eq!(x.ingress.decision, y.ingress.decision);
            prop_assert_eq!(x.egress.decision, y.egress.decision);
        }
    }

    #[test]
    fn adding_a_policy_is_monotonic_and_local(c in cluster(), ps in policies(), extra in policy("extra".into())) {
        let before_snap = snapshot(&c, &ps);
        let mut more = ps.clone();
        more.push(extra.clone());
        let after_snap = snapshot(&c, &more);
        let added = &compiled(&[extra])[0];
        let qs = queries(&before_snap, &c);
        for q in &qs {
            let (b, a) = (evaluate(&before_snap, q), evaluate(&after_snap, q));
            for (dir, vb, va, end, declared) in [
                ("ingress", &b.ingress, &a.ingress, &q.dst, added.affects_ingress()),
                ("egress", &b.egress, &a.egress, &q.src, added.affects_egress()),
            ] {
                // Already isolated and allowed: stays allowed.
                if vb.decision == DirectionDecision::Allowed {
                    prop_assert!(va.decision == DirectionDecision::Allowed, "{dir} {q:?}: {vb:?} -> {va:?}");
                }
                if vb != va {
                    let selected = subject(&before_snap, end).is_some_and(|p| {
                        p.namespace == added.namespace() && added.selects(&p.labels)
                    });
                    prop_assert!(selected && declared, "{dir} {q:?} changed but not selected/declared: {vb:?} -> {va:?}");
                }
            }
        }
    }
}

/// The cluster as the tiered engine sees it.
fn tiered_world(c: &Cluster) -> observer::policy::tiered::model::World {
    use observer::policy::tiered::model::{World, WorldNamespace, WorldPod};
    let mut world = World::default();
    for ns in &c.namespaces {
        world.namespaces.push(WorldNamespace {
            name: ns.name.clone(),
            labels: ns.labels.clone(),
        });
    }
    for pod in &c.pods {
        world.pods.push(WorldPod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            labels: pod.labels.clone(),
            ip: pod.ips.first().copied(),
            ports: pod
                .ports
                .iter()
                .filter_map(|p| Some((p.name.clone()?, p.port, p.protocol.ip().0)))
                .collect(),
            service_account: "default".into(),
        });
    }
    world.prepare();
    world
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// With NetworkPolicies alone, the tiered path (the default tier at order 1000, Allow
    /// rules, the end-of-tier deny as isolation) allows exactly what the NetworkPolicy
    /// engine allows, direction by direction.
    #[test]
    fn network_policies_judge_the_same_through_calicos_default_tier(c in cluster(), ps in policies()) {
        use observer::policy::tiered::{End, Flow, TieredEngine, compile_objects};
        let snap = snapshot(&c, &ps);
        let objects: Vec<Value> = ps
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p["apiVersion"] = json!("networking.k8s.io/v1");
                p["kind"] = json!("NetworkPolicy");
                p
            })
            .collect();
        let compiled = compile_objects(&objects);
        prop_assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
        let mut engine = TieredEngine::new(compiled.policies, compiled.tiers);
        let world = tiered_world(&c);
        engine.index(&world);
        for q in queries(&snap, &c) {
            let end = |e: &Endpoint| match e {
                Endpoint::Pod { id, .. } => {
                    let pod = snap.pod(*id).expect("a pod of the snapshot");
                    End::Pod(
                        c.pods
                            .iter()
                            .position(|p| p.namespace == pod.namespace && p.name == pod.name)
                            .expect("the same pod"),
                    )
                }
                Endpoint::External(ip) => End::Outside(*ip),
                Endpoint::Node { ip, .. } => End::Outside(ip.expect("an address")),
            };
            let flow = Flow {
                source: end(&q.src),
                destination: end(&q.dst),
                protocol: q.protocol.ip().0,
                port: Some(q.port),
                icmp: None,
            };
            let plain = evaluate(&snap, &q);
            let [egress, ingress] = engine.judge(&world, &flow, false);
            prop_assert_eq!(
                (plain.egress.permits(), plain.ingress.permits()),
                (egress.allowed, ingress.allowed),
                "{:?} {:?}", q, ps
            );
        }
    }
}

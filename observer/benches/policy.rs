//! Evaluation benchmarks on a synthetic cluster: 10,000 pods in 500 namespaces with
//! 2,000 policies of realistic shapes.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use observer::policy::{
    ContainerPort, Endpoint, FlowQuery, NamespaceInfo, PodInfo, PolicySnapshot, Protocol,
    SnapshotInput, compile, decide, evaluate,
};
use serde_json::json;

#[global_allocator]
static ALLOC: observer_lab::alloc::Counting = observer_lab::alloc::Counting;

const NAMESPACES: usize = 500;
const PODS_PER_NS: usize = 20;
const APPS: usize = 5;

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn pod_ip(index: usize) -> IpAddr {
    let n = index as u32 + 1;
    IpAddr::V4(Ipv4Addr::new(
        10,
        200 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

fn namespaces() -> Vec<Arc<NamespaceInfo>> {
    (0..NAMESPACES)
        .map(|i| {
            let env = ["prod", "dev", "staging"][i % 3];
            let labels = [("team", format!("t{}", i % 20)), ("env", env.to_owned())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            Arc::new(NamespaceInfo::new(format!("ns-{i}"), labels))
        })
        .collect()
}

fn pods() -> Vec<Arc<PodInfo>> {
    let port = |name: &str, port, protocol| ContainerPort {
        name: Some(name.to_owned()),
        port,
        protocol,
    };
    (0..NAMESPACES * PODS_PER_NS)
        .map(|p| {
            let (ns, j) = (p / PODS_PER_NS, p % PODS_PER_NS);
            let mut labels: std::collections::BTreeMap<String, String> = [
                ("app", format!("app-{}", j % APPS)),
                ("tier", ["front", "back", "db"][j % 3].to_owned()),
                ("version", format!("v{}", j % 2)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            if ns == 0 && j == 0 {
                labels.insert("k8s-app".into(), "kube-dns".into());
            }
            Arc::new(PodInfo {
                namespace: format!("ns-{ns}"),
                name: format!("pod-{j}"),
                labels,
                ips: vec![pod_ip(p)],
                ports: vec![
                    port("http", 8080, Protocol::Tcp),
                    port("metrics", 9090, Protocol::Tcp),
                    port("dns", 53, Protocol::Udp),
                ],
                node: Some(format!("node-{}", p % 100)),
                host_network: false,
            })
        })
        .collect()
}

/// Four policies per namespace, shapes rotating across namespaces.
fn policy_json(ns: usize, k: usize) -> serde_json::Value {
    let meta = |name: &str| json!({"name": name, "namespace": format!("ns-{ns}")});
    let spec = match (k, ns % 2) {
        (0, _) => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        (1, 0) => json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        (1, _) => json!({"podSelector": {"matchLabels": {"tier": "front"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": format!("t{}", (ns + 1) % 20)},
                                   "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}}]}]}),
        (2, _) => json!({"podSelector": {"matchLabels": {"app": "app-1"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "app-0"}}}],
             "ports": [{"port": 8080}, {"port": "metrics"}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                       "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}],
             "ports": [{"port": "http"}, {"protocol": "TCP", "port": 30000, "endPort": 32767}]}]}),
        (_, 0) => {
            json!({"podSelector": {"matchLabels": {"app": "app-2"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"]}}],
             "ports": [{"port": 443}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-0"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]},
            {"to": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-3", "app-4"]}]}}]}]})
        }
        (_, _) => json!({"podSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["app-3", "app-4"]},
                {"key": "canary", "operator": "DoesNotExist"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.16.5.0/24"]}},
                                  {"podSelector": {"matchLabels": {"tier": "front"}}}]}],
            "egress": [{"to": [{"namespaceSelector": {}}]}, {"ports": [{"port": 53, "protocol": "UDP"}]}]}),
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": meta(&format!("p{k}")), "spec": spec})
}

fn compiled(ns: usize, k: usize) -> Arc<observer::policy::CompiledPolicy> {
    compiled_as(ns, k, k)
}

/// Policy of shape `k` named `p{name}`.
fn compiled_as(ns: usize, k: usize, name: usize) -> Arc<observer::policy::CompiledPolicy> {
    let mut value = policy_json(ns, k);
    value["metadata"]["name"] = json!(format!("p{name}"));
    let np: NetworkPolicy = serde_json::from_value(value).expect("bench policy");
    Arc::new(compile(&np).expect("bench policy is valid"))
}

fn input() -> SnapshotInput {
    SnapshotInput {
        namespaces: namespaces(),
        pods: pods(),
        nodes: Vec::new(),
        policies: (0..NAMESPACES)
            .flat_map(|ns| (0..4).map(move |k| compiled(ns, k)))
            .collect(),
    }
}

/// A mix: 55% same-namespace, 30% cross-namespace, 10% to outside, 5% from outside.
fn queries(snap: &PolicySnapshot, n: usize) -> Vec<FlowQuery> {
    let mut rng = Lcg(42);
    let total = NAMESPACES * PODS_PER_NS;
    let ports = [
        (8080, Protocol::Tcp),
        (9090, Protocol::Tcp),
        (443, Protocol::Tcp),
        (53, Protocol::Udp),
        (31000, Protocol::Tcp),
    ];
    let outside = |rng: &mut Lcg| {
        Endpoint::External(IpAddr::V4(Ipv4Addr::new(93, 184, rng.next(255) as u8, 1)))
    };
    (0..n)
        .map(|_| {
            let src_pod = rng.next(total);
            let dst_pod = match rng.next(100) {
                0..55 => (src_pod / PODS_PER_NS) * PODS_PER_NS + rng.next(PODS_PER_NS),
                _ => rng.next(total),
            };
            let (src, dst) = match rng.next(100) {
                0..10 => (snap.resolve_ip(pod_ip(src_pod)), outside(&mut rng)),
                10..15 => (outside(&mut rng), snap.resolve_ip(pod_ip(dst_pod))),
                _ => (
                    snap.resolve_ip(pod_ip(src_pod)),
                    snap.resolve_ip(pod_ip(dst_pod)),
                ),
            };
            let (port, protocol) = ports[rng.next(ports.len())];
            FlowQuery {
                src,
                dst,
                port,
                protocol,
            }
        })
        .collect()
}

fn report_latency_and_memory(snap: &PolicySnapshot, qs: &[FlowQuery], input: &SnapshotInput) {
    let mut samples: Vec<u64> = Vec::with_capacity(qs.len() * 10);
    for _ in 0..10 {
        for q in qs {
            let t = Instant::now();
            black_box(evaluate(snap, black_box(q)));
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    let allowed = qs.iter().filter(|q| decide(snap, q).allowed).count();
    println!(
        "evaluate latency over {} timed calls (includes ~20-40 ns timer overhead): p50 {} ns, p90 {} ns, p99 {} ns, max {} ns; {:.1}% of queries allowed",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        100.0 * allowed as f64 / qs.len() as f64
    );
    let before = observer_lab::alloc::live_bytes();
    let snap2 = PolicySnapshot::build(input);
    let index = observer_lab::alloc::live_bytes() - before;
    drop(snap2);
    let before = observer_lab::alloc::live_bytes();
    let fresh = self::input();
    let inputs = observer_lab::alloc::live_bytes() - before;
    drop(fresh);
    println!(
        "memory: snapshot index {:.1} MiB (shares the inputs via Arc); inputs (pods, namespaces, compiled policies) {:.1} MiB; {} policies, {} pods",
        index as f64 / 1048576.0,
        inputs as f64 / 1048576.0,
        snap.policy_count(),
        snap.pod_count()
    );
}

fn benches(c: &mut Criterion) {
    let input = input();
    let snap = PolicySnapshot::build(&input);
    let qs = queries(&snap, 10_000);
    report_latency_and_memory(&snap, &qs, &input);

    let mut i = 0;
    c.bench_function("evaluate/single", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(evaluate(&snap, black_box(&qs[i])))
        })
    });
    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Elements(qs.len() as u64));
    group.bench_function("evaluate_10k", |b| {
        b.iter(|| qs.iter().filter(|q| evaluate(&snap, q).allowed).count())
    });
    group.bench_function("decide_10k", |b| {
        b.iter(|| qs.iter().filter(|q| decide(&snap, q).allowed).count())
    });
    let ips: Vec<(IpAddr, IpAddr, FlowQuery)> = qs
        .iter()
        .map(|q| {
            let ip = |e: &Endpoint| match *e {
                Endpoint::Pod { ip: Some(ip), .. } | Endpoint::External(ip) => ip,
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            };
            (ip(&q.src), ip(&q.dst), *q)
        })
        .collect();
    group.bench_function("resolve_ips_and_decide_10k", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|(s, d, q)| {
                    let q = FlowQuery {
                        src: snap.resolve_ip(*s),
                        dst: snap.resolve_ip(*d),
                        ..*q
                    };
                    decide(&snap, &q).allowed
                })
                .count()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    let mut changed = input.clone();
    let mut flip = 0;
    group.bench_function("rebuild_after_one_policy_change", |b| {
        b.iter(|| {
            // Replace one policy (as an informer update would) and rebuild.
            flip = (flip + 1) % 4;
            changed.policies[1234] = compiled_as(1234 / 4, flip, 1234 % 4);
            black_box(PolicySnapshot::build(&changed))
        })
    });
    group.finish();
}

criterion_group!(policy, benches);
criterion_main!(policy);

//! The tiered engine (Calico, AdminNetworkPolicy, ClusterNetworkPolicy, NetworkPolicy
//! together) on a synthetic cluster: 10,000 pods in 500 namespaces; 2,000 NetworkPolicies,
//! 500 Calico NetworkPolicies in 3 tiers, 50 GlobalNetworkPolicies and 20
//! ClusterNetworkPolicies. Evaluation per flow (indexed, as the daemon runs it), the build
//! (compile, derive labels, index), and evaluation at 200 / 2,000 / 20,000 policies: in
//! the same cluster (the policies that select each pod grow tenfold at each step), and in
//! a cluster that grows with its policies (about 4 pods per policy, 20 per namespace).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use observer::policy::tiered::model::{World, WorldNamespace, WorldPod};
use observer::policy::tiered::{End, Flow, TieredEngine, compile_objects};
use serde_json::{Value, json};

const NAMESPACES: usize = 500;
const PODS: usize = 10_000;

/// Teams own 25 namespaces each (20 teams in the 500-namespace cluster): cluster-wide
/// policies select by team, so in a grown cluster each still selects a team's share.
fn teams(namespaces: usize) -> usize {
    (namespaces / 25).max(1)
}

fn world(namespaces: usize, pods: usize) -> World {
    let mut world = World::default();
    for n in 0..namespaces {
        world.namespaces.push(WorldNamespace {
            name: format!("ns-{n}"),
            labels: [
                ("team".to_string(), format!("t{}", n % teams(namespaces))),
                (
                    "env".to_string(),
                    ["prod", "dev", "staging"][n % 3].to_string(),
                ),
            ]
            .into(),
        });
    }
    for i in 0..pods {
        let n = i % namespaces;
        world.pods.push(WorldPod {
            namespace: format!("ns-{n}"),
            name: format!("pod-{i}"),
            labels: [
                ("app".to_string(), format!("app{}", (i / namespaces) % 5)),
                ("tier".to_string(), format!("t{}", i % 3)),
            ]
            .into(),
            ip: Some(std::net::IpAddr::from([
                10,
                1 + (i / 62_500) as u8,
                ((i / 250) % 250) as u8,
                (i % 250) as u8 + 1,
            ])),
            ports: vec![("http".into(), 8080, 6)],
            service_account: "default".into(),
        });
    }
    world.prepare();
    world
}

/// `kubernetes` NetworkPolicies, `calico` Calico ones over 3 tiers, `global` GNPs and
/// `cluster` ClusterNetworkPolicies, of shapes that cycle.
fn objects(
    namespaces: usize,
    kubernetes: usize,
    calico: usize,
    global: usize,
    cluster: usize,
) -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "security"}, "spec": {"order": 100}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "platform"}, "spec": {"order": 200, "defaultAction": "Pass"}}),
    ];
    for k in 0..kubernetes {
        let ns = format!("ns-{}", k % namespaces);
        let app = format!("app{}", k % 5);
        out.push(match k % 3 {
            0 => json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{k}"), "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "t0"}}}], "ports": [{"port": "http"}]}]}}),
            1 => json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{k}"), "namespace": ns},
                "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", k % teams(namespaces))}}}]}]}}),
            _ => json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{k}"), "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}]}]}}),
        });
    }
    for k in 0..calico {
        let tier = ["security", "platform", "default"][k % 3];
        let name = if tier == "default" {
            format!("cnp-{k}")
        } else {
            format!("{tier}.cnp-{k}")
        };
        let action = ["Allow", "Pass", "Log"][k % 3];
        out.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": format!("ns-{}", k % namespaces)},
            "spec": {"tier": tier, "order": (k % 50) as f64, "selector": format!("app == 'app{}' && tier in {{'t0', 't1'}}", k % 5),
                "ingress": [
                    {"action": "Deny", "protocol": "TCP", "source": {"namespaceSelector": "env == 'dev'"}, "destination": {"ports": [22]}},
                    {"action": action, "source": {"selector": "has(app)"}}
                ]}}));
    }
    for k in 0..global {
        out.push(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": format!("security.gnp-{k}")},
            "spec": {"tier": "security", "order": 1000.0 + k as f64,
                "namespaceSelector": format!("team == 't{}'", k % teams(namespaces)),
                "selector": "all()", "types": ["Ingress"],
                "ingress": [{"action": "Pass", "source": {"nets": ["10.0.0.0/8"]}}]}}),
        );
    }
    for k in 0..cluster {
        let (tier, action) = if k % 2 == 0 {
            ("Admin", "Pass")
        } else {
            ("Baseline", "Deny")
        };
        out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{k}")},
            "spec": {"tier": tier, "priority": k,
                "subject": {"namespaces": {"matchLabels": {"team": format!("t{}", k % teams(namespaces))}}},
                "ingress": [{"action": action,
                    "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}],
                    "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]}]}}));
    }
    out
}

fn engine(objects: &[Value], world: &World) -> TieredEngine {
    let compiled = compile_objects(objects);
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors.first());
    let mut engine = TieredEngine::new(compiled.policies, compiled.tiers);
    engine.index(world);
    engine
}

fn flows(n: usize, pods: usize) -> Vec<Flow> {
    let mut x: u64 = 7;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = (x >> 33) as usize % pods;
            let b = (x >> 13) as usize % pods;
            Flow {
                source: End::Pod(a),
                destination: End::Pod(b),
                protocol: 6,
                port: Some([8080, 22, 5432][a % 3]),
                icmp: None,
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let world = world(NAMESPACES, PODS);
    let mixed_objects = objects(NAMESPACES, 2_000, 500, 50, 20);
    let start = Instant::now();
    let mixed = engine(&mixed_objects, &world);
    println!(
        "build (compile {} objects, index 10,000 pods): {:.0} ms",
        mixed_objects.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let qs = flows(10_000, PODS);
    c.bench_function("tiered/evaluate_single", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(mixed.judge(&world, &qs[i], false))
        })
    });
    let mut group = c.benchmark_group("tiered_throughput");
    group.throughput(Throughput::Elements(qs.len() as u64));
    group.bench_function("evaluate_10k", |b| {
        b.iter(|| {
            for q in &qs {
                black_box(mixed.judge(&world, q, false));
            }
        })
    });
    group.finish();
    // Indexed evaluation should not grow with the number of policies.
    let mut group = c.benchmark_group("tiered_scaling");
    group.sample_size(20);
    for total in [200usize, 2_000, 20_000] {
        let scale = |n: usize| n * total / 2_570;
        let shapes = |namespaces| {
            objects(
                namespaces,
                scale(2_000),
                scale(500),
                scale(50).max(1),
                scale(20).max(2),
            )
        };
        let same = engine(&shapes(NAMESPACES), &world);
        group.bench_function(format!("same_cluster_{total}_policies"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % qs.len();
                black_box(same.judge(&world, &qs[i], false))
            })
        });
        let pods = scale(PODS);
        let grown = self::world(pods / 20, pods);
        let grown_engine = engine(&shapes(pods / 20), &grown);
        let grown_flows = flows(10_000, pods);
        group.bench_function(format!("grown_cluster_{total}_policies"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % grown_flows.len();
                black_box(grown_engine.judge(&grown, &grown_flows[i], false))
            })
        });
        if total == 20_000 {
            // A control: the grown cluster's policies, with flows among as many pods as
            // the 200-policy cluster has (spread over its namespaces), so that the pods a
            // flow touches fit the caches as they do there. What remains of the
            // difference is the policies' count; what goes away was the cluster's size.
            let busy = flows(10_000, 200 * PODS / 2_570);
            group.bench_function("grown_cluster_20000_policies_778_busy_pods", |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % busy.len();
                    black_box(grown_engine.judge(&grown, &busy[i], false))
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("tiered_build");
    group.sample_size(10);
    group.bench_function("compile_and_index_2570_policies", |b| {
        b.iter(|| black_box(engine(&mixed_objects, &world)))
    });
    group.finish();
}

criterion_group!(tiered, benches);
criterion_main!(tiered);

//! Enrichment benchmarks on a synthetic cluster of 10,000 pods in 500 namespaces with 2,000
//! policies (and, here, a Service per namespace): building the per-flow view (the rebuild
//! after any change), enriching a record (two identity lookups in the IP history, the
//! Service check, and the verdict), and a batch of 10,000 records of which 30 % are Service
//! traffic (pairs of client-side and backend-side records to merge, and client-side
//! records whose backend is in a 10,000-entry conntrack table).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use observer::cluster::manifests;
use observer::cluster::view::ClusterView;
use observer::enrich::{Enricher, NatTable};
use observer::flow::{
    Counts, FlowRecord, FlowState, IpProtocol, RecordEndpoint, TcpFlags, Timestamp,
};
use observer_common::tcp_flags;
use observer_lab::synthetic::{Shape, cluster_yaml, pod_ip};

/// The daemon's allocator (see `src/main.rs`), so the numbers are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHAPE: Shape = Shape {
    namespaces: 500,
    pods: 10_000,
    policies: 2_000,
};

fn record(src: IpAddr, dst: IpAddr, port: u16) -> FlowRecord {
    let endpoint = |ip, port| RecordEndpoint {
        ip,
        port,
        identity: Default::default(),
    };
    FlowRecord {
        src: endpoint(src, 40_000),
        dst: endpoint(dst, port),
        protocol: IpProtocol::TCP,
        icmp: None,
        fwd: Counts {
            packets: 10,
            bytes: 1_000,
        },
        rev: Counts {
            packets: 8,
            bytes: 9_000,
        },
        tcp_flags: TcpFlags(tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN),
        first_seen: Timestamp(1_795_305_600_000_000_000),
        last_seen: Timestamp(1_795_305_601_000_000_000),
        state: FlowState::Closed,
        node_name: Some("node-1".into()),
        interfaces: vec!["veth1".into()],
        non_first_fragments: false,
        service: None,
        policy: None,
        staged: None,
        first_seen_ns: 2_000,
        last_seen_ns: 3_000,
    }
}

/// A Service per namespace: `svc-N` at 10.96.(N/256).(N%256):80 → the pods' port 8080.
fn services_yaml() -> String {
    (0..SHAPE.namespaces)
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{n}, namespace: ns-{n}}}\n\
                 spec: {{clusterIP: {}, selector: {{app: app0}}, ports: [{{port: 80, targetPort: 8080}}]}}\n---\n",
                cluster_ip(n)
            )
        })
        .collect()
}

fn cluster_ip(n: usize) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(
        10,
        96,
        (n / 256) as u8,
        (n % 256) as u8,
    ))
}

/// 10,000 records, 30 % of them Service traffic: 1,200 client-side records to a ClusterIP
/// with their 1,200 backend-side partners (same source address and port), and 600
/// client-side records whose backend only the conntrack table knows; the rest pod to pod.
/// The table holds those 600 entries among 10,000.
fn service_batch() -> (Vec<FlowRecord>, String) {
    let mut records = Vec::with_capacity(10_000);
    let mut conntrack = String::new();
    for i in 0..1_800 {
        let src = IpAddr::V4(pod_ip(i * 7 % SHAPE.pods));
        let backend = IpAddr::V4(pod_ip(i * 13 % SHAPE.pods));
        let mut front = record(src, cluster_ip(i % SHAPE.namespaces), 80);
        front.src.port = 20_000 + i as u16;
        if i < 1_200 {
            let mut back = record(src, backend, 8080);
            back.src.port = front.src.port;
            records.push(back);
        } else {
            conntrack.push_str(&format!(
                "ipv4 2 tcp 6 100 ESTABLISHED src={src} dst={} sport={} dport=80 \
                 src={backend} dst={src} sport=8080 dport={} [ASSURED] mark=0 use=1\n",
                front.dst.ip, front.src.port, front.src.port
            ));
        }
        records.push(front);
    }
    for i in 0..9_400 {
        conntrack.push_str(&format!(
            "ipv4 2 tcp 6 100 ESTABLISHED src=10.250.{}.{} dst=10.97.0.1 sport=1000 dport=80 \
             src=10.251.0.1 dst=10.250.0.1 sport=8080 dport=1000 [ASSURED] mark=0 use=1\n",
            i / 256,
            i % 256
        ));
    }
    let mut i = 0;
    while records.len() < 10_000 {
        let src = IpAddr::V4(pod_ip(i * 7 % SHAPE.pods));
        let dst = IpAddr::V4(pod_ip(i * 13 % SHAPE.pods));
        records.push(record(src, dst, [8080, 9090, 443, 9050][i % 4]));
        i += 1;
    }
    // Interleaved, as a sweep hands them over (in no particular order).
    records.sort_by_key(|r| (r.src.port.wrapping_mul(7919), r.dst.port));
    (records, conntrack)
}

fn benches(c: &mut Criterion) {
    let text = cluster_yaml(&SHAPE) + &services_yaml();
    let loaded = manifests::parse("synthetic.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
    let objects = loaded.into_objects();
    println!(
        "synthetic cluster: {} namespaces, {} pods, {} policies",
        objects.namespaces.len(),
        objects.pods.len(),
        objects.policies.len()
    );

    let mut group = c.benchmark_group("view");
    group.sample_size(10);
    group.bench_function("build_10k_pods_2k_policies", |b| {
        b.iter(|| black_box(ClusterView::build(black_box(&objects))))
    });
    group.finish();

    let (view, _) = ClusterView::build(&objects);
    let view = Arc::new(view);
    let mut enricher = Enricher::new(600_000_000_000);
    enricher.update(1_000, Arc::clone(&view));

    let batch: Vec<FlowRecord> = (0..1_000)
        .map(|i| {
            let src = IpAddr::V4(pod_ip(i * 7 % SHAPE.pods));
            let dst = if i % 10 == 0 {
                "192.0.2.10".parse().unwrap_or(src)
            } else {
                IpAddr::V4(pod_ip(i * 13 % SHAPE.pods))
            };
            record(src, dst, [8080, 9090, 443, 9050][i % 4])
        })
        .collect();
    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("identity_lookup_both_ends_1000_flows", |b| {
        b.iter(|| {
            for r in &batch {
                black_box(enricher.identify(r.src.ip, r.first_seen_ns));
                black_box(enricher.identify(r.dst.ip, r.first_seen_ns));
            }
        })
    });
    group.bench_function("batch_of_1000_records", |b| {
        b.iter_batched(
            || batch.clone(),
            |mut records| {
                enricher.enrich_batch(&mut records, || None);
                records
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let (batch, conntrack) = service_batch();
    let mut group = c.benchmark_group("enrich");
    group.sample_size(20);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("batch_of_10000_records_30pct_service", |b| {
        b.iter_batched(
            || batch.clone(),
            |mut records| {
                enricher.enrich_batch(&mut records, || Some(NatTable::parse(&conntrack)));
                assert_eq!(records.len(), 10_000 - 1_200, "every pair merged");
                records
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(enrich, benches);
criterion_main!(enrich);

//! Enrichment benchmarks on a synthetic cluster of 10,000 pods in 500 namespaces with 2,000
//! policies: building the per-flow view (the rebuild after any change), and enriching a
//! record (two identity lookups in the IP history, the Service check, and the verdict).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use observer::cluster::manifests;
use observer::cluster::view::ClusterView;
use observer::enrich::Enricher;
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
        first_seen_ns: 2_000,
        last_seen_ns: 3_000,
    }
}

fn benches(c: &mut Criterion) {
    let text = cluster_yaml(&SHAPE);
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
}

criterion_group!(enrich, benches);
criterion_main!(enrich);

//! Suggestions at cluster scale: a synthetic cluster of 10,000 pods in 400 namespaces
//! (2,000 Deployments) with 2,000 NetworkPolicies, and records between random pods on 25
//! ports, enough for about 100,000 edges. Measures the learning rate (records a second,
//! one core) against a reference that only counts each record's pod pair in a hash map,
//! in alternating rounds (medians of the rates and of each round's ratio, and the fastest
//! round: on a noisy VM the fastest is the nearest to an idle core); the heap each learned edge takes; and the time to
//! generate, render, read back and prove the suggestions for all 2,000 workloads, and to
//! compute their impact.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use observer::cli::suggest::suggest_offline;
use observer::cluster::manifests;
use observer::cluster::view::{ClusterView, Holder};
use observer::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, Timestamp};
use observer::suggest::learn::{LearnConfig, Learner};
use observer_lab::synthetic::{Shape, cluster_yaml};

#[global_allocator]
static ALLOC: observer_lab::alloc::Counting = observer_lab::alloc::Counting;

const ROUNDS: usize = 15;
const RECORDS: usize = 50_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let shape = Shape {
        namespaces: 400,
        pods: 10_000,
        policies: 2_000,
    };
    let objects = manifests::parse("cluster.yaml", &cluster_yaml(&shape)).into_objects();
    let (view, _) = ClusterView::build(&objects);
    let mut ends: Vec<RecordEndpoint> = view
        .holders()
        .iter()
        .filter_map(|(ip, holder)| {
            let Holder::Pod(pod) = holder else {
                return None;
            };
            let mut end = RecordEndpoint {
                ip: *ip,
                port: 0,
                identity: Default::default(),
            };
            let id = &mut end.identity;
            id.namespace = Some(pod.info.namespace.clone());
            id.pod = Some(pod.info.name.clone());
            id.labels = Some(pod.info.labels.clone());
            id.workload = pod
                .workload
                .as_ref()
                .map(|w| observer_api::record::WorkloadInfo {
                    kind: w.kind.as_str().to_string(),
                    name: w.name.clone(),
                });
            Some(end)
        })
        .collect();
    ends.sort_by_key(|e| e.ip);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let records: Vec<FlowRecord> = (0..RECORDS)
        .map(|i| {
            let (a, b) = (next() as usize % ends.len(), next() as usize % ends.len());
            let port = 8000 + (next() % 25) as u16;
            let mut src = ends[a].clone();
            src.port = 30_000 + (i % 30_000) as u16;
            let mut dst = ends[b].clone();
            dst.port = port;
            let mut r = FlowRecord::between(src, dst, IpProtocol::TCP, FlowState::Closed);
            r.first_seen = Timestamp(i as i64 * 1_000_000);
            r.last_seen = Timestamp(i as i64 * 1_000_000 + 500);
            r.fwd.packets = 4;
            r.fwd.bytes = 400;
            r.node_name = Some(format!("node-{}", i % 50));
            r
        })
        .collect();

    // The same pod pairs and ports, as later connections: the steady state, where records
    // land on edges already learned.
    let later: Vec<FlowRecord> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.src.port = r.src.port.wrapping_add(7);
            r.first_seen = Timestamp(r.first_seen.0 + 3_600_000_000_000);
            r.last_seen = Timestamp(r.last_seen.0 + 3_600_000_000_000);
            r
        })
        .collect();
    // Learning rate, alternating with the reference, medians of ROUNDS.
    let (mut learning, mut steady, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    let mut edges = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut learner = Learner::new(LearnConfig::default());
        for r in &records {
            learner.learn(r);
        }
        learning.push(start.elapsed());
        edges = learner.learned().edge_count();
        let start = Instant::now();
        for r in &later {
            learner.learn(r);
        }
        steady.push(start.elapsed());
        black_box(&learner);
        let start = Instant::now();
        let mut pairs: HashMap<(&str, &str, u16), u64> = HashMap::new();
        for r in &records {
            let key = (
                r.src.identity.pod.as_deref().unwrap_or(""),
                r.dst.identity.pod.as_deref().unwrap_or(""),
                r.dst.port,
            );
            *pairs.entry(key).or_default() += r.fwd.packets;
        }
        reference.push(start.elapsed());
        black_box(&pairs);
    }
    let ratios = |of: &[Duration]| {
        let mut r: Vec<f64> = of
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let rate = |took: Duration| RECORDS as f64 / took.as_secs_f64();
    println!("## learning, {RECORDS} records, {edges} edges ({ROUNDS} alternating rounds)");
    for (what, took) in [
        ("steady state (known edges, new connections)", &steady),
        ("first pass (two new edges a record)", &learning),
    ] {
        println!(
            "  {what}: median {:.0} records/s on one core (fastest round {:.0}), median \
             ratio to the reference in the same round {:.2}x",
            rate(median(took.clone())),
            rate(took.iter().copied().min().unwrap_or_default()),
            ratios(took),
        );
    }
    println!(
        "  reference (a hash map counting pod pairs): median {:.0} records/s (fastest {:.0})",
        rate(median(reference.clone())),
        rate(reference.iter().copied().min().unwrap_or_default()),
    );

    // Memory per edge: the learner's live heap after learning, over its edges.
    let before = observer_lab::alloc::live_bytes();
    let mut learner = Learner::new(LearnConfig::default());
    for r in &records {
        learner.learn(r);
    }
    let held = observer_lab::alloc::live_bytes() - before;
    let edges = learner.learned().edge_count();
    println!(
        "## memory: {} bytes of heap per edge ({} edges, {:.1} MiB, the table of connections counted included)",
        held as usize / edges.max(1),
        edges,
        held as f64 / (1 << 20) as f64
    );
    drop(learner);

    // Generation, rendering, reading back, proof and impact, for every workload.
    let report = suggest_offline(&objects, &records, LearnConfig::default()).expect("suggest");
    let [_, generation, proof, impact] = report.timings;
    println!(
        "## generation + rendering {:.2} s, proof (two snapshots, every record judged) {:.2} s: {:.2} s in all; impact (every ordered pair of workloads, twice) {:.2} s",
        generation.as_secs_f64(),
        proof.as_secs_f64(),
        (generation + proof).as_secs_f64(),
        impact.as_secs_f64()
    );
    println!(
        "  {} suggestions, {} edges, {} records judged ({} allowed), {} pairs newly denied",
        report.suggestions.len(),
        report.learned.edge_count(),
        report.proof.checked,
        report.proof.allowed,
        report.impact.newly_denied
    );
}

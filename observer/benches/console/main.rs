//! `cargo xtask bench console`: the web console with 2,000 workloads and 20,000 edges.
//! Prints its numbers (docs/benchmarks.md).
//!
//! The console server (`observer::ui::server::serve`) runs in this process over a hub
//! holding 20,000 synthetic records: 40 namespaces of 50 Deployments, each workload the
//! initiator of 10 connections (5 in its namespace, 5 to 5 other namespaces) on the
//! target's one port of 8, so 20,000 distinct edges (source, target, protocol, port);
//! one connection in ten denied, the rest allowed (verdicts copied from the fixtures in
//! `observer/tests/data/api/flows.jsonl`). A second console serves an empty hub.
//!
//! 1. The JSON API: `/api/map` at the workload level with all 20,000 edges, with the
//!    default 2,000, with one (the page's probe of the workload count), one namespace's
//!    workloads and the namespace level, each timed from
//!    connect to the last byte over loopback, in alternating rounds. References in the
//!    same rounds: the same bytes served as a static answer by a bare hyper server in this
//!    process (what the fold and the serialisation add), `/vendor/cytoscape.min.js` and
//!    `/api/status` from the console server. Then the fold and the serialisation alone,
//!    in process.
//! 2. The page in headless Chromium (`observer_lab::browser`), timed by the browser's
//!    own clock (`performance.now()` counts from the navigation's start): navigation →
//!    the first map drawn (`observerConsole.firstRenderMs`), the navigation entry and the
//!    page's `/api/map` fetches from the resource timings, against the same page over the
//!    empty hub and a trivial page (`/api/status`), in alternating rounds. Then, on the
//!    loaded page, `observerConsole.loadMap` for one namespace's workloads, the namespace
//!    level again, and the workload level with 2,000 edges (the most the page draws),
//!    against a load of the empty map, with their parts: the fetch (resource timing),
//!    `Response.json()` and Cytoscape's work before its draws (both wrapped), the page's
//!    own phases (`observerConsole.timings`), the canvas renderer's draws (its counters)
//!    and Chromium's long animation frames (the scripts' time by file).
//!
//! The parts: `api` (1), `page` (2), the page's scripts in `scripts`, and the helpers both
//! share (the HTTP GET, medians, sizes) in `report`. This file holds the synthetic records,
//! the console servers and the run.

mod api;
mod page;
mod report;
mod scripts;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use observer::flow::{FlowRecord, WorkloadInfo};
use observer::hub::FlowHub;
use observer::ui::routes::{Console, Role};

use api::api;
use page::page;
use report::get;

const NAMESPACES: usize = 40;
const PER_NAMESPACE: usize = 50;
const WORKLOADS: usize = NAMESPACES * PER_NAMESPACE;
/// Connections each workload initiates: half in its namespace, half to other namespaces.
const FAN_OUT: usize = 10;
const EDGES: usize = WORKLOADS * FAN_OUT;
/// The port a workload listens on is one of these (by its index).
const PORTS: [u16; 8] = [80, 443, 8080, 9090, 5432, 6379, 3306, 9092];

fn workload_name(index: usize) -> (String, String) {
    (
        format!("ns-{}", index / PER_NAMESPACE),
        format!("svc-{}", index % PER_NAMESPACE),
    )
}

/// The 20,000 (source, target) workload pairs, distinct.
fn pairs() -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(EDGES);
    for source in 0..WORKLOADS {
        let (ns, w) = (source / PER_NAMESPACE, source % PER_NAMESPACE);
        for k in 0..FAN_OUT / 2 {
            pairs.push((source, ns * PER_NAMESPACE + (w + 1 + k) % PER_NAMESPACE));
        }
        for k in 0..FAN_OUT / 2 {
            let other = (ns + 1 + 7 * k) % NAMESPACES;
            pairs.push((source, other * PER_NAMESPACE + (3 * w + k) % PER_NAMESPACE));
        }
    }
    let distinct: HashSet<_> = pairs.iter().collect();
    assert_eq!(distinct.len(), EDGES, "distinct edges");
    pairs
}

fn fixtures() -> Vec<FlowRecord> {
    include_str!("../../tests/data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture flow"))
        .collect()
}

/// One record per edge: a pod of each workload, the target's port, varied traffic.
fn records() -> Vec<FlowRecord> {
    let fixtures = fixtures();
    let (allowed, denied) = (&fixtures[0], &fixtures[1]);
    assert_eq!(allowed.verdict_name(), "allow", "fixture 0");
    assert_eq!(denied.verdict_name(), "deny", "fixture 1");
    let endpoint = |record: &mut observer::flow::RecordEndpoint, index: usize| {
        let (namespace, name) = workload_name(index);
        record.ip = IpAddr::V4(Ipv4Addr::new(
            10,
            (index / PER_NAMESPACE) as u8,
            (index % PER_NAMESPACE) as u8,
            10,
        ));
        let identity = &mut record.identity;
        identity.pod = Some(format!("{name}-7d4b9c-x{}", index % 7));
        identity.pod_uid = None;
        identity.labels = Some(BTreeMap::from([("app".to_owned(), name.clone())]));
        identity.service_account = Some(name.clone());
        identity.workload = Some(WorkloadInfo {
            kind: "Deployment".into(),
            name,
        });
        identity.namespace = Some(namespace);
        identity.node = Some(format!("node-{}", index % 3));
    };
    pairs()
        .into_iter()
        .enumerate()
        .map(|(i, (source, target))| {
            let mut r = if i % 10 == 3 {
                denied.clone()
            } else {
                allowed.clone()
            };
            endpoint(&mut r.src, source);
            endpoint(&mut r.dst, target);
            r.src.port = 10_000 + i as u16;
            r.dst.port = PORTS[target % PORTS.len()];
            r.service = None;
            r.node_name = Some(format!("node-{}", source % 3));
            // Traffic spread over three orders of magnitude: the heaviest edges differ.
            let weight = (i as u64).wrapping_mul(2_654_435_761) % 1_000;
            r.fwd.packets = 2 + weight / 10;
            r.fwd.bytes = 120 + weight * weight;
            r.rev.packets = 1 + weight / 20;
            r.rev.bytes = 60 + weight * 37;
            r
        })
        .collect()
}

fn console(hub: Arc<FlowHub>) -> Console {
    Console {
        hub,
        role: Role::Node,
        node: "node-0".into(),
        views: None,
        profile: Default::default(),
        suggestions: None,
    }
}

fn serve(runtime: &tokio::runtime::Runtime, hub: Arc<FlowHub>) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    runtime.spawn(observer::ui::server::serve(listener, None, console(hub)));
    address
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let records = records();
    let hub = FlowHub::new(32_768);
    runtime.block_on(hub.publish(records.clone()));
    let big = serve(&runtime, hub);
    let empty = serve(&runtime, FlowHub::new(1_024));
    let (_, status) = get(big, "/api/status");
    println!(
        "console over {EDGES} records: {NAMESPACES} namespaces × {PER_NAMESPACE} Deployments, \
         {EDGES} edges, one connection in ten denied; /api/status: {}",
        String::from_utf8_lossy(&status).trim()
    );
    let started = Instant::now();
    api(big, &runtime, &records);
    println!("(API part: {:.0} s)\n", started.elapsed().as_secs_f64());
    let started = Instant::now();
    page(big, empty);
    println!("(page part: {:.0} s)", started.elapsed().as_secs_f64());
}

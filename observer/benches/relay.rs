//! `cargo xtask bench relay`: the relay's costs. Prints its numbers (docs/benchmarks.md).
//!
//! Three node observers run in this process (a hub each, served on a Unix socket, as a
//! node serves its API); the relay is the `observer relay` binary, a process of its own,
//! so that its memory is its own.
//!
//! 1. Throughput: flows per second one subscriber reads through the relay from the three
//!    nodes' held flows, against one node's direct stream of its held flows, in
//!    alternating rounds (medians and their ratio).
//! 2. Latency: a subscriber follows through the relay while the nodes publish; the time
//!    from a node's writing a flow to the subscriber's receiving it (p50, p99), against
//!    a direct follower of one node in the same rounds.
//! 3. Memory: the relay's resident growth per connected node (27 more idle nodes) and per
//!    subscriber (32 following streams over 3 nodes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use observer::api::listen::{ApiAddress, bind, connect};
use observer::api::server::{self, ApiConfig};
use observer::flow::FlowRecord;
use observer::hub::{FlowHub, now_ns};
use observer::wire::proto::{
    GetFlowsRequest, get_flows_request::Start, get_flows_response::Event,
    observer_client::ObserverClient,
};
use tonic::transport::Channel;

/// Flows each node holds for the throughput rounds.
const HELD: usize = 100_000;
const ROUNDS: usize = 5;

fn records() -> Vec<FlowRecord> {
    include_str!("../tests/data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture flow"))
        .collect()
}

/// `n` records cycling through the fixtures, written by `node`.
fn batch(node: &str, n: usize, from: usize) -> Vec<FlowRecord> {
    let base = records();
    (0..n)
        .map(|i| {
            let mut r = base[(from + i) % base.len()].clone();
            r.src.port = ((from + i) % 60_000) as u16 + 1;
            r.node_name = Some(node.to_owned());
            r
        })
        .collect()
}

/// A node observer in this process.
struct Node {
    name: String,
    hub: Arc<FlowHub>,
    socket: PathBuf,
}

async fn node(dir: &Path, name: &str, capacity: usize) -> Node {
    let socket = dir.join(format!("{name}.sock"));
    let listener = bind(&ApiAddress::Unix(socket.clone())).await.expect("bind");
    let hub = FlowHub::new(capacity);
    let config = ApiConfig {
        node_name: name.into(),
        max_streams: 256,
        ..ApiConfig::default()
    };
    tokio::spawn(server::serve(
        listener,
        Arc::clone(&hub),
        config,
        std::future::pending(),
    ));
    Node {
        name: name.into(),
        hub,
        socket,
    }
}

/// An `observer relay` process over `nodes`.
struct Relay {
    child: Child,
    socket: PathBuf,
}

impl Relay {
    fn start(dir: &Path, tag: &str, nodes: &[&Node]) -> Self {
        let socket = dir.join(format!("relay-{tag}.sock"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_observer"));
        command.args(["relay", "--grpc-max-streams", "256", "--grpc-listen"]);
        command.arg(format!("unix://{}", socket.display()));
        for node in nodes {
            command
                .arg("--peer")
                .arg(format!("unix://{}", node.socket.display()));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("observer relay");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the relay never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket }
    }

    async fn client(&self) -> ObserverClient<Channel> {
        let address = format!("unix://{}", self.socket.display());
        ObserverClient::new(connect(&address, None).await.expect("relay"))
    }

    /// Its resident bytes.
    fn resident(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.child.id())).unwrap_or_default();
        statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    }

    /// Waits until every node answers its status checks.
    async fn wait_connected(&self, nodes: usize) {
        let mut client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = client
                .server_status(observer::wire::proto::ServerStatusRequest {})
                .await
                .expect("status")
                .into_inner();
            if status.nodes.iter().filter(|n| n.connected).count() == nodes {
                return;
            }
            assert!(Instant::now() < deadline, "nodes never connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads every held flow (not following): flows per second.
async fn drain(client: &mut ObserverClient<Channel>, want: usize) -> f64 {
    let started = Instant::now();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            ..GetFlowsRequest::default()
        })
        .await
        .expect("stream")
        .into_inner();
    let mut flows = 0;
    while let Some(message) = stream.message().await.expect("stream ok") {
        if matches!(message.event, Some(Event::Flow(_))) {
            flows += 1;
        }
    }
    assert_eq!(flows, want, "every held flow");
    flows as f64 / started.elapsed().as_secs_f64()
}

/// Follows `client` while `nodes` publish `per_node` flows each in small batches:
/// write-to-receive latencies in microseconds.
async fn latencies(
    client: &mut ObserverClient<Channel>,
    nodes: &[&Node],
    per_node: usize,
) -> Vec<u64> {
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..GetFlowsRequest::default()
        })
        .await
        .expect("stream")
        .into_inner();
    // The stream reaches every node before anything is written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hubs: Vec<(String, Arc<FlowHub>)> = nodes
        .iter()
        .map(|n| (n.name.clone(), Arc::clone(&n.hub)))
        .collect();
    let writer = tokio::spawn(async move {
        for i in (0..per_node).step_by(10) {
            for (name, hub) in &hubs {
                hub.publish(batch(name, 10, i)).await;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let want = per_node * nodes.len();
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let message = stream.message().await.expect("ok").expect("open");
        if let Some(Event::Flow(flow)) = message.event {
            let written = flow
                .written
                .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
            out.push(u64::try_from((now_ns() - written) / 1_000).unwrap_or(0));
        }
    }
    writer.await.expect("writer");
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("observer-bench-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let n = node(&dir, &format!("node-{i}"), HELD).await;
            n.hub.publish(batch(&n.name, HELD, 0)).await;
            nodes.push(n);
        }
        let three: Vec<&Node> = nodes.iter().collect();
        let relay = Relay::start(&dir, "main", &three);
        relay.wait_connected(3).await;
        let mut through = relay.client().await;
        let mut direct = ObserverClient::new(
            connect(&format!("unix://{}", nodes[0].socket.display()), None)
                .await
                .expect("node"),
        );

        // 1. Throughput.
        let (mut relayed, mut alone) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            alone.push(drain(&mut direct, HELD).await);
            relayed.push(drain(&mut through, 3 * HELD).await);
        }
        let (relayed, alone) = (median(relayed), median(alone));
        println!(
            "throughput: {:.0} flows/s through the relay from 3 nodes ({} each), one node's \
             direct stream {:.0} flows/s; ratio {:.2} (medians of {ROUNDS} alternating rounds)",
            relayed,
            HELD,
            alone,
            relayed / alone
        );

        // 2. Latency (fresh, small nodes: what is written now).
        let mut live = Vec::new();
        for i in 1..=3 {
            live.push(node(&dir, &format!("live-{i}"), 65_536).await);
        }
        let live_refs: Vec<&Node> = live.iter().collect();
        let live_relay = Relay::start(&dir, "live", &live_refs);
        live_relay.wait_connected(3).await;
        let mut follower = live_relay.client().await;
        let mut direct_follower = ObserverClient::new(
            connect(&format!("unix://{}", live[0].socket.display()), None)
                .await
                .expect("node"),
        );
        let (mut relay_lat, mut direct_lat) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            direct_lat.extend(latencies(&mut direct_follower, &live_refs[..1], 6_000).await);
            relay_lat.extend(latencies(&mut follower, &live_refs, 6_000).await);
        }
        println!(
            "latency, written to received: through the relay p50 {} µs, p99 {} µs ({} flows, \
             3 nodes at ~10 flows/ms each); one node directly p50 {} µs, p99 {} µs",
            percentile(&mut relay_lat, 0.5),
            percentile(&mut relay_lat, 0.99),
            relay_lat.len(),
            percentile(&mut direct_lat, 0.5),
            percentile(&mut direct_lat, 0.99),
        );

        // 3. Memory per connected node, per subscriber.
        let mut idle = Vec::new();
        for i in 0..27 {
            idle.push(node(&dir, &format!("idle-{i}"), 16).await);
        }
        let small = Relay::start(&dir, "small", &three);
        small.wait_connected(3).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with_three = small.resident();
        let all: Vec<&Node> = nodes.iter().chain(&idle).collect();
        let big = Relay::start(&dir, "big", &all);
        big.wait_connected(30).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with_thirty = big.resident();
        let per_node = with_thirty.saturating_sub(with_three) / 27;
        let before = live_relay.resident();
        let mut streams = Vec::new();
        for _ in 0..32 {
            let mut client = live_relay.client().await;
            streams.push(
                client
                    .get_flows(GetFlowsRequest {
                        follow: true,
                        ..GetFlowsRequest::default()
                    })
                    .await
                    .expect("stream")
                    .into_inner(),
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_subscriber = live_relay.resident().saturating_sub(before) / 32;
        println!(
            "memory: {} KiB resident per connected node (3 → 30 nodes: {} → {} KiB); {} KiB \
             per following subscriber over 3 nodes (32 streams)",
            per_node / 1024,
            with_three / 1024,
            with_thirty / 1024,
            per_subscriber / 1024
        );
        drop(streams);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

//! `cargo xtask bench api`: the gRPC API's costs. Prints its numbers (docs/benchmarks.md).
//!
//! 1. Publishing: records per second into the hub with no subscriber (the daemon's cost).
//! 2. Memory: resident bytes per buffered flow, with a full 65,536-flow buffer of
//!    enriched records (labels, workload, verdict).
//! 3. Memory per stream: resident growth per open stream, idle (following, nothing new)
//!    and stalled (reading from the oldest of 8,192 flows, never consuming), 64 of each.
//! 4. Fan-out over loopback: flows per second each of 4 streams delivers reading 200,000
//!    buffered flows at once (a real tonic server and clients; one filters on the
//!    verdict).

use std::sync::Arc;
use std::time::Instant;

use observer::api::server::{self, ApiConfig};
use observer::flow::FlowRecord;
use observer::hub::{FlowHub, WhenFull};
use observer::wire::proto::{
    FlowFilter, GetFlowsRequest, get_flows_request::Start, get_flows_response::Event,
    observer_client::ObserverClient,
};

const BUFFER: usize = 65_536;

fn records() -> Vec<FlowRecord> {
    include_str!("../tests/data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture flow"))
        .collect()
}

/// A batch of `n` records cycling through the fixtures, ports varied.
fn batch(n: usize) -> Vec<FlowRecord> {
    let base = records();
    (0..n)
        .map(|i| {
            let mut r = base[i % base.len()].clone();
            r.src.port = (i % 60_000) as u16 + 1;
            r
        })
        .collect()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The daemon's cost per record: publishing owned records (the table made them; the hub
/// takes them without a copy) into a full ring, so each also drops the one it overwrites.
/// With `sink`, a dropping sink is subscribed and drained, as the metrics are.
async fn publish_rate(sink: bool) {
    let hub = FlowHub::with_first_cursor(BUFFER, 1);
    let drain = sink.then(|| {
        let mut queue = hub.subscribe("bench", 16_384, WhenFull::Drop, false);
        tokio::spawn(async move { while queue.recv().await.is_some() {} })
    });
    let chunk = batch(1_000);
    let rounds = 500;
    let mut elapsed = std::time::Duration::ZERO;
    for _ in 0..rounds {
        let owned = chunk.clone();
        let start = Instant::now();
        hub.publish(owned).await;
        elapsed += start.elapsed();
    }
    let total = (rounds * chunk.len()) as f64;
    println!(
        "publish: {:.0} records/s ({:.0} ns per record, batches of 1,000, {})",
        total / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / total,
        if sink {
            "one dropping sink drained by a task"
        } else {
            "no sink or stream"
        }
    );
    hub.close();
    if let Some(drain) = drain {
        let _ = drain.await;
    }
}

async fn memory_per_flow() {
    let chunk = batch(BUFFER);
    let before = resident_bytes();
    let hub = FlowHub::with_first_cursor(BUFFER, 1);
    hub.publish(chunk.clone()).await;
    let after = resident_bytes();
    drop(chunk);
    println!(
        "memory: {:.0} bytes per buffered flow ({} flows, {:.1} MiB resident growth)",
        after.saturating_sub(before) as f64 / BUFFER as f64,
        hub.status().newest_cursor,
        after.saturating_sub(before) as f64 / (1 << 20) as f64
    );
}

/// Serves `hub` on a loopback port for the rest of the run; returns the address.
async fn serve_hub(hub: &Arc<FlowHub>, max_streams: usize) -> std::net::SocketAddr {
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(server::serve(
        listener,
        Arc::clone(hub),
        ApiConfig {
            max_streams,
            ..ApiConfig::default()
        },
        std::future::pending(),
    ));
    address
}

/// Resident growth per stream: 64 idle followers, then 64 stalled readers. Server and
/// clients share the process; the clients keep HTTP/2's default 64 KiB windows, so what
/// they buffer is small and the figure is mostly the server's.
async fn memory_per_stream() {
    const STREAMS: usize = 64;
    let held = 8_192;
    let hub = FlowHub::with_first_cursor(held, 1);
    hub.publish(batch(held)).await;
    let address = serve_hub(&hub, 4 * STREAMS).await;
    let open = |start: Option<Start>| {
        let address = address.to_string();
        async move {
            // The HTTP/2 default windows (64 KiB) rather than hyper's 2 MiB client ones:
            // what a stalled client buffers is its own memory, not the server's.
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .expect("endpoint")
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535)
                .connect()
                .await
                .expect("connect");
            let mut client = ObserverClient::new(channel);
            let request = GetFlowsRequest {
                start,
                follow: true,
                ..Default::default()
            };
            let stream = client.get_flows(request).await.expect("stream");
            (client, stream)
        }
    };
    let mut streams = Vec::new();
    for (label, start) in [
        ("idle (following, nothing new)", None),
        (
            "stalled (8,192 flows to send, none read)",
            Some(Start::FromOldest(true)),
        ),
    ] {
        // Warm up the allocator and the connection machinery with one stream first.
        streams.push(open(start.clone()).await);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let before = resident_bytes();
        for _ in 0..STREAMS {
            streams.push(open(start.clone()).await);
        }
        // Let the server fill what it can: its queue and the connection's window.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let after = resident_bytes();
        println!(
            "memory per stream, {label}: {:.0} KiB ({STREAMS} streams, {:.1} MiB resident growth)",
            after.saturating_sub(before) as f64 / STREAMS as f64 / 1024.0,
            after.saturating_sub(before) as f64 / (1 << 20) as f64
        );
    }
    drop(streams);
    hub.close();
}

async fn fan_out() {
    // Everything published first, then read from the oldest by 4 streams at once: the
    // rate a stream delivers at, without the buffer in the way.
    let total = 200_000;
    let hub = FlowHub::with_first_cursor(total, 1);
    let chunk = batch(1_000);
    for _ in 0..total / 1_000 {
        hub.publish(chunk.clone()).await;
    }
    let address = serve_hub(&hub, ApiConfig::default().max_streams).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            ObserverClient::connect(format!("http://{address}"))
                .await
                .expect("connect"),
        );
    }
    let start = Instant::now();
    let mut readers = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let allow = if i == 0 {
            vec![FlowFilter {
                verdict: vec!["deny".into()],
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
        let request = GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            allow,
            ..Default::default()
        };
        readers.push(tokio::spawn(async move {
            let mut stream = client
                .get_flows(request)
                .await
                .expect("stream")
                .into_inner();
            let mut flows = 0u64;
            while let Ok(Some(message)) = stream.message().await {
                flows += u64::from(matches!(message.event, Some(Event::Flow(_))));
            }
            (flows, start.elapsed())
        }));
    }
    let mut results = Vec::new();
    for reader in readers {
        results.push(reader.await.expect("reader"));
    }
    let elapsed = start.elapsed();
    let unfiltered: Vec<String> = results[1..]
        .iter()
        .map(|(flows, took)| format!("{:.0}", *flows as f64 / took.as_secs_f64()))
        .collect();
    println!(
        "fan-out: 4 streams read {total} flows each from the oldest over loopback in {:.2} s; \
         unfiltered streams delivered {} flows/s; the deny-filtered one scanned all and sent \
         {} (a quarter) in {:.2} s; {:.0} flows/s delivered in all",
        elapsed.as_secs_f64(),
        unfiltered.join(", "),
        results[0].0,
        results[0].1.as_secs_f64(),
        results.iter().map(|(f, _)| *f as f64).sum::<f64>() / elapsed.as_secs_f64()
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            publish_rate(false).await;
            publish_rate(true).await;
            memory_per_flow().await;
            memory_per_stream().await;
            fan_out().await;
        });
}

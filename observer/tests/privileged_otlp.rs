//! `observer run --otlp-endpoint` in a lab node, with real traffic: a real OTLP/gRPC
//! receiver (a tonic server of the collector's logs service) listening in the node gets, as
//! log records, exactly the records the flow log holds, and the stats count them as sent.
//! Needs root (it runs the datapath); fails loudly without it.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use observer::flow::FlowRecord;
use observer_lab::traffic::udp_exchange;
use observer_lab::{Lab, in_netns};
use support::otlp_receiver::Receiver;
use support::{Observer, require_root, scratch_dir};

#[test]
fn the_collector_receives_the_flow_log_records() -> Result<()> {
    require_root();
    let dir = scratch_dir("otlp");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    // The receiver listens in the node's network namespace, where the observer runs.
    let listener = in_netns(lab.node_netns(), || {
        std::net::TcpListener::bind("127.0.0.1:0")
    })??;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let receiver = Receiver::default();
    let serving = receiver.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            serving.serve(listener).await;
        });
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--idle-timeout",
            "1s",
            "--otlp-endpoint",
            &endpoint,
        ],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    udp_exchange(&a, &b, IpAddr::V4(b.ipv4), 3)?;
    observer.wait_stat("records_written", 1)?;
    let out = observer.stop()?;
    let logged: Vec<&FlowRecord> = out.records.iter().collect();
    assert!(!logged.is_empty(), "the exchange was recorded");
    // The exporter sends what it has queued before the daemon ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let received: Vec<FlowRecord> = loop {
        let bodies: Vec<String> = receiver.bodies();
        if bodies.len() >= logged.len() || Instant::now() > deadline {
            break bodies
                .iter()
                .map(|b| serde_json::from_str(b))
                .collect::<Result<_, _>>()
                .context("a body that is not a flow-log record")?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let received: Vec<&FlowRecord> = received.iter().collect();
    assert_eq!(received, logged, "the collector got the flow log's records");
    assert_eq!(
        out.stats["otlp_sent"].as_u64(),
        Some(logged.len() as u64),
        "{}",
        out.stats
    );
    assert_eq!(out.stats["otlp_unsent"].as_u64(), Some(0));
    Ok(())
}

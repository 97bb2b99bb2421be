//! The outputs of a running observer in a lab node besides the flow log: the gRPC API read
//! with `observer observe` (a follower receives the flow log's records, and its stream
//! ends cleanly when the daemon stops) and the Prometheus metrics endpoint. Needs root (it
//! runs the datapath); fails loudly without it.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::flow::{FlowRecord, FlowState, IpProtocol};
use observer_lab::traffic::udp_exchange;
use observer_lab::{Lab, in_netns};
use support::{Observer, require_root, scratch_dir};

/// `observer status -o json` in the node.
fn status(lab: &Lab) -> Command {
    let mut command = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"));
    command.args(["status", "-o", "json"]);
    command
}

fn observe(lab: &Lab, args: &[&str]) -> Command {
    let mut command = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"));
    command.arg("observe").args(args);
    command
}

/// Waits for `child` to exit, within `limit`, and returns its standard output.
fn finish(mut child: Child, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out)?;
            }
            if let Some(mut stderr) = child.stderr.take() {
                stderr.read_to_string(&mut err)?;
            }
            if !status.success() {
                bail!("observe exited with {status}: {err}");
            }
            return Ok(out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("observe did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Streams open on the node's API, from `observer status -o json`.
fn subscribers(lab: &Lab) -> Result<u64> {
    let status = status(lab).output()?;
    if !status.status.success() {
        bail!(
            "observer status: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    status["subscribers"].as_u64().context("subscribers")
}

/// `GET path` on the node's metrics port.
fn scrape(lab: &Lab, path: &str) -> Result<String> {
    let mut stream = in_netns(lab.node_netns(), || TcpStream::connect("127.0.0.1:9464"))??;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn a_follower_receives_the_flow_log_records_and_ends_when_the_daemon_stops() -> Result<()> {
    require_root();
    let dir = scratch_dir("api-daemon");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--idle-timeout",
            "1s",
            "--log-format",
            "json",
        ],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    // From the oldest flow held, so it misses nothing however late it connects.
    let follower = observe(&lab, &["--follow", "--from-oldest", "--protocol", "udp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting observe")?;

    // The follower is connected before the daemon can stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while subscribers(&lab)? < 1 {
        if Instant::now() > deadline {
            bail!("observe never subscribed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (client_port, server_port) = udp_exchange(&a, &b, IpAddr::V4(b.ipv4), 3)?;
    observer.wait_stat("records_written", 1)?;
    // The metrics endpoint, scraped from the node as Prometheus would.
    let metrics = scrape(&lab, "/metrics")?;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("observer_records_total{state=\"expired\",verdict=\"none\"}") >= 1.0,
        "{metrics}"
    );
    assert!(value("observer_datapath_events_total{counter=\"packets_seen\"}") >= 6.0);
    // Present, and nothing lost: each loss under the metric of its unit.
    for series in [
        "observer_lost_records_total{what=\"api_subscriber\"} ",
        "observer_lost_records_total{what=\"sink_metrics\"} ",
    ] {
        assert!(
            metrics.contains(&format!("{series}0")),
            "{series}in {metrics}"
        );
    }
    assert!(
        metrics.contains("observer_build_info{version="),
        "{metrics}"
    );
    assert!(
        metrics.contains("observer_cluster_watch_errors_total"),
        "{metrics}"
    );
    assert!(scrape(&lab, "/other")?.starts_with("HTTP/1.1 404"));

    let status = status(&lab).output()?;
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert!(status["flows_published"].as_u64() >= Some(1), "{status}");
    // The node's side: the lab's pod interfaces the programs are attached to.
    let interfaces = status["interfaces"].as_array().context("interfaces")?;
    assert!(
        interfaces.len() >= 2
            && interfaces
                .iter()
                .all(|i| i.as_str().is_some_and(|n| !n.is_empty())),
        "{status}"
    );
    assert!(
        status["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{status}"
    );
    let out = observer.stop()?;

    let followed = finish(follower, Duration::from_secs(20))?;
    let mut received: Vec<(u64, FlowRecord)> = Vec::new();
    for line in followed.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        assert!(
            value.get("lost").is_none(),
            "nothing may be lost here: {line}"
        );
        let cursor = value["cursor"].as_u64().context("cursor")?;
        received.push((cursor, serde_json::from_value(value["flow"].clone())?));
    }
    assert!(
        received.windows(2).all(|w| w[0].0 < w[1].0),
        "cursors increase"
    );
    // Each connection's started item comes first, then its records (the flow log has
    // the records only).
    let (started, received): (Vec<_>, Vec<_>) = received
        .into_iter()
        .partition(|(_, r)| r.state == FlowState::Started);
    assert!(
        started.iter().any(|(_, r)| r.src.port == client_port),
        "the exchange's started item"
    );
    let ours = |r: &FlowRecord| {
        r.protocol == IpProtocol::UDP
            && r.src.ip == IpAddr::V4(a.ipv4)
            && r.src.port == client_port
            && r.dst.port == server_port
    };
    let logged: Vec<&FlowRecord> = out.records.iter().filter(|r| ours(r)).collect();
    let streamed: Vec<&FlowRecord> = received
        .iter()
        .map(|(_, r)| r)
        .filter(|r| ours(r))
        .collect();
    assert_eq!(logged.len(), 1, "{:?}", out.records);
    assert_eq!(streamed, logged, "the API carries the flow log's record");
    assert_eq!(logged[0].fwd.packets, 3);
    // Every UDP record of the log reached the follower, in the log's order.
    let all_udp: Vec<&FlowRecord> = out
        .records
        .iter()
        .filter(|r| r.protocol == IpProtocol::UDP)
        .collect();
    let all_streamed: Vec<&FlowRecord> = received.iter().map(|(_, r)| r).collect();
    assert_eq!(all_streamed, all_udp);
    assert_eq!(out.stats["api"]["flows_lost_to_subscribers"], 0);
    // The hub's sinks: the flow log got every record, waiting rather than dropping.
    let sinks = out.stats["sinks"].as_array().context("sinks")?;
    let flow_log = sinks
        .iter()
        .find(|s| s["name"] == "flow_log")
        .context("flow_log sink")?;
    assert_eq!(flow_log["when_full"], "wait");
    assert_eq!(flow_log["lost"], 0);
    assert_eq!(
        flow_log["delivered"].as_u64(),
        Some(out.records.len() as u64),
        "{}",
        out.stats
    );
    // --log-format json: every line of the log is one JSON object with a level.
    let lines: Vec<&str> = out.log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("log line: {line}"))?;
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("gRPC API listening")),
        "{}",
        out.log
    );
    Ok(())
}

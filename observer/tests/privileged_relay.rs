//! A lab of three nodes, each with its pods, real traffic and its own `observer run`, and
//! `observer relay` processes in front of them (`--peer`, the nodes' API sockets): a client
//! reads through one relay, stops, and resumes with its token through another replica
//! while traffic goes on and one node's observer is killed (SIGKILL) and restarted: what
//! it received is exactly what the flow logs hold, record by record, none twice, except
//! what the killed run had not been read of, whose loss is told once, naming the node.
//! `observer observe --server RELAY` works as against a node. Needs root (it runs the
//! datapath); fails loudly without it.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::flow::FlowRecord;
use observer::wire::proto::{
    FlowFilter, GetFlowsRequest, GetFlowsResponse, get_flows_request::Start,
    get_flows_response::Event, lost_flows::Reason, observer_client::ObserverClient,
};
use observer_lab::Lab;
use observer_lab::traffic::udp_exchange;
use support::{Observer, require_root, scratch_dir};

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// An `observer relay` process, killed when dropped.
struct Relay {
    child: Child,
    socket: PathBuf,
}

impl Relay {
    fn start(dir: &Path, name: &str, peers: &[PathBuf]) -> Result<Self> {
        let socket = dir.join(format!("{name}.sock"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_observer"));
        command.args(["relay", "--merge-window", "500ms", "--grpc-listen"]);
        command.arg(format!("unix://{}", socket.display()));
        for peer in peers {
            command
                .arg("--peer")
                .arg(format!("unix://{}", peer.display()));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?)
            .spawn()
            .context("starting observer relay")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("the relay never listened");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, socket })
    }

    fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node: its lab (pods a and b) and its observer, serving on `socket`.
struct Node {
    lab: Lab,
    observer: Option<Observer>,
    socket: PathBuf,
    /// Every flow-log record of its runs so far (but a killed one's).
    logged: Vec<FlowRecord>,
    /// What a killed run had written.
    killed: Vec<FlowRecord>,
}

impl Node {
    fn start(dir: &Path, name: &str) -> Result<Self> {
        let mut lab = Lab::new()?;
        lab.add_pod("a")?;
        lab.add_pod("b")?;
        let socket = dir.join(format!("{name}.sock"));
        let mut node = Self {
            lab,
            observer: None,
            socket,
            logged: Vec::new(),
            killed: Vec::new(),
        };
        node.run(dir, name, 1)?;
        Ok(node)
    }

    /// Starts its observer's run `run` (its own directory; the same API socket).
    fn run(&mut self, dir: &Path, name: &str, run: u32) -> Result<()> {
        let run_dir = dir.join(format!("{name}-run{run}"));
        std::fs::create_dir_all(&run_dir)?;
        let listen = format!("unix://{}", self.socket.display());
        let mut observer = Observer::start(
            &self.lab,
            &run_dir,
            &[
                "--interfaces",
                "veth*",
                "--idle-timeout",
                "1s",
                "--node-name",
                name,
                "--grpc-listen",
                &listen,
            ],
        )?;
        observer.wait_attached(&["vetha", "vethb"])?;
        self.observer = Some(observer);
        Ok(())
    }

    /// Stops its observer (SIGINT: it writes what it holds) and keeps its flow log.
    fn stop(&mut self) -> Result<()> {
        if let Some(observer) = self.observer.take() {
            self.logged.extend(observer.stop()?.records);
        }
        Ok(())
    }

    /// Kills its observer (SIGKILL: nothing is flushed) and keeps what it had written.
    fn kill(&mut self) -> Result<()> {
        if let Some(observer) = self.observer.take() {
            self.killed.extend(observer.kill()?);
        }
        Ok(())
    }

    /// A UDP exchange a → b: one connection.
    fn exchange(&self) -> Result<()> {
        let (a, b) = (self.lab.pod("a")?, self.lab.pod("b")?);
        udp_exchange(a, b, IpAddr::V4(b.ipv4), 2)?;
        Ok(())
    }
}

/// Every node's flows (never the started items: the flow logs do not hold them).
fn request(start: Start) -> GetFlowsRequest {
    GetFlowsRequest {
        start: Some(start),
        follow: true,
        deny: vec![FlowFilter {
            state: vec!["started".into()],
            ..FlowFilter::default()
        }],
        ..GetFlowsRequest::default()
    }
}

/// What a client received: records (as JSON, to compare with the flow logs) with their
/// tokens, and the gaps.
#[derive(Default)]
struct Received {
    /// (node, cursor, record).
    records: Vec<(String, u64, serde_json::Value)>,
    tokens: Vec<String>,
    earlier_runs: Vec<String>,
}

impl Received {
    fn take(&mut self, message: GetFlowsResponse) -> Result<()> {
        match message.event {
            Some(Event::Flow(event)) => {
                let flow = event.flow.context("a flow event without its flow")?;
                let record = FlowRecord::try_from(&flow)?;
                self.records.push((
                    flow.node_name.clone(),
                    event.cursor,
                    serde_json::to_value(&record)?,
                ));
                self.tokens.push(event.token);
            }
            Some(Event::Lost(lost)) => {
                // A node that restarted: the relay resumed it after its earlier run.
                if lost.reason != Reason::EarlierRun as i32 {
                    bail!("flows lost: {lost:?}");
                }
                self.earlier_runs.push(lost.node);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Reads `stream` until `enough` holds, or it was quiet for `quiet`.
async fn read(
    stream: &mut tonic::Streaming<GetFlowsResponse>,
    received: &mut Received,
    enough: impl Fn(&Received) -> bool,
    quiet: Duration,
) -> Result<()> {
    while !enough(received) {
        match tokio::time::timeout(quiet, stream.message()).await {
            Ok(message) => {
                let Some(message) = message? else { break };
                received.take(message)?;
            }
            Err(_) => break,
        }
    }
    Ok(())
}

async fn client(relay: &Relay) -> Result<ObserverClient<tonic::transport::Channel>> {
    Ok(ObserverClient::new(
        observer::api::listen::connect(&relay.address(), None).await?,
    ))
}

/// Records received per node.
fn per_node(received: &Received) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::<String, usize>::new();
    for (node, _, _) in &received.records {
        *count.entry(node.clone()).or_default() += 1;
    }
    count
}

fn key(value: &serde_json::Value) -> String {
    value.to_string()
}

#[test]
fn through_the_relay_a_resumed_client_gets_every_nodes_flow_log_exactly() -> Result<()> {
    require_root();
    let dir = scratch_dir("relay-lab");
    let mut nodes = Vec::new();
    for name in NODES {
        nodes.push(Node::start(&dir, name)?);
    }
    let sockets: Vec<PathBuf> = nodes.iter().map(|n| n.socket.clone()).collect();
    let relay_a = Relay::start(&dir, "relay-a", &sockets)?;
    let relay_b = Relay::start(&dir, "relay-b", &sockets)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Round 1: two connections on each node, read through relay A.
    let mut first = Received::default();
    runtime.block_on(async {
        let mut stream = client(&relay_a)
            .await?
            .get_flows(request(Start::FromOldest(true)))
            .await?
            .into_inner();
        for node in &nodes {
            node.exchange()?;
            node.exchange()?;
        }
        // Each connection's record comes once it has been idle for a second.
        let every_node =
            |r: &Received| per_node(r).len() == 3 && per_node(r).values().all(|n| *n >= 2);
        read(&mut stream, &mut first, every_node, Duration::from_secs(20)).await
    })?;
    assert_eq!(
        per_node(&first).len(),
        3,
        "every node: {:?}",
        per_node(&first)
    );
    let token = first.tokens.last().cloned().context("a token")?;
    // The CLI works through a relay as against a node: the last 4 flows, with tokens.
    let output = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args([
            "observe",
            "--server",
            &relay_a.address(),
            "-o",
            "jsonl",
            "--last",
            "4",
        ])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["token"].as_str().is_some_and(|t| t.starts_with("v1."))),
        "{lines:?}"
    );
    // The client is gone; traffic goes on.
    for node in &nodes {
        node.exchange()?;
        node.exchange()?;
    }
    // Resumed through the other replica. While it streams, node-2's observer restarts
    // (stopping, it writes what it holds, and the stream gets that first), traffic goes
    // on, then every observer stops, writing what it holds.
    let mut rest = Received::default();
    let restart_us = runtime.block_on(async {
        let mut stream = client(&relay_b)
            .await?
            .get_flows(request(Start::AfterToken(token)))
            .await?
            .into_inner();
        read(
            &mut stream,
            &mut rest,
            |r| per_node(r).values().sum::<usize>() >= 6,
            Duration::from_secs(20),
        )
        .await?;
        nodes[1].kill()?;
        let restart_us = u64::try_from(observer::hub::now_ns() / 1_000)?;
        nodes[1].run(&dir, NODES[1], 2)?;
        for node in &nodes {
            node.exchange()?;
            node.exchange()?;
        }
        // node-2's next run is read (the relay retries it with backoff).
        let node_2_run_2 = |r: &Received| {
            r.records
                .iter()
                .filter(|(node, cursor, _)| node == "node-2" && *cursor >= restart_us)
                .count()
                >= 2
        };
        read(
            &mut stream,
            &mut rest,
            node_2_run_2,
            Duration::from_secs(30),
        )
        .await?;
        for node in &mut nodes {
            node.stop()?;
        }
        read(&mut stream, &mut rest, |_| false, Duration::from_secs(5)).await?;
        anyhow::Ok(restart_us)
    })?;
    // Nothing twice.
    let all: Vec<&(String, u64, serde_json::Value)> =
        first.records.iter().chain(&rest.records).collect();
    let mut unique: Vec<(String, String)> =
        all.iter().map(|(n, _, r)| (n.clone(), key(r))).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no record twice");
    // Every flow-log record of nodes 1 and 3, and of node-2's second run, exactly.
    let killed_run = |(node, cursor, _): &&(String, u64, serde_json::Value)| {
        node == "node-2" && *cursor < restart_us
    };
    let mut received: Vec<(String, String)> = all
        .iter()
        .filter(|r| !killed_run(r))
        .map(|(n, _, r)| (n.clone(), key(r)))
        .collect();
    received.sort();
    let mut logged: Vec<(String, String)> = nodes
        .iter()
        .zip(NODES)
        .flat_map(|(node, name)| {
            node.logged.iter().map(move |r| {
                (
                    name.to_owned(),
                    key(&serde_json::to_value(r).expect("json")),
                )
            })
        })
        .collect();
    logged.sort();
    let missing: Vec<_> = logged
        .iter()
        .filter(|r| received.binary_search(r).is_err())
        .collect();
    let extra: Vec<_> = received
        .iter()
        .filter(|r| logged.binary_search(r).is_err())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the union of both reads is the flow logs: missing {missing:#?}, not logged {extra:#?}"
    );
    assert!(!logged.is_empty());
    // node-2's killed run: what the relay had not read when it died is gone, and the
    // stream says so, naming the node, once.
    assert!(
        !nodes[1].killed.is_empty(),
        "the killed run had written records"
    );
    assert_eq!(
        rest.earlier_runs,
        ["node-2"],
        "the gap at node-2's restart is named"
    );
    Ok(())
}

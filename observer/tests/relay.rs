//! The relay end to end over real gRPC: node observers served in process (a hub each, the
//! node's own API server on a Unix socket), a relay (`--peer` style) in front of them, real
//! clients. Resuming with a token on another replica, a node's restart, a node that cannot
//! be reached, a slow client beside a fast one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use observer::api::listen::{ApiAddress, bind};
use observer::api::server::{self, ApiConfig, serve_observer};
use observer::hub::FlowHub;
use observer::relay::RelayCounters;
use observer::relay::peers::PeerSet;
use observer::relay::service::RelayService;
use observer::wire::proto::{
    FlowEvent, GetFlowsRequest, GetFlowsResponse, LostFlows, ServerStatusRequest,
    get_flows_request::Start, get_flows_response::Event, lost_flows::Reason,
    observer_client::ObserverClient,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

/// A node observer in process: its hub and API on a Unix socket; stopped when dropped.
struct Node {
    name: String,
    hub: Arc<FlowHub>,
    stop: Option<oneshot::Sender<()>>,
    published: usize,
}

impl Node {
    async fn start(dir: &std::path::Path, name: &str, capacity: usize) -> (Self, String) {
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let address = format!("unix://{}", path.display());
        let node = Self::serve(&path, name, FlowHub::new(capacity)).await;
        (node, address)
    }

    async fn serve(path: &std::path::Path, name: &str, hub: Arc<FlowHub>) -> Self {
        let listener = bind(&ApiAddress::Unix(path.to_path_buf()))
            .await
            .expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ApiConfig {
            node_name: name.into(),
            ..ApiConfig::default()
        };
        tokio::spawn(server::serve(listener, Arc::clone(&hub), config, async {
            let _ = stopped.await;
        }));
        Self {
            name: name.into(),
            hub,
            stop: Some(stop),
            published: 0,
        }
    }

    /// Publishes `n` more flows (source ports count up per node).
    async fn publish(&mut self, n: usize) {
        let records = (0..n)
            .map(|i| {
                let mut r = support::numbered_flow(self.published + i);
                r.node_name = Some(self.name.clone());
                r
            })
            .collect();
        self.published += n;
        self.hub.publish(records).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.hub.close();
    }
}

/// A relay replica on a loopback port over `peers`, and a client of it.
async fn relay(peers: &[String], window: Duration) -> (ObserverClient<Channel>, Arc<PeerSet>) {
    let (client, _, peers) = relay_with(peers, window).await;
    (client, peers)
}

/// [`relay`], and its address.
async fn relay_at(
    peers: &[String],
    window: Duration,
) -> (ObserverClient<Channel>, std::net::SocketAddr) {
    let (client, address, _) = relay_with(peers, window).await;
    (client, address)
}

async fn relay_with(
    peers: &[String],
    window: Duration,
) -> (ObserverClient<Channel>, std::net::SocketAddr, Arc<PeerSet>) {
    let set = PeerSet::new(None);
    set.set(peers);
    let service = RelayService::new(
        Arc::clone(&set),
        Arc::new(RelayCounters::default()),
        window,
        16,
    );
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve_observer(
        listener,
        None,
        None,
        service.into_server(),
        std::future::pending(),
    ));
    let client = ObserverClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    (client, address, set)
}

async fn open(
    client: &mut ObserverClient<Channel>,
    request: GetFlowsRequest,
) -> tonic::Streaming<GetFlowsResponse> {
    client
        .get_flows(request)
        .await
        .expect("stream")
        .into_inner()
}

/// The next `n` flows (and the gaps met on the way).
async fn take(
    stream: &mut tonic::Streaming<GetFlowsResponse>,
    n: usize,
) -> (Vec<FlowEvent>, Vec<LostFlows>) {
    let (mut flows, mut lost) = (Vec::new(), Vec::new());
    while flows.len() < n {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} flows came", flows.len()))
            .expect("stream ok")
            .expect("stream open");
        match message.event {
            Some(Event::Flow(f)) => flows.push(f),
            Some(Event::Lost(l)) => lost.push(l),
            _ => {}
        }
    }
    (flows, lost)
}

/// Every flow and gap until the stream ends.
async fn to_end(
    stream: &mut tonic::Streaming<GetFlowsResponse>,
) -> (Vec<FlowEvent>, Vec<LostFlows>) {
    let (mut flows, mut lost) = (Vec::new(), Vec::new());
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("stream ok")
    {
        match message.event {
            Some(Event::Flow(f)) => flows.push(f),
            Some(Event::Lost(l)) => lost.push(l),
            _ => {}
        }
    }
    (flows, lost)
}

fn node_of(f: &FlowEvent) -> String {
    f.flow
        .as_ref()
        .map(|f| f.node_name.clone())
        .unwrap_or_default()
}

fn written(f: &FlowEvent) -> (i64, i32) {
    f.written.map(|t| (t.seconds, t.nanos)).unwrap_or_default()
}

/// Per node, its cursors in the order received: each strictly increasing.
fn per_node(flows: &[FlowEvent]) -> BTreeMap<String, Vec<u64>> {
    let mut nodes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for f in flows {
        nodes.entry(node_of(f)).or_default().push(f.cursor);
    }
    for (node, cursors) in &nodes {
        assert!(
            cursors.windows(2).all(|w| w[0] < w[1]),
            "{node}'s flows in its order: {cursors:?}"
        );
    }
    nodes
}

/// Every (node, cursor) a node's hub holds now.
fn held(nodes: &[&Node]) -> BTreeSet<(String, u64)> {
    let mut all = BTreeSet::new();
    for node in nodes {
        let mut after = 0;
        loop {
            let batch = node.hub.read_after(after, 1024);
            if batch.items.is_empty() {
                break;
            }
            for (cursor, _) in &batch.items {
                all.insert((node.name.clone(), *cursor));
                after = *cursor;
            }
        }
    }
    all
}

fn keys(flows: &[FlowEvent]) -> Vec<(String, u64)> {
    flows.iter().map(|f| (node_of(f), f.cursor)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_resumes_on_another_replica_with_no_duplicate_and_no_gap() {
    let dir = support::scratch_dir("relay-token");
    let mut nodes = Vec::new();
    let mut addresses = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let (node, address) = Node::start(&dir, name, 10_000).await;
        nodes.push(node);
        addresses.push(address);
    }
    // Interleaved, so that the written times alternate between the nodes.
    for _ in 0..10 {
        for node in &mut nodes {
            node.publish(5).await;
        }
    }
    let (mut client, _) = relay(&addresses, Duration::from_secs(5)).await;
    let mut stream = open(
        &mut client,
        GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            follow: true,
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (first, lost) = take(&mut stream, 70).await;
    assert!(lost.is_empty(), "{lost:?}");
    // Every node was connected and had flows: across nodes, in the order written.
    let times: Vec<_> = first.iter().map(written).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "merged by write time"
    );
    per_node(&first);
    let token = first.last().expect("flows").token.clone();
    assert!(token.starts_with("v1."), "{token}");
    drop(stream);
    // Traffic goes on while the client is away.
    for node in &mut nodes {
        node.publish(30).await;
    }
    // Another replica, which has never seen this client.
    let (mut other, _) = relay(&addresses, Duration::from_secs(5)).await;
    let mut resumed = open(
        &mut other,
        GetFlowsRequest {
            start: Some(Start::AfterToken(token)),
            follow: true,
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (rest, lost) = take(&mut resumed, 3 * 80 - 70).await;
    assert!(lost.is_empty(), "{lost:?}");
    per_node(&rest);
    let mut all = keys(&first);
    all.extend(keys(&rest));
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "no flow twice");
    assert_eq!(
        unique,
        held(&nodes.iter().collect::<Vec<_>>()),
        "every flow"
    );
    // A bad token is refused, naming the field.
    let refused = other
        .get_flows(GetFlowsRequest {
            start: Some(Start::AfterToken("v1.@@".into())),
            ..GetFlowsRequest::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("after_token"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarting_mid_stream_says_what_fell_between_its_runs() {
    let dir = support::scratch_dir("relay-restart");
    let (mut a, address_a) = Node::start(&dir, "node-a", 1_000).await;
    let (mut b, address_b) = Node::start(&dir, "node-b", 1_000).await;
    a.publish(5).await;
    b.publish(5).await;
    let (mut client, _) = relay(&[address_a.clone(), address_b], Duration::from_millis(200)).await;
    let mut stream = open(
        &mut client,
        GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            follow: true,
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (before, _) = take(&mut stream, 10).await;
    let last_a = before
        .iter()
        .filter(|f| node_of(f) == "node-a")
        .map(|f| f.cursor)
        .max()
        .expect("node-a's flows");
    // node-a stops; what its run wrote after the stream last read it is never read.
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.publish(5).await;
    let (during, _) = take(&mut stream, 5).await;
    assert!(during.iter().all(|f| node_of(f) == "node-b"));
    // Its next run, on the same socket, later cursors.
    let path = PathBuf::from(address_a.trim_start_matches("unix://"));
    let _ = std::fs::remove_file(&path);
    let mut a = Node::serve(&path, "node-a", FlowHub::new(1_000)).await;
    a.published = 100;
    a.publish(4).await;
    let (after, lost) = take(&mut stream, 4).await;
    assert_eq!(after.iter().filter(|f| node_of(f) == "node-a").count(), 4);
    let gap = lost
        .iter()
        .find(|l| l.node == "node-a")
        .unwrap_or_else(|| panic!("the earlier run's end is reported for node-a: {lost:?}"));
    assert_eq!(gap.reason, Reason::EarlierRun as i32);
    assert_eq!(
        gap.first_cursor,
        last_a + 1,
        "from right after what was read"
    );
    assert!(gap.last_cursor < after[0].cursor);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_be_reached_is_named_and_the_others_still_answer() {
    let dir = support::scratch_dir("relay-unreachable");
    let (mut a, address_a) = Node::start(&dir, "node-a", 1_000).await;
    a.publish(3).await;
    let missing = format!("unix://{}", dir.join("nobody.sock").display());
    let (mut client, _) = relay(&[address_a, missing.clone()], Duration::from_millis(200)).await;
    let mut stream = open(
        &mut client,
        GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (flows, lost) = to_end(&mut stream).await;
    assert_eq!(flows.len(), 3, "node-a's flows");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].reason, Reason::NodeUnreachable as i32);
    assert_eq!(
        lost[0].node, missing,
        "named by its address: it never said its name"
    );
    let status = client
        .server_status(ServerStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let nodes: BTreeMap<_, _> = status
        .nodes
        .iter()
        .map(|n| (n.address.clone(), n))
        .collect();
    assert_eq!(nodes.len(), 2);
    assert!(!nodes[&missing].connected);
    assert!(!nodes[&missing].last_error.is_empty());
    assert!(status.ready, "one node answers");
    assert_eq!(status.flows_published, 3, "flows relayed");
    // One node's cursor is refused at a relay: it names what to use.
    let refused = client
        .get_flows(GetFlowsRequest {
            start: Some(Start::AfterCursor(1)),
            ..GetFlowsRequest::default()
        })
        .await
        .expect_err("refused");
    assert!(
        refused.message().contains("after_token"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_lost_flows_per_node_while_a_fast_one_gets_everything() {
    let dir = support::scratch_dir("relay-slow");
    let mut nodes = Vec::new();
    let mut addresses = Vec::new();
    for name in ["node-a", "node-b"] {
        let (node, address) = Node::start(&dir, name, 500).await;
        nodes.push(node);
        addresses.push(address);
    }
    let (mut client, address) = relay_at(&addresses, Duration::from_millis(100)).await;
    let request = GetFlowsRequest {
        follow: true,
        ..GetFlowsRequest::default()
    };
    let mut fast = open(&mut client, request.clone()).await;
    // The slow client's own buffer is small (HTTP/2's default window, 64 KiB), as the
    // relay's are: what it has not read piles up nowhere but in the nodes' rings.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .initial_stream_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let mut slow = open(&mut ObserverClient::new(channel), request).await;
    // Let both streams reach every node before anything is published.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut fast_flows = Vec::new();
    // The fast client reads each batch before the next is published; the slow one reads
    // nothing until the end, far more than every buffer on its way holds.
    for _ in 0..100 {
        for node in &mut nodes {
            node.publish(50).await;
        }
        let (flows, lost) = take(&mut fast, 100).await;
        assert!(lost.is_empty(), "the fast client lost flows: {lost:?}");
        fast_flows.extend(flows);
    }
    let total = 100 * 100;
    assert_eq!(fast_flows.len(), total);
    per_node(&fast_flows);
    // The slow client: per node, its flows and its gaps cover every cursor once.
    let mut covered: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut lost_flows = 0;
    let mut received = 0;
    while covered.values().map(BTreeSet::len).sum::<usize>() < total {
        let message = tokio::time::timeout(WAIT, slow.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        match message.event {
            Some(Event::Flow(f)) => {
                received += 1;
                assert!(covered.entry(node_of(&f)).or_default().insert(f.cursor));
            }
            Some(Event::Lost(l)) => {
                assert_eq!(l.reason, Reason::Overwritten as i32);
                assert!(l.node == "node-a" || l.node == "node-b", "{l:?}");
                for cursor in l.first_cursor..=l.last_cursor {
                    lost_flows += 1;
                    assert!(covered.entry(l.node.clone()).or_default().insert(cursor));
                }
            }
            _ => {}
        }
    }
    assert!(
        lost_flows > 0,
        "the slow client lost nothing: buffers are unbounded"
    );
    assert_eq!(received + lost_flows, total);
    let fast_keys: BTreeSet<_> = keys(&fast_flows).into_iter().collect();
    for (node, cursors) in covered {
        let fast_of_node: BTreeSet<u64> = fast_keys
            .iter()
            .filter(|(n, _)| *n == node)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(
            cursors, fast_of_node,
            "{node}: the same cursors, read or lost"
        );
    }
    let status = client
        .server_status(ServerStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.flows_lost_to_subscribers, lost_flows as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_and_comes_back_resumes_where_the_stream_left_it() {
    let dir = support::scratch_dir("relay-rejoin");
    let (mut a, address_a) = Node::start(&dir, "node-a", 1_000).await;
    let (mut b, address_b) = Node::start(&dir, "node-b", 1_000).await;
    a.publish(3).await;
    b.publish(3).await;
    let (mut client, peers) = relay(
        &[address_a.clone(), address_b.clone()],
        Duration::from_millis(100),
    )
    .await;
    let mut stream = open(
        &mut client,
        GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            follow: true,
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (mut flows, _) = take(&mut stream, 6).await;
    // node-b leaves the peer list; what it writes meanwhile is not read ...
    peers.set(std::slice::from_ref(&address_a));
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.publish(2).await;
    a.publish(1).await;
    flows.extend(take(&mut stream, 1).await.0);
    // ... until it is back: then from where this stream left it.
    peers.set(&[address_a, address_b]);
    b.publish(1).await;
    flows.extend(take(&mut stream, 3).await.0);
    let all = keys(&flows);
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "no flow twice: {all:?}");
    assert_eq!(unique, held(&[&a, &b]), "every flow");
    per_node(&flows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_through_a_relay_is_the_newest_of_every_node() {
    let dir = support::scratch_dir("relay-last");
    let mut nodes = Vec::new();
    let mut addresses = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let (node, address) = Node::start(&dir, name, 1_000).await;
        nodes.push(node);
        addresses.push(address);
    }
    for _ in 0..20 {
        for node in &mut nodes {
            node.publish(5).await;
        }
    }
    let (mut client, _) = relay(&addresses, Duration::from_millis(200)).await;
    let mut stream = open(
        &mut client,
        GetFlowsRequest {
            start: Some(Start::Last(4)),
            ..GetFlowsRequest::default()
        },
    )
    .await;
    let (flows, lost) = to_end(&mut stream).await;
    assert!(lost.is_empty(), "{lost:?}");
    // The last round published node-a's 5, node-b's 5, then node-c's 5: the newest four
    // are node-c's last four.
    assert_eq!(flows.len(), 4, "{:?}", keys(&flows));
    assert!(
        flows.iter().all(|f| node_of(f) == "node-c"),
        "{:?}",
        keys(&flows)
    );
    let newest: Vec<u64> = held(&[&nodes[2]])
        .into_iter()
        .map(|(_, c)| c)
        .rev()
        .take(4)
        .rev()
        .collect();
    assert_eq!(flows.iter().map(|f| f.cursor).collect::<Vec<_>>(), newest);
}

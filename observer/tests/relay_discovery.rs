//! The relay's peers found through the Kubernetes API: the EndpointSlices of the node
//! observers' headless Service, served by the in-process mock API server, and node
//! observers run in-process on loopback ports (one EndpointSlice each, as every node
//! listens on 127.0.0.1 at its own port).
//!
//! One following stream through the relay sees every discovered node's flows, a node that
//! joins (from its oldest flow), none from a node that left or from endpoints the
//! discovery must ignore (another Service's, another namespace's, not ready); a second
//! stream resumed from a token gets exactly what came after it; and the discovery keeps
//! its last peers while the API server fails, then follows it again.

// Included by path: the observer's tests/support/mod.rs belongs to other
// test crates, and these helpers need dependencies those crates do not.
#[path = "support/kube/mod.rs"]
mod kube_support;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube_support::mock_apiserver::MockApiServer;
use observer::api::server::{self, ApiConfig};
use observer::flow::FlowRecord;
use observer::hub::FlowHub;
use observer::relay::discovery::{PeerService, discover};
use observer::relay::peers::PeerSet;
use observer::relay::service::RelayService;
use observer::wire::proto::{
    FlowEvent, GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, get_flows_request::Start,
    get_flows_response::Event, observer_client::ObserverClient,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Upper bound for anything the test waits on: only there to turn a hang into a failure
/// (the machine is shared and slow).
const WAIT: Duration = Duration::from_secs(90);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(100);

const NAMESPACE: &str = "observer";
const SERVICE: &str = "observer-nodes";
const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// A flow as the test tells it apart: the node that wrote it and its source port (unique
/// over the test).
type Key = (String, u16);

/// A node observer on a loopback port, stopped when dropped.
struct Node {
    name: &'static str,
    hub: Arc<FlowHub>,
    port: u16,
    client: ObserverClient<Channel>,
    _stop: oneshot::Sender<()>,
}

impl Node {
    async fn start(name: &'static str) -> Self {
        let hub = FlowHub::new(1024);
        let listener = server::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ApiConfig {
            node_name: name.into(),
            ..ApiConfig::default()
        };
        tokio::spawn(server::serve(listener, Arc::clone(&hub), config, async {
            let _ = stopped.await;
        }));
        let client = ObserverClient::connect(format!("http://{address}"))
            .await
            .expect("connect to a node");
        Self {
            name,
            hub,
            port: address.port(),
            client,
            _stop: stop,
        }
    }

    /// What the relay dials for it.
    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes one flow per source port, in order; returns their keys.
    async fn publish(&self, ports: impl IntoIterator<Item = u16>) -> Vec<Key> {
        let records: Vec<FlowRecord> = ports.into_iter().map(|p| record(self.name, p)).collect();
        let keys = records
            .iter()
            .map(|r| (self.name.to_owned(), r.src.port))
            .collect();
        self.hub.publish(records).await;
        keys
    }

    /// Streams open on it now (the relay's readers).
    async fn subscribers(&self) -> u64 {
        self.client
            .clone()
            .server_status(ServerStatusRequest {})
            .await
            .expect("node status")
            .into_inner()
            .subscribers
    }

    /// Waits until no stream is open on it: the relay closed its readers.
    async fn wait_unsubscribed(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let open = self.subscribers().await;
            if open == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still has {open} streams open, long after it left the peers",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A fixture flow written by `node`, told apart by its source port.
fn record(node: &str, port: u16) -> FlowRecord {
    let mut record = support::api_flows().swap_remove(0);
    record.src.port = port;
    record.node_name = Some(node.into());
    record
}

/// An EndpointSlice of `service` in `namespace` with one port (`grpc`) and `endpoints`
/// (address, ready).
fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    port: u16,
    endpoints: &[(&str, bool)],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, ready)| {
            json!({
                "addresses": [address],
                "conditions": { "ready": ready, "serving": ready, "terminating": false },
            })
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": format!("uid-{namespace}-{name}"),
            "labels": {
                SERVICE_LABEL: service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{ "name": "grpc", "port": port, "protocol": "TCP" }],
        "endpoints": endpoints,
    })
}

/// The observer Service's slice for one node.
fn node_slice(node: &Node) -> Value {
    slice(
        NAMESPACE,
        &format!("{SERVICE}-{}", node.name),
        SERVICE,
        node.port,
        &[("127.0.0.1", true)],
    )
}

/// A relay's peers as its `ServerStatus` lists them: address → (node name, connected).
async fn relay_nodes(relay: &mut ObserverClient<Channel>) -> BTreeMap<String, (String, bool)> {
    relay
        .server_status(ServerStatusRequest {})
        .await
        .expect("relay status")
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| (n.address, (n.node_name, n.connected)))
        .collect()
}

/// Waits until the relay lists exactly `nodes`, each named and connected.
async fn wait_relay_nodes(relay: &mut ObserverClient<Channel>, nodes: &[&Node], what: &str) {
    let want: BTreeMap<String, (String, bool)> = nodes
        .iter()
        .map(|n| (n.address(), (n.name.to_owned(), true)))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = relay_nodes(relay).await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the relay lists {now:?}, expected {want:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A following stream through the relay, and what it delivered.
struct Follower {
    name: &'static str,
    stream: tonic::Streaming<GetFlowsResponse>,
    flows: Vec<FlowEvent>,
}

impl Follower {
    async fn open(relay: &mut ObserverClient<Channel>, name: &'static str, start: Start) -> Self {
        let stream = relay
            .get_flows(GetFlowsRequest {
                follow: true,
                start: Some(start),
                ..GetFlowsRequest::default()
            })
            .await
            .expect("relay stream")
            .into_inner();
        Self {
            name,
            stream,
            flows: Vec::new(),
        }
    }

    /// Reads until every flow of `want` arrived, and checks that exactly those did (no
    /// other flow, none twice) since the last call.
    async fn expect(&mut self, want: &[Key], what: &str) {
        let mut want: Vec<Key> = want.to_vec();
        want.sort();
        let mut got: Vec<Key> = Vec::new();
        while !want.iter().all(|k| got.contains(k)) {
            let message = tokio::time::timeout(WAIT, self.stream.message())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}, {what}: stalled; received {got:?}, expected {want:?}",
                        self.name
                    )
                })
                .unwrap_or_else(|e| panic!("{}, {what}: stream failed: {e}", self.name))
                .unwrap_or_else(|| panic!("{}, {what}: stream ended", self.name));
            match message.event {
                Some(Event::Flow(flow)) => {
                    got.push(key(&flow));
                    self.flows.push(flow);
                }
                Some(Event::Lost(lost)) => {
                    panic!("{}, {what}: unexpected loss {lost:?}", self.name)
                }
                // Not asked for; harmless.
                Some(Event::Progress(_)) | None => {}
            }
        }
        got.sort();
        assert_eq!(
            got, want,
            "{}, {what}: exactly these flows, once each",
            self.name
        );
    }

    /// The token of the last flow delivered.
    fn last_token(&self) -> String {
        let flow = self.flows.last().expect("a flow was delivered");
        assert!(!flow.token.is_empty(), "a relay's flow carries a token");
        flow.token.clone()
    }

    /// Every flow delivered, as keys in delivery order.
    fn keys(&self) -> Vec<Key> {
        self.flows.iter().map(key).collect()
    }
}

fn key(flow: &FlowEvent) -> Key {
    let inner = flow.flow.as_ref().expect("a flow event carries its flow");
    let port = inner.source.as_ref().map_or(0, |s| s.port);
    (
        inner.node_name.clone(),
        u16::try_from(port).expect("a port"),
    )
}

/// Each node's flows were delivered in the order the node wrote them (cursors increasing),
/// each with a token.
fn assert_node_order(follower: &Follower) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for flow in &follower.flows {
        let node = key(flow).0;
        if let Some(before) = last.insert(node.clone(), flow.cursor) {
            assert!(
                flow.cursor > before,
                "{}: {node}'s flows out of order ({before} then {})",
                follower.name,
                flow.cursor
            );
        }
        assert!(
            !flow.token.is_empty(),
            "{}: a flow without a token",
            follower.name
        );
    }
}

/// EndpointSlice requests the mock received so far.
fn endpoint_slice_requests(mock: &MockApiServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.kind == "EndpointSlice")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_nodes_join_and_leave_an_open_stream() {
    let (a, b, c, d) = (
        Node::start("node-a").await,
        Node::start("node-b").await,
        Node::start("node-c").await,
        Node::start("node-d").await,
    );
    // Listed where the discovery must not look: its flows must never arrive.
    let x = Node::start("node-x").await;

    let mut a_flows = a.publish([1001, 1002, 1003]).await;
    let mut b_flows = b.publish([2001, 2002, 2003]).await;
    let c_early = c.publish([3001, 3002]).await;
    let d_early = d.publish([4001, 4002]).await;
    x.publish([9001, 9002]).await;

    let mock = MockApiServer::start(vec![
        node_slice(&a),
        node_slice(&b),
        // Another Service's slice, in the same namespace.
        slice(
            NAMESPACE,
            "kube-dns-x",
            "kube-dns",
            x.port,
            &[("127.0.0.1", true)],
        ),
        // The Service's name, in another namespace.
        slice(
            "elsewhere",
            "observer-nodes-x",
            SERVICE,
            x.port,
            &[("127.0.0.1", true)],
        ),
        // The Service's own slice, its endpoint not ready.
        slice(
            NAMESPACE,
            "observer-nodes-unready",
            SERVICE,
            x.port,
            &[("127.0.0.1", false)],
        ),
    ])
    .await;

    let client = kube::Client::try_from(kube::Config::new(mock.url().parse().expect("mock url")))
        .expect("kube client");
    let peers = PeerSet::new(None);
    let discovery = tokio::spawn(discover(
        client,
        PeerService {
            namespace: NAMESPACE.into(),
            name: SERVICE.into(),
            port_name: "grpc".into(),
            scheme: "http",
        },
        Arc::clone(&peers),
    ));
    let service = RelayService::new(
        Arc::clone(&peers),
        Arc::default(),
        Duration::from_millis(200),
        8,
    );
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let relay_address = listener.local_addr().expect("address");
    tokio::spawn(server::serve_observer(
        listener,
        None,
        None,
        service.into_server(),
        std::future::pending(),
    ));
    let mut relay = ObserverClient::connect(format!("http://{relay_address}"))
        .await
        .expect("connect to the relay");

    // The ready endpoints of the Service's slices, nothing else.
    wait_relay_nodes(&mut relay, &[&a, &b], "discovered").await;
    // The discovery read its namespace's collection, by the Service's label.
    let requests: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.kind == "EndpointSlice")
        .collect();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.namespace.as_deref(), Some(NAMESPACE), "{r:?}");
        assert_eq!(
            r.label_selector.as_deref(),
            Some("kubernetes.io/service-name=observer-nodes"),
            "{r:?}"
        );
    }

    // Both nodes' flows from their oldest, then new ones as they are written.
    let mut first = Follower::open(&mut relay, "first stream", Start::FromOldest(true)).await;
    first
        .expect(&[a_flows.clone(), b_flows.clone()].concat(), "backlog")
        .await;
    let new = [a.publish([1004]).await, b.publish([2004]).await].concat();
    first.expect(&new, "followed").await;
    a_flows.push(new[0].clone());
    b_flows.push(new[1].clone());

    // A node joins: what it wrote before, then what it writes, on the same stream.
    mock.apply(node_slice(&c));
    first.expect(&c_early, "node-c's backlog").await;
    wait_relay_nodes(&mut relay, &[&a, &b, &c], "node-c joined").await;
    let new = [c.publish([3003]).await, a.publish([1005]).await].concat();
    first.expect(&new, "node-c's new flows").await;
    let mut c_flows = [c_early.clone(), new[..1].to_vec()].concat();
    a_flows.push(new[1].clone());

    // A node leaves: the relay lists it no more, stops reading it, and its later flows
    // do not arrive while the others' still do.
    mock.delete("EndpointSlice", NAMESPACE, &format!("{SERVICE}-node-b"));
    wait_relay_nodes(&mut relay, &[&a, &c], "node-b left").await;
    b.wait_unsubscribed().await;
    b.publish([2005]).await;
    let new = [a.publish([1006]).await, c.publish([3004]).await].concat();
    first.expect(&new, "after node-b left").await;
    a_flows.push(new[0].clone());
    c_flows.push(new[1].clone());

    // A second stream resumed right after the first one's last flow gets exactly what
    // came later.
    let token = first.last_token();
    let at_token = first.flows.len();
    let mut second = Follower::open(&mut relay, "second stream", Start::AfterToken(token)).await;
    let new = [a.publish([1007]).await, c.publish([3005]).await].concat();
    first.expect(&new, "while a second stream reads").await;
    second.expect(&new, "resumed from the token").await;
    a_flows.push(new[0].clone());
    c_flows.push(new[1].clone());

    // The API server refuses the discovery and breaks its watch: the peers stay.
    let before = endpoint_slice_requests(&mock);
    {
        let mut state = mock.state();
        state.forbidden.insert("EndpointSlice");
        state.abort_watches();
    }
    // Two refused attempts at least: the discovery has seen the failures.
    kube_support::harness::wait_requests(
        &mock,
        "refused EndpointSlice requests",
        before + 2,
        |r| r.kind == "EndpointSlice",
    )
    .await;
    wait_relay_nodes(&mut relay, &[&a, &c], "while the API server fails").await;
    let new = [a.publish([1008]).await, c.publish([3006]).await].concat();
    first.expect(&new, "while the API server fails").await;
    second.expect(&new, "while the API server fails").await;
    a_flows.push(new[0].clone());
    c_flows.push(new[1].clone());

    // Meanwhile node-d joined, and the history the watch would resume from is gone: the
    // discovery, served again, must list again to see it.
    mock.while_disconnected(|state| {
        state.apply(node_slice(&d));
    });
    let refused = endpoint_slice_requests(&mock);
    mock.state().forbidden.remove("EndpointSlice");
    wait_relay_nodes(&mut relay, &[&a, &c, &d], "node-d joined after the failure").await;
    assert!(
        mock.requests()
            .iter()
            .skip(refused)
            .any(|r| r.kind == "EndpointSlice" && !r.watch),
        "the discovery listed again after its watch expired"
    );
    first.expect(&d_early, "node-d's backlog").await;
    second.expect(&d_early, "node-d's backlog").await;
    let mut d_flows = d_early.clone();
    let new = [d.publish([4003]).await, a.publish([1009]).await].concat();
    first.expect(&new, "node-d's new flows").await;
    second.expect(&new, "node-d's new flows").await;
    d_flows.push(new[0].clone());
    a_flows.push(new[1].clone());
    // And it follows the API server again: a change made now is seen by its new watch.
    mock.delete("EndpointSlice", NAMESPACE, &format!("{SERVICE}-node-c"));
    wait_relay_nodes(&mut relay, &[&a, &d], "node-c left after the failure").await;
    c.wait_unsubscribed().await;

    // Last: flows written on nodes not (or no more) discovered do not arrive; what the
    // discovered ones write still does.
    b.publish([2006]).await;
    c.publish([3007]).await;
    x.publish([9003]).await;
    let new = [a.publish([1010]).await, d.publish([4004]).await].concat();
    first.expect(&new, "at the end").await;
    second.expect(&new, "at the end").await;
    a_flows.push(new[0].clone());
    d_flows.push(new[1].clone());

    // Everything each stream delivered, exactly.
    let mut all = [a_flows.clone(), b_flows, c_flows.clone(), d_flows.clone()].concat();
    all.sort();
    let mut delivered = first.keys();
    delivered.sort();
    assert_eq!(
        delivered, all,
        "the first stream: every discovered node's flows, once"
    );
    let mut after_token = first.keys().split_off(at_token);
    after_token.sort();
    let mut resumed = second.keys();
    resumed.sort();
    assert_eq!(
        resumed, after_token,
        "the second stream: exactly what the first delivered after its token"
    );
    assert_node_order(&first);
    assert_node_order(&second);
    assert_eq!(x.subscribers().await, 0, "node-x was never read");
    assert_eq!(b.subscribers().await, 0, "node-b is read no more");
    assert_eq!(c.subscribers().await, 0, "node-c is read no more");
    discovery.abort();
}

/// The mock itself: namespaced collections and label selectors, on lists and watches,
/// with objects that enter or leave a watch's selection seen as ADDED or DELETED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_serves_namespaces_and_label_selectors() {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, ListParams, WatchEvent, WatchParams};

    let mock = MockApiServer::start(vec![
        slice(NAMESPACE, "s1", "svc-a", 1, &[("10.0.0.1", true)]),
        slice(NAMESPACE, "s2", "svc-b", 2, &[("10.0.0.2", true)]),
        slice("other", "s3", "svc-a", 3, &[("10.0.0.3", true)]),
    ])
    .await;
    let client = kube::Client::try_from(kube::Config::new(mock.url().parse().expect("mock url")))
        .expect("kube client");
    let here: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let everywhere: Api<EndpointSlice> = Api::all(client.clone());
    let names = |list: kube::core::ObjectList<EndpointSlice>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|s| s.metadata.name.unwrap_or_default())
            .collect()
    };
    let svc_a = ListParams::default().labels(&format!("{SERVICE_LABEL}=svc-a"));
    assert_eq!(names(here.list(&svc_a).await.expect("list")), ["s1"]);
    assert_eq!(
        names(everywhere.list(&svc_a).await.expect("list")),
        ["s1", "s3"]
    );
    let default = ListParams::default();
    assert_eq!(
        names(here.list(&default).await.expect("list")),
        ["s1", "s2"]
    );
    let not_a = ListParams::default().labels(&format!("{SERVICE_LABEL}!=svc-a"));
    assert_eq!(names(everywhere.list(&not_a).await.expect("list")), ["s2"]);
    // Other kinds too, filtered to their namespace.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(pods.list(&default).await.expect("list").items.is_empty());
    // Set-based selectors are refused rather than misread.
    let set_based = ListParams::default().labels("app in (a,b)");
    assert!(here.list(&set_based).await.is_err());
    let requests = mock.requests();
    let listed = requests.first().expect("a request");
    assert_eq!(listed.namespace.as_deref(), Some(NAMESPACE));

    // Watched from the version listed, live and replayed from history: what enters the
    // selection is ADDED, what leaves it DELETED; other namespaces' objects are not seen.
    let from = here
        .list(&svc_a)
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("a version");
    let watch = WatchParams::default()
        .labels(&format!("{SERVICE_LABEL}=svc-a"))
        .timeout(290);
    let live = here.watch(&watch, &from).await.expect("watch");
    mock.apply(slice(NAMESPACE, "s2", "svc-a", 2, &[("10.0.0.2", true)]));
    mock.apply(slice(NAMESPACE, "s1", "svc-b", 1, &[("10.0.0.1", true)]));
    mock.apply(slice(NAMESPACE, "s2", "svc-a", 2, &[("10.0.0.9", true)]));
    mock.apply(slice("other", "s4", "svc-a", 4, &[("10.0.0.4", true)]));
    mock.delete("EndpointSlice", NAMESPACE, "s1");
    mock.delete("EndpointSlice", NAMESPACE, "s2");
    let want: Vec<(&str, String)> = [
        ("ADDED", "s2"),
        ("DELETED", "s1"),
        ("MODIFIED", "s2"),
        ("DELETED", "s2"),
    ]
    .iter()
    .map(|(e, n)| (*e, (*n).to_owned()))
    .collect();
    let replayed = here.watch(&watch, &from).await.expect("watch");
    for (events, what) in [(live.boxed(), "live"), (replayed.boxed(), "replayed")] {
        let events: Vec<(&str, String)> = tokio::time::timeout(
            WAIT,
            events
                .take(want.len())
                .map_ok(|event| match event {
                    WatchEvent::Added(s) => ("ADDED", s.metadata.name.unwrap_or_default()),
                    WatchEvent::Modified(s) => ("MODIFIED", s.metadata.name.unwrap_or_default()),
                    WatchEvent::Deleted(s) => ("DELETED", s.metadata.name.unwrap_or_default()),
                    other => panic!("{what}: unexpected {other:?}"),
                })
                .try_collect(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: watch stalled"))
        .expect("watch events");
        assert_eq!(events, want, "{what}");
    }
}

//! `GetSuggestions`, `WatchSuggestions` and `GetLearning` over a real tonic server and
//! client: the suggestions of what a learner learned, with the current cluster view, in
//! either format, with structured rules; the watch sends every suggestion first, then only
//! those a new edge changed; no cluster state is a FAILED_PRECONDITION; two observers'
//! learning merges (`observer suggest --server A --server B`, the real binary) and the
//! proof covers both servers' flows.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use observer::api::server::{ApiConfig, SuggestionSource};
use observer::cluster::manifests;
use observer::cluster::view::ClusterView;
use observer::flow::IcmpInfo;
use observer::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, Timestamp};
use observer::hub::FlowHub;
use observer::suggest::learn::{LearnConfig, Learner};
use observer::wire::proto::observer_client::ObserverClient;
use observer::wire::proto::{
    GetLearningRequest, GetSuggestionsRequest, SuggestionFormat, TrafficDirection, suggested_peer,
};
use tokio::sync::watch;

const CLUSTER: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
    apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web}}\n\
    status: {podIP: 10.0.0.1}\n---\n\
    apiVersion: v1\nkind: Pod\nmetadata: {name: api-0, namespace: shop, labels: {app: api}}\n\
    status: {podIP: 10.0.0.2}\n";

fn pod(name: &str, app: &str, ip: &str, port: u16) -> RecordEndpoint {
    let mut end = RecordEndpoint {
        ip: ip.parse().expect("an address"),
        port,
        identity: Default::default(),
    };
    end.identity.namespace = Some("shop".into());
    end.identity.pod = Some(name.into());
    end.identity.labels = Some([("app".to_string(), app.to_string())].into());
    end
}

fn record(dst: RecordEndpoint, second: i64) -> FlowRecord {
    let mut r = FlowRecord::between(
        pod("web-0", "web", "10.0.0.1", 40_000 + second as u16),
        dst,
        IpProtocol::TCP,
        FlowState::Closed,
    );
    r.first_seen = Timestamp(second * 1_000_000_000);
    r.last_seen = r.first_seen;
    r
}

async fn serve(
    learner: Arc<Mutex<Learner>>,
    view: Option<Arc<ClusterView>>,
) -> ObserverClient<tonic::transport::Channel> {
    serve_with(learner, view, FlowHub::with_first_cursor(16, 1), "")
        .await
        .0
}

async fn serve_with(
    learner: Arc<Mutex<Learner>>,
    view: Option<Arc<ClusterView>>,
    hub: Arc<FlowHub>,
    node: &str,
) -> (
    ObserverClient<tonic::transport::Channel>,
    std::net::SocketAddr,
) {
    let (_, views) = watch::channel(view);
    let config = ApiConfig {
        suggestions: Some(SuggestionSource {
            learner,
            views,
            node: node.into(),
        }),
        ..ApiConfig::default()
    };
    let (channel, address) = support::api_channel(hub, config).await;
    (ObserverClient::new(channel), address)
}

fn names(message: &observer::wire::proto::GetSuggestionsResponse) -> Vec<String> {
    let mut names: Vec<String> = message
        .suggestions
        .iter()
        .map(|s| format!("{}/{}", s.kind, s.name))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn suggestions_are_answered_and_watched_as_they_change() {
    let view = ClusterView::build(&manifests::parse("c.yaml", CLUSTER).into_objects()).0;
    let learner = Arc::new(Mutex::new(Learner::new(LearnConfig::default())));
    learner
        .lock()
        .expect("learner")
        .learn(&record(pod("api-0", "api", "10.0.0.2", 8080), 1));
    let mut client = serve(Arc::clone(&learner), Some(Arc::new(view))).await;

    let answer = client
        .get_suggestions(GetSuggestionsRequest::default())
        .await
        .expect("suggestions")
        .into_inner();
    assert_eq!(names(&answer), ["Pod/api-0", "Pod/web-0"]);
    let summary = answer.summary.expect("a summary");
    assert_eq!(summary.edges, 2);
    assert!(answer.suggestions[0].yaml.contains("kind: NetworkPolicy"));
    let only_api = client
        .get_suggestions(GetSuggestionsRequest {
            workload: vec!["Pod/api-0".into()],
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(names(&only_api), ["Pod/api-0"]);

    let mut watching = client
        .watch_suggestions(GetSuggestionsRequest {
            check_interval_ms: 500,
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect("a watch")
        .into_inner();
    let first = watching.message().await.expect("a message").expect("open");
    assert_eq!(
        names(&first),
        ["Pod/api-0", "Pod/web-0"],
        "everything first"
    );
    // web starts calling an outside address: only web's policy changes.
    let outside = RecordEndpoint {
        ip: IpAddr::from([93, 184, 216, 34]),
        port: 443,
        identity: Default::default(),
    };
    learner.lock().expect("learner").learn(&record(outside, 2));
    let next = tokio::time::timeout(Duration::from_secs(10), watching.message())
        .await
        .expect("within the interval")
        .expect("a message")
        .expect("open");
    assert_eq!(names(&next), ["Pod/web-0"], "only what changed");
    assert!(next.suggestions[0].yaml.contains("93.184.216.34/32"));
}

#[tokio::test]
async fn without_a_cluster_state_suggestions_are_refused_saying_why() {
    let learner = Arc::new(Mutex::new(Learner::new(LearnConfig::default())));
    let mut client = serve(learner, None).await;
    let refused = client
        .get_suggestions(GetSuggestionsRequest::default())
        .await
        .expect_err("no view");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("cluster state"), "{refused:?}");
}

fn view() -> Arc<ClusterView> {
    Arc::new(ClusterView::build(&manifests::parse("c.yaml", CLUSTER).into_objects()).0)
}

#[tokio::test]
async fn rules_are_structured_and_the_calico_format_writes_icmp_rules() {
    let learner = Arc::new(Mutex::new(Learner::new(LearnConfig::default())));
    let mut ping = record(pod("api-0", "api", "10.0.0.2", 0), 3);
    ping.protocol = IpProtocol::ICMP;
    ping.icmp = Some(IcmpInfo {
        icmp_type: 8,
        code: 0,
    });
    {
        let mut learner = learner.lock().expect("learner");
        learner.learn(&record(pod("api-0", "api", "10.0.0.2", 8080), 1));
        learner.learn(&ping);
    }
    let hub = FlowHub::with_first_cursor(16, 1);
    hub.publish(vec![record(pod("api-0", "api", "10.0.0.2", 8080), 1), ping])
        .await;
    let (mut client, _) = serve_with(learner, Some(view()), hub, "node-a").await;

    let kubernetes = client
        .get_suggestions(GetSuggestionsRequest {
            workload: vec!["Pod/web-0".into()],
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect("suggestions")
        .into_inner();
    let web = &kubernetes.suggestions[0];
    assert_eq!(web.rules.len(), 1, "{:?}", web.rules);
    let rule = &web.rules[0];
    assert_eq!(rule.direction, TrafficDirection::Egress as i32);
    match rule.peer.as_ref().and_then(|p| p.peer.as_ref()) {
        Some(suggested_peer::Peer::Workload(w)) => {
            assert_eq!((w.name.as_str(), w.kind.as_str()), ("api-0", "Pod"));
            assert_eq!(w.selector.get("app").map(String::as_str), Some("api"));
        }
        other => panic!("a workload peer, not {other:?}"),
    }
    assert_eq!(
        (rule.ports[0].protocol.as_str(), rule.ports[0].first),
        ("TCP", 8080)
    );
    assert_eq!(rule.evidence.as_ref().map(|e| e.flows), Some(1));
    assert_eq!(web.portless.len(), 1);
    assert_eq!(web.portless[0].protocol, "ICMP");
    assert!(
        web.yaml.contains("Not expressible in NetworkPolicy"),
        "{}",
        web.yaml
    );
    let summary = kubernetes.summary.expect("summary");
    assert_eq!(
        (summary.flows_checked, summary.flows_allowed),
        (1, 1),
        "ICMP not judged"
    );

    let calico = client
        .get_suggestions(GetSuggestionsRequest {
            workload: vec!["Pod/web-0".into()],
            format: SuggestionFormat::Calico as i32,
            calico_order: 500.0,
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect("Calico suggestions")
        .into_inner();
    let yaml = &calico.suggestions[0].yaml;
    assert!(yaml.contains("apiVersion: projectcalico.org/v3"), "{yaml}");
    assert!(yaml.contains("order: 500"), "{yaml}");
    assert!(yaml.contains("protocol: ICMP"), "{yaml}");
    assert!(yaml.contains("icmp: {type: 8, code: 0}"), "{yaml}");
    let summary = calico.summary.expect("summary");
    assert_eq!(
        (summary.flows_checked, summary.flows_allowed),
        (2, 2),
        "the Calico proof judges the ping too"
    );

    let learning = client
        .get_learning(GetLearningRequest {})
        .await
        .expect("learning")
        .into_inner();
    assert_eq!((learning.node.as_str(), learning.edges), ("node-a", 4));
    let refused = client
        .get_suggestions(GetSuggestionsRequest {
            learned: vec![b"{not a state".to_vec()],
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect_err("bad learning");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("learned[0]"), "{refused:?}");
}

/// Two observers, each learning one of web's calls (web's replicas call api from node A
/// and db from node B): their addresses and learners.
async fn two_nodes() -> (Vec<std::net::SocketAddr>, Vec<Arc<Mutex<Learner>>>) {
    let cluster = format!(
        "{CLUSTER}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: db-0, namespace: shop, \
         labels: {{app: db}}}}\nstatus: {{podIP: 10.0.0.3}}\n"
    );
    let view = Arc::new(ClusterView::build(&manifests::parse("c.yaml", &cluster).into_objects()).0);
    let (mut addresses, mut learners) = (Vec::new(), Vec::new());
    for (node, callee) in [
        ("node-a", pod("api-0", "api", "10.0.0.2", 8080)),
        ("node-b", pod("db-0", "db", "10.0.0.3", 5432)),
    ] {
        let flow = record(callee, 1);
        let learner = Arc::new(Mutex::new(Learner::new(LearnConfig::default())));
        learner.lock().expect("learner").learn(&flow);
        let hub = FlowHub::with_first_cursor(16, 1);
        hub.publish(vec![flow]).await;
        let address = serve_with(Arc::clone(&learner), Some(Arc::clone(&view)), hub, node)
            .await
            .1;
        addresses.push(address);
        learners.push(learner);
    }
    (addresses, learners)
}

#[tokio::test]
async fn two_observers_learning_merges_and_both_prove_it() {
    let (addresses, _) = two_nodes().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("suggest")
        .args(["--server", &format!("http://{}", addresses[0])])
        .args(["--server", &format!("http://{}", addresses[1])])
        .output()
        .await
        .expect("observer suggest runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    let policies = manifests::parse("out.yaml", &stdout);
    assert!(policies.errors.is_empty(), "{:?}", policies.errors);
    let web = policies
        .into_objects()
        .policies
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-0-observed"))
        .expect("web's policy");
    let egress = web
        .spec
        .as_ref()
        .and_then(|s| s.egress.clone())
        .expect("egress rules");
    let ports: Vec<String> = egress
        .iter()
        .flat_map(|r| r.ports.iter().flatten())
        .map(|p| format!("{:?}", p.port))
        .collect();
    assert_eq!(
        ports.len(),
        2,
        "api's and db's ports, one from each node: {ports:?}"
    );
    assert!(stderr.contains("by 2 observer(s)"), "{stderr}");
    assert!(
        stderr.contains("proof: 2 flows held by the servers judged, 2 allowed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_relay_suggestions_merge_every_node_and_are_watched() {
    let (addresses, learners) = two_nodes().await;
    let addresses: Vec<String> = addresses.iter().map(|a| format!("http://{a}")).collect();
    // The relay, in process, over both.
    let peers = observer::relay::peers::PeerSet::new(None);
    peers.set(&addresses);
    let service = observer::relay::service::RelayService::new(
        Arc::clone(&peers),
        Arc::default(),
        Duration::from_millis(200),
        8,
    );
    let listener = observer::api::server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let relay = listener.local_addr().expect("address");
    tokio::spawn(observer::api::server::serve_observer(
        listener,
        None,
        None,
        service.into_server(),
        std::future::pending(),
    ));
    let mut client = ObserverClient::connect(format!("http://{relay}"))
        .await
        .expect("relay");
    // Once both nodes answered the relay's status checks.
    let answer = loop {
        match client
            .get_suggestions(GetSuggestionsRequest::default())
            .await
        {
            Ok(answer)
                if answer
                    .get_ref()
                    .summary
                    .as_ref()
                    .is_some_and(|s| s.flows_checked == 2) =>
            {
                break answer.into_inner();
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let web = answer
        .suggestions
        .iter()
        .find(|s| s.name == "web-0")
        .expect("web's suggestion");
    assert_eq!(
        web.egress_rules, 2,
        "api from node A, db from node B: {}",
        web.yaml
    );
    let summary = answer.summary.expect("summary");
    assert_eq!(
        (summary.flows_checked, summary.flows_allowed),
        (2, 2),
        "both nodes' proof"
    );
    // Watched: everything first, then what a new edge on one node changed.
    let mut watching = client
        .watch_suggestions(GetSuggestionsRequest {
            check_interval_ms: 500,
            ..GetSuggestionsRequest::default()
        })
        .await
        .expect("a watch")
        .into_inner();
    let first = watching.message().await.expect("a message").expect("open");
    assert_eq!(names(&first), ["Pod/api-0", "Pod/db-0", "Pod/web-0"]);
    let outside = RecordEndpoint {
        ip: IpAddr::from([93, 184, 216, 34]),
        port: 443,
        identity: Default::default(),
    };
    learners[1]
        .lock()
        .expect("learner")
        .learn(&record(outside, 2));
    let next = tokio::time::timeout(Duration::from_secs(20), watching.message())
        .await
        .expect("within the interval")
        .expect("a message")
        .expect("open");
    assert_eq!(names(&next), ["Pod/web-0"], "only what changed");
    assert!(next.suggestions[0].yaml.contains("93.184.216.34/32"));
    // GetLearning is a node's: a relay says where to look.
    let refused = client
        .get_learning(GetLearningRequest {})
        .await
        .expect_err("a relay learns nothing itself");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
}

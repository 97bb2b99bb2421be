//! `GetSuggestions` and `WatchSuggestions` over a real tonic server and client: the
//! suggestions of what a learner learned, with the current cluster view; the watch sends
//! every suggestion first, then only those a new edge changed; no cluster state is a
//! FAILED_PRECONDITION.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use observer::api::server::{ApiConfig, SuggestionSource};
use observer::cluster::manifests;
use observer::cluster::view::ClusterView;
use observer::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, Timestamp};
use observer::hub::FlowHub;
use observer::suggest::learn::{LearnConfig, Learner};
use observer::wire::proto::GetSuggestionsRequest;
use observer::wire::proto::observer_client::ObserverClient;
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
    let (_, views) = watch::channel(view);
    let config = ApiConfig {
        suggestions: Some(SuggestionSource { learner, views }),
        ..ApiConfig::default()
    };
    let (channel, _) = support::api_channel(FlowHub::with_first_cursor(16, 1), config).await;
    ObserverClient::new(channel)
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

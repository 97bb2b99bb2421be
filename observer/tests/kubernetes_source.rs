//! The Kubernetes source against an in-process mock API server.

// Included by path: the observer's tests/support/mod.rs belongs to other
// test crates, and these helpers need dependencies those crates do not.
#[path = "support/kube/mod.rs"]
mod kube_support;

use observer::cluster::kubernetes::{KubernetesSource, KubernetesSourceConfig};
use observer::cluster::source::ClusterSource;
use observer::cluster::state::{Workload, WorkloadKind, workload_of};
use serde_json::json;

use kube_support::fixtures::{self, namespace_with_team, web_pod};
use kube_support::harness::{
    WAIT, has_pod, pod, pod_lists, pod_names, ready, start_source, team, wait_request,
    wait_requests, wait_state, workload, write_kubeconfig,
};
use kube_support::mock_apiserver::MockApiServer;
use kube_support::mock_state::RequestRecord;

#[tokio::test]
async fn initial_list_publishes_all_fixtures_and_resolves_workloads() {
    let mock = MockApiServer::start(fixtures::all()).await;
    let kubeconfig = write_kubeconfig(&mock);
    let config = KubernetesSourceConfig {
        kubeconfig: Some(kubeconfig.clone()),
        page_size: Some(2), // four pods: forces `continue` pagination
        ..Default::default()
    };
    let source = tokio::time::timeout(WAIT, KubernetesSource::connect(config))
        .await
        .expect("connect in time")
        .expect("client from kubeconfig");
    let _ = std::fs::remove_file(kubeconfig);
    let state = ready(&source).await;

    let counts = [
        state.namespaces.len(),
        state.pods.len(),
        state.nodes.len(),
        state.policies.len(),
        state.services.len(),
        state.replica_sets.len(),
        state.jobs.len(),
    ];
    assert_eq!(counts, [1, 4, 1, 1, 1, 1, 1]);
    assert_eq!(pod_names(&state), mock.state().names("Pod"));

    assert_eq!(
        workload(&state, "web-6d8f9c7b5-x2x9q").as_deref(),
        Some("Deployment/web")
    );
    assert_eq!(workload(&state, "db-0").as_deref(), Some("StatefulSet/db"));
    assert_eq!(
        workload(&state, "backup-28712345-q7r2w").as_deref(),
        Some("CronJob/backup")
    );
    assert_eq!(workload(&state, "netdebug"), None);

    // Fields the observer reads survive trimming; bulky ones do not.
    let web = pod(&state, "web-6d8f9c7b5-x2x9q");
    let status = web.status.as_ref().expect("status");
    let ips: Vec<_> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .collect();
    assert_eq!(ips, ["10.244.1.17", "fd00:10:244:1::11"]);
    let spec = web.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("worker-1"));
    let ports = spec.containers[0].ports.as_ref().expect("ports");
    assert_eq!(ports[0].container_port, 8080);
    assert!(spec.containers[0].env.is_none() && spec.volumes.is_none());
    assert!(status.container_statuses.is_none());
    assert!(web.metadata.managed_fields.is_none() && web.metadata.annotations.is_none());
    let debug = pod(&state, "netdebug");
    assert_eq!(debug.spec.as_ref().and_then(|s| s.host_network), Some(true));
    let ns_labels = state.namespaces[0]
        .metadata
        .labels
        .as_ref()
        .expect("labels");
    assert_eq!(
        ns_labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
    let node_status = state.nodes[0].status.as_ref().expect("node status");
    assert_eq!(
        node_status.addresses.as_ref().expect("addresses")[0].address,
        "192.168.49.3"
    );
    assert!(node_status.images.is_none() && node_status.conditions.is_none());
    assert_eq!(
        state.services[0]
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref()),
        Some("10.96.120.15")
    );
    // The server also serves EndpointSlices; the observer does not read them, so it
    // does not watch them (their readiness flips would only cost rebuilds).
    assert!(
        mock.requests().iter().all(|r| r.kind != "EndpointSlice"),
        "EndpointSlices requested"
    );

    let requests = mock.requests();
    let pod_requests: Vec<_> = requests.iter().filter(|r| r.kind == "Pod").collect();
    assert!(
        pod_requests.iter().any(|r| r.continue_token.is_some()),
        "{pod_requests:?}"
    );
    assert!(
        pod_requests.iter().all(|r| r.field_selector.is_none()),
        "selector off by default"
    );
    assert_eq!(source.counters().relists, 0);
    assert_eq!(source.counters().invalid_objects, 0);
}

#[tokio::test]
async fn watch_events_update_state_and_bookmarks_do_not() {
    let mock = MockApiServer::start(fixtures::all()).await;
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    ready(&source).await;
    let mut rx = source.subscribe();

    mock.apply(web_pod("web-6d8f9c7b5-b4n7c", Some("10.244.1.20")));
    wait_state(&mut rx, "ADDED pod", |s| has_pod(s, "web-6d8f9c7b5-b4n7c")).await;

    let mut moved = web_pod("web-6d8f9c7b5-b4n7c", Some("10.244.1.21"));
    moved["metadata"]["labels"]["version"] = json!("v2");
    mock.apply(moved);
    let state = wait_state(&mut rx, "MODIFIED pod", |s| {
        s.pods
            .iter()
            .any(|p| p.status.as_ref().and_then(|st| st.pod_ip.as_deref()) == Some("10.244.1.21"))
    })
    .await;
    let labels = pod(&state, "web-6d8f9c7b5-b4n7c")
        .metadata
        .labels
        .clone()
        .unwrap_or_default();
    assert_eq!(labels.get("version").map(String::as_str), Some("v2"));

    mock.delete("Pod", "shop", "db-0");
    wait_state(&mut rx, "DELETED pod", |s| !has_pod(s, "db-0")).await;

    mock.apply(namespace_with_team("checkout"));
    let state = wait_state(&mut rx, "namespace relabel", |s| {
        team(s).as_deref() == Some("checkout")
    })
    .await;
    assert_eq!(pod_names(&state), mock.state().names("Pod"));

    // A bookmark moves the watcher's resourceVersion past events of other
    // kinds without touching state: after history expiry and a dropped
    // connection, the pods watch resumes from the bookmark, not with a 410.
    let publishes = source.counters().publishes;
    let bookmark_rv = {
        let mut s = mock.state();
        let rv = s.bookmark();
        s.expire_history();
        s.drop_watches();
        rv
    };
    let rv = bookmark_rv.to_string();
    wait_request(&mock, "pods watch from bookmark", |r| {
        r.kind == "Pod" && r.watch && r.resource_version.as_deref() == Some(rv.as_str())
    })
    .await;
    mock.apply(web_pod("web-6d8f9c7b5-zz9zz", Some("10.244.1.22")));
    let after = wait_state(&mut rx, "pod after bookmark", |s| {
        has_pod(s, "web-6d8f9c7b5-zz9zz")
    })
    .await;
    assert_eq!(
        source.counters().publishes,
        publishes + 1,
        "bookmark published a state"
    );
    assert_eq!(after.pods.len(), state.pods.len() + 1);
    assert_eq!(pod_lists(&mock), 1, "pods relisted despite the bookmark");
}

#[tokio::test]
async fn gone_410_relists_and_converges_with_deletions_while_disconnected() {
    let mock = MockApiServer::start(fixtures::all()).await;
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    ready(&source).await;
    let mut rx = source.subscribe();

    mock.while_disconnected(|s| {
        s.delete("Pod", "shop", "db-0");
        s.apply(web_pod("cache-0", Some("10.244.1.30")));
        s.apply(namespace_with_team("checkout"));
    });
    let state = wait_state(&mut rx, "converged after relist", |s| {
        !has_pod(s, "db-0") && has_pod(s, "cache-0") && team(s).as_deref() == Some("checkout")
    })
    .await;
    assert_eq!(pod_names(&state), mock.state().names("Pod"));
    assert_eq!(
        workload(&state, "backup-28712345-q7r2w").as_deref(),
        Some("CronJob/backup")
    );
    let counters = source.counters();
    assert!(counters.relists >= 1, "{counters:?}");
    assert!(
        counters.watch_errors >= 1,
        "410 not surfaced as an error: {counters:?}"
    );
    assert!(pod_lists(&mock) >= 2, "pods were not relisted");
}

#[tokio::test]
async fn dropped_connections_resume_from_last_version_without_losing_events() {
    let mock = MockApiServer::start(fixtures::all()).await;
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    ready(&source).await;
    let mut rx = source.subscribe();

    let last_rv = mock.apply(web_pod("web-6d8f9c7b5-b4n7c", Some("10.244.1.20")));
    wait_state(&mut rx, "pod before drop", |s| {
        has_pod(s, "web-6d8f9c7b5-b4n7c")
    })
    .await;

    let is_pod_watch = |r: &RequestRecord| r.kind == "Pod" && r.watch;
    for round in 0..3 {
        let ip = format!("10.244.2.{round}");
        let watches = mock.requests().iter().filter(|r| is_pod_watch(r)).count();
        {
            let mut state = mock.state();
            // Alternate a clean end of the response with a broken connection.
            if round == 1 {
                state.abort_watches();
            } else {
                state.drop_watches();
            }
            // Written before the watch can reconnect: only a resume from
            // the last seen resourceVersion replays it.
            state.apply(web_pod(&format!("burst-{round}"), Some(&ip)));
        }
        // Drop the next connection only once there is one.
        wait_requests(&mock, "pods watch reconnect", watches + 1, is_pod_watch).await;
    }
    mock.delete("Pod", "shop", "db-0");
    mock.apply(namespace_with_team("checkout"));

    let state = wait_state(&mut rx, "all events after drops", |s| {
        (0..3).all(|r| has_pod(s, &format!("burst-{r}")))
            && !has_pod(s, "db-0")
            && team(s).as_deref() == Some("checkout")
    })
    .await;
    assert_eq!(pod_names(&state), mock.state().names("Pod"));
    let rv = last_rv.to_string();
    let resumed = mock
        .requests()
        .iter()
        .any(|r| r.kind == "Pod" && r.watch && r.resource_version.as_deref() == Some(rv.as_str()));
    assert!(
        resumed,
        "pods watch did not resume from {rv}: {:?}",
        mock.requests()
    );
    assert_eq!(pod_lists(&mock), 1, "dropped connection caused a relist");
    assert_eq!(source.counters().relists, 0);
}

#[tokio::test]
async fn bad_input_is_counted_never_fatal() {
    let mut objects = fixtures::all();
    objects.push(web_pod("web-6d8f9c7b5-pending", None));
    let mut no_namespace = web_pod("no-namespace", Some("10.244.1.40"));
    no_namespace["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    objects.push(no_namespace);
    let mut rollout = web_pod("canary-abc", Some("10.244.1.41"));
    rollout["metadata"]["ownerReferences"][0]["kind"] = json!("Rollout");
    rollout["metadata"]["ownerReferences"][0]["name"] = json!("canary");
    objects.push(rollout);
    let mut no_owner_name = web_pod("no-owner-name", Some("10.244.1.42"));
    no_owner_name["metadata"]["ownerReferences"][0] = json!({ "kind": "ReplicaSet" });
    objects.push(no_owner_name);
    // A listed object the observer cannot decode: it is counted and left out, and the
    // rest of its list still arrives (it used to fail the whole list, for ever).
    objects.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "garbled-listed", "namespace": "shop", "resourceVersion": "5"},
        "spec": {"containers": "not-a-list"}
    }));

    let mock = MockApiServer::start(objects).await;
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    let state = ready(&source).await;
    let mut rx = source.subscribe();

    let pending = pod(&state, "web-6d8f9c7b5-pending");
    assert!(
        pending
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_none()
    );
    assert_eq!(
        workload(&state, "web-6d8f9c7b5-pending").as_deref(),
        Some("Deployment/web")
    );
    assert!(!has_pod(&state, "no-namespace"), "invalid pod published");
    let canary = workload_of(pod(&state, "canary-abc"), &state);
    let want = Workload {
        kind: WorkloadKind::Other("Rollout".into()),
        name: "canary".into(),
    };
    assert_eq!(canary, Some(want));
    assert_eq!(workload(&state, "no-owner-name"), None);
    assert!(
        !has_pod(&state, "garbled-listed"),
        "undecodable pod published"
    );
    assert_eq!(source.counters().invalid_objects, 2);

    // Bad events on a live watch: an undecodable object, then an object
    // without namespace. Both are counted as invalid; the stream keeps going.
    wait_request(&mock, "pods watch", |r| r.kind == "Pod" && r.watch).await;
    let errors_before = source.counters().watch_errors;
    mock.state().inject_raw(
        "Pod",
        r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"garbled","namespace":"shop","resourceVersion":"999"},"spec":{"containers":"not-a-list"}}}"#,
    );
    // An update of a live pod that does not decode: counted, and the last version that
    // decoded stays in the view (the pod still exists; its identity must not vanish).
    mock.state().inject_raw(
        "Pod",
        r#"{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"canary-abc","namespace":"shop","resourceVersion":"1000"},"spec":{"containers":"not-a-list"}}}"#,
    );
    let mut late = web_pod("late-no-namespace", Some("10.244.1.43"));
    late["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    mock.apply(late);
    mock.apply(web_pod("after-garbage", Some("10.244.1.44")));
    let state = wait_state(&mut rx, "pod after bad events", |s| {
        has_pod(s, "after-garbage")
    })
    .await;
    assert!(!has_pod(&state, "garbled") && !has_pod(&state, "late-no-namespace"));
    assert_eq!(
        pod(&state, "canary-abc")
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref()),
        Some("10.244.1.41"),
        "the last good version of a pod whose update did not decode"
    );
    let counters = source.counters();
    assert_eq!(counters.watch_errors, errors_before, "{counters:?}");
    assert_eq!(counters.invalid_objects, 5, "{counters:?}");
    assert_eq!(counters.relists, 0, "{counters:?}");
}

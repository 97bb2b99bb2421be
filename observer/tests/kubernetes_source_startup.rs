//! Start-up behaviour of the Kubernetes source: readiness gating and options.

// Included by path: the observer's tests/support/mod.rs belongs to other
// test crates, and these helpers need dependencies those crates do not.
#[path = "support/kube/mod.rs"]
mod kube_support;

use observer::cluster::kubernetes::KubernetesSourceConfig;
use observer::cluster::source::ClusterSource;
use serde_json::json;

use kube_support::fixtures::{self, web_pod};
use kube_support::harness::{
    has_pod, ready, start_source, wait_request, wait_requests, wait_state,
};
use kube_support::mock_apiserver::MockApiServer;
use observer::cluster::kinds::watched_kinds;

#[tokio::test]
async fn not_ready_and_nothing_published_until_every_kind_has_listed() {
    let mock = MockApiServer::start(fixtures::all()).await;
    mock.state().forbidden.insert("Job");
    let source = start_source(&mock, &KubernetesSourceConfig::default());

    // Every other kind has listed (its watch started), and the job list has
    // been refused twice, so the source is retrying it with backoff.
    // The policy kinds of custom resources are not served by this mock (as on a cluster
    // without their CRDs): readiness does not wait for them.
    for kind in watched_kinds()
        .iter()
        .filter(|k| k.kind != "Job" && !k.optional)
    {
        let kind = kind.kind;
        wait_request(&mock, kind, |r| r.kind == kind && r.watch).await;
    }
    wait_requests(&mock, "job list retry", 2, |r| r.kind == "Job").await;
    assert!(!*source.readiness().borrow(), "ready without jobs");
    assert!(
        source.subscribe().borrow().is_empty(),
        "partial state published"
    );
    let counters = source.counters();
    assert_eq!(counters.publishes, 0, "{counters:?}");
    // The retry is only sent once the first refusal went through the source.
    assert!(counters.watch_errors >= 1, "{counters:?}");

    // RBAC fixed: the retry succeeds and the full state is published at once.
    mock.state().forbidden.clear();
    let state = ready(&source).await;
    // Eleven fixtures, of which the EndpointSlice is not a kind the observer reads.
    assert_eq!(
        (state.jobs.len(), state.pods.len(), state.len()),
        (1, 4, 10)
    );
    assert_eq!(source.counters().publishes, 1);
}

#[tokio::test]
async fn pod_field_selector_is_sent_when_configured() {
    let mut objects = fixtures::all();
    let mut elsewhere = web_pod("web-6d8f9c7b5-w2", Some("10.244.2.17"));
    elsewhere["spec"]["nodeName"] = json!("worker-2");
    objects.push(elsewhere);
    let mock = MockApiServer::start(objects).await;
    let config = KubernetesSourceConfig {
        pod_field_selector: Some("spec.nodeName=worker-1".into()),
        ..Default::default()
    };
    let source = start_source(&mock, &config);
    let state = ready(&source).await;
    assert_eq!(state.pods.len(), 4);
    assert!(!has_pod(&state, "web-6d8f9c7b5-w2"));
    let selectors: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.kind == "Pod")
        .map(|r| r.field_selector)
        .collect();
    assert!(
        selectors
            .iter()
            .all(|s| s.as_deref() == Some("spec.nodeName=worker-1")),
        "{selectors:?}"
    );
}

/// deploy/rbac.yaml must let the source list and watch every collection it
/// reads: the kinds of the registry (`observer::cluster::kinds`).
#[test]
fn rbac_grants_list_and_watch_on_every_watched_collection() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/rbac.yaml");
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("yaml"))
        .collect();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    for watched in watched_kinds() {
        let (kind, group, resource) = (
            watched.kind,
            watched.group.as_str(),
            watched.plural.as_str(),
        );
        let granted = rules.iter().any(|rule| {
            let verbs = strings(&rule["verbs"]);
            strings(&rule["apiGroups"]).iter().any(|g| g == group)
                && strings(&rule["resources"]).iter().any(|r| r == resource)
                && ["list", "watch"]
                    .iter()
                    .all(|v| verbs.iter().any(|have| have == v))
        });
        assert!(granted, "{kind}: no list/watch on {group}/{resource}");
        let writes = ["create", "update", "patch", "delete", "*"];
        assert!(rules.iter().all(|r| {
            strings(&r["verbs"])
                .iter()
                .all(|v| !writes.contains(&v.as_str()))
        }));
    }
}

#[tokio::test]
async fn policy_kinds_of_custom_resources_are_watched_where_served_and_not_waited_for() {
    let gnp = serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"selector": "all()", "types": ["Ingress"]}});
    let mut objects = fixtures::all();
    objects.push(gnp);
    let mock = MockApiServer::start(objects).await;
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    let mut snapshots = source.subscribe();
    // Ready although most policy kinds are not served (no CRD: 404).
    ready(&source).await;
    wait_state(&mut snapshots, "the GlobalNetworkPolicy", |s| {
        s.calico_global_policies.len() == 1
    })
    .await;
    // A ClusterNetworkPolicy created later reaches the state through its watch.
    mock.apply(
        serde_json::json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy", "metadata": {"name": "admin-deny"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}),
    );
    wait_state(&mut snapshots, "the ClusterNetworkPolicy", |s| {
        s.cluster_network_policies.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_policy_kind_whose_crd_is_installed_later_is_watched_from_then_on() {
    let mock = MockApiServer::start(fixtures::all()).await;
    mock.state().not_served.insert("GlobalNetworkPolicy");
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    let mut snapshots = source.subscribe();
    ready(&source).await;
    let refused = |mock: &MockApiServer| {
        mock.requests()
            .iter()
            .filter(|r| r.kind == "GlobalNetworkPolicy")
            .count()
    };
    // Asked, refused (no CRD), and asked again, with a growing backoff.
    mock.wait_for_requests(2, |r| r.kind == "GlobalNetworkPolicy")
        .await;
    assert!(refused(&mock) >= 2);
    // The CRD is installed and a policy created: the next try lists and watches it.
    {
        let mut state = mock.state();
        state.not_served.remove("GlobalNetworkPolicy");
        state.apply(serde_json::json!({"apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy", "metadata": {"name": "default-deny"},
            "spec": {"selector": "all()", "types": ["Ingress"]}}));
    }
    wait_state(&mut snapshots, "the GlobalNetworkPolicy", |s| {
        s.calico_global_policies.len() == 1
    })
    .await;
    // And later changes arrive through its watch.
    mock.apply(serde_json::json!({"apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "allow-dns"},
        "spec": {"selector": "all()", "types": ["Egress"]}}));
    wait_state(&mut snapshots, "the second GlobalNetworkPolicy", |s| {
        s.calico_global_policies.len() == 2
    })
    .await;
}

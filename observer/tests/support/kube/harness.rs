//! Starting a source against the mock and waiting on it without hanging.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Config;
use observer::cluster::kubernetes::{KubernetesSource, KubernetesSourceConfig, client_with_limits};
use observer::cluster::source::wait_ready;
use observer::cluster::state::{ClusterObjects, workload_of};
use tokio::sync::watch;

use super::mock_apiserver::MockApiServer;
use super::mock_state::RequestRecord;

/// Upper bound for anything a test waits on; generous because the machine is
/// shared, and only there to turn a hang into a failure.
pub const WAIT: Duration = Duration::from_secs(30);

/// Starts a source pointed at `mock` with a plain-HTTP client.
pub fn start_source(mock: &MockApiServer, config: &KubernetesSourceConfig) -> KubernetesSource {
    let url = mock.url().parse().expect("mock url");
    let client = client_with_limits(Config::new(url), config.limits).expect("client");
    KubernetesSource::start(client, config)
}

/// Waits for readiness and returns the first snapshot.
pub async fn ready(source: &KubernetesSource) -> Arc<ClusterObjects> {
    tokio::time::timeout(WAIT, wait_ready(source))
        .await
        .expect("source not ready in time")
        .expect("source stopped")
}

/// Waits for a snapshot satisfying `pred`.
pub async fn wait_state(
    rx: &mut watch::Receiver<Arc<ClusterObjects>>,
    what: &str,
    pred: impl FnMut(&Arc<ClusterObjects>) -> bool,
) -> Arc<ClusterObjects> {
    let result =
        tokio::time::timeout(WAIT, async { rx.wait_for(pred).await.map(|s| s.clone()) }).await;
    match result {
        Ok(Ok(state)) => state,
        Ok(Err(_)) => panic!("source stopped while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; pods: {:?}",
            pod_names(&rx.borrow())
        ),
    }
}

/// Waits for the mock to receive a request matching `pred`.
pub async fn wait_request(
    mock: &MockApiServer,
    what: &str,
    pred: impl Fn(&RequestRecord) -> bool,
) -> RequestRecord {
    wait_requests(mock, what, 1, pred).await
}

/// Waits for the mock to receive `n` requests matching `pred`.
pub async fn wait_requests(
    mock: &MockApiServer,
    what: &str,
    n: usize,
    pred: impl Fn(&RequestRecord) -> bool,
) -> RequestRecord {
    tokio::time::timeout(WAIT, mock.wait_for_requests(n, pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for request: {what}"))
}

/// `namespace/name` of every pod, sorted.
pub fn pod_names(state: &ClusterObjects) -> Vec<String> {
    let mut names: Vec<String> = state
        .pods
        .iter()
        .map(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            let name = p.metadata.name.as_deref().unwrap_or_default();
            format!("{ns}/{name}")
        })
        .collect();
    names.sort();
    names
}

/// Whether a pod named `name` is in `state`.
pub fn has_pod(state: &ClusterObjects, name: &str) -> bool {
    state
        .pods
        .iter()
        .any(|p| p.metadata.name.as_deref() == Some(name))
}

/// Writes a kubeconfig pointing at `mock` and returns its path.
pub fn write_kubeconfig(mock: &MockApiServer) -> std::path::PathBuf {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: mock\n\
         clusters:\n- name: mock\n  cluster:\n    server: {}\n\
         contexts:\n- name: mock\n  context:\n    cluster: mock\n    user: mock\n\
         users:\n- name: mock\n  user: {{}}\n",
        mock.url()
    );
    let path = std::env::temp_dir().join(format!(
        "observer-kube-test-{}-{}.kubeconfig",
        std::process::id(),
        mock.url().rsplit(':').next().unwrap_or("0")
    ));
    std::fs::write(&path, yaml).expect("write kubeconfig");
    path
}

/// The pod named `name`; panics listing the pods if absent.
pub fn pod<'a>(state: &'a ClusterObjects, name: &str) -> &'a Pod {
    state
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no pod {name} in {:?}", pod_names(state)))
}

/// The pod's workload as `Kind/name`.
pub fn workload(state: &ClusterObjects, pod_name: &str) -> Option<String> {
    workload_of(pod(state, pod_name), state).map(|w| w.to_string())
}

/// How many pod lists (first pages) the mock served.
pub fn pod_lists(mock: &MockApiServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.kind == "Pod" && !r.watch && r.continue_token.is_none())
        .count()
}

/// The `team` label of the first namespace.
pub fn team(state: &ClusterObjects) -> Option<String> {
    state
        .namespaces
        .first()?
        .metadata
        .labels
        .as_ref()?
        .get("team")
        .cloned()
}

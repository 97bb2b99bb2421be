//! What a broken or hostile API server can make the Kubernetes source do: retries that
//! back off until a list succeeds, watches closed at once reopened with a growing delay,
//! lists that never answer cut at a deadline, and watch lines without a newline cut at
//! a size limit. Every case ends with the source working again.

#[path = "support/kube/mod.rs"]
mod kube_support;

use std::time::Duration;

use observer::cluster::kubernetes::{ApiLimits, KubernetesSourceConfig};
use observer::cluster::source::ClusterSource;

use kube_support::fixtures::{self, web_pod};
use kube_support::harness::{has_pod, ready, start_source, wait_requests, wait_state};
use kube_support::mock_apiserver::MockApiServer;
use kube_support::mock_state::RequestRecord;

/// The gaps between the first four requests matching `pred`.
async fn first_gaps(
    mock: &MockApiServer,
    what: &str,
    pred: impl Fn(&RequestRecord) -> bool + Copy,
) -> Vec<Duration> {
    wait_requests(mock, what, 4, pred).await;
    let times: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(pred)
        .map(|r| r.at)
        .take(4)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Doubling delays with ±20 % jitter: the third gap is at least 2.6 times the first, and
/// still 1.5 times with up to 1.4 s of scheduling latency added to each gap on a loaded
/// machine. Delays that reset at every try (the defect) keep the gaps equal.
fn assert_growing(gaps: &[Duration]) {
    assert!(
        gaps[2] > gaps[0].mul_f64(1.5),
        "the delay did not grow: {gaps:?}"
    );
}

#[tokio::test]
async fn a_refused_list_is_retried_with_a_growing_backoff() {
    let mock = MockApiServer::start(fixtures::all()).await;
    mock.state().forbidden.insert("Job");
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    let gaps = first_gaps(&mock, "job lists", |r| r.kind == "Job").await;
    assert_growing(&gaps);
    assert!(source.counters().watch_errors >= 3);
    mock.state().forbidden.clear();
    let state = ready(&source).await;
    assert_eq!(state.jobs.len(), 1);
}

#[tokio::test]
async fn a_watch_closed_at_once_is_reopened_with_a_growing_backoff() {
    let mock = MockApiServer::start(fixtures::all()).await;
    mock.state().short_watches.insert("Pod");
    let source = start_source(&mock, &KubernetesSourceConfig::default());
    let mut snapshots = source.subscribe();
    ready(&source).await;
    let gaps = first_gaps(&mock, "pod watches", |r| r.kind == "Pod" && r.watch).await;
    assert_growing(&gaps);
    // The server keeps its watches open again: events flow.
    mock.state().short_watches.clear();
    mock.apply(web_pod("web-6d8f9c7b5-new", Some("10.244.1.99")));
    wait_state(&mut snapshots, "the new pod", |s| {
        has_pod(s, "web-6d8f9c7b5-new")
    })
    .await;
}

#[tokio::test]
async fn a_list_that_never_answers_times_out_and_is_retried() {
    let mock = MockApiServer::start(fixtures::all()).await;
    mock.state().hang_lists.insert("Pod");
    let config = KubernetesSourceConfig {
        limits: ApiLimits {
            request_timeout: Duration::from_millis(500),
            ..ApiLimits::default()
        },
        ..KubernetesSourceConfig::default()
    };
    let source = start_source(&mock, &config);
    // A second list of pods is only sent once the first timed out.
    wait_requests(&mock, "a second pod list", 2, |r| {
        r.kind == "Pod" && !r.watch
    })
    .await;
    assert!(source.counters().watch_errors >= 1);
    assert!(!*source.readiness().borrow());
    mock.state().hang_lists.clear();
    let state = ready(&source).await;
    assert_eq!(state.pods.len(), 4);
}

#[tokio::test]
async fn a_watch_line_without_a_newline_is_cut_at_its_limit() {
    let mock = MockApiServer::start(fixtures::all()).await;
    let config = KubernetesSourceConfig {
        limits: ApiLimits {
            max_watch_line_bytes: 256 << 10,
            ..ApiLimits::default()
        },
        ..KubernetesSourceConfig::default()
    };
    let source = start_source(&mock, &config);
    let mut snapshots = source.subscribe();
    ready(&source).await;
    wait_requests(&mock, "the pod watch", 1, |r| r.kind == "Pod" && r.watch).await;
    let before = mock
        .requests()
        .iter()
        .filter(|r| r.kind == "Pod" && r.watch)
        .count();
    // 4 MiB and no newline: without the limit the client buffers it all, waiting.
    mock.state().inject_unterminated("Pod", 4 << 20);
    wait_requests(&mock, "a new pod watch", before + 1, |r| {
        r.kind == "Pod" && r.watch
    })
    .await;
    assert!(source.counters().watch_errors >= 1);
    mock.apply(web_pod("web-6d8f9c7b5-new", Some("10.244.1.99")));
    wait_state(&mut snapshots, "the new pod", |s| {
        has_pod(s, "web-6d8f9c7b5-new")
    })
    .await;
}

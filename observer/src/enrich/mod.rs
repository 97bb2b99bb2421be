//! Enrichment: names both ends of a flow record (pod, namespace, labels, workload, service
//! account, node, or external), the Service it addressed, and the policy verdict.
//!
//! Identity is resolved at the time of the flow's first packet through the IP history, so
//! pod churn and IP reuse never move traffic to the wrong pod; the verdict uses the cluster
//! view that was current at that time (a bounded number of views is kept). Pure: the
//! daemon passes views and times in.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::identity::IdentityHistory;
use crate::cluster::view::{ClusterView, Holder};
use crate::flow::{EndpointIdentity, FlowRecord, ServiceInfo, WorkloadInfo};
use crate::policy::{Endpoint, FlowQuery, Protocol, VerdictReport, evaluate};

/// How many past views are kept for verdicts of flows that started under them.
const KEPT_VIEWS: usize = 16;

/// The enrichment stage's state.
#[derive(Debug)]
pub struct Enricher {
    history: IdentityHistory,
    /// (valid from, view), oldest first.
    views: VecDeque<(u64, Arc<ClusterView>)>,
}

impl Enricher {
    /// Ended IP holdings are kept for `retention_ns`.
    pub fn new(retention_ns: u64) -> Self {
        Self {
            history: IdentityHistory::new(retention_ns),
            views: VecDeque::new(),
        }
    }

    /// A new view of the cluster, learned at `now` (CLOCK_MONOTONIC ns).
    pub fn update(&mut self, now: u64, view: Arc<ClusterView>) {
        self.history.update(now, view.holders());
        self.views.push_back((now, view));
        while self.views.len() > KEPT_VIEWS {
            self.views.pop_front();
        }
    }

    /// True once a view has arrived.
    pub fn has_view(&self) -> bool {
        !self.views.is_empty()
    }

    /// Number of IPs with an identity history.
    pub fn known_ips(&self) -> usize {
        self.history.len()
    }

    /// The view current at `t`: the newest one that began at or before it, else the oldest.
    fn view_at(&self, t: u64) -> Option<&Arc<ClusterView>> {
        self.views
            .iter()
            .rev()
            .find(|(since, _)| *since <= t)
            .or_else(|| self.views.front())
            .map(|(_, view)| view)
    }

    /// Fills the record's identities, Service and verdict. Without a view, does nothing.
    pub fn enrich(&self, record: &mut FlowRecord) {
        let t = record.first_seen_ns;
        let Some(view) = self.view_at(t) else {
            return;
        };
        let src = self.history.lookup(record.src.ip, t);
        let dst = self.history.lookup(record.dst.ip, t);
        record.src.identity = identity(src);
        record.dst.identity = identity(dst);
        let Some(protocol) = Protocol::from_api(&record.protocol) else {
            return;
        };
        if let Some(service) = view.service(record.dst.ip, record.dst.port, protocol) {
            record.service = Some(ServiceInfo {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                port: service.port,
            });
            // Policy applies to the backend after DNAT, not to the ClusterIP: the verdict
            // belongs on the record of the backend's side.
            return;
        }
        let (Some(src), Some(dst)) = (
            endpoint(view, record.src.ip, src),
            endpoint(view, record.dst.ip, dst),
        ) else {
            return;
        };
        let query = FlowQuery {
            src,
            dst,
            port: record.dst.port,
            protocol,
        };
        record.policy = Some(VerdictReport::from(&evaluate(&view.policy, &query)));
    }
}

fn identity(holder: Option<&Holder>) -> EndpointIdentity {
    match holder {
        None => EndpointIdentity {
            external: true,
            ..EndpointIdentity::default()
        },
        Some(Holder::Node(name)) => EndpointIdentity {
            node: Some(name.to_string()),
            ..EndpointIdentity::default()
        },
        Some(Holder::Pod(pod)) => EndpointIdentity {
            namespace: Some(pod.namespace.clone()),
            pod: Some(pod.name.clone()),
            pod_uid: pod.uid.clone(),
            labels: Some(pod.labels.clone()),
            workload: pod.workload.as_ref().map(|w| WorkloadInfo {
                kind: w.kind.as_str().to_owned(),
                name: w.name.clone(),
            }),
            service_account: pod.service_account.clone(),
            node: pod.node.clone(),
            external: false,
        },
    }
}

/// The policy engine's endpoint for a holder at the flow's time, or None when the view
/// does not know the pod (it was deleted before this view and is still being reported).
fn endpoint(view: &ClusterView, ip: IpAddr, holder: Option<&Holder>) -> Option<Endpoint> {
    match holder {
        None => Some(Endpoint::External(ip)),
        Some(Holder::Pod(pod)) => view
            .policy
            .pod_id(&pod.namespace, &pod.name)
            .map(|id| Endpoint::Pod { id, ip: Some(ip) }),
        Some(Holder::Node(name)) => view
            .policy
            .node_id(name)
            .map(|id| Endpoint::Node { id, ip: Some(ip) }),
    }
}

//! Enrichment: names both ends of a flow record (pod, namespace, labels, workload, service
//! account, node, or external), the Service it addressed, and the policy verdict.
//!
//! A connection to a Service ClusterIP is seen twice on a node: before kube-proxy's DNAT
//! at the client's interface (to the ClusterIP) and after it at the backend's interface (to
//! the backend pod). DNAT keeps the source address and port, so the two records of one
//! batch with the same protocol and source merge into one: the backend as `dst`, the
//! Service in `service`. A backend on another node is looked up in the node's conntrack
//! table instead (`nat.rs`).
//!
//! Identity is resolved at the time of the flow's first packet through the IP history, so
//! pod churn and IP reuse never move traffic to the wrong pod; the verdict uses the cluster
//! view that was current at that time (a bounded number of views is kept). Pure: the
//! daemon passes views and times in.

mod nat;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::identity::IdentityHistory;
use crate::cluster::tiered_view::TieredView;
use crate::cluster::view::{ClusterView, Holder};
use crate::flow::{
    EndpointIdentity, FlowRecord, FlowState, IpProtocol, ServiceBackend, ServiceInfo, WorkloadInfo,
};
use crate::policy::check::{AddressFlow, TieredJudge};
use crate::policy::{Category, CniProfile, Endpoint, FlowQuery, Protocol, Verdict, evaluate};

/// How many past views are kept for verdicts of flows that started under them.
const KEPT_VIEWS: usize = 16;

pub use nat::{NatEntry, NatTable};

/// The enrichment stage's state.
#[derive(Debug)]
pub struct Enricher {
    history: IdentityHistory,
    /// (valid from, view), oldest first.
    views: VecDeque<(u64, Arc<ClusterView>)>,
    /// What the CNI does where NetworkPolicy is silent.
    profile: CniProfile,
}

impl Enricher {
    /// Ended IP holdings are kept for `retention_ns`.
    pub fn new(retention_ns: u64) -> Self {
        Self {
            history: IdentityHistory::new(retention_ns),
            views: VecDeque::new(),
            profile: CniProfile::default(),
        }
    }

    /// Judges what NetworkPolicy leaves to the CNI as `profile` says.
    pub fn with_cni_profile(mut self, profile: CniProfile) -> Self {
        self.profile = profile;
        self
    }

    /// A new view of the cluster, learned at `now` (CLOCK_MONOTONIC ns).
    pub fn update(&mut self, now: u64, view: Arc<ClusterView>) {
        self.history.update(now, view.holders());
        self.views.push_back((now, view));
        while self.views.len() > KEPT_VIEWS {
            self.views.pop_front();
        }
    }

    /// Who held `ip` at time `t` (CLOCK_MONOTONIC ns): a pod, a node, or nobody known.
    pub fn identify(&self, ip: IpAddr, t: u64) -> Option<&Holder> {
        self.history.lookup(ip, t)
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

    /// Enriches a batch of records: merges the two sides of Service connections (asking
    /// `read_nat` for the node's NAT table only when a backend was not observed), then
    /// fills identities and verdicts. Without a view, does nothing.
    pub fn enrich_batch(
        &self,
        records: &mut Vec<FlowRecord>,
        read_nat: impl FnOnce() -> Option<NatTable>,
    ) {
        if self.views.is_empty() {
            return;
        }
        self.resolve_services(records, read_nat);
        for record in records.iter_mut() {
            self.enrich(record);
        }
    }

    /// Pairs each record addressed to a ClusterIP with the batch's backend-side record of
    /// the same protocol and source (the first such record that addresses no Service), in
    /// time linear in the batch.
    fn resolve_services(
        &self,
        records: &mut Vec<FlowRecord>,
        read_nat: impl FnOnce() -> Option<NatTable>,
    ) {
        let services: Vec<Option<ServiceInfo>> =
            records.iter().map(|r| self.service_of(r)).collect();
        if services.iter().all(Option::is_none) {
            return;
        }
        // Backend-side candidates by (protocol, source), first in batch order.
        let mut candidates: HashMap<(IpProtocol, IpAddr, u16), usize> = HashMap::new();
        for (j, r) in records.iter().enumerate() {
            if services[j].is_none() {
                candidates
                    .entry((r.protocol, r.src.ip, r.src.port))
                    .or_insert(j);
            }
        }
        let mut read_nat = Some(read_nat);
        let mut nat: Option<NatTable> = None;
        let mut merged = vec![false; records.len()];
        for (i, service) in services.into_iter().enumerate() {
            let Some(service) = service else {
                continue;
            };
            let source = (records[i].protocol, records[i].src.ip, records[i].src.port);
            if let Some(&j) = candidates.get(&source) {
                let front = records[i].clone();
                merge_into(
                    &mut records[j],
                    &front,
                    service.with_backend(ServiceBackend::Observed),
                );
                merged[i] = true;
                continue;
            }
            if nat.is_none() {
                nat = read_nat
                    .take()
                    .and_then(|read| read())
                    .or(Some(NatTable::default()));
            }
            let record = &mut records[i];
            let protocol = record.protocol.0;
            let backend = nat.as_ref().and_then(|table| {
                table.backend(
                    protocol,
                    (record.src.ip, record.src.port),
                    (record.dst.ip, record.dst.port),
                )
            });
            record.service = Some(match backend {
                Some((ip, port)) => {
                    record.dst.ip = ip;
                    record.dst.port = port;
                    service.with_backend(ServiceBackend::Conntrack)
                }
                None => service.with_backend(ServiceBackend::Unresolved),
            });
        }
        let mut index = 0;
        records.retain(|_| {
            index += 1;
            !merged[index - 1]
        });
    }

    /// Whether the record is addressed to a Service's ClusterIP (its backend is not known
    /// from the record alone).
    pub fn addresses_service(&self, record: &FlowRecord) -> bool {
        self.service_of(record).is_some()
    }

    /// The Service a record addresses (its `dst` is a ClusterIP), at the record's time.
    fn service_of(&self, record: &FlowRecord) -> Option<ServiceInfo> {
        let view = self.view_at(record.first_seen_ns)?;
        let protocol = Protocol::of_ip(record.protocol)?;
        let service = view.service(record.dst.ip, record.dst.port, protocol)?;
        Some(ServiceInfo {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            port: service.port,
            cluster_ip: record.dst.ip,
            backend: ServiceBackend::Unresolved,
        })
    }

    /// Fills the record's identities and verdict.
    fn enrich(&self, record: &mut FlowRecord) {
        let t = record.first_seen_ns;
        let Some(view) = self.view_at(t) else {
            return;
        };
        let src = self.identify(record.src.ip, t);
        let dst = self.identify(record.dst.ip, t);
        record.src.identity = identity(src);
        record.dst.identity = identity(dst);
        if record
            .service
            .as_ref()
            .is_some_and(|s| s.backend == ServiceBackend::Unresolved)
        {
            // Policy applies to the backend after DNAT, never to a ClusterIP.
            return;
        }
        let asked = AddressFlow {
            source: record.src.ip,
            destination: record.dst.ip,
            protocol: record.protocol.0,
            // An ICMP record's "port" is its identifier, not a port.
            port: Protocol::of_ip(record.protocol).map(|_| record.dst.port),
            icmp: record.icmp.as_ref().map(|i| (i.icmp_type, i.code)),
        };
        (record.policy, record.staged) = judge_addresses(view, self.profile, &asked, src, dst);
    }
}

trait WithBackend {
    fn with_backend(self, how: ServiceBackend) -> ServiceInfo;
}

impl WithBackend for ServiceInfo {
    fn with_backend(mut self, how: ServiceBackend) -> ServiceInfo {
        self.backend = how;
        self
    }
}

/// Folds the pre-DNAT record `front` (client side, to the ClusterIP) into the post-DNAT
/// record `back` (backend side): both hooks saw the same packets, so counts take the
/// larger of the two, never the sum.
fn merge_into(back: &mut FlowRecord, front: &FlowRecord, service: ServiceInfo) {
    back.fwd.packets = back.fwd.packets.max(front.fwd.packets);
    back.fwd.bytes = back.fwd.bytes.max(front.fwd.bytes);
    back.rev.packets = back.rev.packets.max(front.rev.packets);
    back.rev.bytes = back.rev.bytes.max(front.rev.bytes);
    back.tcp_flags = back.tcp_flags | front.tcp_flags;
    if front.first_seen_ns < back.first_seen_ns {
        back.first_seen_ns = front.first_seen_ns;
        back.first_seen = front.first_seen;
    }
    if front.last_seen_ns > back.last_seen_ns {
        back.last_seen_ns = front.last_seen_ns;
        back.last_seen = front.last_seen;
    }
    if front.state == FlowState::Closed || back.state == FlowState::Closed {
        back.state = FlowState::Closed;
    }
    back.interfaces.extend(front.interfaces.iter().cloned());
    back.interfaces.sort();
    back.interfaces.dedup();
    back.service = Some(service);
}

/// The verdict on a flow between two addresses whose holders are `src` and `dst`, by
/// every engine `view` has, as the CNI `profile` reads what the API leaves open: the
/// enforced verdict and, when the cluster has staged policies, the staged one. None when
/// no engine judges it (a protocol NetworkPolicy does not name, without a tiered engine).
/// The console's policy viewer asks it of flows nobody sent.
pub fn judge_addresses(
    view: &ClusterView,
    profile: CniProfile,
    asked: &AddressFlow,
    src: Option<&Holder>,
    dst: Option<&Holder>,
) -> (Option<Verdict>, Option<Verdict>) {
    let by_tiers = |tiered: &TieredView| (Some(tiered.judge(asked)), tiered.judge_staged(asked));
    // The tiered engine judges every flow when the cluster has Calico or admin
    // policies; else, with NetworkPolicies, what they leave to the CNI (protocols they
    // do not name, host-networked pods), as the CNI profile says.
    let cni_dependent = view.cni_dependent.as_deref();
    if let Some(all) = view.tiered.as_deref() {
        return by_tiers(all);
    }
    let Some(protocol) = Protocol::of_ip(IpProtocol(asked.protocol)) else {
        return match cni_dependent.filter(|_| profile.judges_other_protocols()) {
            Some(tiered) => by_tiers(tiered),
            None => (None, None),
        };
    };
    let (Some(src), Some(dst)) = (
        endpoint(view, asked.source, src),
        endpoint(view, asked.destination, dst),
    ) else {
        return (None, None);
    };
    let query = FlowQuery {
        src,
        dst,
        port: asked.port.unwrap_or(0),
        protocol,
    };
    let verdict = evaluate(&view.policy, &query);
    match cni_dependent {
        // A host-networked pod, which this CNI sees as its node's address.
        Some(tiered)
            if verdict.category == Category::Undefined && profile.host_network_is_node() =>
        {
            by_tiers(tiered)
        }
        _ => (Some(verdict.owned()), None),
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
            namespace: Some(pod.info.namespace.clone()),
            pod: Some(pod.info.name.clone()),
            pod_uid: pod.uid.clone(),
            labels: Some(pod.info.labels.clone()),
            workload: pod.workload.as_ref().map(|w| WorkloadInfo {
                kind: w.kind.as_str().to_owned(),
                name: w.name.clone(),
            }),
            service_account: pod.service_account.clone(),
            node: pod.info.node.clone(),
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
            .pod_id(&pod.info.namespace, &pod.info.name)
            .map(|id| Endpoint::Pod { id, ip: Some(ip) }),
        Some(Holder::Node(name)) => view
            .policy
            .node_id(name)
            .map(|id| Endpoint::Node { id, ip: Some(ip) }),
    }
}

#[cfg(test)]
mod tests;

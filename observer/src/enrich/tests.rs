//! Churn: verdicts and identities follow the cluster as it was at the flow's first packet.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Enricher, NatTable};
use crate::cluster::manifests;
use crate::cluster::view::ClusterView;
use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, ServiceBackend};
use crate::policy::{Category, CniProfile, VerdictKind};

const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {name: from-team-a, namespace: db}\n\
spec:\n  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: a}}}]\n---\n";

fn view(team: &str, extra: &str) -> Arc<ClusterView> {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web, labels: {{team: {team}}}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: db}}\n---\n{POLICY}\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: web, uid: u-client}}\n\
         status: {{podIP: 10.0.0.1}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: server, namespace: db, uid: u-server}}\n\
         spec: {{nodeName: n1, containers: [{{name: c, image: x}}]}}\n\
         status: {{podIP: 10.0.0.2}}\n---\n{extra}"
    );
    let loaded = manifests::parse("churn.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Arc::new(ClusterView::build(&loaded.into_objects()).0)
}

fn record(src: &str, dst: &str, first_seen_ns: u64) -> FlowRecord {
    let endpoint = |ip: &str, port| RecordEndpoint {
        ip: ip.parse::<IpAddr>().expect("test IP"),
        port,
        identity: Default::default(),
    };
    let mut record = FlowRecord::between(
        endpoint(src, 40_000),
        endpoint(dst, 5432),
        IpProtocol::TCP,
        FlowState::Active,
    );
    record.first_seen_ns = first_seen_ns;
    record.last_seen_ns = first_seen_ns;
    record
}

fn verdict(enricher: &Enricher, first_seen_ns: u64) -> Option<VerdictKind> {
    let mut records = vec![record("10.0.0.1", "10.0.0.2", first_seen_ns)];
    enricher.enrich_batch(&mut records, || None);
    records[0].verdict_kind()
}

#[test]
fn a_namespace_relabel_changes_only_flows_that_start_after_it() {
    let mut enricher = Enricher::new(1_000_000);
    enricher.update(100, view("a", ""));
    enricher.update(200, view("b", ""));
    assert_eq!(
        verdict(&enricher, 150),
        Some(VerdictKind::Allow),
        "team=a when the flow began"
    );
    assert_eq!(
        verdict(&enricher, 250),
        Some(VerdictKind::Deny),
        "team=b since"
    );
}

#[test]
fn a_deleted_pod_still_listed_yields_its_ip_to_the_live_one() {
    // Events out of order: the new pod with the reused IP arrives while the old one is
    // still listed (terminating).
    let old = "apiVersion: v1\nkind: Pod\nmetadata: {name: old, namespace: db, uid: u-old, \
               deletionTimestamp: \"2026-01-01T00:00:00Z\", creationTimestamp: \"2025-01-01T00:00:00Z\"}\n\
               status: {podIP: 10.0.0.9}\n---\n";
    let new = "apiVersion: v1\nkind: Pod\nmetadata: {name: new, namespace: db, uid: u-new, \
               creationTimestamp: \"2026-01-01T00:00:01Z\"}\nstatus: {podIP: 10.0.0.9}\n---\n";
    for order in [format!("{old}{new}"), format!("{new}{old}")] {
        let mut enricher = Enricher::new(1_000_000);
        enricher.update(100, view("a", &order));
        let mut records = vec![record("10.0.0.1", "10.0.0.9", 150)];
        enricher.enrich_batch(&mut records, || None);
        assert_eq!(
            records[0].dst.identity.pod.as_deref(),
            Some("new"),
            "{order}"
        );
    }
}

#[test]
fn unknown_addresses_are_external_and_nodes_resolve_to_the_node() {
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n\
                status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}\n---\n";
    let mut enricher = Enricher::new(1_000_000);
    enricher.update(100, view("a", node));
    let mut records = vec![
        record("192.0.2.7", "10.0.0.2", 150),
        record("10.1.0.1", "10.0.0.2", 150),
    ];
    enricher.enrich_batch(&mut records, || None);
    assert!(records[0].src.identity.external);
    assert_eq!(records[1].src.identity.node.as_deref(), Some("n1"));
    assert!(records[1].src.identity.pod.is_none());
    let verdict = records[1].policy.as_ref().expect("a verdict");
    assert_eq!(
        verdict.category,
        Category::NodeExempt,
        "the server runs on n1: {verdict:?}"
    );
    assert_eq!(verdict.kind(), VerdictKind::Allow);
}

#[test]
fn service_sides_pair_by_source_and_the_rest_go_to_conntrack() {
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: db}\n\
                   spec: {clusterIP: 10.96.0.5, ports: [{port: 80, targetPort: 5432}]}\n---\n";
    let mut enricher = Enricher::new(1_000_000);
    enricher.update(100, view("a", service));
    let front = |port| {
        let mut r = record("10.0.0.1", "10.96.0.5", 150);
        r.src.port = port;
        r.dst.port = 80;
        r
    };
    let back = |port| {
        let mut r = record("10.0.0.1", "10.0.0.2", 150);
        r.src.port = port;
        r
    };
    // Two pairs in either order, and a client side whose backend only conntrack knows.
    let mut records = vec![front(1), back(2), front(3), back(1), front(2)];
    let nat = NatTable::parse(
        "ipv4 2 tcp 6 100 ESTABLISHED src=10.0.0.1 dst=10.96.0.5 sport=3 dport=80 \
         src=10.0.0.2 dst=10.0.0.1 sport=5432 dport=3 [ASSURED] mark=0 use=1\n",
    );
    enricher.enrich_batch(&mut records, || Some(nat));
    let seen: Vec<(u16, Option<ServiceBackend>, u16)> = records
        .iter()
        .map(|r| {
            (
                r.src.port,
                r.service.as_ref().map(|s| s.backend),
                r.dst.port,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (2, Some(ServiceBackend::Observed), 5432),
            (3, Some(ServiceBackend::Conntrack), 5432),
            (1, Some(ServiceBackend::Observed), 5432),
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.dst.ip == "10.0.0.2".parse::<IpAddr>().expect("ip"))
    );
}

/// A Calico GlobalNetworkPolicy beside the NetworkPolicy: the tiered engine judges every
/// record, the NetworkPolicy included (default tier, order 1000, before the GNP's 2000).
const GLOBAL_DENY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
metadata: {name: deny-into-db}\n\
spec:\n  order: 2000\n  namespaceSelector: projectcalico.org/name == 'db'\n  types: [Ingress]\n  \
ingress: [{action: Deny}]\n---\n";

#[test]
fn with_calico_policies_the_tiered_engine_judges_every_record() {
    let mut enricher = Enricher::new(1_000_000);
    enricher.update(100, view("a", GLOBAL_DENY));
    enricher.update(200, view("b", GLOBAL_DENY));
    let judged = |first_seen_ns: u64, protocol: IpProtocol| {
        let mut records = vec![record("10.0.0.1", "10.0.0.2", first_seen_ns)];
        records[0].protocol = protocol;
        if protocol == IpProtocol::ICMP {
            records[0].dst.port = 0;
            records[0].icmp = Some(crate::flow::IcmpInfo {
                icmp_type: 8,
                code: 0,
            });
        }
        enricher.enrich_batch(&mut records, || None);
        records.remove(0)
    };
    // Team a: the NetworkPolicy's rule allows, in the default tier.
    let allowed = judged(150, IpProtocol::TCP);
    assert_eq!(
        allowed.verdict_kind(),
        Some(VerdictKind::Allow),
        "{:?}",
        allowed.policy
    );
    let steps = allowed.policy.as_ref().map(|v| v.ingress.tiers.clone());
    let step = steps.as_deref().and_then(|s| s.first()).cloned();
    assert_eq!(
        step.map(|t| (t.tier, t.policy.name, t.rule_index)),
        Some(("default".to_string(), "from-team-a".to_string(), Some(0)))
    );
    // Team b: no NetworkPolicy rule matches; the global policy's Deny rule decides.
    let denied = judged(250, IpProtocol::TCP);
    assert_eq!(denied.verdict_kind(), Some(VerdictKind::Deny));
    let kind = denied
        .policy
        .as_ref()
        .and_then(|v| v.ingress.tiers.last().map(|t| t.policy.kind));
    assert_eq!(kind, Some(crate::policy::PolicyKind::GlobalNetworkPolicy));
    // A ping gets a verdict too: the NetworkPolicy rule has no ports, so it admits every
    // protocol from team a.
    assert_eq!(
        judged(150, IpProtocol::ICMP).verdict_kind(),
        Some(VerdictKind::Allow)
    );
    // No staged policy: no staged verdict.
    assert!(allowed.staged.is_none());
}

#[test]
fn a_staged_policy_s_verdict_rides_beside_the_enforced_one() {
    let staged = "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\n\
metadata: {name: lock-down, namespace: db}\n\
spec:\n  order: 10\n  selector: all()\n  types: [Ingress]\n  ingress: [{action: Deny}]\n---\n";
    let mut enricher = Enricher::new(1_000_000);
    enricher.update(100, view("a", &format!("{GLOBAL_DENY}{staged}")));
    let mut records = vec![record("10.0.0.1", "10.0.0.2", 150)];
    enricher.enrich_batch(&mut records, || None);
    assert_eq!(records[0].verdict_kind(), Some(VerdictKind::Allow));
    let staged = records[0].staged.as_ref().map(|v| v.kind());
    assert_eq!(staged, Some(VerdictKind::Deny));
}

#[test]
fn the_cni_profile_decides_whether_a_ping_is_judged() {
    // web is team b: the policy isolates the server and admits nothing from web.
    let host_pod = "apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n\
                    status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: web}\n\
                    spec: {nodeName: n2, hostNetwork: true, containers: [{name: a, image: a}]}\n\
                    status: {podIP: 10.1.0.2}\n---\n";
    let judged = |profile: CniProfile| {
        let mut enricher = Enricher::new(1_000_000).with_cni_profile(profile);
        enricher.update(100, view("b", host_pod));
        let mut ping = record("10.0.0.1", "10.0.0.2", 150);
        ping.protocol = IpProtocol::ICMP;
        let mut records = vec![ping, record("10.1.0.2", "10.0.0.2", 150)];
        enricher.enrich_batch(&mut records, || None);
        records
            .iter()
            .map(|r| r.policy.as_ref().map(|v| (v.kind(), v.category)))
            .collect::<Vec<_>>()
    };
    let cni = Some((VerdictKind::Deny, Category::CniDependent));
    // A packet from an address the node shares with its host-networked pods cannot say
    // which of them sent it: it is the node's, a peer NetworkPolicy defines.
    let node = Some((VerdictKind::Deny, Category::Decided));
    assert_eq!(judged(CniProfile::Calico), [cni, node]);
    assert_eq!(judged(CniProfile::Cilium), [cni, node]);
    assert_eq!(judged(CniProfile::Generic), [None, node]);
}

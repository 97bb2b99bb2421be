use std::sync::Arc;

use super::*;
use crate::cluster::manifests;
use crate::enrich::Enricher;
use crate::flow::{FlowState, RecordEndpoint};

/// shop: web, api, db (bare pods); `api-in` lets web reach api on 8080 (rule 0) and db on
/// 9090 (rule 1).
const STATE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, uid: w, labels: {app: web}}\n\
status: {podIP: 10.0.0.1}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop, uid: a, labels: {app: api}}\n\
status: {podIP: 10.0.0.2}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, uid: d, labels: {app: db}}\n\
status: {podIP: 10.0.0.3}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api-in, namespace: shop}\n\
spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  \
- from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 8080}]\n  \
- from: [{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: 9090}]\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-deny, namespace: shop}\n\
spec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n";

fn state() -> Arc<ClusterView> {
    let loaded = manifests::parse("state.yaml", STATE);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Arc::new(ClusterView::build(&loaded.into_objects()).0)
}

/// A finished TCP connection, named and judged as the daemon does it.
fn connection(view: &Arc<ClusterView>, src: &str, dst: &str, port: u16) -> FlowRecord {
    let endpoint = |ip: &str, port| RecordEndpoint {
        ip: ip.parse().expect("test IP"),
        port,
        identity: Default::default(),
    };
    let mut record = FlowRecord::between(
        endpoint(src, 40_000),
        endpoint(dst, port),
        IpProtocol::TCP,
        FlowState::Closed,
    );
    record.first_seen_ns = 10;
    record.last_seen_ns = 10;
    let mut enricher = Enricher::new(1_000);
    enricher.update(0, Arc::clone(view));
    let mut records = vec![record];
    enricher.enrich_batch(&mut records, || None);
    records.remove(0)
}

#[test]
fn the_viewer_lists_selecting_policies_rule_use_and_what_they_allow() {
    let state = state();
    let records = vec![
        connection(&state, "10.0.0.1", "10.0.0.2", 8080),
        connection(&state, "10.0.0.3", "10.0.0.2", 5432),
    ];
    let viewed = view(&state, CniProfile::default(), &records, "wl:shop/Pod/api").expect("view");
    assert_eq!(viewed.workload.pods, 1);
    assert_eq!(viewed.policies.len(), 1, "{:#?}", viewed.policies);
    let policy = &viewed.policies[0];
    assert_eq!(
        (policy.kind, policy.name.as_str()),
        ("NetworkPolicy", "api-in")
    );
    assert_eq!(policy.directions, ["ingress"]);
    assert!(policy.yaml.contains("api-in"));
    let used: Vec<(usize, u64, bool)> = policy
        .rules
        .iter()
        .map(|r| (r.index, r.connections, r.used))
        .collect();
    assert_eq!(used, [(0, 1, true), (1, 0, false)]);

    let allowed: Vec<(&str, u16, bool)> = viewed
        .allowed
        .iter()
        .map(|e| (e.source.as_str(), e.port, e.observed))
        .collect();
    assert_eq!(
        allowed,
        [
            ("wl:shop/Pod/db", 9090, false),
            ("wl:shop/Pod/web", 8080, true)
        ]
    );
    // The denied connection db → api:5432 is observed beside the allowed one.
    let observed: Vec<(&str, u16, super::super::service_map::EdgeVerdict)> = viewed
        .observed
        .iter()
        .map(|e| (e.source.as_str(), e.port, e.verdict))
        .collect();
    assert!(observed.contains(&(
        "wl:shop/Pod/db",
        5432,
        super::super::service_map::EdgeVerdict::Denied
    )));

    // A default deny (no rules, no ports to probe) selects db: it is listed, for ingress.
    let db = view(&state, CniProfile::default(), &records, "wl:shop/Pod/db").expect("db");
    let names: Vec<(&str, &[&str])> = db
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.directions.as_slice()))
        .collect();
    assert_eq!(names, [("db-deny", &["ingress"][..])], "{:#?}", db.policies);
    assert!(db.policies[0].rules.is_empty());

    // The web workload is selected by nothing: no policies, nothing allowed by rule.
    let web = view(&state, CniProfile::default(), &records, "wl:shop/Pod/web").expect("web");
    assert!(web.policies.is_empty(), "{:#?}", web.policies);
    assert!(
        view(&state, CniProfile::default(), &records, "shop/api")
            .expect_err("bad id")
            .contains("wl:NAMESPACE/Kind/name")
    );
    assert!(
        view(&state, CniProfile::default(), &records, "wl:shop/Pod/gone")
            .expect_err("unknown")
            .contains("no pod")
    );
}

#[test]
fn a_policy_behind_an_admin_allow_is_listed_though_it_decides_nothing() {
    // An AdminNetworkPolicy allows every pod into api: the NetworkPolicy that also selects
    // api never decides a flow (the admin tier comes first), yet it applies.
    let text = format!(
        "{STATE}---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
         metadata: {{name: all-to-api}}\nspec:\n  priority: 10\n  subject:\n    pods:\n      \
         namespaceSelector: {{}}\n      podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  \
         - name: all\n    action: Allow\n    from: [{{namespaces: {{}}}}]\n"
    );
    let loaded = manifests::parse("state.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let state = Arc::new(ClusterView::build(&loaded.into_objects()).0);
    assert!(state.tiered.is_some());
    let records = vec![connection(&state, "10.0.0.1", "10.0.0.2", 8080)];
    let viewed = view(&state, CniProfile::default(), &records, "wl:shop/Pod/api").expect("view");
    let mut names: Vec<(&str, &str)> = viewed
        .policies
        .iter()
        .map(|p| (p.kind, p.name.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("AdminNetworkPolicy", "all-to-api"),
            ("NetworkPolicy", "api-in")
        ],
        "{:#?}",
        viewed.policies
    );
    let admin = viewed
        .policies
        .iter()
        .find(|p| p.name == "all-to-api")
        .expect("admin");
    assert_eq!(admin.rules.len(), 1);
    assert!(admin.rules[0].used, "{:#?}", admin.rules);
    let np = viewed
        .policies
        .iter()
        .find(|p| p.name == "api-in")
        .expect("np");
    assert!(np.rules.iter().all(|r| !r.used), "{:#?}", np.rules);
}

//! Privileged end to end: a lab described by manifests; traffic between its pods gets the
//! right identities and verdicts, and stays right when a pod goes and its IP is reused.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use observer::flow::{FlowRecord, IpProtocol, ServiceBackend};
use observer::policy::{Category, DirectionDecision, VerdictKind};
use observer_lab::traffic::{ping, tcp_exchange, udp_exchange};
use observer_lab::{Lab, OUTSIDE_IPV4, Pod};
use support::{Observer, require_root, scratch_dir};

fn pod_manifest(name: &str, uid: &str, labels: &str, owner: &str, pod: &Pod) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: {uid}\n  \
         labels: {{{labels}}}\n  ownerReferences: [{owner}]\nspec:\n  nodeName: lab-node\n  \
         serviceAccountName: {name}-sa\n  containers: [{{name: c, image: x}}]\n\
         status:\n  phase: Running\n  podIP: {}\n  podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]\n---\n",
        pod.ipv4, pod.ipv4, pod.ipv6
    )
}

fn manifests(a: &Pod, b: &Pod, db_name: &str, db_uid: &str) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: lab-node}\n\
         status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n\
         apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-5d8f\n  namespace: shop\n  \
         uid: rs-1\n  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d-1, controller: true}]\n\
         spec: {selector: {matchLabels: {app: web}}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-web-tcp, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{protocol: TCP}]\n---\n",
    );
    text += &pod_manifest(
        "web-5d8f-x2x9q",
        "uid-web",
        "app: web",
        "{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f, uid: rs-1, controller: true}",
        a,
    );
    text += &pod_manifest(
        db_name,
        db_uid,
        "app: db",
        "{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: ss-1, controller: true}",
        b,
    );
    text
}

/// The observer on pods a and b, its cluster state from `manifests`, loaded.
fn observe_with_manifests(
    lab: &Lab,
    dir: &std::path::Path,
    manifests: &std::path::Path,
) -> Result<Observer> {
    let path = manifests.to_string_lossy().to_string();
    let mut observer = Observer::start(lab, dir, &["--interfaces", "veth*", "--manifests", &path])?;
    observer.wait_attached(&["vetha", "vethb"])?;
    observer.wait_stat("cluster_views", 1)?;
    Ok(observer)
}

fn one<'a>(records: &'a [FlowRecord], protocol: &str, sport: u16) -> Result<&'a FlowRecord> {
    records
        .iter()
        .find(|r| r.protocol.to_string() == protocol && r.src.port == sport)
        .with_context(|| format!("no {protocol} record from port {sport}: {records:#?}"))
}

#[test]
fn lab_traffic_gets_identities_and_verdicts_across_ip_reuse() -> Result<()> {
    require_root();
    let dir = scratch_dir("enrich");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, manifests(&a, &b, "db-0", "uid-db-0"))?;
    let observer = observe_with_manifests(&lab, &dir, &path)?;

    let tcp = tcp_exchange(&a, &b, IpAddr::V4(b.ipv4), 2000, 2000)?;
    let udp_before = udp_exchange(&a, &b, IpAddr::V6(b.ipv6), 2)?;
    ping(&a, IpAddr::V4(OUTSIDE_IPV4), 1)?;

    // db-0 goes; db-1 gets its IPs. Flows before keep db-0, flows after get db-1.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&path, manifests(&a, &b, "db-1", "uid-db-1"))?;
    observer.wait_stat("cluster_views", 2)?;
    let udp_after = udp_exchange(&a, &b, IpAddr::V4(b.ipv4), 2)?;
    std::thread::sleep(Duration::from_millis(300));
    let out = observer.stop()?;

    let r = one(&out.records, "TCP", tcp.0)?;
    assert_eq!(
        r.src.identity.pod.as_deref(),
        Some("web-5d8f-x2x9q"),
        "{r:?}"
    );
    assert_eq!(r.src.identity.namespace.as_deref(), Some("shop"));
    assert_eq!(r.src.identity.pod_uid.as_deref(), Some("uid-web"));
    let workload = r.src.identity.workload.as_ref().context("no workload")?;
    assert_eq!(
        (workload.kind.as_str(), workload.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(
        r.src.identity.service_account.as_deref(),
        Some("web-5d8f-x2x9q-sa")
    );
    assert_eq!(r.src.identity.node.as_deref(), Some("lab-node"));
    assert_eq!(r.dst.identity.pod.as_deref(), Some("db-0"));
    let dst_workload = r.dst.identity.workload.as_ref().context("no workload")?;
    assert_eq!(dst_workload.kind, "StatefulSet");
    let verdict = r.policy.as_ref().context("no verdict")?;
    assert_eq!(verdict.kind(), VerdictKind::Allow, "{verdict:?}");
    let allowing: Vec<String> = verdict
        .ingress
        .allowing_rules()
        .map(|t| t.policy.to_string())
        .collect();
    assert_eq!(allowing, vec!["shop/db-from-web-tcp".to_string()]);

    let u = one(&out.records, "UDP", udp_before.0)?;
    assert_eq!(
        u.dst.identity.pod.as_deref(),
        Some("db-0"),
        "attributed at its first packet"
    );
    let verdict = u.policy.as_ref().context("no verdict")?;
    assert_eq!(verdict.kind(), VerdictKind::Deny, "{verdict:?}");
    assert_eq!(verdict.ingress.decision, DirectionDecision::Denied);

    let after = one(&out.records, "UDP", udp_after.0)?;
    assert_eq!(after.dst.identity.pod.as_deref(), Some("db-1"), "{after:?}");
    assert_eq!(after.dst.identity.pod_uid.as_deref(), Some("uid-db-1"));

    let icmp = out
        .records
        .iter()
        .find(|r| r.protocol == IpProtocol::ICMP && r.dst.ip == IpAddr::V4(OUTSIDE_IPV4))
        .context("no ping to the outside")?;
    assert!(icmp.dst.identity.external, "{icmp:?}");
    assert_eq!(icmp.src.identity.pod.as_deref(), Some("web-5d8f-x2x9q"));
    // ICMP is outside NetworkPolicy v1: judged as Calico and Cilium enforce it, and said
    // so. Nothing isolates web's egress, so the ping is allowed.
    let verdict = icmp.policy.as_ref().context("no verdict for the ping")?;
    assert_eq!(verdict.category, Category::CniDependent, "{verdict:?}");
    assert_eq!(verdict.kind(), VerdictKind::Allow, "{verdict:?}");
    Ok(())
}

#[test]
fn service_connections_name_the_service_and_the_backend() -> Result<()> {
    use observer_lab::traffic::tcp_exchange_via;
    use std::net::SocketAddr;
    require_root();
    let dir = scratch_dir("services");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let db_vip: IpAddr = "10.96.0.10".parse()?;
    let ext_vip: IpAddr = "10.96.0.11".parse()?;
    let db_backend = SocketAddr::new(IpAddr::V4(b.ipv4), 5432);
    let ext_backend = SocketAddr::new(IpAddr::V4(OUTSIDE_IPV4), 8080);
    lab.add_dnat("tcp", db_vip, 80, db_backend)?;
    lab.add_dnat("tcp", ext_vip, 80, ext_backend)?;
    let mut text = manifests(&a, &b, "db-0", "uid-db-0");
    text += "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 5432}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: shop}\n\
             spec: {clusterIP: 10.96.0.11, ports: [{port: 80, targetPort: 8080}]}\n";
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, text)?;
    let observer = observe_with_manifests(&lab, &dir, &path)?;

    let to_db = tcp_exchange_via(
        &a,
        &b.netns,
        db_backend,
        SocketAddr::new(db_vip, 80),
        3000,
        9000,
    )?;
    let outside = lab.outside_netns().to_string();
    let to_ext = tcp_exchange_via(
        &a,
        &outside,
        ext_backend,
        SocketAddr::new(ext_vip, 80),
        100,
        100,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let out = observer.stop()?;

    assert!(
        !out.records
            .iter()
            .any(|r| r.dst.ip == db_vip || (r.dst.ip == ext_vip && r.src.port == to_db)),
        "the ClusterIP side merged away: {:#?}",
        out.records
    );
    let r = one(&out.records, "TCP", to_db)?;
    assert_eq!((r.dst.ip, r.dst.port), (db_backend.ip(), 5432), "{r:?}");
    assert_eq!(r.dst.identity.pod.as_deref(), Some("db-0"));
    let service = r.service.as_ref().context("no service")?;
    assert_eq!(
        (
            service.namespace.as_str(),
            service.name.as_str(),
            service.port
        ),
        ("shop", "db", 80)
    );
    assert_eq!(
        (service.cluster_ip, service.backend),
        (db_vip, ServiceBackend::Observed)
    );
    assert_eq!(r.interfaces, vec!["vetha".to_string(), "vethb".to_string()]);
    assert!(r.rev.bytes > 9000, "{r:?}");
    let verdict = r.policy.as_ref().context("no verdict")?;
    assert_eq!(
        verdict.kind(),
        VerdictKind::Allow,
        "judged against the backend pod: {verdict:?}"
    );

    let e = one(&out.records, "TCP", to_ext)?;
    assert_eq!((e.dst.ip, e.dst.port), (ext_backend.ip(), 8080), "{e:?}");
    assert!(e.dst.identity.external);
    let service = e.service.as_ref().context("no service")?;
    assert_eq!(
        (service.name.as_str(), service.backend),
        ("ext", ServiceBackend::Conntrack)
    );
    Ok(())
}

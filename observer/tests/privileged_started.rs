//! Violations at the first packet: a running observer in a lab node publishes each new
//! connection, judged, to the API's streams as soon as its first packet is seen (state
//! `started`), long before its record is written (report interval, idle timeout and close
//! grace are an hour here). A denied datagram arrives as a violation naming the deciding
//! policy; an allowed connection held open arrives as a started item and no violation; a
//! connection through a Service is judged against its backend. Needs root.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::flow::{FlowRecord, FlowState, ServiceBackend};
use observer::policy::VerdictKind;
use observer_lab::{Lab, Pod, in_netns};
use support::{Observer, require_root, scratch_dir};

const HOUR: &str = "1h";

fn cluster(a: &Pod, b: &Pod) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: db-from-web-tcp, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: db}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{protocol: TCP}]}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
         spec: {clusterIP: 10.96.0.10, selector: {app: db}, ports: [{port: 80, targetPort: 5432}]}\n---\n",
    );
    text += &a.manifest("shop", "web-0", "web");
    text += &b.manifest("shop", "db-0", "db");
    text
}

/// `observer observe` in the node, its records read by a thread into a channel.
fn follow(lab: &Lab, args: &[&str]) -> Result<(Child, mpsc::Receiver<FlowRecord>)> {
    let mut child = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"))
        .arg("observe")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting observe")?;
    let stdout = child.stdout.take().context("observe's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Each line is {"cursor": N, "flow": RECORD}.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let record = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| serde_json::from_value::<FlowRecord>(v["flow"].clone()).ok());
            if let Some(record) = record
                && tx.send(record).is_err()
            {
                return;
            }
        }
    });
    Ok((child, rx))
}

/// The first record from `rx` that `want` accepts, within 20 s.
fn wait_for(
    rx: &mpsc::Receiver<FlowRecord>,
    what: &str,
    want: impl Fn(&FlowRecord) -> bool,
) -> Result<FlowRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(record) if want(&record) => return Ok(record),
            Ok(_) => {}
            Err(_) => bail!("no {what} within 20 s"),
        }
    }
}

#[test]
fn connections_are_judged_and_published_at_their_first_packet() -> Result<()> {
    require_root();
    let dir = scratch_dir("started");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let vip: IpAddr = "10.96.0.10".parse()?;
    let backend = SocketAddr::new(IpAddr::V4(b.ipv4), 5432);
    lab.add_dnat("tcp", vip, 80, backend)?;
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, cluster(&a, &b))?;
    let manifests = path.to_string_lossy().to_string();
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--manifests",
            &manifests,
            "--report-interval",
            HOUR,
            "--idle-timeout",
            HOUR,
            "--close-grace",
            HOUR,
        ],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    observer.wait_stat("cluster_views", 1)?;
    let (mut everything, flows) = follow(&lab, &["--follow"])?;
    let (mut violations_only, violations) = follow(&lab, &["--follow", "--violations"])?;
    // Both streams are open before the traffic starts.
    std::thread::sleep(Duration::from_millis(500));

    // 1. One UDP datagram web -> db: the policy admits TCP only.
    let server = in_netns(&b.netns, || UdpSocket::bind((IpAddr::V4(b.ipv4), 0)))??;
    let udp_port = server.local_addr()?.port();
    let client = in_netns(&a.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    client.send_to(b"denied", (IpAddr::V4(b.ipv4), udp_port))?;
    let denied = wait_for(&violations, "violation", |r| r.dst.port == udp_port)?;
    assert_eq!(denied.state, FlowState::Started);
    assert_eq!(denied.verdict_kind(), Some(VerdictKind::Deny));
    assert_eq!(denied.src.identity.pod.as_deref(), Some("web-0"));
    assert_eq!(denied.dst.identity.pod.as_deref(), Some("db-0"));
    let ingress = &denied.policy.as_ref().context("a verdict")?.ingress;
    assert!(
        ingress
            .tiers
            .iter()
            .any(|t| t.policy.name == "db-from-web-tcp"),
        "the isolating policy is named: {ingress:?}"
    );

    // 2. An allowed TCP connection, held open: a started item, and no violation.
    let listener = in_netns(&b.netns, || TcpListener::bind((IpAddr::V4(b.ipv4), 0)))??;
    let tcp_port = listener.local_addr()?.port();
    let mut held = in_netns(&a.netns, || {
        TcpStream::connect((IpAddr::V4(b.ipv4), tcp_port))
    })??;
    let (mut accepted, _) = listener.accept()?;
    held.write_all(b"hello")?;
    let allowed = wait_for(&flows, "the allowed connection", |r| {
        r.dst.port == tcp_port && r.state == FlowState::Started
    })?;
    assert_eq!(allowed.verdict_kind(), Some(VerdictKind::Allow));

    // 3. Through the Service's ClusterIP: judged against the backend pod and its port.
    let service_listener = in_netns(&b.netns, || TcpListener::bind(backend))??;
    let mut via_service = in_netns(&a.netns, || TcpStream::connect((vip, 80)))??;
    let (_served, _) = service_listener.accept()?;
    via_service.write_all(b"query")?;
    let client_port = via_service.local_addr()?.port();
    let through = wait_for(&flows, "the Service connection", |r| {
        r.src.port == client_port && r.state == FlowState::Started
    })?;
    let service = through.service.as_ref().context("the Service")?;
    assert_eq!(service.name, "db");
    assert_eq!(service.backend, ServiceBackend::Observed);
    assert_eq!((through.dst.ip, through.dst.port), (backend.ip(), 5432));
    assert_eq!(through.verdict_kind(), Some(VerdictKind::Allow));

    // No record was written yet: every item above came at the first packet. (The stats
    // file is rewritten at every poll, 100 ms.)
    std::thread::sleep(Duration::from_millis(300));
    let now = observer.stats_now()?;
    assert_eq!(now["records_written"], 0, "{now}");
    assert!(now["started_published"].as_u64() >= Some(3), "{now}");
    // The violations stream carried the denied datagram and nothing allowed.
    while let Ok(extra) = violations.recv_timeout(Duration::from_millis(300)) {
        assert_eq!(extra.verdict_kind(), Some(VerdictKind::Deny), "{extra:?}");
    }
    drop((held, accepted.flush(), via_service));
    let _ = everything.kill();
    let _ = violations_only.kill();
    let outcome = observer.stop()?;
    // The records follow at exit, after their started items; the flow log has no started
    // item (no --flow-log-started).
    assert!(outcome.records.len() >= 3, "{}", outcome.log);
    assert!(
        outcome
            .records
            .iter()
            .all(|r| r.state != FlowState::Started)
    );
    Ok(())
}

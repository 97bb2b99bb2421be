//! `cargo xtask bench started`: how soon a violation reaches a gRPC subscriber after a
//! connection's first packet, and how many new connections a second the observer judges
//! and publishes with the violation stream keeping up.
//!
//! A lab node with a web pod and a db pod; the db's ingress and the web's egress are
//! isolated by NetworkPolicies with no rule, so every connection from web is a violation.
//! The release observer runs with its defaults (1 s poll, 10 s report interval, 2 s close
//! grace: the record of each connection comes seconds later); `observer observe --follow
//! --violations` subscribes over the loopback, and a reader thread stamps each line as it
//! arrives. Latency: the time from just before a connection's first packet is sent to the
//! arrival of its violation, for a refused TCP connection, a single UDP datagram, a
//! long-lived TCP connection and a TCP connection through a Service ClusterIP (DNAT to the
//! db), one connection at a time. Rate: UDP datagrams to new ports of an outside address at
//! a fixed rate, each a new connection; the started violations received are compared with
//! the datagrams sent, and every loss counter is printed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use observer_lab::observer::ObserverProcess;
use observer_lab::{Lab, OUTSIDE_IPV4, Pod, in_netns};

use crate::shell::{build_observer, is_root, target_dir};

/// Options of `cargo xtask bench started`.
#[derive(Args, Debug)]
pub struct Options {
    /// Connections of each kind for the latency part.
    #[arg(long, default_value_t = 200)]
    connections: u32,
    /// New connections per second for the rate part.
    #[arg(long, default_value_t = 50_000)]
    rate: u32,
    /// Seconds of the rate part.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// More arguments for the daemon (repeatable), e.g. `--daemon-arg=--api-buffer-flows=262144`.
    #[arg(long)]
    daemon_arg: Vec<String>,
}

const VIP: &str = "10.96.0.10";

/// (protocol, source port, destination port) → when its started violation arrived.
type Arrivals = Arc<Mutex<HashMap<(String, u16, u16), Instant>>>;

pub fn run(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the started bench runs the daemon in a lab: run it as root");
    }
    let binary = build_observer(true)?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    let web = lab.add_pod("a")?;
    let db = lab.add_pod("b")?;
    let backend = SocketAddr::new(IpAddr::V4(db.ipv4), 5432);
    lab.add_dnat("tcp", VIP.parse()?, 80, backend)?;
    let dir = target_dir().join("bench-started");
    std::fs::create_dir_all(&dir)?;
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, cluster(&web, &db))?;
    let path = manifests.to_string_lossy().to_string();
    let mut args = vec!["--poll-interval", "1s", "--manifests", &path];
    args.extend(options.daemon_arg.iter().map(String::as_str));
    let mut observer = ObserverProcess::start(&lab, &binary, &dir, &args)?;
    observer.wait_attached(&["vetha", "vethb"])?;
    wait_stat(&observer, "cluster_views", 1)?;
    let (mut subscriber, arrivals) = subscribe(&lab, &binary)?;
    std::thread::sleep(Duration::from_secs(1));
    // Resolve neighbours first: the first packets would otherwise wait for ARP.
    let warm = in_netns(&web.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    warm.send_to(b"warm-up", (db.ipv4, 9))?;
    warm.send_to(b"warm-up", (OUTSIDE_IPV4, 9))?;
    std::thread::sleep(Duration::from_millis(300));

    println!(
        "\n## first packet -> violation at a gRPC subscriber ({} connections each, one at a \
         time)",
        options.connections
    );
    let n = options.connections as u16;
    let refused = latencies(&arrivals, n, |i| {
        let port = 7_000 + i;
        let t0 = Instant::now();
        let _ = in_netns(&web.netns, || {
            TcpStream::connect_timeout(&SocketAddr::new(IpAddr::V4(db.ipv4), port), SECOND)
        })?;
        Ok((t0, ("TCP".into(), None, port)))
    })?;
    report("refused TCP connection", &refused);
    let udp = in_netns(&web.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    let datagram = latencies(&arrivals, n, |i| {
        let port = 20_000 + i;
        let t0 = Instant::now();
        udp.send_to(b"one", (db.ipv4, port))?;
        Ok((t0, ("UDP".into(), None, port)))
    })?;
    report("single UDP datagram", &datagram);
    let listener = in_netns(&db.netns, || TcpListener::bind((db.ipv4, 6_000)))??;
    let mut held = Vec::new();
    let long_lived = latencies(&arrivals, n, |_| {
        let t0 = Instant::now();
        let stream = in_netns(&web.netns, || {
            TcpStream::connect((IpAddr::V4(db.ipv4), 6_000))
        })??;
        let (accepted, _) = listener.accept()?;
        let port = stream.local_addr()?.port();
        held.push((stream, accepted));
        Ok((t0, ("TCP".into(), Some(port), 6_000)))
    })?;
    report("long-lived TCP connection", &long_lived);
    let service_listener = in_netns(&db.netns, || TcpListener::bind(backend))??;
    let service = latencies(&arrivals, n, |_| {
        let t0 = Instant::now();
        let mut stream = in_netns(&web.netns, || {
            TcpStream::connect((VIP.parse::<IpAddr>().expect("the VIP"), 80))
        })??;
        let (accepted, _) = service_listener.accept()?;
        stream.write_all(b"query")?;
        let port = stream.local_addr()?.port();
        held.push((stream, accepted));
        Ok((t0, ("TCP".into(), Some(port), 5432)))
    })?;
    report("TCP through a Service ClusterIP", &service);
    drop(held);

    rate(&web, &arrivals, options)?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = subscriber.kill();
    let stopped = observer.stop()?;
    let stats = &stopped.stats;
    println!(
        "  daemon: started_published {}, started_shed {}, api flows_lost_to_subscribers {}, \
         ringbuf_new_flow_failed {}, table_full_packets {}, connections_evicted {}, \
         flow_map_full {}",
        stats["started_published"],
        stats["started_shed"],
        stats["api"]["flows_lost_to_subscribers"],
        stats["datapath"]["ringbuf_new_flow_failed"],
        stats["table_full_packets"],
        stats["connections_evicted"],
        stats["datapath"]["flow_map_full"]
    );
    Ok(())
}

const SECOND: Duration = Duration::from_secs(1);

/// NetworkPolicies that isolate the db's ingress and the web's egress, with no rule; a
/// Service in front of the db.
fn cluster(web: &Pod, db: &Pod) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db-closed, namespace: shop}}\n\
         spec: {{podSelector: {{matchLabels: {{app: db}}}}, policyTypes: [Ingress]}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-closed, namespace: shop}}\n\
         spec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Egress]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\n\
         spec: {{clusterIP: {VIP}, selector: {{app: db}}, ports: [{{port: 80, targetPort: 5432}}]}}\n---\n"
    );
    text += &web.manifest("shop", "web-0", "web");
    text += &db.manifest("shop", "db-0", "db");
    text
}

fn wait_stat(observer: &ObserverProcess, field: &str, value: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while observer
        .stats_now()
        .ok()
        .and_then(|s| s[field].as_u64())
        .is_none_or(|n| n < value)
    {
        if Instant::now() > deadline {
            bail!("stats {field} never reached {value}: {}", observer.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `observer observe --follow --violations` in the node; a thread stamps each started
/// violation as its line arrives.
fn subscribe(lab: &Lab, binary: &std::path::Path) -> Result<(Child, Arrivals)> {
    let mut child = Lab::command_in(lab.node_netns(), &binary.to_string_lossy())
        .args(["observe", "--follow", "--violations"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting observer observe")?;
    let stdout = child.stdout.take().context("observe's stdout")?;
    let arrivals: Arrivals = Arc::default();
    let shared = Arc::clone(&arrivals);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let at = Instant::now();
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let flow = &value["flow"];
            if flow["state"] != "started" {
                continue;
            }
            let port = |side: &str| flow[side]["port"].as_u64().unwrap_or(0) as u16;
            let key = (
                flow["protocol"].as_str().unwrap_or_default().to_string(),
                port("src"),
                port("dst"),
            );
            if let Ok(mut map) = shared.lock() {
                map.entry(key).or_insert(at);
            }
        }
    });
    Ok((child, arrivals))
}

/// What a connection's violation is found by: protocol, source port (when known), and
/// destination port.
type Wanted = (String, Option<u16>, u16);

/// Makes `n` connections with `connect` (which returns when it sent the first packet, and
/// what its violation looks like), each waiting for its violation; the latencies, sorted.
fn latencies(
    arrivals: &Arrivals,
    n: u16,
    mut connect: impl FnMut(u16) -> Result<(Instant, Wanted)>,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n.into());
    for i in 0..n {
        let (t0, (protocol, src, dst)) = connect(i)?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let found = arrivals.lock().ok().and_then(|map| {
                map.iter()
                    .find(|((p, s, d), _)| {
                        *p == protocol && *d == dst && src.is_none_or(|x| x == *s)
                    })
                    .map(|(key, at)| (key.clone(), *at))
            });
            if let Some((key, at)) = found {
                if let Ok(mut map) = arrivals.lock() {
                    map.remove(&key);
                }
                out.push(at.saturating_duration_since(t0));
                break;
            }
            if Instant::now() > deadline {
                bail!("no violation for {protocol} connection {i} (port {dst}) within 10 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    out.sort();
    Ok(out)
}

fn report(what: &str, sorted: &[Duration]) {
    let at = |q: f64| {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i].as_secs_f64() * 1e3
    };
    println!(
        "  {what:<34} p50 {:6.2} ms   p99 {:6.2} ms   max {:6.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// New UDP connections at `options.rate` a second for `options.seconds`; counts the
/// started violations received for them.
fn rate(web: &Pod, arrivals: &Arrivals, options: &Options) -> Result<()> {
    if let Ok(mut map) = arrivals.lock() {
        map.clear();
    }
    let total = u64::from(options.rate) * u64::from(options.seconds);
    let sockets_needed = total.div_ceil(60_000).max(1) as usize;
    let sockets: Vec<UdpSocket> = in_netns(&web.netns, || {
        (0..sockets_needed)
            .map(|_| UdpSocket::bind(("0.0.0.0", 0)))
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;
    let tick = Duration::from_millis(10);
    let per_tick = (u64::from(options.rate) / 100).max(1);
    let start = Instant::now();
    let mut next = start;
    let (mut i, mut sent) = (0u64, 0u64);
    while i < total {
        for _ in 0..per_tick.min(total - i) {
            let socket = &sockets[(i % sockets_needed as u64) as usize];
            let port = 1 + (i / sockets_needed as u64) as u16;
            if socket.send_to(b"new", (OUTSIDE_IPV4, port)).is_ok() {
                sent += 1;
            }
            i += 1;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed();
    // The stream has a few seconds to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    while Instant::now() < deadline {
        received = arrivals.lock().map_or(0, |map| {
            map.keys()
                .filter(|(p, s, _)| p == "UDP" && ports.contains(s))
                .count()
        });
        if received as u64 >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "\n## new connections at {} a second for {} s (UDP, one datagram each)",
        options.rate, options.seconds
    );
    println!(
        "  sent {sent} in {:.2} s ({:.0}/s); started violations received {received} ({:.1} %)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        100.0 * received as f64 / sent.max(1) as f64
    );
    Ok(())
}

//! Privileged end-to-end tests of the datapath: real programs in this kernel, a lab of
//! network namespaces, real traffic, and tcpdump as the independent count.
//! They need root and fail loudly without it (`cargo xtask test` runs them in CI as root).

mod support;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::flow::{FlowRecord, FlowState, IpProtocol, Timestamp};
use observer_lab::traffic::{ping, tcp_exchange, udp_exchange};
use observer_lab::{Lab, OUTSIDE_IPV4, Pod, in_netns};
use support::capture::{Capture, count_flow};
use support::{Observer, frames, records_between, require_root, scratch_dir};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The one record of this flow, checked against both captures in both directions.
fn check_against_captures(
    records: &[FlowRecord],
    proto: u8,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    captures: &[(&str, &[support::capture::Frame])],
) -> Result<()> {
    let name = observer::flow::IpProtocol(proto).to_string();
    let found: Vec<&FlowRecord> = records_between(records, &name, client.0, server.0)
        .into_iter()
        .filter(|r| matches!(proto, 1 | 58) || (r.src.port == client.1 && r.dst.port == server.1))
        .collect();
    if found.len() != 1 {
        bail!("expected one {name} record {client:?} -> {server:?}, found {found:#?}");
    }
    let r = found[0];
    assert_eq!(
        (r.src.ip, r.dst.ip),
        (client.0, server.0),
        "initiator of {r:?}"
    );
    for (interface, frames) in captures {
        let fwd = count_flow(frames, client, server, proto);
        let rev = count_flow(frames, server, client, proto);
        assert!(fwd.0 > 0, "capture on {interface} saw no {name} packets");
        assert_eq!(
            (r.fwd.packets, r.fwd.bytes),
            fwd,
            "{name} forward vs capture on {interface}: {r:?}"
        );
        assert_eq!(
            (r.rev.packets, r.rev.bytes),
            rev,
            "{name} reverse vs capture on {interface}: {r:?}"
        );
        assert!(
            r.interfaces.iter().any(|i| i == interface),
            "{r:?} lacks {interface}"
        );
    }
    Ok(())
}

/// Seconds from one RFC 3339 time to another.
fn seconds_between(from: &Timestamp, to: &Timestamp) -> f64 {
    (to.0 - from.0) as f64 / 1e9
}

#[test]
fn pod_to_pod_tcp_udp_icmp_counts_match_captures_ipv4_and_ipv6() -> Result<()> {
    require_root();
    let dir = scratch_dir("counts");
    let mut lab = Lab::new()?.without_offloads();
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let node = lab.node_netns().to_string();
    let mut observer = Observer::start(&lab, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha", "vethb"])?;
    let cap_a = Capture::start(&node, "vetha", "ip or ip6", &dir)?;
    let cap_b = Capture::start(&node, "vethb", "ip or ip6", &dir)?;

    let (a4, b4, a6, b6) = (
        IpAddr::V4(a.ipv4),
        IpAddr::V4(b.ipv4),
        IpAddr::V6(a.ipv6),
        IpAddr::V6(b.ipv6),
    );
    let tcp4 = tcp_exchange(&a, &b, b4, 200_000, 50_000)?;
    let tcp6 = tcp_exchange(&a, &b, b6, 100_000, 30_000)?;
    let udp4 = udp_exchange(&a, &b, b4, 12)?;
    let udp6 = udp_exchange(&b, &a, a6, 7)?;
    ping(&a, b4, 4)?;
    ping(&b, a6, 3)?;
    std::thread::sleep(Duration::from_millis(500));

    let frames_a = cap_a.stop()?;
    let frames_b = cap_b.stop()?;
    let out = observer.stop()?;
    let captures: [(&str, &[support::capture::Frame]); 2] =
        [("vetha", &frames_a), ("vethb", &frames_b)];

    check_against_captures(&out.records, TCP, (a4, tcp4.0), (b4, tcp4.1), &captures)?;
    check_against_captures(&out.records, TCP, (a6, tcp6.0), (b6, tcp6.1), &captures)?;
    check_against_captures(&out.records, UDP, (a4, udp4.0), (b4, udp4.1), &captures)?;
    check_against_captures(&out.records, UDP, (b6, udp6.0), (a6, udp6.1), &captures)?;
    check_against_captures(&out.records, 1, (a4, 0), (b4, 0), &captures)?;
    check_against_captures(&out.records, 58, (b6, 0), (a6, 0), &captures)?;

    let tcp = records_between(&out.records, "TCP", a4, b4)[0];
    assert_eq!(tcp.state, FlowState::Closed, "FIN both ways: {tcp:?}");
    for flag in ["SYN", "ACK", "FIN"] {
        assert!(
            tcp.tcp_flags.names().any(|f| f == flag),
            "{flag} missing in {tcp:?}"
        );
    }
    let icmp = records_between(&out.records, "ICMP", a4, b4)[0];
    assert_eq!(
        icmp.icmp.map(|i| i.icmp_type),
        Some(8),
        "echo request initiates: {icmp:?}"
    );
    // Four echoes 200 ms apart: the last reply comes about 600 ms after the first request.
    // Later packets are stamped from jiffies through the calibrated tick clock, so this
    // checks that clock: up to a tick early, never wildly off.
    let span = seconds_between(&icmp.first_seen, &icmp.last_seen);
    assert!(
        (0.55..1.2).contains(&span),
        "first to last seen {span} s: {icmp:?}"
    );
    // Every IP frame the captures saw ran a program once, whether its flow was counted in
    // the flow cache (whose slots count runs) or the map.
    let captured = (frames_a.len() + frames_b.len()) as u64;
    let seen = out.counter("packets_seen");
    assert!(
        seen >= captured,
        "packets_seen {seen} < {captured} frames captured: {}",
        out.stats
    );
    assert_eq!(out.counter("ringbuf_new_flow_failed"), 0);
    assert_eq!(out.counter("flow_map_full"), 0);
    Ok(())
}

#[test]
fn crafted_sctp_fragments_and_malformed_frames_are_counted_never_misattributed() -> Result<()> {
    use frames::{IPV4, IPV6, ethernet, ipv4, ipv6, sctp, udp};
    require_root();
    let dir = scratch_dir("crafted");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let mut observer = Observer::start(&lab, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha", "vethb"])?;

    // Addresses of malformed frames: no record may ever name them.
    let bad4: std::net::Ipv4Addr = "10.244.0.250".parse()?;
    let bad6: std::net::Ipv6Addr = "fd00:244::fa".parse()?;
    let (a4, b4, a6, b6) = (a.ipv4, b.ipv4, a.ipv6, b.ipv6);
    let mut dest_opts_chain = Vec::new();
    for _ in 0..7 {
        dest_opts_chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    let mut ipv6_fragment = vec![17, 0];
    ipv6_fragment.extend_from_slice(&(100u16 << 3).to_be_bytes());
    ipv6_fragment.extend_from_slice(&[0, 0, 0, 9]);
    ipv6_fragment.extend_from_slice(&[0xcd; 24]);
    // 802.1ad outer tag (the kernel strips it before the hook), 802.1Q inner tag in data.
    let mut qinq = vec![0x00, 0x07, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00];
    qinq.extend(ipv4(a4, b4, 17, 0, 5, &udp(7001, 7002, b"qinq")));
    let qinq_frame = ethernet(0x88a8, &qinq);
    // The kernel needs 6 bytes after the outer tag's ethertype to strip it; the inner tag
    // then lacks its last 2 bytes.
    let truncated_inner_tag = ethernet(0x88a8, &[0x00, 0x07, 0x81, 0x00, 0x00, 0x05]);

    let valid = vec![
        ethernet(IPV4, &ipv4(a4, b4, 132, 0, 5, &sctp(5000, 6000))),
        ethernet(IPV4, &ipv4(a4, b4, 132, 0, 5, &sctp(5000, 6000))),
        ethernet(IPV4, &ipv4(a4, b4, 132, 0, 5, &sctp(5000, 6000))),
        ethernet(IPV6, &ipv6(a6, b6, 132, &sctp(5001, 6001))),
        ethernet(IPV6, &ipv6(a6, b6, 132, &sctp(5001, 6001))),
        // Non-first fragments: no ports, counted under a flagged key.
        ethernet(IPV4, &ipv4(a4, b4, 17, 100, 5, &[0xee; 40])),
        ethernet(IPV4, &ipv4(a4, b4, 17, 200, 5, &[0xee; 40])),
        ethernet(IPV6, &ipv6(a6, b6, 44, &ipv6_fragment)),
        // IPv4 with options: ports after the options.
        ethernet(IPV4, &ipv4(a4, b4, 17, 0, 8, &udp(7100, 7200, b"opts"))),
        qinq_frame,
    ];
    let malformed = vec![
        ethernet(IPV4, &ipv4(bad4, b4, 17, 0, 5, &udp(1, 2, b""))[..10]),
        ethernet(IPV4, &ipv4(bad4, b4, 17, 0, 15, &[])[..20]),
        ethernet(IPV4, &ipv4(bad4, b4, 17, 0, 3, &udp(1, 2, b"x"))),
        ethernet(IPV4, &ipv4(bad4, b4, 6, 0, 5, &[0; 8])),
        ethernet(IPV6, &ipv6(bad6, b6, 17, &[])[..20]),
        ethernet(IPV6, &ipv6(bad6, b6, 0, &[17, 10, 0, 0, 0, 0, 0, 0])),
        ethernet(IPV6, &ipv6(bad6, b6, 60, &dest_opts_chain)),
        ethernet(IPV6, &ipv6(bad6, b6, 17, &[0, 1, 0, 2])),
        truncated_inner_tag,
    ];
    in_netns(&a.netns, || frames::send("eth0", &valid))??;
    in_netns(&a.netns, || frames::send("eth0", &malformed))??;
    std::thread::sleep(Duration::from_millis(400));
    let out = observer.stop()?;

    let expect = [
        ("parse_error_ipv4_truncated", 2),
        ("parse_error_ipv4_bad_header", 1),
        ("parse_error_transport_truncated", 2),
        ("parse_error_ipv6_truncated", 1),
        ("parse_error_ipv6_extension_truncated", 1),
        ("parse_error_ipv6_too_many_extensions", 1),
        ("parse_error_vlan_truncated", 1),
        ("non_first_fragments", 3),
    ];
    for (counter, value) in expect {
        assert_eq!(out.counter(counter), value, "{counter}: {}", out.stats);
    }
    // Every crafted frame ran the ingress program of vetha (plus whatever else the pod
    // sent, such as IPv6 neighbour discovery).
    let seen = out.counter("packets_seen");
    assert!(
        seen >= (valid.len() + malformed.len()) as u64,
        "packets_seen {seen}: {}",
        out.stats
    );
    for r in &out.records {
        for ip in [r.src.ip, r.dst.ip] {
            assert!(
                ip != IpAddr::V4(bad4) && ip != IpAddr::V6(bad6),
                "malformed frame attributed: {r:?}"
            );
        }
    }
    let one = |proto: &str, src: IpAddr, sport: u16, dport: u16| -> Result<&FlowRecord> {
        let found: Vec<&FlowRecord> = out
            .records
            .iter()
            .filter(|r| {
                r.protocol.to_string() == proto
                    && r.src.ip == src
                    && r.src.port == sport
                    && r.dst.port == dport
            })
            .collect();
        match found.as_slice() {
            [r] => Ok(*r),
            _ => bail!("expected one {proto} {src}:{sport} -> :{dport}, found {found:?}"),
        }
    };
    assert_eq!(one("SCTP", IpAddr::V4(a4), 5000, 6000)?.fwd.packets, 3);
    assert_eq!(one("SCTP", IpAddr::V6(a6), 5001, 6001)?.fwd.packets, 2);
    assert_eq!(one("UDP", IpAddr::V4(a4), 7100, 7200)?.fwd.packets, 1);
    assert_eq!(one("UDP", IpAddr::V4(a4), 7001, 7002)?.fwd.packets, 1);
    let fragments4 = one("UDP", IpAddr::V4(a4), 0, 0)?;
    assert!(
        fragments4.non_first_fragments && fragments4.fwd.packets == 2,
        "{fragments4:?}"
    );
    let fragments6 = one("UDP", IpAddr::V6(a6), 0, 0)?;
    assert!(
        fragments6.non_first_fragments && fragments6.fwd.packets == 1,
        "{fragments6:?}"
    );
    Ok(())
}

#[test]
fn interfaces_created_after_start_are_observed_and_vanished_ones_detached() -> Result<()> {
    require_root();
    let dir = scratch_dir("late");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let mut observer = Observer::start(&lab, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha"])?;
    let c = lab.add_pod("late")?;
    observer.wait_attached(&["vetha", "vethlate"])?;
    let (cport, aport) = udp_exchange(&c, &a, IpAddr::V4(a.ipv4), 5)?;
    std::thread::sleep(Duration::from_millis(300));
    lab.remove_pod("late")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = observer.attached_now();
        if names == ["vetha"] {
            break;
        }
        if Instant::now() > deadline {
            bail!("vethlate still attached: {names:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = observer.stop()?;
    let r = out
        .records
        .iter()
        .find(|r| r.protocol == IpProtocol::UDP && r.src.port == cport && r.dst.port == aport)
        .with_context(|| format!("no record of the late pod's flow: {:#?}", out.records))?;
    assert_eq!((r.fwd.packets, r.rev.packets), (5, 5), "{r:?}");
    assert_eq!(
        r.interfaces,
        vec!["vetha".to_string(), "vethlate".to_string()]
    );
    assert_eq!(out.stats["attach_failures"], 0);
    Ok(())
}

/// Sends one datagram to each of `flows` distinct ports of the outside address.
fn udp_burst(from: &Pod, flows: u16, per_flow: usize) -> Result<u16> {
    let socket = in_netns(&from.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    for _ in 0..per_flow {
        for port in 1..=flows {
            socket.send_to(b"burst", (OUTSIDE_IPV4, port))?;
        }
    }
    Ok(socket.local_addr()?.port())
}

/// The records of a `udp_burst` sent from source port `sport`.
fn burst_records(records: &[FlowRecord], sport: u16) -> Vec<&FlowRecord> {
    records
        .iter()
        .filter(|r| {
            r.protocol == IpProtocol::UDP
                && r.src.port == sport
                && r.dst.ip == IpAddr::V4(OUTSIDE_IPV4)
        })
        .collect()
}

#[test]
fn tiny_ring_buffer_counts_failed_reservations_and_still_records_every_flow() -> Result<()> {
    require_root();
    let (_lab, a, observer, _dir) = observed_pod("ringbuf", &["--ringbuf-bytes", "4096"])?;
    // A consumer that stops reading: the ring buffer (about 40 events) fills up.
    let pid = observer.pid();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let sent = udp_burst(&a, 3000, 1);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let sport = sent?;
    std::thread::sleep(Duration::from_millis(500));
    let out = observer.stop()?;
    let failed = out.counter("ringbuf_new_flow_failed");
    let received = out.stats["events_received"].as_u64().unwrap_or(0);
    assert!(failed > 0, "no failed reservation counted: {}", out.stats);
    assert!(
        failed + received >= 3000,
        "events unaccounted for: {}",
        out.stats
    );
    // The lost events were only notifications: the map still has every flow.
    assert_eq!(burst_records(&out.records, sport).len(), 3000);
    Ok(())
}

#[test]
fn full_flow_map_overflows_through_the_ring_buffer_without_losing_flows() -> Result<()> {
    require_root();
    // A 16-slot cache: flows take all three paths (cache slot, hash map, overflow event).
    let (_lab, a, observer, _dir) = observed_pod(
        "mapfull",
        &["--flow-map-entries", "64", "--flow-cache-slots", "16"],
    )?;
    let sport = udp_burst(&a, 1000, 2)?;
    std::thread::sleep(Duration::from_millis(500));
    // Traffic that goes on while the observer stops (it overflows the full map too): the
    // final events and counters must still agree.
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        let during_stop = scope.spawn(|| -> Result<()> {
            let socket = in_netns(&a.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                socket.send_to(b"late", (OUTSIDE_IPV4, 9))?;
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(50));
        let out = observer.stop();
        stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        during_stop
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        out
    })?;
    assert!(out.counter("flow_map_full") > 1000, "{}", out.stats);
    assert_eq!(out.counter("ringbuf_overflow_failed"), 0, "{}", out.stats);
    assert_eq!(
        out.stats["overflow_events"],
        out.stats["datapath"]["flow_map_full"]
    );
    let ours = burst_records(&out.records, sport);
    assert_eq!(ours.len(), 1000);
    for r in ours {
        assert_eq!((r.fwd.packets, r.fwd.bytes), (2, 2 * 47), "{r:?}");
    }
    Ok(())
}

#[test]
fn a_full_connection_table_evicts_to_the_log_and_loses_no_flow() -> Result<()> {
    require_root();
    // 1,000 flows at once into a table limited to 100: each poll admits what fits (twice
    // the limit), the sweep writes the least recently active as `evicted`.
    let (_lab, a, observer, _dir) = observed_pod(
        "evict",
        &["--max-connections", "100", "--poll-interval", "100ms"],
    )?;
    let sport = udp_burst(&a, 1000, 2)?;
    // Each poll admits what fits and evicts the oldest; wait for the polls, not a time.
    observer.wait_stat("connections_evicted", 800)?;
    let out = observer.stop()?;
    let evicted = out.stats["connections_evicted"].as_u64().unwrap_or(0);
    assert!(evicted >= 800, "{}", out.stats);
    assert_eq!(out.stats["table_full_packets"], 0, "{}", out.stats);
    let mut packets_by_port = std::collections::BTreeMap::new();
    for r in burst_records(&out.records, sport) {
        *packets_by_port.entry(r.dst.port).or_insert(0) += r.fwd.packets;
    }
    // Every flow written exactly once, with both of its packets.
    assert_eq!(packets_by_port.len(), 1000);
    assert!(
        packets_by_port.values().all(|&p| p == 2),
        "{packets_by_port:?}"
    );
    assert!(out.records.iter().any(|r| r.state == FlowState::Evicted));
    Ok(())
}

/// UDP flows from pod `a` to the outside address, `packets` datagrams each, one source port
/// per flow (so each is its own key); returns the source ports.
fn udp_flows(from: &Pod, flows: usize, packets: usize) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for _ in 0..flows {
        let socket = in_netns(&from.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
        for _ in 0..packets {
            socket.send_to(b"cache", (OUTSIDE_IPV4, 7777))?;
        }
        ports.push(socket.local_addr()?.port());
    }
    Ok(ports)
}

#[test]
fn cache_slots_released_after_expiry_keep_counts_exact_across_cache_and_map() -> Result<()> {
    require_root();
    // One slot per CPU: the first flow on a CPU takes it, the others collide into the hash
    // map; after expiry the slot is released, and a later flow claims it again.
    let (_lab, a, observer, _dir) = observed_pod(
        "cache",
        &[
            "--flow-cache-slots",
            "1",
            "--idle-timeout",
            "1s",
            "--poll-interval",
            "200ms",
        ],
    )?;
    let first = udp_flows(&a, 4, 3)?;
    // Long enough for every first-round flow to expire and be released.
    std::thread::sleep(Duration::from_millis(2500));
    let second = udp_flows(&a, 4, 5)?;
    std::thread::sleep(Duration::from_millis(300));
    let out = observer.stop()?;
    for (ports, packets) in [(&first, 3u64), (&second, 5u64)] {
        for port in ports {
            let found: Vec<&FlowRecord> = out
                .records
                .iter()
                .filter(|r| r.protocol == IpProtocol::UDP && r.src.port == *port)
                .collect();
            assert_eq!(found.len(), 1, "flow from port {port}: {found:#?}");
            assert_eq!(
                (found[0].fwd.packets, found[0].fwd.bytes),
                (packets, packets * 47),
                "{:?}",
                found[0]
            );
        }
    }
    let expired = out
        .records
        .iter()
        .filter(|r| first.contains(&r.src.port) && r.state == FlowState::Expired)
        .count();
    assert_eq!(
        expired,
        first.len(),
        "first-round flows expire: {:#?}",
        out.records
    );
    Ok(())
}

/// A lab with one pod, `a`, and the observer on `veth*` (plus `extra` arguments), attached
/// to the pod's interface. Keep the lab: dropping it tears the pod down.
fn observed_pod(tag: &str, extra: &[&str]) -> Result<(Lab, Pod, Observer, std::path::PathBuf)> {
    let dir = scratch_dir(tag);
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let mut args = vec!["--interfaces", "veth*"];
    args.extend_from_slice(extra);
    let mut observer = Observer::start(&lab, &dir, &args)?;
    observer.wait_attached(&["vetha"])?;
    Ok((lab, a, observer, dir))
}

/// Keeps the calling thread on one CPU: a veth delivers what a thread sends on that
/// thread's CPU, so the kernel programs run there too.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get
    // valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("pinning the test thread");
        }
    }
    Ok(())
}

/// The flow log's records so far whose source port is `port` (UDP).
fn udp_records_from(flow_log: &std::path::Path, port: u16) -> Vec<FlowRecord> {
    std::fs::read_to_string(flow_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<FlowRecord>(line).ok())
        .filter(|r| r.protocol == IpProtocol::UDP && r.src.port == port)
        .collect()
}

#[test]
fn packets_counted_after_a_record_was_written_reach_a_later_record() -> Result<()> {
    require_root();
    // A record is written right after the poll whose read made it due; the flow's kernel
    // counters are let go at the next poll. A long interval leaves time to send a packet in
    // between, into counters the written record does not include.
    let (_lab, a, observer, dir) = observed_pod(
        "late-packets",
        &["--idle-timeout", "1s", "--poll-interval", "2s"],
    )?;
    let flow_log = dir.join("flows.jsonl");
    // Both packets from one CPU, so the second lands in the slot the first claimed (on
    // another CPU it would claim a slot of its own and announce itself in an event).
    pin_to_cpu(0)?;
    let socket = in_netns(&a.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    let port = socket.local_addr()?.port();
    socket.send_to(b"late", (OUTSIDE_IPV4, 7777))?;
    let wait_for_records = |count: usize| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while udp_records_from(&flow_log, port).len() < count {
            if Instant::now() > deadline {
                bail!("fewer than {count} records from port {port}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    };
    wait_for_records(1)?;
    socket.send_to(b"late", (OUTSIDE_IPV4, 7777))?;
    observer.wait_stat("late_packets", 1)?;
    wait_for_records(2)?;
    let out = observer.stop()?;
    let records: Vec<&FlowRecord> = out
        .records
        .iter()
        .filter(|r| r.protocol == IpProtocol::UDP && r.src.port == port)
        .collect();
    let packets: u64 = records.iter().map(|r| r.fwd.packets).sum();
    assert_eq!(
        (records.len(), packets),
        (2, 2),
        "one record per packet: {records:#?}"
    );
    Ok(())
}

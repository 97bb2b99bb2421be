//! Loss counters count packets, each packet once: a packet between two pods of the node
//! passes two hooks (the sender's ingress, the receiver's egress) and must not be counted
//! as lost twice. Privileged: real programs, real veths, real traffic.

mod support;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use anyhow::Result;
use observer::flow::IpProtocol;
use observer_lab::{Lab, in_netns};
use support::{Observer, require_root, scratch_dir};

#[test]
fn a_packet_lost_at_both_hooks_of_a_pod_to_pod_path_is_counted_once() -> Result<()> {
    require_root();
    let dir = scratch_dir("losses-once");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    // A 64-entry map and a 16-slot cache: most of the 1,000 flows overflow, at both hooks.
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--flow-map-entries",
            "64",
            "--flow-cache-slots",
            "16",
        ],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    // The receiver listens, so no ICMP errors come back to add packets.
    let receiver = in_netns(&b.netns, || UdpSocket::bind(("0.0.0.0", 9)))??;
    const FLOWS: usize = 1000;
    const PER_FLOW: usize = 2;
    let senders = in_netns(&a.netns, || {
        (0..FLOWS)
            .map(|_| UdpSocket::bind(("0.0.0.0", 0)))
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    for _ in 0..PER_FLOW {
        for socket in &senders {
            socket.send_to(b"pair", (b.ipv4, 9))?;
        }
    }
    let ports: std::collections::BTreeSet<u16> = senders
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    drop(receiver);
    let out = observer.stop()?;
    let sent = (FLOWS * PER_FLOW) as u64;
    let full = out.counter("flow_map_full");
    // Most packets found the map full, at both of their hooks; each is counted once.
    assert!(full > sent / 2, "{}", out.stats);
    assert!(
        full <= sent,
        "{full} losses for {sent} packets: {}",
        out.stats
    );
    // The overflow events still carry both directions: every flow is whole.
    let ours: Vec<_> = out
        .records
        .iter()
        .filter(|r| {
            r.protocol == IpProtocol::UDP
                && r.src.ip == IpAddr::V4(a.ipv4)
                && ports.contains(&r.src.port)
        })
        .collect();
    assert_eq!(ours.len(), FLOWS);
    for r in ours {
        assert_eq!(r.fwd.packets, PER_FLOW as u64, "{r:?}");
    }
    Ok(())
}

//! A connection's merged view: who opened it, the counts per direction (the largest any
//! hook saw, never their sum), and the record made from it.

use observer_common::{FlowStats, ip_proto, stats_flags};

use super::super::{
    ConnectionKey, Counts, Endpoint, FlowRecord, FlowState, IcmpInfo, IpProtocol, RecordEndpoint,
    TcpFlags, WallClock,
};
use super::{Connection, InterfaceNames, is_closed};

/// A connection's merged view.
pub(super) struct Summary {
    initiator: Endpoint,
    responder: Endpoint,
    fwd: Counts,
    rev: Counts,
    tcp_flags: u16,
    first_seen: u64,
    last_seen: u64,
    pub(super) closed: bool,
    icmp: Option<IcmpInfo>,
    interfaces: Vec<String>,
}

pub(super) fn summarize(
    key: &ConnectionKey,
    connection: &Connection,
    names: &InterfaceNames,
) -> Summary {
    let totals: Vec<(Endpoint, FlowStats)> = connection
        .observations
        .iter()
        .map(|o| (super::super::key::endpoints(&o.key).0, o.total()))
        .collect();
    // The initiator sent a SYN without ACK; failing that, it sent the first packet seen.
    let opener = totals
        .iter()
        .filter(|(_, s)| s.flags & stats_flags::SYN_WITHOUT_ACK != 0)
        .min_by_key(|(_, s)| s.first_seen_ns);
    let first = totals
        .iter()
        .filter(|(_, s)| s.packets > 0)
        .min_by_key(|(_, s)| s.first_seen_ns);
    let initiator = opener.or(first).map(|(src, _)| *src).unwrap_or(key.low);
    let responder = key.peer_of(initiator);

    // Both hooks of one node (source pod's and destination pod's interface) count the same
    // packets: a direction's count is the largest any hook saw, never their sum.
    let (mut fwd, mut rev) = (Counts::default(), Counts::default());
    let (mut fwd_flags, mut rev_flags) = (0u16, 0u16);
    let (mut first_seen, mut last_seen) = (u64::MAX, 0u64);
    for (src, stats) in &totals {
        let (counts, flags) = if *src == initiator {
            (&mut fwd, &mut fwd_flags)
        } else {
            (&mut rev, &mut rev_flags)
        };
        counts.packets = counts.packets.max(stats.packets);
        counts.bytes = counts.bytes.max(stats.bytes);
        *flags |= stats.tcp_flags;
        if stats.packets > 0 {
            first_seen = first_seen.min(stats.first_seen_ns);
        }
        last_seen = last_seen.max(stats.last_seen_ns);
    }
    if first_seen == u64::MAX {
        first_seen = last_seen;
    }
    let all_flags = fwd_flags | rev_flags | connection.end_flags;
    let closed = is_closed(key, fwd_flags, rev_flags, connection.end_flags);
    let icmp = connection
        .observations
        .iter()
        .filter(|o| matches!(o.key.protocol, ip_proto::ICMP | ip_proto::ICMPV6))
        .min_by_key(|o| {
            (
                super::super::key::endpoints(&o.key).0 != initiator,
                o.kernel.first_seen_ns,
            )
        })
        .map(|o| IcmpInfo {
            icmp_type: o.key.icmp_type,
            code: o.key.icmp_code,
        });
    let mut interfaces: Vec<String> = connection
        .observations
        .iter()
        .map(|o| {
            names
                .get(&o.key.ifindex)
                .cloned()
                .unwrap_or_else(|| format!("if{}", o.key.ifindex))
        })
        .collect();
    interfaces.sort();
    interfaces.dedup();
    Summary {
        initiator,
        responder,
        fwd,
        rev,
        tcp_flags: all_flags,
        first_seen,
        last_seen,
        closed,
        icmp,
        interfaces,
    }
}

impl Summary {
    pub(super) fn record(
        &self,
        key: &ConnectionKey,
        state: FlowState,
        clock: &WallClock,
    ) -> FlowRecord {
        FlowRecord {
            src: RecordEndpoint {
                ip: self.initiator.ip,
                port: self.initiator.port,
                identity: Default::default(),
            },
            dst: RecordEndpoint {
                ip: self.responder.ip,
                port: self.responder.port,
                identity: Default::default(),
            },
            protocol: IpProtocol(key.protocol),
            icmp: self.icmp,
            fwd: self.fwd,
            rev: self.rev,
            tcp_flags: TcpFlags(self.tcp_flags),
            first_seen: clock.wall(self.first_seen),
            last_seen: clock.wall(self.last_seen),
            state,
            node_name: None,
            interfaces: self.interfaces.clone(),
            non_first_fragments: key.non_first_fragment,
            service: None,
            policy: None,
            staged: None,
            first_seen_ns: self.first_seen,
            last_seen_ns: self.last_seen,
        }
    }
}

use observer_common::{FlowKey, FlowStats, direction, family, ip_proto, stats_flags, tcp_flags};

use super::{ConnectionTable, TableConfig};
use crate::flow::{FlowState, WallClock};

const SECOND: u64 = 1_000_000_000;

fn key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ifindex: u32, dir: u8) -> FlowKey {
    let mut key = FlowKey {
        src_port: sport,
        dst_port: dport,
        ifindex,
        protocol: ip_proto::TCP,
        family: family::IPV4,
        direction: dir,
        ..FlowKey::default()
    };
    key.src_addr[..4].copy_from_slice(&src);
    key.dst_addr[..4].copy_from_slice(&dst);
    key
}

fn stats(packets: u64, bytes: u64, first: u64, last: u64, flags: u16) -> FlowStats {
    FlowStats {
        packets,
        bytes,
        first_seen_ns: first,
        last_seen_ns: last,
        tcp_flags: flags,
        flags: if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
            stats_flags::SYN_WITHOUT_ACK
        } else {
            0
        },
        pad: [0; 4],
    }
}

fn names() -> super::InterfaceNames {
    [(1, "veth-a".to_string()), (2, "veth-b".to_string())].into()
}

fn table() -> ConnectionTable {
    ConnectionTable::new(
        TableConfig {
            idle_timeout_ns: 10 * SECOND,
            close_grace_ns: 2 * SECOND,
            report_interval_ns: 0,
            ..TableConfig::default()
        },
        WallClock::with_offset(0),
    )
}

const A: [u8; 4] = [10, 244, 0, 2];
const B: [u8; 4] = [10, 244, 0, 3];

#[test]
fn initiator_is_the_syn_sender_even_when_the_reply_was_polled_first() {
    let mut t = table();
    // Responder's key has the earlier first_seen (clock skew between CPUs), but only the
    // initiator sent SYN without ACK.
    t.record_poll(
        &key(B, 80, A, 40000, 1, direction::EGRESS),
        stats(3, 300, SECOND, 2 * SECOND, tcp_flags::SYN | tcp_flags::ACK),
    );
    // The union of the initiator's flags has ACK too; the kernel marks the SYN-only
    // segment separately.
    let mut opened = stats(
        4,
        400,
        SECOND + 1,
        2 * SECOND,
        tcp_flags::SYN | tcp_flags::ACK,
    );
    opened.flags = stats_flags::SYN_WITHOUT_ACK;
    t.record_poll(&key(A, 40000, B, 80, 1, direction::INGRESS), opened);
    let sweep = t.drain(&names());
    assert_eq!(sweep.records.len(), 1);
    let r = &sweep.records[0];
    assert_eq!(r.src.port, 40000);
    assert_eq!(r.dst.port, 80);
    assert_eq!((r.fwd.packets, r.fwd.bytes), (4, 400));
    assert_eq!((r.rev.packets, r.rev.bytes), (3, 300));
    assert_eq!(r.state, FlowState::Active);
    assert_eq!(sweep.release.len(), 2);
}

#[test]
fn two_hooks_on_one_node_merge_without_double_counting() {
    let mut t = table();
    let s = stats(10, 1000, SECOND, 2 * SECOND, tcp_flags::ACK);
    t.record_poll(&key(A, 5000, B, 80, 1, direction::INGRESS), s);
    t.record_poll(&key(A, 5000, B, 80, 2, direction::EGRESS), s);
    let r = t.drain(&names()).records.remove(0);
    assert_eq!(r.fwd.packets, 10);
    assert_eq!(r.rev.packets, 0);
    assert_eq!(
        r.interfaces,
        vec!["veth-a".to_string(), "veth-b".to_string()]
    );
}

#[test]
fn fin_both_ways_closes_after_the_grace_period() {
    let mut t = table();
    let fin = tcp_flags::FIN | tcp_flags::ACK;
    t.record_poll(
        &key(A, 5000, B, 80, 1, direction::INGRESS),
        stats(5, 500, SECOND, 3 * SECOND, tcp_flags::SYN | fin),
    );
    t.record_poll(
        &key(B, 80, A, 5000, 1, direction::EGRESS),
        stats(4, 400, SECOND, 3 * SECOND, fin),
    );
    assert!(
        t.sweep(4 * SECOND, &names()).records.is_empty(),
        "still in grace"
    );
    let sweep = t.sweep(5 * SECOND, &names());
    assert_eq!(sweep.records.len(), 1);
    assert_eq!(sweep.records[0].state, FlowState::Closed);
    assert_eq!(sweep.release.len(), 2);
    assert!(t.is_empty());
}

#[test]
fn rst_event_closes_before_any_poll() {
    let mut t = table();
    let k = key(A, 5000, B, 80, 1, direction::INGRESS);
    t.record_end(&k, &stats(1, 60, SECOND, SECOND, tcp_flags::RST));
    let sweep = t.sweep(4 * SECOND, &names());
    assert_eq!(sweep.records[0].state, FlowState::Closed);
    assert_eq!(sweep.records[0].fwd.packets, 1);
}

#[test]
fn idle_connections_expire_and_release_their_keys() {
    let mut t = table();
    let k = key(A, 5000, B, 53, 1, direction::INGRESS);
    t.record_poll(&k, stats(2, 200, SECOND, 2 * SECOND, 0));
    assert!(t.sweep(11 * SECOND, &names()).records.is_empty());
    let sweep = t.sweep(12 * SECOND, &names());
    assert_eq!(sweep.records[0].state, FlowState::Expired);
    assert_eq!(released_keys(&sweep.release), vec![k]);
}

#[test]
fn overflow_packets_add_to_the_map_counters() {
    let mut t = table();
    let k = key(A, 5000, B, 53, 1, direction::INGRESS);
    t.record_poll(&k, stats(2, 200, SECOND, 2 * SECOND, 0));
    t.record_overflow(&k, &stats(1, 100, 3 * SECOND, 3 * SECOND, 0));
    t.record_overflow(&k, &stats(1, 100, 4 * SECOND, 4 * SECOND, 0));
    let r = t.drain(&names()).records.remove(0);
    assert_eq!((r.fwd.packets, r.fwd.bytes), (4, 400));
}

#[test]
fn late_packets_of_a_written_connection_are_counted_once_in_a_new_one() {
    let mut t = table();
    let k = key(A, 5000, B, 53, 1, direction::INGRESS);
    t.record_poll(&k, stats(2, 200, SECOND, 2 * SECOND, 0));
    let first = t.sweep(12 * SECOND, &names());
    assert_eq!(released_keys(&first.release), vec![k]);
    // Before the release: one packet on the same CPU (only in the tail), one on another
    // CPU (a new-flow event, and in the tail).
    t.record_new_flow(&k, &stats(1, 100, 13 * SECOND, 13 * SECOND, 0));
    t.record_tail(&k, &stats(2, 200, 13 * SECOND, 13 * SECOND, 0));
    let r = t.drain(&names()).records.remove(0);
    assert_eq!((r.fwd.packets, r.fwd.bytes), (2, 200));
}

#[test]
fn active_connections_are_reported_periodically_only_with_new_traffic() {
    let mut t = ConnectionTable::new(
        TableConfig {
            idle_timeout_ns: 100 * SECOND,
            close_grace_ns: 2 * SECOND,
            report_interval_ns: 5 * SECOND,
            ..TableConfig::default()
        },
        WallClock::with_offset(0),
    );
    let k = key(A, 5000, B, 80, 1, direction::INGRESS);
    t.record_poll(&k, stats(2, 200, SECOND, 2 * SECOND, tcp_flags::ACK));
    assert!(t.sweep(3 * SECOND, &names()).records.is_empty());
    let first = t.sweep(6 * SECOND, &names());
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].state, FlowState::Active);
    assert!(first.release.is_empty());
    assert!(
        t.sweep(12 * SECOND, &names()).records.is_empty(),
        "no new traffic"
    );
    t.record_poll(&k, stats(3, 300, SECOND, 13 * SECOND, tcp_flags::ACK));
    assert_eq!(t.sweep(17 * SECOND, &names()).records.len(), 1);
}

fn released_keys(release: &[(FlowKey, FlowStats)]) -> Vec<FlowKey> {
    release.iter().map(|(key, _)| *key).collect()
}

fn limited_table(max_connections: usize) -> ConnectionTable {
    ConnectionTable::new(
        TableConfig {
            idle_timeout_ns: 100 * SECOND,
            close_grace_ns: 2 * SECOND,
            report_interval_ns: 0,
            max_connections,
        },
        WallClock::with_offset(0),
    )
}

#[test]
fn beyond_its_limit_the_table_evicts_the_least_recently_active_and_releases_their_keys() {
    let mut t = limited_table(32);
    // 40 connections; connection i was last active at second 10 + i.
    let keys: Vec<FlowKey> = (0..40)
        .map(|i| key(A, 10_000 + i, B, 80, 1, direction::INGRESS))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let last = (10 + i as u64) * SECOND;
        t.record_poll(k, stats(2, 200, SECOND, last, tcp_flags::ACK));
    }
    let sweep = t.sweep(60 * SECOND, &names());
    // Down to a sixteenth below the limit (30): the 10 oldest go, with their counts.
    assert_eq!(t.len(), 30);
    assert_eq!(sweep.records.len(), 10);
    let mut evicted: Vec<u16> = sweep.records.iter().map(|r| r.src.port).collect();
    evicted.sort_unstable();
    assert_eq!(evicted, (10_000..10_010).collect::<Vec<u16>>());
    for r in &sweep.records {
        assert_eq!(r.state, FlowState::Evicted);
        assert_eq!((r.fwd.packets, r.fwd.bytes), (2, 200));
    }
    let mut released = sweep.release.clone();
    released.sort_unstable_by_key(|(k, _)| k.src_port);
    assert_eq!(released_keys(&released), keys[..10].to_vec());
    assert_eq!(t.losses().evicted, 10);
    assert_eq!(t.losses().refused_packets, 0);
    // At or under the limit, nothing more goes.
    assert!(t.sweep(61 * SECOND, &names()).records.is_empty());
}

#[test]
fn at_twice_its_limit_only_packets_borne_by_events_are_refused_and_counted() {
    let mut t = limited_table(2);
    for port in 1..=4 {
        t.record_poll(
            &key(A, port, B, 80, 1, direction::INGRESS),
            stats(1, 100, SECOND, SECOND, 0),
        );
    }
    assert_eq!(t.len(), 4);
    // A fifth connection from events: the new-flow hint is dropped (the next read delivers
    // the key), the overflow packets have nowhere else to go and are counted as lost.
    let fifth = key(A, 5, B, 80, 1, direction::INGRESS);
    t.record_new_flow(&fifth, &stats(1, 100, SECOND, SECOND, 0));
    t.record_overflow(&fifth, &stats(3, 300, SECOND, SECOND, 0));
    assert_eq!(t.len(), 4);
    assert_eq!(t.losses().refused_packets, 3);
    // Map values and tails are always taken: they are bounded by the map and the keys
    // released, and refusing them would lose what eviction promised to keep.
    t.record_poll(&fifth, stats(4, 400, SECOND, 3 * SECOND, 0));
    t.record_tail(
        &key(A, 6, B, 80, 1, direction::INGRESS),
        &stats(2, 200, SECOND, SECOND, 0),
    );
    assert_eq!(t.len(), 6);
    assert_eq!(t.losses().refused_packets, 3);
    // Known connections still take everything.
    t.record_overflow(
        &key(A, 1, B, 80, 1, direction::INGRESS),
        &stats(1, 100, SECOND, 2 * SECOND, 0),
    );
    assert_eq!(t.losses().refused_packets, 3);
    // The sweep evicts down to the limit, the least recently active first.
    let evicted = t.sweep(4 * SECOND, &names()).records;
    assert_eq!(evicted.len(), 4);
    let mut records = t.drain(&names()).records;
    records.sort_by_key(|r| r.src.port);
    assert_eq!((records[0].src.port, records[0].fwd.packets), (1, 2));
    assert_eq!((records[1].src.port, records[1].fwd.packets), (5, 4));
}

#[test]
fn events_of_a_key_being_released_are_not_counted_again() {
    let mut t = table();
    let k = key(A, 5000, B, 53, 1, direction::INGRESS);
    // A read that started at 1 s found a packet counted at 1.5 s (the walk reached the key
    // after it); the record is written and the key released with what it reported.
    t.read_started(SECOND);
    let packet = stats(1, 100, 3 * SECOND / 2, 3 * SECOND / 2, 0);
    t.record_poll(&k, packet);
    let written = t.sweep(12 * SECOND, &names());
    assert_eq!(written.records[0].fwd.packets, 1);
    assert_eq!(written.release, vec![(k, packet)]);
    // The packet's new-flow event (stamped after the read started) arrives only now.
    t.record_new_flow(&k, &packet);
    t.record_end(&k, &stats(1, 100, 0, 3 * SECOND / 2, tcp_flags::FIN));
    assert!(t.is_empty(), "the packet is in the written record already");
    // The poll that deleted the key found nothing beyond the record: no tail. From then
    // on, the key's events are news.
    t.read_started(13 * SECOND);
    t.record_new_flow(&k, &stats(1, 100, 14 * SECOND, 14 * SECOND, 0));
    let r = t.drain(&names()).records.remove(0);
    assert_eq!(r.fwd.packets, 1);
}

#[test]
fn an_event_delayed_past_the_read_that_holds_its_packet_is_not_counted_again() {
    let mut t = table();
    let k = key(A, 5000, B, 53, 1, direction::INGRESS);
    // The read that started at 3 s holds both packets; the connection is written and its
    // key released.
    t.read_started(3 * SECOND);
    t.record_poll(&k, stats(2, 200, SECOND, 2 * SECOND, 0));
    let written = t.sweep(12 * SECOND, &names());
    assert_eq!(written.records[0].fwd.packets, 2);
    t.read_started(13 * SECOND);
    // The new-flow event of the second packet (another CPU, at 2 s) arrives only now.
    t.record_new_flow(&k, &stats(1, 100, 2 * SECOND, 2 * SECOND, 0));
    t.record_end(&k, &stats(1, 100, 0, 2 * SECOND, tcp_flags::FIN));
    assert!(t.is_empty(), "the packet is in the written record already");
    // A packet after the read is news.
    t.record_new_flow(&k, &stats(1, 100, 14 * SECOND, 14 * SECOND, 0));
    let r = t.drain(&names()).records.remove(0);
    assert_eq!((r.fwd.packets, r.fwd.bytes), (1, 100));
}

#[test]
fn a_connection_is_announced_once_when_it_opens_by_event_or_by_poll() {
    let mut t = table();
    let syn = stats(1, 60, SECOND, SECOND, tcp_flags::SYN);
    t.record_new_flow(&key(A, 40000, B, 80, 1, direction::INGRESS), &syn);
    // The same connection at the other pod's interface, and its reply: no new item.
    t.record_new_flow(&key(A, 40000, B, 80, 2, direction::EGRESS), &syn);
    let reply = stats(
        1,
        60,
        SECOND + 5,
        SECOND + 5,
        tcp_flags::SYN | tcp_flags::ACK,
    );
    t.record_new_flow(&key(B, 80, A, 40000, 2, direction::INGRESS), &reply);
    let started = t.take_started(&names());
    assert_eq!(started.len(), 1);
    let item = &started[0];
    assert_eq!(item.state, FlowState::Started);
    assert_eq!(
        (item.src.port, item.dst.port),
        (40000, 80),
        "oriented by the SYN"
    );
    assert_eq!(item.fwd.packets, 1);
    assert!(t.take_started(&names()).is_empty(), "announced once");
    // A connection whose event was lost is announced by the poll that finds it.
    t.record_poll(&key(A, 40001, B, 80, 1, direction::INGRESS), syn);
    assert_eq!(t.take_started(&names()).len(), 1);
    // Its records follow as usual.
    assert_eq!(t.drain(&names()).records.len(), 2);
}

#[test]
fn the_tail_of_a_written_connection_is_not_announced_again() {
    let mut t = table();
    let k = key(A, 40000, B, 80, 1, direction::INGRESS);
    t.record_poll(&k, stats(2, 120, SECOND, SECOND, tcp_flags::SYN));
    let _ = t.take_started(&names());
    let written = t.sweep(20 * SECOND, &names());
    assert_eq!(written.records.len(), 1, "expired");
    t.read_started(21 * SECOND);
    t.record_tail(&k, &stats(1, 60, 21 * SECOND, 21 * SECOND, tcp_flags::ACK));
    assert!(t.take_started(&names()).is_empty());
}

#[test]
fn past_the_limit_of_waiting_items_new_connections_are_counted_not_announced() {
    let mut t = table();
    let syn = stats(1, 60, SECOND, SECOND, tcp_flags::SYN);
    for port in 0..=super::MAX_STARTED as u16 {
        t.record_new_flow(&key(A, port, B, 80, 1, direction::INGRESS), &syn);
    }
    assert_eq!(t.started_shed(), 1);
    assert_eq!(t.take_started(&names()).len(), super::MAX_STARTED);
}

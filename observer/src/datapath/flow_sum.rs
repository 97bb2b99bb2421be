//! Summing a key's counters over CPUs and over the flow cache and the hash map: the one
//! definition both readers use.

use observer_common::FlowStats;

/// Adds one CPU's counters of a key (from the hash map or a cache slot) to its total:
/// counts add up, first/last seen are the min/max over values with packets, flags are OR-ed.
///
/// The kernel stamps a key's first packet on a CPU with the precise clock and later ones with
/// the coarse (tick) clock, which lags by up to a tick: last seen is never reported before
/// first seen.
pub(super) fn add(total: &mut FlowStats, v: &FlowStats) {
    if v.packets == 0 {
        return;
    }
    total.packets += v.packets;
    total.bytes += v.bytes;
    total.first_seen_ns = if total.first_seen_ns == 0 {
        v.first_seen_ns
    } else {
        total.first_seen_ns.min(v.first_seen_ns)
    };
    total.last_seen_ns = total
        .last_seen_ns
        .max(v.last_seen_ns)
        .max(total.first_seen_ns);
    total.tcp_flags |= v.tcp_flags;
    total.flags |= v.flags;
}

//! TC classifiers that count pod traffic per flow.
//!
//! Per packet: parse the headers (`parse.rs`), then ONE lookup/update of the per-CPU flow map.
//! The ring buffer is written only on flow events (first packet of a key on a CPU, TCP
//! FIN/RST) and when the map is full (the packet travels as an overflow event instead).
//! Failures of every kind are counted in a per-CPU array; nothing is lost silently.
//! The programs never change a packet's fate: they always return `TC_ACT_UNSPEC`.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map},
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TcContext,
};
use observer_common::{
    Counter, DEFAULT_FLOW_MAP_ENTRIES, DEFAULT_RING_BUFFER_BYTES, FlowEvent, FlowKey, FlowStats,
    direction, event_kind, key_flags, tcp_flags,
};
use parse::{Parsed, ParsedPacket};

/// Continue with the next program / default action: the observer never decides.
const TC_ACT_UNSPEC: i32 = -1;

/// Flow counters, one value per CPU so the per-packet update needs no atomics.
/// Userspace resizes it at load time (`--flow-map-entries`).
#[map]
static FLOWS: PerCpuHashMap<FlowKey, FlowStats> =
    PerCpuHashMap::with_max_entries(DEFAULT_FLOW_MAP_ENTRIES, 0);

/// Flow events (new, end, overflow). Userspace resizes it at load time (`--ringbuf-bytes`).
#[map]
static FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

/// Datapath counters indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Attached at TC ingress of a host-side pod interface: packets leaving the pod.
#[classifier]
pub fn flow_ingress(ctx: TcContext) -> i32 {
    observe(&ctx, direction::INGRESS);
    TC_ACT_UNSPEC
}

/// Attached at TC egress of a host-side pod interface: packets entering the pod.
#[classifier]
pub fn flow_egress(ctx: TcContext) -> i32 {
    observe(&ctx, direction::EGRESS);
    TC_ACT_UNSPEC
}

/// Does nothing: benchmarks attach it beside the flow programs to measure the cost floor.
#[classifier]
pub fn empty_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; TC programs do not migrate between CPUs while running.
        unsafe { *value += 1 }
    }
}

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    bump(Counter::PacketsSeen);
    match parse::parse(ctx) {
        Ok(Parsed::Flow(packet)) => account(ctx, dir, packet),
        Ok(Parsed::NonIp) => bump(Counter::NonIp),
        Err(reason) => bump(reason),
    }
}

#[inline(always)]
fn account(ctx: &TcContext, dir: u8, packet: ParsedPacket) {
    let mut key = packet.key;
    key.direction = dir;
    // SAFETY: reading a field of the context the kernel passed in.
    let raw = unsafe { &*ctx.skb.skb };
    key.ifindex = raw.ifindex;
    if key.flags & key_flags::NON_FIRST_FRAGMENT != 0 {
        bump(Counter::NonFirstFragments);
    }
    // A GSO super-packet stands for `gso_segs` wire segments.
    let segments = if raw.gso_segs > 1 {
        raw.gso_segs as u64
    } else {
        1
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let this = FlowStats {
        packets: segments,
        bytes: raw.len as u64,
        first_seen_ns: now,
        last_seen_ns: now,
        tcp_flags: packet.tcp_flags,
        flags: packet.stats_flags,
        pad: [0; 4],
    };

    let new_on_cpu;
    match FLOWS.get_ptr_mut(key) {
        Some(stats) => {
            // SAFETY: per-CPU value of an entry that exists; only this CPU writes it.
            let stats = unsafe { &mut *stats };
            new_on_cpu = stats.packets == 0;
            add(stats, &this);
        }
        None => {
            if FLOWS.insert(key, this, BPF_NOEXIST as u64).is_ok() {
                new_on_cpu = true;
            } else if let Some(stats) = FLOWS.get_ptr_mut(key) {
                // Another CPU created the entry between our lookup and insert.
                // SAFETY: as above.
                let stats = unsafe { &mut *stats };
                new_on_cpu = stats.packets == 0;
                add(stats, &this);
            } else {
                // The map is full: hand the packet to userspace through the ring buffer.
                bump(Counter::FlowMapFull);
                if !emit(event_kind::OVERFLOW, &key, &this) {
                    bump(Counter::RingBufOverflowFailed);
                }
                return;
            }
        }
    }
    if new_on_cpu && !emit(event_kind::NEW_FLOW, &key, &this) {
        bump(Counter::RingBufNewFlowFailed);
    }
    if packet.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0
        && !emit(event_kind::END, &key, &this)
    {
        bump(Counter::RingBufEndFailed);
    }
}

#[inline(always)]
fn add(stats: &mut FlowStats, packet: &FlowStats) {
    if stats.packets == 0 {
        stats.first_seen_ns = packet.first_seen_ns;
    }
    stats.packets += packet.packets;
    stats.bytes += packet.bytes;
    stats.last_seen_ns = packet.last_seen_ns;
    stats.tcp_flags |= packet.tcp_flags;
    stats.flags |= packet.flags;
}

/// Writes one event; false when the ring buffer has no room.
#[inline(always)]
fn emit(kind: u8, key: &FlowKey, stats: &FlowStats) -> bool {
    match FLOW_EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            // Fill the reserved slot in place: a 96-byte temporary would crowd the stack.
            let event = entry.as_mut_ptr();
            // SAFETY: `event` points to a reserved, exclusively owned FlowEvent slot.
            unsafe {
                (*event).key = *key;
                (*event).stats = *stats;
                (*event).kind = kind;
                (*event).pad = [0; 7];
            }
            entry.submit(0);
            true
        }
        None => false,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

//! TC classifiers that count pod traffic per flow.
//!
//! Per packet: parse the headers (`parse.rs`), then ONE update: of this CPU's flow cache slot
//! (a plain array, no helper call), or, for a key whose slot another flow holds, of the
//! shared flow map with atomic adds (no lock on the per-packet path).
//! The ring buffer is written only on flow events (first packet of a key in the cache or the
//! map, TCP FIN/RST) and when the map is full (the packet travels as an overflow event
//! instead).
//! Failures of every kind are counted in a per-CPU array; nothing is lost silently.
//! The programs never change a packet's fate: they always return `TC_ACT_UNSPEC`.
#![no_std]
#![no_main]
// The BPF target has no compare-and-swap, so core's atomic types offer no `fetch_add`; the
// intrinsic lowers to BPF's atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod parse;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    helpers::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::{classifier, map},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::TcContext,
};
use observer_common::{
    CachedFlow, ClockSample, Counter, DEFAULT_FLOW_CACHE_SLOTS, DEFAULT_FLOW_MAP_ENTRIES,
    DEFAULT_RING_BUFFER_BYTES, FlowEvent, FlowKey, FlowStats, MAX_ATTACHED_INTERFACES, TickClock,
    direction, event_kind, flow_cache_index, key_flags, slot_state, tcp_flags,
};
use parse::{Parsed, ParsedPacket};

/// Continue with the next program / default action: the observer never decides.
const TC_ACT_UNSPEC: i32 = -1;

/// The flow cache: `FLOW_CACHE_SLOTS` direct-mapped slots per CPU, looked up without a
/// helper call. Userspace sizes it to every possible CPU and maps it into its memory.
#[map]
static FLOW_CACHE: Array<CachedFlow> =
    Array::with_max_entries(DEFAULT_FLOW_CACHE_SLOTS, BPF_F_MMAPABLE);

/// Flow cache slots per CPU, a power of two, or 0 for no cache; set by userspace at load
/// (read-only afterwards, so the verifier treats it as a constant).
#[unsafe(no_mangle)]
static FLOW_CACHE_SLOTS: Global<u32> = Global::new(DEFAULT_FLOW_CACHE_SLOTS);

/// Flow counters for keys the flow cache does not hold (its slot is taken, or there is no
/// cache). One value per key, shared by the CPUs: its counts are added with atomic adds (a
/// per-CPU value per key would make the map grow with the node's CPUs: 340 MB at 128 CPUs
/// for the default size). Userspace resizes it at load time (`--flow-map-entries`).
#[map]
static FLOWS: HashMap<FlowKey, FlowStats> = HashMap::with_max_entries(DEFAULT_FLOW_MAP_ENTRIES, 0);

/// Flow events (new, end, overflow). Userspace resizes it at load time (`--ringbuf-bytes`).
#[map]
static FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

/// How to turn `jiffies` into nanoseconds (one entry, written by userspace at load).
#[map]
static TICK_CLOCK: Array<TickClock> = Array::with_max_entries(1, 0);

/// Where `clock_probe` leaves its reading (one entry).
#[map]
static CLOCK_SAMPLE: Array<ClockSample> = Array::with_max_entries(1, 0);

/// Datapath counters indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// The interfaces these programs are attached to (ifindex → 1), kept by userspace. Looked
/// up only when a packet is lost: never on the per-packet path.
#[map]
static ATTACHED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_ATTACHED_INTERFACES, 0);

/// Benchmarks only: the counter `count_one_tc` adds to (one per CPU).
#[map]
static LOWER_BOUND_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Benchmarks only: the words `count_slot_tc` adds to, one per flow cache slot. Userspace
/// sizes it like the flow cache when it loads the reference programs, else to one entry.
#[map]
static LOWER_BOUND_SLOTS: Array<u64> = Array::with_max_entries(1, 0);

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

/// Parses the headers into a flow key and touches its words, nothing more (no map, no
/// counter): what every flow observer must at least do. Benchmarks attach it beside the
/// flow programs as the second reference.
#[classifier]
pub fn parse_only_tc(ctx: TcContext) -> i32 {
    let mut key = core::mem::MaybeUninit::uninit();
    let key = zeroed_key(&mut key);
    if parse::parse(&ctx, key).is_ok() {
        let words = key.as_u64_words();
        let mut touched = 0u64;
        for word in words {
            // SAFETY: reading a valid, aligned word of the key.
            touched ^= unsafe { core::ptr::read_volatile(word) };
        }
        core::hint::black_box(touched);
    }
    TC_ACT_UNSPEC
}

/// Parses, then adds one to a per-CPU counter at a fixed index: the one map operation per
/// packet a counting observer cannot do without, with no flow told apart. A rung of the
/// benchmarks' ladder between the parse-only reference and the flow programs.
#[classifier]
pub fn count_one_tc(ctx: TcContext) -> i32 {
    let mut key = core::mem::MaybeUninit::uninit();
    let key = zeroed_key(&mut key);
    if parse::parse(&ctx, key).is_ok()
        && let Some(count) = LOWER_BOUND_COUNT.get_ptr_mut(0)
    {
        // SAFETY: this CPU's value.
        unsafe { *count += 1 }
    }
    TC_ACT_UNSPEC
}

/// Parses, then adds one to the flow's own word on this CPU, found as the flow cache finds
/// a slot: the least a per-flow counter does (no key compare, no bytes, times or flags).
/// The ladder's last rung below the flow programs.
#[classifier]
pub fn count_slot_tc(ctx: TcContext) -> i32 {
    let mut key = core::mem::MaybeUninit::uninit();
    let key = zeroed_key(&mut key);
    if parse::parse(&ctx, key).is_ok() {
        let slots = FLOW_CACHE_SLOTS.load();
        // SAFETY: helper without preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        if let Some(count) = LOWER_BOUND_SLOTS.get_ptr_mut(flow_cache_index(key, cpu, slots)) {
            // SAFETY: a word only this CPU's programs write.
            unsafe { *count += 1 }
        }
    }
    TC_ACT_UNSPEC
}

/// A flow key of zeroes, in `key`'s stack slot.
#[inline(always)]
fn zeroed_key(key: &mut core::mem::MaybeUninit<FlowKey>) -> &mut FlowKey {
    // SAFETY: zeroes all 48 bytes, after which any bit pattern is a valid FlowKey.
    unsafe {
        write_words(key.as_mut_ptr(), &[0; 6]);
        key.assume_init_mut()
    }
}

/// Never attached: userspace runs it (BPF_PROG_TEST_RUN) to read the clocks the
/// [`TickClock`] relates.
#[classifier]
pub fn clock_probe(_ctx: TcContext) -> i32 {
    if let Some(sample) = CLOCK_SAMPLE.get_ptr_mut(0) {
        // SAFETY: the map's only value; helpers without preconditions.
        unsafe {
            *sample = ClockSample {
                coarse_ns: bpf_ktime_get_coarse_ns(),
                jiffies: bpf_jiffies64(),
            }
        };
    }
    TC_ACT_UNSPEC
}

/// CLOCK_MONOTONIC at the start of the current tick. The verifier inlines `bpf_jiffies64`
/// as a load, where a clock helper is a call: this is the per-packet clock.
#[inline(always)]
fn tick_now() -> u64 {
    // SAFETY: helper without preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    match TICK_CLOCK.get(0) {
        Some(clock) => jiffies
            .wrapping_mul(clock.tick_ns)
            .wrapping_add(clock.offset_ns),
        None => 0,
    }
}

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; TC programs do not migrate between CPUs while running.
        unsafe { *value += 1 }
    }
}

/// Counts a lost (or unparsable) packet once, however many hooks it passes: a packet
/// between two pods of this node passes the sender's ingress hook, then the receiver's
/// egress hook. At the egress hook, a packet that entered the node through an attached
/// interface was counted at that interface's ingress hook, so it is not counted again.
#[inline(never)]
fn bump_loss(dir: u8, entered_through: u32, counter: Counter) {
    // SAFETY: a read of a value userspace writes whole; only its presence matters.
    if dir == direction::EGRESS && unsafe { ATTACHED.get(entered_through) }.is_some() {
        return;
    }
    bump(counter)
}

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    let mut key = core::mem::MaybeUninit::uninit();
    let key = zeroed_key(&mut key);
    match parse::parse(ctx, key) {
        Ok(Parsed::Flow(packet)) => account(ctx, dir, key, packet),
        Ok(Parsed::NonIp) => {
            bump(Counter::PacketsSeen);
            bump(Counter::NonIp)
        }
        Err(reason) => {
            bump(Counter::PacketsSeen);
            // SAFETY: reading a field of the context the kernel passed in.
            let entered_through = unsafe { (*ctx.skb.skb).ingress_ifindex };
            bump_loss(dir, entered_through, reason)
        }
    }
}

#[inline(always)]
fn account(ctx: &TcContext, dir: u8, key: &mut FlowKey, packet: ParsedPacket) {
    key.direction = dir;
    // SAFETY: reading a field of the context the kernel passed in.
    let raw = unsafe { &*ctx.skb.skb };
    key.ifindex = raw.ifindex;
    let key: &FlowKey = key;
    if key.flags & key_flags::NON_FIRST_FRAGMENT != 0 {
        bump(Counter::NonFirstFragments);
    }
    // A GSO super-packet stands for `gso_segs` wire segments.
    let segments = if raw.gso_segs > 1 {
        raw.gso_segs as u64
    } else {
        1
    };
    let mut this = FlowStats {
        packets: segments,
        bytes: raw.len as u64,
        first_seen_ns: 0,
        last_seen_ns: 0,
        tcp_flags: packet.tcp_flags,
        flags: packet.stats_flags,
        pad: [0; 4],
    };

    let slots = FLOW_CACHE_SLOTS.load();
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let cached = if slots == 0 {
        None
    } else {
        FLOW_CACHE.get_ptr_mut(flow_cache_index(key, cpu, slots))
    };
    if let Some(slot) = cached {
        // SAFETY: this CPU's slot; only this CPU's programs write it (userspace only flips
        // `state` from ACTIVE to RELEASED).
        let slot = unsafe { &mut *slot };
        // SAFETY: a valid, aligned field; userspace may write it concurrently.
        let state = unsafe { core::ptr::read_volatile(&slot.state) };
        if state != slot_state::ACTIVE {
            // Empty, or released by userspace: the flow starts over here.
            // SAFETY: helper without preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            this.first_seen_ns = now;
            this.last_seen_ns = now;
            // SAFETY: a valid, aligned key.
            unsafe { write_words(&mut slot.key, key.as_u64_words()) };
            // Userspace reads `key` and `stats` once it sees ACTIVE: volatile stores stay in
            // program order, and x86 makes them visible in that order.
            // SAFETY: a valid, aligned field.
            unsafe { core::ptr::write_volatile(&mut slot.stats, this) };
            // SAFETY: a valid, aligned field.
            unsafe { core::ptr::write_volatile(&mut slot.state, slot_state::ACTIVE) };
            slot.runs = slot.runs.wrapping_add(1);
            if !emit(event_kind::NEW_FLOW, key, &this) {
                bump(Counter::RingBufNewFlowFailed);
            }
            report_end(key, &this);
            return;
        }
        if same_key(&slot.key, key) {
            this.last_seen_ns = tick_now();
            add(&mut slot.stats, &this);
            slot.runs = slot.runs.wrapping_add(1);
            report_end(key, &this);
            return;
        }
        // Another flow holds the slot: count this one in the hash map.
    }
    // Runs that end in a cache slot are counted in its `runs`, on a line written anyway:
    // the counter array's line costs a cache miss per packet.
    bump(Counter::PacketsSeen);
    count_in_map(key, this, raw.ingress_ifindex);
}

/// Counts a packet in the flow hash map: the slow path, kept out of line so that the cache
/// path's code stays together.
/// `entered_through` is the interface the packet entered the node by, for [`bump_loss`].
#[inline(never)]
fn count_in_map(key: &FlowKey, mut this: FlowStats, entered_through: u32) {
    if let Some(stats) = FLOWS.get_ptr_mut(key) {
        // The common case: a flow the map already counts. Its first_seen is set, and
        // last_seen only needs the tick's resolution.
        this.last_seen_ns = tick_now();
        add_shared(stats, &this);
        report_end(key, &this);
        return;
    }
    // First packet of the flow in the map: first_seen orders the two directions (which
    // side spoke first), so it takes the precise clock.
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    this.first_seen_ns = now;
    this.last_seen_ns = now;
    if FLOWS.insert(key, this, BPF_NOEXIST as u64).is_ok() {
        if !emit(event_kind::NEW_FLOW, key, &this) {
            bump(Counter::RingBufNewFlowFailed);
        }
        report_end(key, &this);
        return;
    }
    match FLOWS.get_ptr_mut(key) {
        // Another CPU created the entry between our lookup and insert.
        Some(stats) => add_shared(stats, &this),
        None => {
            // Full: hand the packet to userspace through the ring buffer. The event goes
            // at every hook (each counts its direction); the counters count the packet
            // once.
            bump_loss(key.direction, entered_through, Counter::FlowMapFull);
            if !emit(event_kind::OVERFLOW, key, &this) {
                bump_loss(
                    key.direction,
                    entered_through,
                    Counter::RingBufOverflowFailed,
                );
            }
            return;
        }
    }
    report_end(key, &this);
}

/// Adds a packet to a flow map value other CPUs may update at the same moment.
///
/// Counts are atomic adds (one instruction each, no lock). The rest are plain stores:
/// last seen is the tick of the latest packet (CPUs racing store ticks of the same moment),
/// and flags only grow and change on a handful of a connection's packets, so they are
/// written only when they add a bit. A key is one direction on one interface, whose packets
/// one CPU handles at a time unless they are spread over queues; two CPUs adding different
/// flags to one key at the same instant could lose one, and FIN and RST also reach
/// userspace in their END events.
#[inline(always)]
fn add_shared(stats: *mut FlowStats, packet: &FlowStats) {
    use core::intrinsics::{AtomicOrdering::Relaxed, atomic_xadd};
    // SAFETY: `stats` points to a value of an existing map entry, 8-byte aligned; the
    // counts are only ever updated atomically, the other fields are read and written whole.
    unsafe {
        atomic_xadd::<u64, u64, { Relaxed }>(&raw mut (*stats).packets, packet.packets);
        atomic_xadd::<u64, u64, { Relaxed }>(&raw mut (*stats).bytes, packet.bytes);
        core::ptr::write_volatile(&raw mut (*stats).last_seen_ns, packet.last_seen_ns);
        let tcp = core::ptr::read_volatile(&raw const (*stats).tcp_flags);
        if tcp | packet.tcp_flags != tcp {
            core::ptr::write_volatile(&raw mut (*stats).tcp_flags, tcp | packet.tcp_flags);
        }
        let flags = core::ptr::read_volatile(&raw const (*stats).flags);
        if flags | packet.flags != flags {
            core::ptr::write_volatile(&raw mut (*stats).flags, flags | packet.flags);
        }
    }
}

/// TCP FIN or RST: tell userspace the connection is ending.
#[inline(always)]
fn report_end(key: &FlowKey, this: &FlowStats) {
    if this.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 && !emit(event_kind::END, key, this)
    {
        bump(Counter::RingBufEndFailed);
    }
}

/// Writes a key as six 64-bit words with volatile stores, so that LLVM keeps them as stores:
/// it would merge a zeroing or a copy into a `memset`/`memmove` call, a byte loop on BPF.
///
/// # Safety
/// `key` must be valid for writes and 8-byte aligned.
#[inline(always)]
unsafe fn write_words(key: *mut FlowKey, words: &[u64; 6]) {
    let out = key as *mut u64;
    for (i, word) in words.iter().enumerate() {
        // SAFETY: FlowKey is 48 bytes and 8-byte aligned (asserted in observer-common).
        unsafe { core::ptr::write_volatile(out.add(i), *word) };
    }
}

#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (a.as_u64_words(), b.as_u64_words());
    let mut differ = 0;
    for i in 0..6 {
        differ |= a[i] ^ b[i];
    }
    differ == 0
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

//! Types shared by the observer's kernel programs (`observer-ebpf`) and its userspace daemon.
//!
//! Every type is `#[repr(C)]` with explicit padding fields, so the kernel and userspace agree
//! on the layout byte for byte and no uninitialised padding ever reaches a map key. With the
//! `user` feature the types implement `aya::Pod` so userspace can read them from maps and the
//! ring buffer.
#![no_std]

/// Name of the per-CPU hash map of flow counters, keyed by [`FlowKey`].
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the flow cache: an array of [`CachedFlow`] slots, a fixed number per CPU.
pub const FLOW_CACHE_MAP: &str = "FLOW_CACHE";
/// Name of the kernel program's global holding the flow cache slots per CPU (0: no cache).
pub const FLOW_CACHE_SLOTS_GLOBAL: &str = "FLOW_CACHE_SLOTS";
/// Name of the ring buffer that carries [`FlowEvent`]s.
pub const FLOW_EVENTS_MAP: &str = "FLOW_EVENTS";
/// Name of the per-CPU array of datapath counters, indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the hash map of the interfaces the flow programs are attached to (ifindex → 1),
/// kept by userspace: a loss at the egress hook of a packet that entered the node through
/// one of them was already counted at its first hook, so it is not counted again.
pub const ATTACHED_MAP: &str = "ATTACHED";
/// Capacity of [`ATTACHED_MAP`]: interfaces one observer attaches to at most.
pub const MAX_ATTACHED_INTERFACES: u32 = 16_384;
/// Name of the array holding the [`TickClock`].
pub const TICK_CLOCK_MAP: &str = "TICK_CLOCK";
/// Name of the array `clock_probe` writes its [`ClockSample`] to.
pub const CLOCK_SAMPLE_MAP: &str = "CLOCK_SAMPLE";
/// Name of the classifier userspace runs (BPF_PROG_TEST_RUN, never attached) to sample the
/// kernel's clocks and calibrate the [`TickClock`].
pub const CLOCK_PROBE_PROGRAM: &str = "clock_probe";
/// Name of the TC program attached at the ingress hook (traffic leaving a pod).
pub const INGRESS_PROGRAM: &str = "flow_ingress";
/// Name of the TC program attached at the egress hook (traffic entering a pod).
pub const EGRESS_PROGRAM: &str = "flow_egress";
/// Name of a classifier that does nothing: the cost floor benchmarks compare against.
pub const EMPTY_PROGRAM: &str = "empty_tc";
/// Name of a classifier that only parses the headers into a flow key (no map): the floor
/// of any flow observer, which benchmarks compare against too.
pub const PARSE_ONLY_PROGRAM: &str = "parse_only_tc";
/// Name of a classifier that parses and adds one to a per-CPU counter: the benchmarks'
/// rung for "one map operation per packet".
pub const COUNT_ONE_PROGRAM: &str = "count_one_tc";
/// Name of a classifier that parses and adds one to the flow's own word, found as the flow
/// cache finds a slot: the benchmarks' rung for "the least a per-flow counter does".
pub const COUNT_SLOT_PROGRAM: &str = "count_slot_tc";
/// Name of the array `count_slot_tc` adds to (one entry unless the references are loaded).
pub const LOWER_BOUND_SLOTS_MAP: &str = "LOWER_BOUND_SLOTS";

/// Default capacity of the flow map (entries; one value each, shared by the CPUs).
pub const DEFAULT_FLOW_MAP_ENTRIES: u32 = 65_536;
/// Default slots of the flow cache per CPU (a power of two): 384 KiB per CPU.
pub const DEFAULT_FLOW_CACHE_SLOTS: u32 = 4096;
/// Default size of the flow-event ring buffer in bytes (a power of two, multiple of the page).
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 1 << 20;

/// Address family of a [`FlowKey`].
pub mod family {
    /// IPv4: the address occupies the first 4 bytes of the 16-byte field, the rest is zero.
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 6;
}

/// Hook at which a packet was seen, relative to the host-side interface.
pub mod direction {
    /// TC ingress of the host-side interface: the packet comes from the pod.
    pub const INGRESS: u8 = 0;
    /// TC egress of the host-side interface: the packet goes to the pod.
    pub const EGRESS: u8 = 1;
}

/// Bits of [`FlowKey::flags`].
pub mod key_flags {
    /// The key counts non-first IP fragments: they carry no transport header, so the ports
    /// are zero. Keeping them under a flagged key means they are never added to a real
    /// 5-tuple's counters.
    pub const NON_FIRST_FRAGMENT: u8 = 1;
}

/// Bits of [`FlowStats::flags`].
pub mod stats_flags {
    /// A TCP segment with SYN set and ACK clear was seen: this side opened the connection.
    pub const SYN_WITHOUT_ACK: u16 = 1;
}

/// The TCP flag bits as they appear in the header's 9 flag bits.
pub mod tcp_flags {
    /// FIN
    pub const FIN: u16 = 0x001;
    /// SYN
    pub const SYN: u16 = 0x002;
    /// RST
    pub const RST: u16 = 0x004;
    /// PSH
    pub const PSH: u16 = 0x008;
    /// ACK
    pub const ACK: u16 = 0x010;
    /// URG
    pub const URG: u16 = 0x020;
    /// ECE
    pub const ECE: u16 = 0x040;
    /// CWR
    pub const CWR: u16 = 0x080;
    /// NS (ECN nonce, RFC 3540, historic)
    pub const NS: u16 = 0x100;
}

/// IANA protocol numbers the datapath understands.
pub mod ip_proto {
    /// ICMP
    pub const ICMP: u8 = 1;
    /// TCP
    pub const TCP: u8 = 6;
    /// UDP
    pub const UDP: u8 = 17;
    /// ICMPv6
    pub const ICMPV6: u8 = 58;
    /// SCTP
    pub const SCTP: u8 = 132;
}

/// One observation point of one unidirectional flow: the map key.
///
/// The same packet crossing two pod interfaces on one node produces two keys (different
/// `ifindex` and `direction`); userspace merges them into one connection.
// 8-byte alignment lets the kernel program zero and copy it as six 64-bit words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address, network byte order (IPv4 in the first 4 bytes).
    pub src_addr: [u8; 16],
    /// Destination address, network byte order (IPv4 in the first 4 bytes).
    pub dst_addr: [u8; 16],
    /// Source port, host byte order. For ICMP echo request/reply: the echo identifier.
    pub src_port: u16,
    /// Destination port, host byte order. For ICMP echo request/reply: the echo identifier.
    pub dst_port: u16,
    /// Interface index where the packet was seen.
    pub ifindex: u32,
    /// IP protocol number (see [`ip_proto`]).
    pub protocol: u8,
    /// [`family::IPV4`] or [`family::IPV6`].
    pub family: u8,
    /// [`direction::INGRESS`] or [`direction::EGRESS`].
    pub direction: u8,
    /// See [`key_flags`].
    pub flags: u8,
    /// ICMP/ICMPv6 type, else 0.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code, else 0.
    pub icmp_code: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}

impl FlowKey {
    /// The key as 64-bit words, to hash, compare and copy it without a `memcmp`/`memcpy`
    /// (calls the BPF target turns into byte loops).
    #[inline(always)]
    pub fn as_u64_words(&self) -> &[u64; 6] {
        // SAFETY: FlowKey is repr(C), 48 bytes, 8-byte aligned, without implicit padding.
        unsafe { &*(self as *const FlowKey as *const [u64; 6]) }
    }

    /// The key as 32-bit words, to write addresses a word at a time (words 0-3 are
    /// `src_addr`, 4-7 `dst_addr`).
    #[inline(always)]
    pub fn as_words_mut(&mut self) -> &mut [u32; 12] {
        // SAFETY: as for `as_u64_words`; every bit pattern is a valid FlowKey.
        unsafe { &mut *(self as *mut FlowKey as *mut [u32; 12]) }
    }
}

/// Counters of one [`FlowKey`] on one CPU: the map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowStats {
    /// Wire packets: `gso_segs` for GSO packets, else 1.
    pub packets: u64,
    /// Bytes: the skb length seen at the hook (L2 header included; for GSO, the whole
    /// super-packet's length, i.e. the segments' payload and one set of headers).
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first packet counted here (this CPU's value
    /// of a map entry, or a cache slot since it was claimed).
    pub first_seen_ns: u64,
    /// CLOCK_MONOTONIC of the latest packet counted here: after the first packet, the start
    /// of the packet's tick (up to one tick early), from `jiffies` and the [`TickClock`].
    pub last_seen_ns: u64,
    /// Union of the TCP flags seen (see [`tcp_flags`]).
    pub tcp_flags: u16,
    /// See [`stats_flags`].
    pub flags: u16,
    /// Explicit padding, always zero.
    pub pad: [u8; 4],
}

/// How the kernel programs turn `jiffies` into CLOCK_MONOTONIC nanoseconds for
/// [`FlowStats::last_seen_ns`]: `jiffies * tick_ns + offset_ns` (wrapping).
///
/// `jiffies` is one memory load, while a clock helper is a call that reads the timekeeper's
/// cache line. The result is the start of the packet's tick, as `bpf_ktime_get_coarse_ns`
/// would give. Userspace measures both numbers when it loads the programs; until then they
/// are zero and so is `last_seen_ns` of later packets (userspace never reports a last seen
/// before the first).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TickClock {
    /// Nanoseconds per jiffy (1e9 / CONFIG_HZ).
    pub tick_ns: u64,
    /// CLOCK_MONOTONIC of jiffy 0, modulo 2^64.
    pub offset_ns: u64,
}

/// One reading of the kernel's clocks by `clock_probe`, taken in one program run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClockSample {
    /// `bpf_ktime_get_coarse_ns`: CLOCK_MONOTONIC at the latest tick.
    pub coarse_ns: u64,
    /// `bpf_jiffies64`.
    pub jiffies: u64,
}

/// Lifecycle of a [`CachedFlow`] slot. Only the kernel program of the slot's CPU writes a
/// slot, except `state`, which userspace sets to `RELEASED` once it has written the flow.
pub mod slot_state {
    /// Never used.
    pub const EMPTY: u32 = 0;
    /// Counts the flow in `key`.
    pub const ACTIVE: u32 = 1;
    /// Userspace is done with the flow: the next packet of any key may claim the slot.
    pub const RELEASED: u32 = 2;
}

/// One slot of the flow cache, the fast path in front of the flow hash map.
///
/// A hash map lookup is a helper call that hashes the whole key and walks a bucket; the
/// cache is a plain array the verifier inlines: each CPU owns the same power-of-two number
/// of slots, and a key lives in the one slot [`flow_cache_index`] names (direct-mapped). A key whose
/// slot holds another active flow is counted in the hash map instead. Userspace reads the
/// slots through a shared memory mapping, without system calls.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CachedFlow {
    /// The flow counted here while `state` is `ACTIVE`.
    pub key: FlowKey,
    /// Its counters on this slot's CPU.
    pub stats: FlowStats,
    /// See [`slot_state`].
    pub state: u32,
    /// Program runs that ended in this slot, over all the flows that held it: never reset,
    /// wrapping. They are not in [`Counter::PacketsSeen`]; userspace adds the differences
    /// between its reads.
    pub runs: u32,
}

/// The flow cache slot of `key` on `cpu`, with `slots` (a power of two) slots per CPU. The
/// kernel and userspace both call this: it is the one definition of where a key lives.
#[inline(always)]
pub fn flow_cache_index(key: &FlowKey, cpu: u32, slots: u32) -> u32 {
    let w = key.as_u64_words();
    // Three independent multiplies (they overlap in the pipeline), then one to mix the
    // halves: the high half of a product depends on every bit of its input.
    let h = (w[0] ^ w[3]).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (w[1] ^ w[4]).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (w[2] ^ w[5]).wrapping_mul(0x1656_67B1_9E37_79F9);
    let h = (h ^ (h >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    cpu.wrapping_mul(slots) + ((h >> 32) as u32 & slots.wrapping_sub(1))
}

/// What a [`FlowEvent`] reports.
pub mod event_kind {
    /// The first packet of a key on a CPU (the map entry was created or its per-CPU slot was
    /// empty, or the key claimed a free flow cache slot; a key counted in the map can so get
    /// a second one, which userspace ignores). `stats` holds that packet.
    pub const NEW_FLOW: u8 = 1;
    /// A TCP segment with FIN or RST. `stats` holds that packet.
    pub const END: u8 = 2;
    /// The flow map was full: the packet could not be counted in the map, so it travels
    /// here instead and userspace adds `stats` itself.
    pub const OVERFLOW: u8 = 3;
}

/// A record written to the ring buffer on flow events only, never for every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    /// The flow the event belongs to.
    pub key: FlowKey,
    /// The packet that caused the event (see [`event_kind`]).
    pub stats: FlowStats,
    /// One of [`event_kind`].
    pub kind: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 7],
}

/// Indices of the per-CPU counter array. Userspace sums them over CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every packet the programs ran on, except those counted in a flow cache slot
    /// ([`CachedFlow::runs`]), which userspace adds to this counter's sum.
    PacketsSeen = 0,
    /// Packets that are not IPv4/IPv6 (ARP, LLDP, ...): not flows, not errors.
    NonIp,
    /// Frame shorter than an Ethernet header.
    ErrEthernetTruncated,
    /// 802.1Q tag announced but cut short.
    ErrVlanTruncated,
    /// IPv4 header cut short.
    ErrIpv4Truncated,
    /// IPv4 header with IHL < 5 or a version that is not 4.
    ErrIpv4BadHeader,
    /// IPv6 fixed header cut short, or a version that is not 6.
    ErrIpv6Truncated,
    /// An IPv6 extension header cut short.
    ErrIpv6ExtensionTruncated,
    /// More IPv6 extension headers than the bounded walk follows.
    ErrIpv6TooManyExtensions,
    /// TCP/UDP/SCTP/ICMP header cut short.
    ErrTransportTruncated,
    /// Non-first IP fragments (counted under a flagged key without ports).
    NonFirstFragments,
    /// Packets whose flow could not get a map entry (map full); sent as overflow events.
    FlowMapFull,
    /// New-flow events lost because the ring buffer was full.
    RingBufNewFlowFailed,
    /// End (FIN/RST) events lost because the ring buffer was full.
    RingBufEndFailed,
    /// Packets lost entirely: the map was full and so was the ring buffer.
    RingBufOverflowFailed,
    /// `bpf_skb_pull_data` failed, so the headers could not be read.
    ErrPullData,
}

impl Counter {
    /// Number of counters (the array's size).
    pub const COUNT: u32 = 16;

    /// All counters in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::PacketsSeen,
        Counter::NonIp,
        Counter::ErrEthernetTruncated,
        Counter::ErrVlanTruncated,
        Counter::ErrIpv4Truncated,
        Counter::ErrIpv4BadHeader,
        Counter::ErrIpv6Truncated,
        Counter::ErrIpv6ExtensionTruncated,
        Counter::ErrIpv6TooManyExtensions,
        Counter::ErrTransportTruncated,
        Counter::NonFirstFragments,
        Counter::FlowMapFull,
        Counter::RingBufNewFlowFailed,
        Counter::RingBufEndFailed,
        Counter::RingBufOverflowFailed,
        Counter::ErrPullData,
    ];

    /// Stable snake_case name used in stats output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PacketsSeen => "packets_seen",
            Counter::NonIp => "non_ip",
            Counter::ErrEthernetTruncated => "parse_error_ethernet_truncated",
            Counter::ErrVlanTruncated => "parse_error_vlan_truncated",
            Counter::ErrIpv4Truncated => "parse_error_ipv4_truncated",
            Counter::ErrIpv4BadHeader => "parse_error_ipv4_bad_header",
            Counter::ErrIpv6Truncated => "parse_error_ipv6_truncated",
            Counter::ErrIpv6ExtensionTruncated => "parse_error_ipv6_extension_truncated",
            Counter::ErrIpv6TooManyExtensions => "parse_error_ipv6_too_many_extensions",
            Counter::ErrTransportTruncated => "parse_error_transport_truncated",
            Counter::NonFirstFragments => "non_first_fragments",
            Counter::FlowMapFull => "flow_map_full",
            Counter::RingBufNewFlowFailed => "ringbuf_new_flow_failed",
            Counter::RingBufEndFailed => "ringbuf_end_failed",
            Counter::RingBufOverflowFailed => "ringbuf_overflow_failed",
            Counter::ErrPullData => "parse_error_pull_data",
        }
    }

    /// True for the counters that mean a packet could not be parsed.
    pub const fn is_parse_error(self) -> bool {
        matches!(
            self,
            Counter::ErrEthernetTruncated
                | Counter::ErrVlanTruncated
                | Counter::ErrIpv4Truncated
                | Counter::ErrIpv4BadHeader
                | Counter::ErrIpv6Truncated
                | Counter::ErrIpv6ExtensionTruncated
                | Counter::ErrIpv6TooManyExtensions
                | Counter::ErrTransportTruncated
                | Counter::ErrPullData
        )
    }
}

// Layouts are part of the kernel/userspace contract: no implicit padding anywhere.
const _: () = assert!(core::mem::size_of::<FlowKey>() == 48);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 40);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 96);
const _: () = assert!(core::mem::size_of::<CachedFlow>() == 96);
const _: () = assert!(core::mem::align_of::<FlowKey>() == 8);
const _: () = assert!(DEFAULT_FLOW_CACHE_SLOTS.is_power_of_two());
const _: () = assert!(Counter::ALL.len() == Counter::COUNT as usize);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` integers and byte arrays with explicit padding fields: every
    // bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CachedFlow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TickClock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ClockSample {}
}

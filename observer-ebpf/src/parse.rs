//! Header parsing with direct packet access (no helper call per header).
//!
//! Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (IHL honoured, options skipped), IPv6 (a bounded
//! walk over hop-by-hop, routing, fragment, destination-options and AH headers), then the
//! TCP/UDP/SCTP ports or the ICMP/ICMPv6 type and code. A header that is cut short is an error
//! with its own counter; the packet is then not attributed to any flow.

use aya_ebpf::programs::TcContext;
use observer_common::{Counter, FlowKey, family, ip_proto, key_flags, stats_flags, tcp_flags};

const ETH_HEADER: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// How many IPv6 extension headers the walk follows before giving up (verifier bound).
const MAX_IPV6_EXTENSIONS: usize = 6;
/// Bytes of each transport header `transport` reads (the fixed part only).
const TCP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const SCTP_HEADER: usize = 12;
const ICMP_HEADER: usize = 8;
/// Bytes pulled into the linear area when the headers are not all there.
const HEADER_WINDOW: usize = 256;

/// What a packet that belongs to a flow adds to its counters (its key is written in place).
#[derive(Default)]
pub struct ParsedPacket {
    /// TCP flags of this segment, else 0.
    pub tcp_flags: u16,
    /// `stats_flags` bits this packet sets.
    pub stats_flags: u16,
}

/// Outcome of a successful parse.
pub enum Parsed {
    /// An IPv4/IPv6 packet; the key is filled in, except `ifindex` and `direction`.
    Flow(ParsedPacket),
    /// Not IP (ARP, LLDP, ...).
    NonIp,
}

/// `N` readable bytes at `offset` in the packet, or `None` when the packet is shorter.
/// Fields are read through the view rather than copied out: the BPF stack is 512 bytes.
#[inline(always)]
fn bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Option<Header<N>> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return None;
    }
    Some(Header((start + offset) as *const u8))
}

/// A bounds-checked view of `N` bytes of packet data.
#[derive(Clone, Copy)]
struct Header<const N: usize>(*const u8);

impl<const N: usize> core::ops::Index<usize> for Header<N> {
    type Output = u8;
    #[inline(always)]
    fn index(&self, i: usize) -> &u8 {
        // SAFETY: `bytes` checked that N bytes are readable; callers index below N.
        unsafe { &*self.0.add(i) }
    }
}

impl<const N: usize> Header<N> {
    /// The 4 bytes at `i` as a word in memory order (part of an address). Assembled from
    /// bytes: an unaligned word load or a `[u8; 16]` copy becomes a `memmove` call on BPF.
    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        u32::from_ne_bytes([self[i], self[i + 1], self[i + 2], self[i + 3]])
    }
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    ((hi as u16) << 8) | lo as u16
}

/// Parses one frame into `key` (all zero on entry). Errors name the counter to bump.
///
/// The key is written in place rather than returned: built as a value, LLVM splits it into
/// dozens of byte-sized variables and spills and re-zeroes them on every path.
#[inline(always)]
pub fn parse(ctx: &TcContext, key: &mut FlowKey) -> Result<Parsed, Counter> {
    pull_headers_if_paged(ctx)?;

    let eth = bytes::<ETH_HEADER>(ctx, 0).ok_or(Counter::ErrEthernetTruncated)?;
    let mut ethertype = be16(eth[12], eth[13]);
    let mut l3 = ETH_HEADER;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag = bytes::<4>(ctx, ETH_HEADER).ok_or(Counter::ErrVlanTruncated)?;
        ethertype = be16(tag[2], tag[3]);
        l3 = ETH_HEADER + 4;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(ctx, l3, key).map(Parsed::Flow),
        ETH_P_IPV6 => ipv6(ctx, l3, key).map(Parsed::Flow),
        _ => Ok(Parsed::NonIp),
    }
}

/// Makes the headers readable when they are not all in the skb's linear area (GSO or paged
/// skbs), by pulling the first `HEADER_WINDOW` bytes in.
///
/// Pulling is expensive and must stay the exception: every TCP segment the local stack sends
/// is a clone, and `bpf_skb_pull_data` unclones it (a new head, a copy) even when nothing
/// needs moving. A TCP sender's super-packets carry all their headers in the linear area but
/// their payload in pages, so "linear < len" alone would pull every one of them.
#[inline(always)]
fn pull_headers_if_paged(ctx: &TcContext) -> Result<(), Counter> {
    let linear = ctx.data_end() - ctx.data();
    let len = ctx.len() as usize;
    if linear >= HEADER_WINDOW || len <= linear {
        return Ok(());
    }
    if headers_end(ctx).is_some_and(|end| end <= linear) {
        return Ok(());
    }
    let want = if len < HEADER_WINDOW {
        len
    } else {
        HEADER_WINDOW
    };
    ctx.pull_data(want as u32).map_err(|_| Counter::ErrPullData)
}

/// Where the headers `parse` reads end, for the common shapes (untagged IPv4, or IPv6 without
/// extension headers); `None` when that is not known from the linear area alone, which makes
/// the caller pull.
#[inline(always)]
fn headers_end(ctx: &TcContext) -> Option<usize> {
    let eth = bytes::<ETH_HEADER>(ctx, 0)?;
    match be16(eth[12], eth[13]) {
        ETH_P_IPV4 => {
            let h = bytes::<20>(ctx, ETH_HEADER)?;
            let l4 = ETH_HEADER + ((h[0] & 0x0f) as usize) * 4;
            Some(l4 + transport_header_len(h[9])?)
        }
        ETH_P_IPV6 => {
            let h = bytes::<40>(ctx, ETH_HEADER)?;
            Some(ETH_HEADER + 40 + transport_header_len(h[6])?)
        }
        ETH_P_8021Q | ETH_P_8021AD => None,
        _ => Some(ETH_HEADER),
    }
}

/// Bytes of the transport header `transport` reads; `None` for IPv6 extension headers.
#[inline(always)]
fn transport_header_len(protocol: u8) -> Option<usize> {
    match protocol {
        ip_proto::TCP => Some(TCP_HEADER),
        ip_proto::SCTP => Some(SCTP_HEADER),
        ip_proto::UDP => Some(UDP_HEADER),
        ip_proto::ICMP | ip_proto::ICMPV6 => Some(ICMP_HEADER),
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTS => None,
        _ => Some(0),
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, l3: usize, key: &mut FlowKey) -> Result<ParsedPacket, Counter> {
    let h = bytes::<20>(ctx, l3).ok_or(Counter::ErrIpv4Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(Counter::ErrIpv4BadHeader);
    }
    let header_len = ((h[0] & 0x0f) as usize) * 4;
    if header_len < 20 {
        return Err(Counter::ErrIpv4BadHeader);
    }
    // Options must be present in full, even though their content is not needed.
    if header_len > 20 && bytes::<1>(ctx, l3 + header_len - 1).is_none() {
        return Err(Counter::ErrIpv4Truncated);
    }
    key.family = family::IPV4;
    key.protocol = h[9];
    let words = key.as_words_mut();
    words[0] = h.word(12);
    words[4] = h.word(16);
    let fragment_offset = be16(h[6], h[7]) & 0x1fff;
    if fragment_offset != 0 {
        key.flags = key_flags::NON_FIRST_FRAGMENT;
        return Ok(ParsedPacket::default());
    }
    transport(ctx, l3 + header_len, key)
}

#[inline(always)]
fn ipv6(ctx: &TcContext, l3: usize, key: &mut FlowKey) -> Result<ParsedPacket, Counter> {
    let h = bytes::<40>(ctx, l3).ok_or(Counter::ErrIpv6Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(Counter::ErrIpv6Truncated);
    }
    key.family = family::IPV6;
    let words = key.as_words_mut();
    for i in 0..4 {
        words[i] = h.word(8 + 4 * i);
        words[4 + i] = h.word(24 + 4 * i);
    }

    let mut next = h[6];
    let mut offset = l3 + 40;
    let mut done = false;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let e = bytes::<2>(ctx, offset).ok_or(Counter::ErrIpv6ExtensionTruncated)?;
                next = e[0];
                offset += (e[1] as usize + 1) * 8;
            }
            IPV6_AUTH => {
                let e = bytes::<2>(ctx, offset).ok_or(Counter::ErrIpv6ExtensionTruncated)?;
                next = e[0];
                offset += (e[1] as usize + 2) * 4;
            }
            IPV6_FRAGMENT => {
                let e = bytes::<8>(ctx, offset).ok_or(Counter::ErrIpv6ExtensionTruncated)?;
                next = e[0];
                offset += 8;
                if be16(e[2], e[3]) >> 3 != 0 {
                    key.protocol = next;
                    key.flags = key_flags::NON_FIRST_FRAGMENT;
                    return Ok(ParsedPacket::default());
                }
            }
            _ => {
                done = true;
                break;
            }
        }
        // The whole extension header must be present, not just its first bytes.
        if bytes::<1>(ctx, offset - 1).is_none() {
            return Err(Counter::ErrIpv6ExtensionTruncated);
        }
    }
    if !done {
        return Err(Counter::ErrIpv6TooManyExtensions);
    }
    key.protocol = next;
    transport(ctx, offset, key)
}

#[inline(always)]
fn transport(ctx: &TcContext, l4: usize, key: &mut FlowKey) -> Result<ParsedPacket, Counter> {
    let mut flags = 0u16;
    let mut stats = 0u16;
    match key.protocol {
        ip_proto::TCP => {
            let t = bytes::<TCP_HEADER>(ctx, l4).ok_or(Counter::ErrTransportTruncated)?;
            key.src_port = be16(t[0], t[1]);
            key.dst_port = be16(t[2], t[3]);
            flags = be16(t[12] & 0x01, t[13]);
            if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
                stats = stats_flags::SYN_WITHOUT_ACK;
            }
        }
        ip_proto::UDP => {
            let u = bytes::<UDP_HEADER>(ctx, l4).ok_or(Counter::ErrTransportTruncated)?;
            key.src_port = be16(u[0], u[1]);
            key.dst_port = be16(u[2], u[3]);
        }
        ip_proto::SCTP => {
            let s = bytes::<SCTP_HEADER>(ctx, l4).ok_or(Counter::ErrTransportTruncated)?;
            key.src_port = be16(s[0], s[1]);
            key.dst_port = be16(s[2], s[3]);
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let i = bytes::<ICMP_HEADER>(ctx, l4).ok_or(Counter::ErrTransportTruncated)?;
            key.icmp_type = i[0];
            key.icmp_code = i[1];
            // Echo request/reply: the identifier tells concurrent pings apart.
            let echo = if key.protocol == ip_proto::ICMP {
                matches!(i[0], 0 | 8)
            } else {
                matches!(i[0], 128 | 129)
            };
            if echo {
                let id = be16(i[4], i[5]);
                key.src_port = id;
                key.dst_port = id;
            }
        }
        _ => {}
    }
    Ok(ParsedPacket {
        tcp_flags: flags,
        stats_flags: stats,
    })
}

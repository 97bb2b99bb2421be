//! Direction-free identity of a connection, derived from the kernel's per-hook flow keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use observer_common::{FlowKey, family, ip_proto, key_flags};

/// One end of a connection: an address and a port (0 where the protocol has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IP address.
    pub ip: IpAddr,
    /// Port, or the ICMP echo identifier.
    pub port: u16,
}

/// The same for both directions of a connection and for every hook that saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// IP protocol number.
    pub protocol: u8,
    /// The lower of the two endpoints.
    pub low: Endpoint,
    /// The higher of the two endpoints.
    pub high: Endpoint,
    /// ICMP message class: echo request and reply share one class so a ping and its
    /// answers are one connection; other ICMP messages are keyed by type and code.
    pub icmp_class: u16,
    /// Non-first fragments have no ports and are kept apart from real 5-tuples.
    pub non_first_fragment: bool,
}

/// `icmp_class` of echo request/reply.
const ICMP_ECHO_CLASS: u16 = 0xffff;

impl ConnectionKey {
    /// Derives the connection of a kernel flow key; also returns the key's source endpoint.
    pub fn of(key: &FlowKey) -> (Self, Endpoint) {
        let (src, dst) = endpoints(key);
        let (low, high) = if src <= dst { (src, dst) } else { (dst, src) };
        let is_icmp = key.protocol == ip_proto::ICMP || key.protocol == ip_proto::ICMPV6;
        let icmp_class = if !is_icmp {
            0
        } else if matches!(
            (key.protocol, key.icmp_type),
            (ip_proto::ICMP, 0 | 8) | (ip_proto::ICMPV6, 128 | 129)
        ) {
            ICMP_ECHO_CLASS
        } else {
            u16::from(key.icmp_type) << 8 | u16::from(key.icmp_code)
        };
        let connection = Self {
            protocol: key.protocol,
            low,
            high,
            icmp_class,
            non_first_fragment: key.flags & key_flags::NON_FIRST_FRAGMENT != 0,
        };
        (connection, src)
    }

    /// The other end, seen from `side`.
    pub fn peer_of(&self, side: Endpoint) -> Endpoint {
        if side == self.low {
            self.high
        } else {
            self.low
        }
    }
}

/// Source and destination endpoints of a kernel flow key.
pub fn endpoints(key: &FlowKey) -> (Endpoint, Endpoint) {
    let ip = |raw: &[u8; 16]| -> IpAddr {
        if key.family == family::IPV4 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*raw))
        }
    };
    (
        Endpoint {
            ip: ip(&key.src_addr),
            port: key.src_port,
        },
        Endpoint {
            ip: ip(&key.dst_addr),
            port: key.dst_port,
        },
    )
}

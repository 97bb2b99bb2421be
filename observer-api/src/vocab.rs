//! The record's typed values and their one JSON spelling: IP protocol, TCP flags,
//! wall-clock timestamps and how a Service backend was found.
//!
//! Stages carry these as values (numbers, bits, nanoseconds, enums); their names exist
//! only where a record meets text: serde here, the proto conversion in `wire::convert`.

use std::fmt;

use observer_common::{ip_proto, tcp_flags};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An IP protocol number; its name (`TCP`, `ICMPv6`, ...) is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// TCP.
    pub const TCP: Self = Self(ip_proto::TCP);
    /// UDP.
    pub const UDP: Self = Self(ip_proto::UDP);
    /// SCTP.
    pub const SCTP: Self = Self(ip_proto::SCTP);
    /// ICMP.
    pub const ICMP: Self = Self(ip_proto::ICMP);
    /// ICMPv6.
    pub const ICMPV6: Self = Self(ip_proto::ICMPV6);

    const NAMED: [(Self, &'static str); 5] = [
        (Self::TCP, "TCP"),
        (Self::UDP, "UDP"),
        (Self::SCTP, "SCTP"),
        (Self::ICMP, "ICMP"),
        (Self::ICMPV6, "ICMPv6"),
    ];

    /// The name of a protocol the datapath parses, else None (the record then writes the
    /// number).
    pub fn known_name(self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, name)| *name)
    }

    /// Parses a record's spelling: a name in any case, or a number.
    pub fn parse(text: &str) -> Option<Self> {
        Self::NAMED
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(p, _)| *p)
            .or_else(|| text.parse().ok().map(Self))
    }

    /// Whether this is ICMP or ICMPv6.
    pub fn is_icmp(self) -> bool {
        self == Self::ICMP || self == Self::ICMPV6
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for IpProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "protocol {text:?} is not TCP, UDP, SCTP, ICMP, ICMPv6 or a number 0-255"
            ))
        })
    }
}

/// TCP flags as the header's bits (`observer_common::tcp_flags`), written as their names
/// in header order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    const NAMES: [(u16, &'static str); 9] = [
        (tcp_flags::FIN, "FIN"),
        (tcp_flags::SYN, "SYN"),
        (tcp_flags::RST, "RST"),
        (tcp_flags::PSH, "PSH"),
        (tcp_flags::ACK, "ACK"),
        (tcp_flags::URG, "URG"),
        (tcp_flags::ECE, "ECE"),
        (tcp_flags::CWR, "CWR"),
        (tcp_flags::NS, "NS"),
    ];

    /// Whether every bit of `bits` is set.
    pub fn contains(self, bits: u16) -> bool {
        self.0 & bits == bits
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Names of the flags set, in header order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }

    /// The bit of a flag's name (any case).
    pub fn bit(name: &str) -> Option<u16> {
        Self::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(bit, _)| *bit)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut bits = 0;
        for name in names {
            bits |= Self::bit(&name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "tcp flag {name:?} is not FIN, SYN, RST, PSH, ACK, URG, ECE, CWR or NS"
                ))
            })?;
        }
        Ok(Self(bits))
    }
}

/// A wall-clock time: nanoseconds since the Unix epoch, written as RFC 3339 in UTC with
/// as many fractional digits as it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Seconds since the epoch and the nanoseconds within that second (0..1e9), as
    /// `google.protobuf.Timestamp` holds them.
    pub fn to_parts(self) -> (i64, i32) {
        (
            self.0.div_euclid(1_000_000_000),
            self.0.rem_euclid(1_000_000_000) as i32,
        )
    }

    /// The inverse of [`Self::to_parts`]; None when out of range.
    pub fn from_parts(seconds: i64, nanos: i32) -> Option<Self> {
        if !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        seconds
            .checked_mul(1_000_000_000)?
            .checked_add(nanos.into())
            .map(Self)
    }

    /// Parses RFC 3339 (any offset; kept as the instant it names).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos()).ok().map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = OffsetDateTime::from_unix_timestamp_nanos(self.0.into())
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok());
        f.write_str(text.as_deref().unwrap_or("1970-01-01T00:00:00Z"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

/// How a Service connection's backend (`dst`) was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceBackend {
    /// The backend's own interface on this node saw the translated packets; the two sides
    /// were merged into one record.
    Observed,
    /// The node's NAT table named it (backends on other nodes).
    Conntrack,
    /// Neither: `dst` is the ClusterIP itself and no verdict is given.
    Unresolved,
}

impl ServiceBackend {
    /// Every value, in documented order.
    pub const ALL: [Self; 3] = [Self::Observed, Self::Conntrack, Self::Unresolved];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Observed => "observed",
            Self::Conntrack => "conntrack",
            Self::Unresolved => "unresolved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_numbers_with_derived_names() {
        assert_eq!(IpProtocol::TCP.to_string(), "TCP");
        assert_eq!(IpProtocol(47).to_string(), "47");
        assert_eq!(IpProtocol::parse("icmpv6"), Some(IpProtocol::ICMPV6));
        assert_eq!(IpProtocol::parse("47"), Some(IpProtocol(47)));
        assert_eq!(IpProtocol::parse("tpc"), None);
        let json = serde_json::to_string(&IpProtocol::SCTP).expect("json");
        assert_eq!(json, "\"SCTP\"");
        assert!(serde_json::from_str::<IpProtocol>("\"GRE\"").is_err());
    }

    #[test]
    fn flags_are_bits_written_in_header_order() {
        let flags: TcpFlags = serde_json::from_str(r#"["ACK","SYN","FIN"]"#).expect("flags");
        assert_eq!(flags.0, tcp_flags::FIN | tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(
            serde_json::to_string(&flags).expect("json"),
            r#"["FIN","SYN","ACK"]"#
        );
        assert!(serde_json::from_str::<TcpFlags>(r#"["XMAS"]"#).is_err());
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339_and_parts() {
        for text in [
            "2026-11-22T10:00:00.000000001Z",
            "2026-11-22T10:00:01.5Z",
            "1970-01-01T00:00:00Z",
        ] {
            let t = Timestamp::parse_rfc3339(text).expect("parses");
            assert_eq!(t.to_string(), text);
            let (s, n) = t.to_parts();
            assert_eq!(Timestamp::from_parts(s, n), Some(t));
        }
        let offset = Timestamp::parse_rfc3339("2026-11-22T12:00:00+02:00").expect("offset");
        assert_eq!(offset.to_string(), "2026-11-22T10:00:00Z");
        assert_eq!(Timestamp::from_parts(0, 1_000_000_000), None);
    }
}

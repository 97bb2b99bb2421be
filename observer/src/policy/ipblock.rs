//! ipBlock matching: every `cidr` minus its `except`s, unioned per rule into sorted,
//! disjoint address ranges searched by binary search.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::IPBlock;

use super::error::{FieldError, FieldProblem};

/// A set of IPv4 and IPv6 addresses stored as sorted, disjoint, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSet {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl IpSet {
    /// True if the set has no addresses.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the set. IPv4-mapped IPv6 addresses are treated as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }
}

/// Collects ipBlocks, then sorts and merges them into an [`IpSet`].
#[derive(Debug, Default)]
pub struct IpSetBuilder {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSetBuilder {
    /// Adds `cidr` minus every `except` of the same family. Host bits in any of them are
    /// ignored (the network is used), as CNIs do.
    pub fn add_block(&mut self, cidr: IpNet, except: &[IpNet]) {
        match cidr.trunc() {
            IpNet::V4(net) => {
                let holes = except.iter().filter_map(|e| match e.trunc() {
                    IpNet::V4(h) => Some((u32::from(h.network()), u32::from(h.broadcast()))),
                    IpNet::V6(_) => None,
                });
                let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
                subtract(lo, hi, holes.collect(), &mut self.v4);
            }
            IpNet::V6(net) => {
                let holes = except.iter().filter_map(|e| match e.trunc() {
                    IpNet::V6(h) => Some((u128::from(h.network()), u128::from(h.broadcast()))),
                    IpNet::V4(_) => None,
                });
                let (lo, hi) = (u128::from(net.network()), u128::from(net.broadcast()));
                subtract(lo, hi, holes.collect(), &mut self.v6);
            }
        }
    }

    /// Finishes the set.
    pub fn build(self) -> IpSet {
        IpSet {
            v4: merge(self.v4).into(),
            v6: merge(self.v6).into(),
        }
    }
}

/// Parses and validates one ipBlock; `field` is its path, for errors.
pub fn parse_ip_block(block: &IPBlock, field: &str) -> Result<(IpNet, Vec<IpNet>), FieldError> {
    let cidr = parse_cidr(&block.cidr, &format!("{field}.cidr"))?;
    let except = block
        .except
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| {
            let at = format!("{field}.except[{i}]");
            let except = parse_cidr(e, &at)?;
            // As the API server validates it: a strict subset of the cidr, same family.
            let inside = except.addr().is_ipv4() == cidr.addr().is_ipv4()
                && except.prefix_len() > cidr.prefix_len()
                && cidr.trunc().contains(&except.trunc());
            if !inside {
                return Err(FieldError::new(
                    at,
                    FieldProblem::ExceptOutsideCidr {
                        except: e.clone(),
                        cidr: block.cidr.clone(),
                    },
                ));
            }
            Ok(except)
        })
        .collect::<Result<_, _>>()?;
    Ok((cidr, except))
}

fn parse_cidr(s: &str, field: &str) -> Result<IpNet, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, FieldProblem::Missing));
    }
    s.parse::<IpNet>()
        .map_err(|_| FieldError::new(field, FieldProblem::InvalidCidr(s.to_owned())))
}

/// Integer address types with a successor and predecessor.
trait Addr: Copy + Ord {
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Addr for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Addr for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// Pushes the parts of `lo..=hi` not covered by `holes` onto `out`.
fn subtract<T: Addr>(lo: T, hi: T, mut holes: Vec<(T, T)>, out: &mut Vec<(T, T)>) {
    holes.sort_unstable();
    let mut start = Some(lo);
    for (h_lo, h_hi) in holes {
        let Some(s) = start else { break };
        if h_hi < s || h_lo > hi {
            continue;
        }
        if let Some(end) = h_lo.pred().filter(|_| h_lo > s) {
            out.push((s, end));
        }
        start = if h_hi >= hi { None } else { h_hi.succ() };
    }
    if let Some(s) = start {
        out.push((s, hi));
    }
}

/// Sorts ranges and merges overlapping or adjacent ones.
fn merge<T: Addr>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1 || last.1.succ() == Some(lo) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn in_ranges<T: Addr>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i.checked_sub(1)
        .and_then(|j| ranges.get(j))
        .is_some_and(|r| r.1 >= x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(blocks: &[(&str, &[&str])]) -> IpSet {
        let mut b = IpSetBuilder::default();
        for (cidr, except) in blocks {
            let except: Vec<IpNet> = except.iter().filter_map(|e| e.parse().ok()).collect();
            if let Ok(c) = cidr.parse() {
                b.add_block(c, &except);
            }
        }
        b.build()
    }

    fn has(s: &IpSet, ip: &str) -> bool {
        ip.parse().is_ok_and(|ip| s.contains(ip))
    }

    #[test]
    fn except_and_host_bits() {
        let s = set(&[("10.0.1.1/4", &["10.0.1.2/32"])]);
        assert!(has(&s, "0.0.0.1"));
        assert!(has(&s, "15.255.255.255"));
        assert!(!has(&s, "16.0.0.0"));
        assert!(!has(&s, "10.0.1.2"));
        assert!(has(&s, "10.0.1.3"));
        assert!(!has(&s, "::1"));
    }

    #[test]
    fn union_and_edges() {
        let s = set(&[
            ("0.0.0.0/0", &["0.0.0.0/8", "255.255.255.255/32"]),
            ("::/0", &["fe80::/10"]),
            ("10.0.0.0/8", &[]),
        ]);
        assert!(!has(&s, "0.1.2.3"));
        assert!(has(&s, "1.0.0.0"));
        assert!(!has(&s, "255.255.255.255"));
        assert!(has(&s, "255.255.255.254"));
        assert!(!has(&s, "fe80::1"));
        assert!(has(&s, "2001:db8::1"));
        assert!(has(&s, "::ffff:10.1.2.3"));
    }

    #[test]
    fn overlapping_excepts() {
        let s = set(&[(
            "10.0.0.0/16",
            &["10.0.0.0/24", "10.0.0.128/25", "10.0.255.0/24"],
        )]);
        assert!(!has(&s, "10.0.0.200"));
        assert!(has(&s, "10.0.1.0"));
        assert!(has(&s, "10.0.254.255"));
        assert!(!has(&s, "10.0.255.255"));
    }
}

//! The node's NAT table, as `/proc/net/nf_conntrack` shows it: which backend a connection
//! to a Service ClusterIP was DNATed to, for backends whose own interface is not on this
//! node. Parsing is pure; the daemon reads the file.

use std::collections::HashMap;
use std::net::IpAddr;

/// One conntrack entry: the original and the reply direction's tuples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatEntry {
    /// IP protocol number.
    pub protocol: u8,
    /// Original direction: (src, sport, dst, dport).
    pub original: (IpAddr, u16, IpAddr, u16),
    /// Reply direction: (src, sport, dst, dport). After DNAT, `src` is the backend.
    pub reply: (IpAddr, u16, IpAddr, u16),
}

/// A connection's original direction: protocol, (src, sport), (dst, dport).
type OriginalTuple = (u8, (IpAddr, u16), (IpAddr, u16));

/// Parsed conntrack entries, indexed by their original direction.
#[derive(Debug, Default, Clone)]
pub struct NatTable(HashMap<OriginalTuple, (IpAddr, u16)>);

impl NatTable {
    /// Parses the text of `/proc/net/nf_conntrack`; lines it cannot read are skipped. The
    /// first entry of a tuple wins (the kernel lists each connection once).
    pub fn parse(text: &str) -> Self {
        let mut index = HashMap::new();
        for e in text.lines().filter_map(parse_line) {
            let (src, sport, dst, dport) = e.original;
            index
                .entry((e.protocol, (src, sport), (dst, dport)))
                .or_insert((e.reply.0, e.reply.1));
        }
        Self(index)
    }

    /// The backend (address, port) a connection from `src:sport` to `dst:dport` was
    /// translated to, when it was.
    pub fn backend(
        &self,
        protocol: u8,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
    ) -> Option<(IpAddr, u16)> {
        self.0
            .get(&(protocol, src, dst))
            .copied()
            .filter(|backend| *backend != dst)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_line(line: &str) -> Option<NatEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let protocol: u8 = fields.get(3)?.parse().ok()?;
    let mut tuples = Vec::new();
    let mut current: [Option<&str>; 4] = [None; 4];
    for field in &fields[4..] {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let slot = match key {
            "src" => 0,
            "dst" => 1,
            "sport" => 2,
            "dport" => 3,
            _ => continue,
        };
        current[slot] = Some(value);
        if current.iter().all(Option::is_some) {
            tuples.push(current);
            current = [None; 4];
        }
    }
    let tuple = |t: &[Option<&str>; 4]| -> Option<(IpAddr, u16, IpAddr, u16)> {
        Some((
            t[0]?.parse().ok()?,
            t[2]?.parse().ok()?,
            t[1]?.parse().ok()?,
            t[3]?.parse().ok()?,
        ))
    };
    Some(NatEntry {
        protocol,
        original: tuple(tuples.first()?)?,
        reply: tuple(tuples.get(1)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ipv4     2 tcp      6 117 TIME_WAIT src=10.244.0.10 dst=10.96.0.10 sport=43210 dport=80 src=10.99.0.2 dst=10.244.0.10 sport=8080 dport=43210 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=10.244.0.10 dst=10.244.0.11 sport=5000 dport=53 [UNREPLIED] src=10.244.0.11 dst=10.244.0.10 sport=53 dport=5000 mark=0 zone=0 use=2
ipv6     10 tcp      6 431999 ESTABLISHED src=fd00:244::a dst=fd00:96::10 sport=40000 dport=80 src=fd00:244::b dst=fd00:244::a sport=8080 dport=40000 [ASSURED] mark=0 zone=0 use=2
garbage line
";

    #[test]
    fn finds_dnat_backends_and_ignores_untranslated_entries() {
        let table = NatTable::parse(SAMPLE);
        assert_eq!(table.len(), 3);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            table.backend(6, (ip("10.244.0.10"), 43210), (ip("10.96.0.10"), 80)),
            Some((ip("10.99.0.2"), 8080))
        );
        assert_eq!(
            table.backend(6, (ip("fd00:244::a"), 40000), (ip("fd00:96::10"), 80)),
            Some((ip("fd00:244::b"), 8080))
        );
        assert_eq!(
            table.backend(17, (ip("10.244.0.10"), 5000), (ip("10.244.0.11"), 53)),
            None,
            "not translated"
        );
    }
}

//! Suggestions as Calico `projectcalico.org/v3` NetworkPolicies: Allow rules (one per
//! peer and protocol; ICMP by type and code, other portless protocols by number, which
//! Kubernetes NetworkPolicy cannot express), selectors in Calico's expression syntax, `types` explicit, an
//! `order` (and optionally a tier) the user chooses: the format Calico users write by
//! hand. The same evidence comments and annotations as the Kubernetes format.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::generate::{PortlessTraffic, SuggestedRule, Suggestion};
use super::learn::Direction;
use super::learn::Peer;
use super::render::{header, metadata, peer_name, quoted};
use crate::flow::IpProtocol;

/// Where the Calico policies go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalicoPlacement {
    /// `spec.order` (Kubernetes NetworkPolicies sit at 1000 in the default tier).
    pub order: f64,
    /// A tier other than `default` (the policy's name is then `<tier>.<name>`, as Calico
    /// requires).
    pub tier: Option<String>,
}

/// A label selector in Calico's syntax: `a == 'x' && b == 'y'`, or `all()`.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "all()".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k} == '{v}'"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// One policy document (ending with `---`).
pub fn network_policy(s: &Suggestion, placement: &CalicoPlacement) -> String {
    let mut out = String::new();
    header(&mut out, s, None);
    let name = match &placement.tier {
        Some(tier) => format!("{tier}.{}", s.name),
        None => s.name.clone(),
    };
    metadata(&mut out, s, "projectcalico.org/v3", &name);
    let _ = writeln!(out, "spec:");
    if let Some(tier) = &placement.tier {
        let _ = writeln!(out, "  tier: {}", quoted(tier));
    }
    let _ = writeln!(out, "  order: {}", placement.order);
    let _ = writeln!(out, "  selector: {}", quoted(&selector(&s.selector)));
    let _ = writeln!(out, "  types: [Ingress, Egress]");
    for (field, end, rules, direction) in [
        ("ingress", "source", &s.ingress, Direction::Ingress),
        ("egress", "destination", &s.egress, Direction::Egress),
    ] {
        let portless: Vec<&PortlessTraffic> = s
            .not_expressible
            .iter()
            .filter(|t| t.direction == direction)
            .collect();
        if rules.is_empty() && portless.is_empty() {
            let _ = writeln!(out, "  {field}: []");
            continue;
        }
        let _ = writeln!(out, "  {field}:");
        for rule in rules {
            write_rules(&mut out, s, end, rule);
        }
        for traffic in portless {
            write_portless(&mut out, s, end, traffic);
        }
    }
    out.push_str("---\n");
    out
}

/// One Allow rule per protocol of the peer's ports.
fn write_rules(out: &mut String, s: &Suggestion, end: &str, rule: &SuggestedRule) {
    let mut by_protocol: BTreeMap<IpProtocol, Vec<String>> = BTreeMap::new();
    for p in &rule.ports {
        let port = if p.first == p.last {
            // With named ports: the name the destination's pods give it.
            match rule.port_names.get(&(p.protocol, p.first)) {
                Some(name) => quoted(name),
                None => p.first.to_string(),
            }
        } else {
            quoted(&format!("{}:{}", p.first, p.last))
        };
        by_protocol.entry(p.protocol).or_default().push(port);
    }
    let e = &rule.evidence;
    let _ = writeln!(
        out,
        "  # {}: {} flows, {} packets, {} bytes, {} .. {}, e.g. {}",
        peer_name(&rule.peer),
        e.flows,
        e.packets,
        e.bytes,
        e.first_seen,
        e.last_seen,
        e.example
    );
    let peer = peer_fields(s, &rule.peer, &rule.peer_labels);
    for (protocol, ports) in by_protocol {
        let _ = writeln!(out, "  - action: Allow");
        let _ = writeln!(out, "    protocol: {protocol}");
        if end == "source" {
            let _ = writeln!(out, "    source: {{{peer}}}");
            let _ = writeln!(out, "    destination: {{ports: [{}]}}", ports.join(", "));
        } else {
            let _ = writeln!(
                out,
                "    destination: {{{peer}, ports: [{}]}}",
                ports.join(", ")
            );
        }
    }
}

/// An Allow rule for traffic without ports: ICMP by its type and code, another protocol
/// by its number.
fn write_portless(out: &mut String, s: &Suggestion, end: &str, traffic: &PortlessTraffic) {
    let _ = writeln!(out, "  # {}", peer_name(&traffic.peer));
    let _ = writeln!(out, "  - action: Allow");
    // Its name (ICMP, ICMPv6) or, for a protocol without one, its number.
    let _ = writeln!(out, "    protocol: {}", traffic.protocol);
    if let Some((kind, code)) = traffic.icmp {
        let _ = writeln!(out, "    icmp: {{type: {kind}, code: {code}}}");
    }
    let peer = peer_fields(s, &traffic.peer, &traffic.peer_labels);
    let _ = writeln!(out, "    {end}: {{{peer}}}");
}

/// The fields of a rule's `source` or `destination` that name the peer.
fn peer_fields(s: &Suggestion, peer: &Peer, labels: &BTreeMap<String, String>) -> String {
    match peer {
        Peer::Workload(w) if w.namespace == s.subject.namespace => {
            format!("selector: {}", quoted(&selector(labels)))
        }
        Peer::Workload(w) => format!(
            "namespaceSelector: {}, selector: {}",
            quoted(&format!("projectcalico.org/name == '{}'", w.namespace)),
            quoted(&selector(labels))
        ),
        Peer::Node { ip, .. } => {
            format!(
                "nets: [{}]",
                quoted(&format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }))
            )
        }
        Peer::External { network, prefix } => {
            format!("nets: [{}]", quoted(&format!("{network}/{prefix}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_written_in_calico_syntax() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]);
        assert_eq!(selector(&labels), "app == 'web' && tier == 'front'");
        assert_eq!(selector(&BTreeMap::new()), "all()");
        let parsed =
            crate::policy::tiered::calico_selector::CalicoSelector::parse(&selector(&labels));
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}

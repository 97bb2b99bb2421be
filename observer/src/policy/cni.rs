//! The CNI profile: how the observer fills in what the NetworkPolicy API leaves to the
//! network plugin, so that a verdict matches what the cluster's CNI enforces.
//!
//! The API (networking.k8s.io/v1) defines TCP, UDP and SCTP only, and calls traffic with
//! host-networked pods undefined. The plugins that enforce it are not silent there:
//!
//! | | `calico` (default) | `cilium` | `generic` |
//! |---|---|---|---|
//! | ICMP, ICMPv6, other protocols to or from an isolated pod | dropped unless a rule without `ports` admits the peer | the same | no verdict |
//! | a host-networked pod as a peer | its node's address (ipBlocks apply) | no verdict (`undefined`) | no verdict (`undefined`) |
//! | a node to a pod on that node | always allowed (`node-exempt`) | the same | the same |
//!
//! Calico: Felix gives isolated endpoints a drop-all at the end of the default tier, which
//! ICMP reaches like any protocol; host-networked pods are not workload endpoints, so their
//! packets carry the node's address (projectcalico/calico#2797 for the node exemption).
//! Cilium: a port-less L3 rule admits every protocol and L4 rules admit only their ports;
//! host-networked pods carry the `host`/`remote-node` identity, which pod selectors never
//! and CIDR rules by default do not select. `generic` answers only what the API defines.
//! Judgements that rest on the profile carry the category `cni-dependent`.
//!
//! The order of the policy kinds (AdminNetworkPolicy, NetworkPolicy, Baseline; Calico
//! tiers) is the same under every profile: Calico's tiers reduce to the
//! network-policy-api order when no Calico policy is present.

use std::fmt;
use std::str::FromStr;

/// Which CNI's behaviour the observer assumes where the NetworkPolicy API is silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CniProfile {
    /// Calico (and the default: the network-policy-api and Calico documentation).
    #[default]
    Calico,
    /// Cilium.
    Cilium,
    /// Only what the NetworkPolicy API defines.
    Generic,
}

impl CniProfile {
    /// Every profile, in the order the help text lists them.
    pub const ALL: [CniProfile; 3] = [Self::Calico, Self::Cilium, Self::Generic];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Calico => "calico",
            Self::Cilium => "cilium",
            Self::Generic => "generic",
        }
    }

    /// Whether protocols NetworkPolicy does not name (ICMP, ICMPv6, others) are judged:
    /// an isolated pod drops them unless a rule without `ports` admits the peer.
    pub fn judges_other_protocols(self) -> bool {
        !matches!(self, Self::Generic)
    }

    /// Whether a host-networked pod is judged as its node's address (else its flows are
    /// `undefined`).
    pub fn host_network_is_node(self) -> bool {
        matches!(self, Self::Calico)
    }
}

impl fmt::Display for CniProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CniProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown CNI profile {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in CniProfile::ALL {
            assert_eq!(p.name().parse::<CniProfile>(), Ok(p));
        }
        assert_eq!("Cilium".parse::<CniProfile>(), Ok(CniProfile::Cilium));
        let err = "flannel".parse::<CniProfile>().unwrap_err();
        assert!(err.contains("\"flannel\"") && err.contains("calico, cilium, generic"));
    }

    #[test]
    fn only_generic_leaves_other_protocols_unjudged() {
        assert!(CniProfile::Calico.judges_other_protocols());
        assert!(CniProfile::Cilium.judges_other_protocols());
        assert!(!CniProfile::Generic.judges_other_protocols());
        assert!(CniProfile::Calico.host_network_is_node());
        assert!(!CniProfile::Cilium.host_network_is_node());
    }
}

//! What `check` asks of the tiered engine, without depending on the cluster module that
//! builds it: a judge of flows between addresses, and which lines it judges.

use std::net::IpAddr;

/// The tiered judges `check` uses besides the NetworkPolicy engine.
#[derive(Clone, Copy, Default)]
pub struct TieredJudges<'a> {
    /// Judges every line: the cluster holds Calico, AdminNetworkPolicy or
    /// ClusterNetworkPolicy objects.
    pub all: Option<&'a dyn TieredJudge>,
    /// Without `all`: judges, by the NetworkPolicies, what the API leaves to the CNI
    /// (`cni-dependent`): the lines of protocols NetworkPolicy does not name (ICMP...),
    /// and those with a host-networked pod, as `profile` says.
    pub cni_dependent: Option<&'a dyn TieredJudge>,
    /// Which of those lines `cni_dependent` judges.
    pub profile: crate::policy::CniProfile,
}

/// Judges flows by every policy kind: the tiered engine's verdict, for a cluster that
/// holds Calico, AdminNetworkPolicy or ClusterNetworkPolicy objects (the cluster module
/// builds it; this module only calls it, so that `policy` does not depend on `cluster`).
pub trait TieredJudge {
    /// The verdict on a flow between two addresses.
    fn judge(&self, flow: &AddressFlow) -> crate::policy::Verdict;

    /// The verdict with the staged policies enforced; `None` when the cluster has none.
    fn judge_staged(&self, _flow: &AddressFlow) -> Option<crate::policy::Verdict> {
        None
    }
}

/// A flow between two addresses, as a [`TieredJudge`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct AddressFlow {
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (TCP, UDP, SCTP).
    pub port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
}

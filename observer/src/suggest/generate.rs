//! Generation: learned edges in, one least-privilege NetworkPolicy per workload out, each
//! rule with the evidence it was learned from. Deterministic: the same edges give the same
//! suggestions, whatever order the records came in.

use std::collections::{BTreeMap, BTreeSet};

use super::learn::{Direction, EdgeKey, EdgeStats, ICMP_UNKNOWN, Learned, Peer, WorkloadId};
use crate::flow::{IpProtocol, Timestamp};

/// A pod the cluster state knows, for checking that a selector selects exactly its
/// workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownPod {
    /// Its workload.
    pub workload: WorkloadId,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its named container ports: (protocol, port, name).
    pub ports: Vec<(IpProtocol, u16, String)>,
}

/// Settings of generation.
#[derive(Clone, Copy, Debug)]
pub struct GenerateConfig {
    /// A workload with no new edge for this long before the window's end is `stable`.
    pub stable_after_ns: i64,
    /// At least this many consecutive ports collapse into one `endPort` range.
    pub range_threshold: usize,
    /// One policy per workload, or per namespace.
    pub granularity: Granularity,
    /// Write a port by the name the destination's pods give it, where they all do.
    pub named_ports: bool,
}

/// What one suggested policy selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Granularity {
    /// A workload's pods (`<workload>-observed`).
    #[default]
    Workload,
    /// Every pod of a namespace (`<namespace>-observed`), allowing what any of them did.
    Namespace,
}

/// The kind a namespace-wide suggestion's subject has.
pub const NAMESPACE_KIND: &str = "Namespace";

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            stable_after_ns: 600 * 1_000_000_000,
            range_threshold: 4,
            granularity: Granularity::Workload,
            named_ports: false,
        }
    }
}

/// Whether learning may still add to a suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    /// A new edge appeared within the stability period before the window's end.
    Learning,
    /// No new edge for the stability period.
    Stable,
}

impl Stability {
    /// Its name in annotations and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Learning => "learning",
            Self::Stable => "stable",
        }
    }
}

/// Destination ports of one protocol: `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    /// TCP, UDP or SCTP.
    pub protocol: IpProtocol,
    /// First port.
    pub first: u16,
    /// Last port (`first` for one port).
    pub last: u16,
}

/// One rule: a peer and the ports it used, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuggestedRule {
    /// Who.
    pub peer: Peer,
    /// For a workload peer: the labels its selector uses.
    pub peer_labels: BTreeMap<String, String>,
    /// Ports, sorted.
    pub ports: Vec<PortRange>,
    /// With `named_ports`: the names the destination's pods give single ports, by
    /// (protocol, port).
    pub port_names: BTreeMap<(IpProtocol, u16), String>,
    /// The edges' evidence, merged.
    pub evidence: EdgeStats,
}

/// Observed traffic of a protocol without ports (ICMP, ICMPv6, GRE...): the Kubernetes
/// format lists it in comments, the Calico format writes ICMP as a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortlessTraffic {
    /// Ingress or egress.
    pub direction: Direction,
    /// The other end.
    pub peer: Peer,
    /// For a workload peer: the labels its selector uses.
    pub peer_labels: BTreeMap<String, String>,
    /// Its protocol.
    pub protocol: IpProtocol,
    /// For ICMP and ICMPv6: the initiator's message type and code.
    pub icmp: Option<(u8, u8)>,
}

/// The suggestion for one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    /// The workload it selects.
    pub subject: WorkloadId,
    /// The policy's name: `<workload>-observed`.
    pub name: String,
    /// Its podSelector's labels.
    pub selector: BTreeMap<String, String>,
    /// Why the selector may select more than the workload, when it does.
    pub selector_note: Option<String>,
    /// Ingress rules, in peer order.
    pub ingress: Vec<SuggestedRule>,
    /// Egress rules, in peer order.
    pub egress: Vec<SuggestedRule>,
    /// Traffic NetworkPolicy cannot express (ICMP and other protocols), in order.
    pub not_expressible: Vec<PortlessTraffic>,
    /// First and last packet of the edges it was learned from.
    pub window: (Timestamp, Timestamp),
    /// The nodes whose observers saw them.
    pub nodes: BTreeSet<String>,
    /// Learning or stable.
    pub stability: Stability,
}

/// The suggestions for every workload that has edges, in workload order. `pods` are the
/// pods the cluster state knows (for the selectors' check); `window_end` is when learning
/// stopped (the stability is measured back from it).
pub fn generate(
    learned: &Learned,
    pods: &[KnownPod],
    window_end: Timestamp,
    config: &GenerateConfig,
) -> Vec<Suggestion> {
    let mut edges = learned.edges();
    if config.granularity == Granularity::Namespace {
        // Every workload's edges become its namespace's; peers stay workloads.
        let mut merged: BTreeMap<EdgeKey, EdgeStats> = BTreeMap::new();
        for (mut key, stats) in edges {
            key.subject = WorkloadId {
                kind: NAMESPACE_KIND.into(),
                name: key.subject.namespace.clone(),
                namespace: key.subject.namespace,
            };
            merged.entry(key).or_default().merge(&stats);
        }
        edges = merged;
    }
    let mut by_subject: BTreeMap<&WorkloadId, Vec<(&EdgeKey, &EdgeStats)>> = BTreeMap::new();
    for (key, stats) in &edges {
        by_subject
            .entry(&key.subject)
            .or_default()
            .push((key, stats));
    }
    let names = policy_names(by_subject.keys().copied());
    // Every workload's selector, once, against the pods of its namespace.
    let mut by_namespace: BTreeMap<&str, Vec<&KnownPod>> = BTreeMap::new();
    for pod in pods {
        by_namespace
            .entry(pod.workload.namespace.as_str())
            .or_default()
            .push(pod);
    }
    let port_names = if config.named_ports {
        named_ports(pods)
    } else {
        BTreeMap::new()
    };
    let mut selectors: BTreeMap<&WorkloadId, (BTreeMap<String, String>, Option<String>)> =
        BTreeMap::new();
    for key in edges.keys() {
        let peer = match &key.peer {
            Peer::Workload(w) => Some(w),
            _ => None,
        };
        for w in std::iter::once(&key.subject).chain(peer) {
            selectors.entry(w).or_insert_with(|| {
                if w.kind == NAMESPACE_KIND {
                    // Every pod of the namespace, on purpose.
                    return (BTreeMap::new(), None);
                }
                let labels = learned.labels(w).cloned().unwrap_or_default();
                let neighbours = by_namespace.get(w.namespace.as_str());
                selector_for(w, labels, neighbours.into_iter().flatten().copied())
            });
        }
    }
    by_subject
        .into_iter()
        .map(|(subject, edges)| {
            let (selector, selector_note) = selectors[subject].clone();
            let mut not_expressible = BTreeSet::new();
            let mut rules: [BTreeMap<&Peer, SuggestedRule>; 2] = Default::default();
            let (mut first, mut last) = (Timestamp(i64::MAX), Timestamp(i64::MIN));
            let mut newest_edge = Timestamp(i64::MIN);
            let mut nodes = BTreeSet::new();
            for (key, stats) in &edges {
                first = first.min(stats.first_seen);
                last = last.max(stats.last_seen);
                newest_edge = newest_edge.max(stats.first_seen);
                nodes.extend(stats.nodes.iter().cloned());
                if !matches!(
                    key.protocol,
                    IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP
                ) {
                    not_expressible.insert(PortlessTraffic {
                        direction: key.direction,
                        peer: key.peer.clone(),
                        peer_labels: match &key.peer {
                            Peer::Workload(w) => selectors[w].0.clone(),
                            _ => BTreeMap::new(),
                        },
                        protocol: key.protocol,
                        icmp: (key.protocol.is_icmp() && key.port != ICMP_UNKNOWN)
                            .then_some(((key.port >> 8) as u8, key.port as u8)),
                    });
                    continue;
                }
                let side = usize::from(key.direction == Direction::Egress);
                let rule = rules[side]
                    .entry(&key.peer)
                    .or_insert_with(|| SuggestedRule {
                        peer: key.peer.clone(),
                        peer_labels: match &key.peer {
                            Peer::Workload(w) => selectors[w].0.clone(),
                            _ => BTreeMap::new(),
                        },
                        ports: Vec::new(),
                        port_names: BTreeMap::new(),
                        evidence: EdgeStats::default(),
                    });
                rule.evidence.merge(stats);
                rule.ports.push(PortRange {
                    protocol: key.protocol,
                    first: key.port,
                    last: key.port,
                });
                // DNS over UDP falls back to TCP for long answers: allow both, at the
                // client's egress and at the DNS pods' ingress.
                if key.protocol == IpProtocol::UDP && key.port == 53 {
                    rule.ports.push(PortRange {
                        protocol: IpProtocol::TCP,
                        first: 53,
                        last: 53,
                    });
                }
            }
            // The destination: the subject for ingress, the peer for egress.
            let names_of = |ingress: bool, rule: &SuggestedRule| match (&rule.peer, ingress) {
                (_, true) => port_names.get(subject),
                (Peer::Workload(w), false) => port_names.get(w),
                _ => None,
            };
            let mut side = 0;
            let [ingress, egress] = rules.map(|rules| {
                let ingress = side == 0;
                side += 1;
                rules
                    .into_values()
                    .map(|mut rule| {
                        rule.ports = collapse(rule.ports, config.range_threshold);
                        if let Some(names) = names_of(ingress, &rule) {
                            rule.port_names = rule
                                .ports
                                .iter()
                                .filter(|p| p.first == p.last)
                                .filter_map(|p| {
                                    let name = names.get(&(p.protocol, p.first))?;
                                    Some(((p.protocol, p.first), name.clone()))
                                })
                                .collect();
                        }
                        rule
                    })
                    .collect()
            });
            let stable = window_end.0.saturating_sub(newest_edge.0) >= config.stable_after_ns;
            Suggestion {
                subject: subject.clone(),
                name: names[subject].clone(),
                selector,
                selector_note,
                ingress,
                egress,
                not_expressible: not_expressible.into_iter().collect(),
                window: (first, last),
                nodes,
                stability: if stable {
                    Stability::Stable
                } else {
                    Stability::Learning
                },
            }
        })
        .collect()
}

/// Per workload, the container port names every pod of it gives (a port some pod names
/// otherwise, or not at all, gets no name).
fn named_ports(pods: &[KnownPod]) -> BTreeMap<&WorkloadId, BTreeMap<(IpProtocol, u16), String>> {
    let mut by_workload: BTreeMap<&WorkloadId, Vec<&KnownPod>> = BTreeMap::new();
    for pod in pods {
        by_workload.entry(&pod.workload).or_default().push(pod);
    }
    by_workload
        .into_iter()
        .map(|(workload, pods)| {
            let mut names: BTreeMap<(IpProtocol, u16), String> = pods[0]
                .ports
                .iter()
                .map(|(protocol, port, name)| ((*protocol, *port), name.clone()))
                .collect();
            for pod in &pods[1..] {
                names.retain(|(protocol, port), name| {
                    pod.ports
                        .iter()
                        .any(|(p, n, m)| p == protocol && n == port && m == name)
                });
            }
            (workload, names)
        })
        .collect()
}

/// `<name>-observed`, or `<kind>-<name>-observed` where two workloads of a namespace share
/// a name (a Deployment and a StatefulSet `db`, say).
fn policy_names<'a>(
    subjects: impl Iterator<Item = &'a WorkloadId>,
) -> BTreeMap<&'a WorkloadId, String> {
    let subjects: Vec<_> = subjects.collect();
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for s in &subjects {
        *count.entry((&s.namespace, &s.name)).or_default() += 1;
    }
    subjects
        .into_iter()
        .map(|s| {
            let name = if count[&(s.namespace.as_str(), s.name.as_str())] > 1 {
                format!("{}-{}-observed", s.kind.to_ascii_lowercase(), s.name)
            } else {
                format!("{}-observed", s.name)
            };
            (s, name)
        })
        .collect()
}

/// The workload's selector: its pods' shared stable labels, checked against the known
/// pods of its namespace. When they also select another workload's pods, nothing the
/// workload's pods share tells them apart: the note says which.
pub fn selector_for<'p>(
    workload: &WorkloadId,
    labels: BTreeMap<String, String>,
    pods: impl IntoIterator<Item = &'p KnownPod>,
) -> (BTreeMap<String, String>, Option<String>) {
    let others: BTreeSet<String> = pods
        .into_iter()
        .filter(|p| p.workload.namespace == workload.namespace && p.workload != *workload)
        .filter(|p| labels.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .map(|p| format!("{}/{}", p.workload.kind, p.workload.name))
        .collect();
    let note = if labels.is_empty() {
        Some(format!(
            "{workload}: its pods share no stable label; the selector selects every pod of \
             the namespace"
        ))
    } else if !others.is_empty() {
        Some(format!(
            "{workload}: no label its pods share tells them from {}; the selector selects \
             those too",
            others.into_iter().collect::<Vec<_>>().join(", ")
        ))
    } else {
        None
    };
    (labels, note)
}

/// Sorts and merges ports; runs of at least `threshold` consecutive ports of a protocol
/// become one range.
fn collapse(mut ports: Vec<PortRange>, threshold: usize) -> Vec<PortRange> {
    ports.sort();
    ports.dedup();
    let mut out: Vec<PortRange> = Vec::new();
    let mut run: Vec<PortRange> = Vec::new();
    let flush = |run: &mut Vec<PortRange>, out: &mut Vec<PortRange>| {
        if run.len() >= threshold.max(2) {
            out.push(PortRange {
                protocol: run[0].protocol,
                first: run[0].first,
                last: run[run.len() - 1].last,
            });
        } else {
            out.append(run);
        }
        run.clear();
    };
    for port in ports {
        let continues = run.last().is_some_and(|p| {
            p.protocol == port.protocol && p.last.checked_add(1) == Some(port.first)
        });
        if !continues {
            flush(&mut run, &mut out);
        }
        run.push(port);
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(first: u16, last: u16) -> PortRange {
        PortRange {
            protocol: IpProtocol::TCP,
            first,
            last,
        }
    }

    #[test]
    fn consecutive_ports_collapse_past_the_threshold_only() {
        let ports = [8000, 8001, 8002, 8003, 9000, 9001, 80]
            .map(|p| tcp(p, p))
            .to_vec();
        assert_eq!(
            collapse(ports, 4),
            vec![
                tcp(80, 80),
                tcp(8000, 8003),
                tcp(9000, 9000),
                tcp(9001, 9001)
            ]
        );
    }

    #[test]
    fn a_selector_that_also_selects_another_workload_says_so() {
        let w = |name: &str| WorkloadId {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: name.into(),
        };
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        let pods = [
            KnownPod {
                workload: w("web"),
                labels: labels("web"),
                ports: Vec::new(),
            },
            KnownPod {
                workload: w("web-canary"),
                labels: labels("web"),
                ports: Vec::new(),
            },
        ];
        let (selector, note) = selector_for(&w("web"), labels("web"), &pods);
        assert_eq!(selector, labels("web"));
        assert!(
            note.as_deref()
                .is_some_and(|n| n.contains("Deployment/web-canary")),
            "{note:?}"
        );
        assert_eq!(selector_for(&w("web"), labels("web"), &pods[..1]).1, None);
    }
}

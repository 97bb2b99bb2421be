//! The policy viewer: for one workload, the policies that select its pods (per direction)
//! with their rules and how many of its connections each rule decided, and the edges the
//! policies allow between it and the other known workloads, marked observed or not. Joined
//! with the observed edges, a page draws "allowed but never used", "used and allowed" and
//! "used and denied" on one map. Pure.
//!
//! Which policies select the workload, and what they allow, is asked of the same engines
//! that judge flows (`enrich::judge_addresses`), with flows nobody sent: from a pod of
//! every other workload to a pod of this one (ingress) and back (egress), on every port
//! its observed connections and the candidate policies' rules name. So every policy kind
//! reads the same, with no second reading of selectors to drift from the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use super::policies::{self, rule_ports, rule_protocols, rule_text};
use super::service_map::{MapQuery, build, edge_id};
use crate::cluster::view::{ClusterView, Holder};
use crate::enrich::judge_addresses;
use crate::flow::{FlowRecord, IpProtocol};
use crate::policy::check::AddressFlow;
use crate::policy::{CniProfile, DirectionDecision, PolicyKind, PolicyRef, RuleAction, Verdict};

/// Ports probed per direction at most: observed ones first, then the rules'.
const MAX_PORTS: usize = 24;
/// The port probed in every direction, whatever is observed or named.
const PROBE_PORT: u16 = 1;

/// The viewer's answer.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyView {
    /// The workload.
    pub workload: WorkloadSummary,
    /// The policies that select its pods.
    pub policies: Vec<ViewedPolicy>,
    /// The edges policy allows between it and the other known workloads.
    pub allowed: Vec<AllowedEdge>,
    /// The map's edges with it at one end.
    pub observed: Vec<super::service_map::MapEdge>,
}

/// The workload viewed.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSummary {
    /// Its map node id.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Kind (`Pod` for a pod no controller owns).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Its pods in the cluster state.
    pub pods: usize,
}

/// A policy that selects the workload.
#[derive(Clone, Debug, Serialize)]
pub struct ViewedPolicy {
    /// The kind, as verdicts name it.
    pub kind: &'static str,
    /// Namespace; None for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The tier it sits in.
    pub tier: String,
    /// The directions it selects the workload's pods for.
    pub directions: Vec<&'static str>,
    /// The object as YAML.
    pub yaml: String,
    /// Its rules for those directions.
    pub rules: Vec<ViewedRule>,
}

/// One rule of a policy.
#[derive(Clone, Debug, Serialize)]
pub struct ViewedRule {
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// Its index in the direction's list.
    pub index: usize,
    /// `allow`, `deny`, `pass` or `log` as the rule says (`allow` for NetworkPolicy).
    pub action: String,
    /// The rule, as compact JSON.
    pub text: String,
    /// Held connections of this workload the rule decided.
    pub connections: u64,
    /// Whether any did: `false` is "allowed but never used" in the flows held.
    pub used: bool,
}

/// An edge the policies allow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowedEdge {
    /// The map edge id it would have.
    pub id: String,
    /// Initiator's node id.
    pub source: String,
    /// Responder's node id.
    pub target: String,
    /// Protocol.
    pub protocol: IpProtocol,
    /// Port.
    pub port: u16,
    /// The direction whose rule allows it (the viewed workload's side).
    pub direction: &'static str,
    /// The policy, as `Kind ns/name`.
    pub policy: String,
    /// The rule.
    pub rule_index: usize,
    /// Whether a held connection went this way.
    pub observed: bool,
}

/// A policy, as verdicts name it: kind, namespace, name.
type PolicyKey = (PolicyKind, Option<String>, String);

/// A rule, as verdicts name it: kind, namespace, name, direction, index.
type RuleKey = (PolicyKind, Option<String>, String, &'static str, usize);

/// The viewer for `workload` (a map node id `wl:NS/Kind/name`), from the cluster `view`
/// and the held `records` (oldest first). `Err` says what is wrong with the id, or that
/// the cluster state holds no pod of it.
pub fn view<'a>(
    view: &ClusterView,
    profile: CniProfile,
    records: impl IntoIterator<Item = &'a FlowRecord> + Clone,
    workload: &str,
) -> Result<PolicyView, String> {
    let (namespace, kind, name) = parse_id(workload)?;
    let groups = workloads(view);
    let Some(own) = groups.get(workload) else {
        return Err(format!(
            "workload {workload:?}: the cluster state holds no pod of it"
        ));
    };
    let observed_map = build(
        records.clone(),
        &MapQuery {
            workloads: vec![workload.to_owned()],
            max_edges: super::params::MAX_EDGES,
            ..MapQuery::default()
        },
    );
    let observed: Vec<_> = observed_map
        .edges
        .into_iter()
        .filter(|e| e.source == workload || e.target == workload)
        .collect();
    let used = rule_use(records, workload);

    // Ports: observed first, then what the candidate policies' rules name.
    let mut ports: [Vec<(IpProtocol, u16)>; 2] = [Vec::new(), Vec::new()];
    for edge in &observed {
        if edge.port == 0 {
            continue;
        }
        let side = usize::from(edge.source == workload);
        ports[side].push((edge.protocol, edge.port));
    }
    for (direction, side) in [("ingress", 0), ("egress", 1)] {
        for declared in policies::candidates(&view.objects, &namespace) {
            for rule in declared.rules(direction) {
                let mut numbers = Vec::new();
                rule_ports(rule, &mut numbers);
                let protocols = rule_protocols(rule);
                for port in numbers {
                    for protocol in &protocols {
                        ports[side].push((*protocol, port));
                    }
                }
            }
        }
    }
    // Every direction gets a probe on a port nothing names: a rule without ports allows
    // every port, and the edge it allows is drawn on port 1 ("any port").
    for list in &mut ports {
        list.insert(0, (IpProtocol::TCP, PROBE_PORT));
    }
    for list in &mut ports {
        let mut seen = BTreeSet::new();
        list.retain(|p| seen.insert(*p));
        list.truncate(MAX_PORTS);
    }

    let mut selecting: BTreeMap<PolicyKey, (String, BTreeSet<&str>)> = BTreeMap::new();
    let mut allowed: BTreeMap<(String, String, IpProtocol, u16), AllowedEdge> = BTreeMap::new();
    let observed_ids: BTreeSet<&str> = observed.iter().map(|e| e.id.as_str()).collect();
    for (peer_id, peer) in &groups {
        for (direction, side) in [("ingress", 0), ("egress", 1)] {
            let (source, target) = if side == 0 {
                ((peer_id.as_str(), peer), (workload, own))
            } else {
                ((workload, own), (peer_id.as_str(), peer))
            };
            for &(protocol, port) in &ports[side] {
                let asked = AddressFlow {
                    source: source.1.ip,
                    destination: target.1.ip,
                    protocol: protocol.0,
                    port: Some(port),
                    icmp: None,
                };
                let holder = |ip: IpAddr| view.holder(ip);
                let Some(verdict) = judge_addresses(
                    view,
                    profile,
                    &asked,
                    holder(asked.source),
                    holder(asked.destination),
                )
                .0
                else {
                    continue;
                };
                let decided = side_of(&verdict, direction);
                for step in &decided.tiers {
                    selecting
                        .entry((
                            step.policy.kind,
                            step.policy.namespace.clone(),
                            step.policy.name.clone(),
                        ))
                        .or_insert_with(|| (step.tier.clone(), BTreeSet::new()))
                        .1
                        .insert(direction);
                }
                // Drawn as allowed only when the flow would pass both ends: an edge this
                // workload's rule allows but the peer's policies deny is not open.
                if decided.decision != DirectionDecision::Allowed || !verdict.allowed {
                    continue;
                }
                let Some(step) = decided
                    .tiers
                    .iter()
                    .find(|s| s.action == RuleAction::Allow && s.rule_index.is_some())
                else {
                    continue;
                };
                let key = (source.0.to_string(), target.0.to_string(), protocol, port);
                let id = edge_id(&key.0, &key.1, protocol, port);
                allowed.entry(key.clone()).or_insert_with(|| AllowedEdge {
                    observed: observed_ids.contains(id.as_str()),
                    id,
                    source: key.0,
                    target: key.1,
                    protocol,
                    port,
                    direction,
                    policy: format!("{} {}", step.policy.kind.name(), step.policy),
                    rule_index: step.rule_index.unwrap_or_default(),
                });
            }
        }
    }
    // Every policy that applies to the workload's pods, whether or not it decided a probe
    // (a NetworkPolicy behind an admin policy's Allow, a tiered one passed over), asked of
    // the engine that judges its flows.
    for (policy, tier, direction) in applying(view, own.ip) {
        selecting
            .entry((policy.kind, policy.namespace, policy.name))
            .or_insert_with(|| (tier, BTreeSet::new()))
            .1
            .insert(direction);
    }
    // Policies that decided held connections but no probe met (a peer no longer held).
    for (kind, ns, name, direction, _) in used.keys() {
        selecting
            .entry((*kind, ns.clone(), name.clone()))
            .or_insert_with(|| (String::new(), BTreeSet::new()))
            .1
            .insert(direction);
    }

    let objects = &view.objects;
    let policies = selecting
        .into_iter()
        .map(|((kind, ns, name), (tier, directions))| {
            let declared = policies::find(objects, kind, ns.as_deref(), &name);
            let mut rules = Vec::new();
            for &direction in &directions {
                let listed = declared.as_ref().map_or(&[][..], |d| d.rules(direction));
                for (index, rule) in listed.iter().enumerate() {
                    let key = (kind, ns.clone(), name.clone(), direction, index);
                    let connections = used.get(&key).copied().unwrap_or(0);
                    rules.push(ViewedRule {
                        direction,
                        index,
                        action: rule["action"]
                            .as_str()
                            .map_or_else(|| "allow".to_owned(), str::to_ascii_lowercase),
                        text: rule_text(rule),
                        connections,
                        used: connections > 0,
                    });
                }
            }
            ViewedPolicy {
                kind: kind.name(),
                namespace: ns,
                name,
                tier,
                directions: directions.into_iter().collect(),
                yaml: declared.map(|d| d.yaml()).unwrap_or_default(),
                rules,
            }
        })
        .collect();
    Ok(PolicyView {
        workload: WorkloadSummary {
            id: workload.to_owned(),
            namespace,
            kind,
            name,
            pods: own.pods,
        },
        policies,
        allowed: allowed.into_values().collect(),
        observed,
    })
}

/// `wl:NS/Kind/name` split.
pub(super) fn parse_id(id: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = id
        .strip_prefix("wl:")
        .map(|rest| rest.splitn(3, '/').collect())
        .unwrap_or_default();
    match parts.as_slice() {
        [ns, kind, name] if !ns.is_empty() && !kind.is_empty() && !name.is_empty() => {
            Ok(((*ns).to_owned(), (*kind).to_owned(), (*name).to_owned()))
        }
        _ => Err(format!(
            "workload {id:?}: a workload node id, wl:NAMESPACE/Kind/name"
        )),
    }
}

/// A workload of the cluster state: one of its pods' addresses (the lowest) and its pods.
struct Group {
    ip: IpAddr,
    pods: usize,
}

/// Every workload the view's addresses belong to, by map node id.
fn workloads(view: &ClusterView) -> BTreeMap<String, Group> {
    let mut pods: BTreeMap<String, (IpAddr, BTreeSet<&str>)> = BTreeMap::new();
    for (ip, holder) in view.holders() {
        let Holder::Pod(pod) = holder else {
            continue;
        };
        let (kind, name) = match &pod.workload {
            Some(w) => (w.kind.as_str(), w.name.as_str()),
            None => ("Pod", pod.info.name.as_str()),
        };
        let id = format!("wl:{}/{kind}/{name}", pod.info.namespace);
        let entry = pods.entry(id).or_insert((*ip, BTreeSet::new()));
        entry.0 = entry.0.min(*ip);
        entry.1.insert(pod.info.name.as_str());
    }
    pods.into_iter()
        .map(|(id, (ip, names))| {
            (
                id,
                Group {
                    ip,
                    pods: names.len(),
                },
            )
        })
        .collect()
}

/// The enforced policies that apply to the pod holding `ip`, with their tier and the
/// direction they govern: the tiered engine's own list when it judges the cluster's flows,
/// else the NetworkPolicies of the pod's namespace whose selector selects it.
fn applying(view: &ClusterView, ip: IpAddr) -> Vec<(PolicyRef, String, &'static str)> {
    let mut found = Vec::new();
    if let Some(tiered) = view.tiered.as_deref() {
        let [ingress, egress] = tiered.applying(ip);
        for (direction, list) in [("ingress", ingress), ("egress", egress)] {
            found.extend(list.into_iter().map(|(p, tier)| (p, tier, direction)));
        }
        return found;
    }
    let Some(Holder::Pod(pod)) = view.holder(ip) else {
        return found;
    };
    for declared in &view.objects.policies {
        if declared.metadata.namespace.as_deref() != Some(pod.info.namespace.as_str()) {
            continue;
        }
        let Ok(compiled) = crate::policy::compile(declared) else {
            continue;
        };
        if !compiled.selects(&pod.info.labels) {
            continue;
        }
        for (direction, governs) in [
            ("ingress", compiled.affects_ingress()),
            ("egress", compiled.affects_egress()),
        ] {
            if governs {
                let policy = PolicyRef {
                    kind: PolicyKind::NetworkPolicy,
                    namespace: Some(compiled.namespace().to_owned()),
                    name: compiled.name().to_owned(),
                };
                found.push((policy, "networkpolicy".to_owned(), direction));
            }
        }
    }
    found
}

fn side_of<'v>(verdict: &'v Verdict, direction: &str) -> &'v crate::policy::DirectionVerdict {
    if direction == "ingress" {
        &verdict.ingress
    } else {
        &verdict.egress
    }
}

/// Per rule, the held connections of `workload` it decided (ingress rules where the
/// workload responded, egress rules where it initiated), each connection by its latest
/// record.
fn rule_use<'a>(
    records: impl IntoIterator<Item = &'a FlowRecord>,
    workload: &str,
) -> HashMap<RuleKey, u64> {
    let node = |end| super::service_map::node_of(end, super::service_map::Level::Workload).id;
    let latest = super::service_map::latest_per_connection(records, |r| r.policy.is_some());
    let mut used = HashMap::new();
    for record in latest.into_values() {
        let Some(verdict) = &record.policy else {
            continue;
        };
        let sides = [
            ("ingress", &verdict.ingress, node(&record.dst) == workload),
            ("egress", &verdict.egress, node(&record.src) == workload),
        ];
        for (direction, decided, ours) in sides {
            if !ours {
                continue;
            }
            for step in &decided.tiers {
                if let Some(index) = step.rule_index {
                    let key = (
                        step.policy.kind,
                        step.policy.namespace.clone(),
                        step.policy.name.clone(),
                        direction,
                        index,
                    );
                    *used.entry(key).or_default() += 1;
                }
            }
        }
    }
    used
}

#[cfg(test)]
mod tests;

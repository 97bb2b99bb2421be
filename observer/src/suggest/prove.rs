//! Proof and impact: the suggested policies, together with those already declared, judged
//! against every record they were learned from (all must be allowed), and the pairs of
//! known workloads that are allowed today and would be denied (the point of the policies).
//! Pure: snapshots and records in, figures out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::learn::{Direction, Learned, Peer, WorkloadId};
use crate::cluster::tiered_view::TieredView;
use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, ServiceBackend};
use crate::policy::check::{AddressFlow, LineOutcome, TieredJudge, judge_record};
use crate::policy::{
    DirectionDecision, Endpoint, FlowQuery, PolicySnapshot, Protocol, SnapshotInput, decide,
};

/// The proof's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// Records judged (TCP, UDP and SCTP between known ends).
    pub checked: u64,
    /// Of those, allowed by the declared and suggested policies together.
    pub allowed: u64,
    /// Records the suggestion would deny: each a bug. Examples, at most 20.
    pub denied: Vec<String>,
    /// Records denied with the suggestion and without it: a declared Deny rule (Calico,
    /// admin policies) decides them, which no added Allow can change (violations today,
    /// not the suggestion's doing).
    pub denied_by_declared: u64,
    /// Records not judged (ICMP and other protocols, unresolved Services, started items).
    pub not_judged: u64,
}

/// Judges every record with a tiered engine holding the declared and the suggested
/// policies: the proof when the cluster also holds Calico or admin policies, or the
/// suggestion is in the Calico format (which also judges ICMP and other protocols:
/// `portless`). `before` is the engine of the declared policies alone (`None`: no tiered
/// kind is declared, so nothing declared can deny what a suggestion allows).
pub fn prove_tiered(
    after: &TieredView,
    before: Option<&TieredView>,
    records: &[FlowRecord],
    portless: bool,
) -> Proof {
    let mut proof = Proof::default();
    for record in records {
        if !judgeable_by(record, portless) {
            proof.not_judged += 1;
            continue;
        }
        let flow = AddressFlow {
            source: record.src.ip,
            destination: record.dst.ip,
            protocol: record.protocol.0,
            port: (!record.protocol.is_icmp()).then_some(record.dst.port),
            icmp: record.icmp.map(|i| (i.icmp_type, i.code)),
        };
        proof.checked += 1;
        if after.judge(&flow).allowed {
            proof.allowed += 1;
        } else if before.is_some_and(|b| !b.judge(&flow).allowed) {
            proof.denied_by_declared += 1;
        } else if proof.denied.len() < 20 {
            proof.denied.push(example(record));
        }
    }
    proof
}

/// What the suggestion changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    /// Records the declared policies deny today (violations), with the deciding policies.
    pub violations_today: Vec<String>,
    /// How many pairs of known workloads are allowed today and denied with the suggestion.
    pub newly_denied: u64,
    /// The first 1,000 of them: (from, to, probed port).
    pub newly_denied_pairs: Vec<(WorkloadId, WorkloadId, u16)>,
}

/// Judges every record with `after` (declared plus suggested policies).
pub fn prove(after: &PolicySnapshot, records: &[FlowRecord]) -> Proof {
    let mut proof = Proof::default();
    for record in records {
        if !judgeable(record) {
            proof.not_judged += 1;
            continue;
        }
        match judge_record(after, record) {
            LineOutcome::Allow => {
                proof.checked += 1;
                proof.allowed += 1;
            }
            LineOutcome::Deny => {
                proof.checked += 1;
                if proof.denied.len() < 20 {
                    proof.denied.push(example(record));
                }
            }
            // hostNetwork pods (undefined), ends unknown to the state: not a proof either way.
            LineOutcome::Undefined | LineOutcome::NotEvaluable => proof.not_judged += 1,
        }
    }
    proof
}

/// The violations of `records` under `before`, and the pairs of known workloads that
/// `before` allows and `after` denies. A workload's pod is `representatives[w]`
/// (`namespace/pod` and its address); each pair is probed on a port its destination was
/// seen serving (TCP 80 if none).
pub fn impact(
    before: &PolicySnapshot,
    after: &PolicySnapshot,
    records: &[FlowRecord],
    learned: &Learned,
    representatives: &BTreeMap<WorkloadId, (String, IpAddr)>,
) -> Impact {
    let mut impact = Impact::default();
    let mut seen = BTreeSet::new();
    for record in records {
        if record.state == FlowState::Started
            || record.verdict_kind() != Some(crate::policy::VerdictKind::Deny)
        {
            continue;
        }
        let line = format!("{} ({})", example(record), deciding(record));
        if seen.insert(line.clone()) && impact.violations_today.len() < 100 {
            impact.violations_today.push(line);
        }
    }
    // The port each workload was seen serving on, first by order.
    let mut serving: BTreeMap<WorkloadId, (IpProtocol, u16)> = BTreeMap::new();
    for key in learned.edges().into_keys() {
        if key.direction == Direction::Ingress && matches!(key.peer, Peer::Workload(_)) {
            serving
                .entry(key.subject)
                .or_insert((key.protocol, key.port));
        }
    }
    // Each representative resolved once per snapshot, then every pair judged without
    // allocating.
    let reps: Vec<(&WorkloadId, &(String, IpAddr))> = representatives.iter().collect();
    let resolve = |snapshot: &PolicySnapshot| -> Vec<Option<Endpoint>> {
        reps.iter()
            .map(|(_, (pod, ip))| {
                let (namespace, name) = pod.split_once('/')?;
                let id = snapshot.pod_id(namespace, name)?;
                Some(Endpoint::Pod { id, ip: Some(*ip) })
            })
            .collect()
    };
    let (ends_before, ends_after) = (resolve(before), resolve(after));
    for (i, (from, _)) in reps.iter().enumerate() {
        for (j, (to, _)) in reps.iter().enumerate() {
            if i == j {
                continue;
            }
            let (protocol, port) = serving.get(*to).copied().unwrap_or((IpProtocol::TCP, 80));
            let Some(protocol) = Protocol::of_ip(protocol) else {
                continue;
            };
            let query = |ends: &[Option<Endpoint>]| {
                Some(FlowQuery {
                    src: ends[i]?,
                    dst: ends[j]?,
                    port,
                    protocol,
                })
            };
            let (Some(q_before), Some(q_after)) = (query(&ends_before), query(&ends_after)) else {
                continue;
            };
            if decide(before, &q_before).allowed && !decide(after, &q_after).allowed {
                impact.newly_denied += 1;
                if impact.newly_denied_pairs.len() < 1_000 {
                    impact
                        .newly_denied_pairs
                        .push(((*from).clone(), (*to).clone(), port));
                }
            }
        }
    }
    impact
}

/// Whether the proof judges a record: a connection's record (not its started item) of
/// TCP, UDP or SCTP with a pod end and, for a Service, a known backend.
pub fn judgeable(record: &FlowRecord) -> bool {
    judgeable_by(record, false)
}

/// [`judgeable`], for a format whose rules also name protocols without ports (Calico's:
/// `portless`).
pub fn judgeable_by(record: &FlowRecord, portless: bool) -> bool {
    record.state != FlowState::Started
        && (portless
            || matches!(
                record.protocol,
                IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP
            ))
        && record
            .service
            .as_ref()
            .is_none_or(|s| s.backend != ServiceBackend::Unresolved)
        && (is_pod(&record.src) || is_pod(&record.dst))
}

fn is_pod(end: &RecordEndpoint) -> bool {
    end.identity.pod.is_some()
}

fn name(end: &RecordEndpoint) -> String {
    match (&end.identity.namespace, &end.identity.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        _ => end.ip.to_string(),
    }
}

fn example(record: &FlowRecord) -> String {
    format!(
        "{} {} -> {}:{}",
        record.protocol,
        name(&record.src),
        name(&record.dst),
        record.dst.port
    )
}

/// The policies that decided a denied record, per denying direction.
fn deciding(record: &FlowRecord) -> String {
    let Some(verdict) = &record.policy else {
        return "no verdict".into();
    };
    let mut out = Vec::new();
    for (direction, d) in [("ingress", &verdict.ingress), ("egress", &verdict.egress)] {
        if d.decision == DirectionDecision::Denied {
            let policies: Vec<String> = d.tiers.iter().map(|t| t.policy.to_string()).collect();
            out.push(format!("{direction} denied by {}", policies.join(", ")));
        }
    }
    out.join("; ")
}

/// The declared policies against what was observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// Rules of declared NetworkPolicies no recorded flow was allowed by in the window
    /// (candidates to remove): `namespace/name ingress|egress rule N`.
    pub unused_rules: Vec<String>,
    /// Known workloads no declared policy selects, in either direction.
    pub unselected_workloads: Vec<WorkloadId>,
}

/// Which declared rules the records' verdicts (made when they were written) name as
/// allowing, and which known workloads no declared policy isolates.
pub fn existing(
    declared: &SnapshotInput,
    before: &PolicySnapshot,
    records: &[FlowRecord],
    representatives: &BTreeMap<WorkloadId, (String, IpAddr)>,
) -> Existing {
    let used = super::unused::used_rules(records);
    let mut unused_rules = Vec::new();
    for policy in &declared.policies {
        for (direction, rules) in [("ingress", &policy.ingress), ("egress", &policy.egress)] {
            for rule in 0..rules.as_ref().map_or(0, |r| r.len()) {
                let key = (
                    crate::policy::PolicyKind::NetworkPolicy,
                    policy.namespace.clone(),
                    policy.name.clone(),
                    direction,
                    rule,
                );
                if !used.contains(&key) {
                    unused_rules.push(format!(
                        "{}/{} {direction} rule {rule}",
                        policy.namespace, policy.name
                    ));
                }
            }
        }
    }
    unused_rules.sort();
    // A workload is unselected when, probed with any other workload, neither its egress
    // nor its ingress is isolated.
    let reps: Vec<(&WorkloadId, Option<Endpoint>)> = representatives
        .iter()
        .map(|(w, (pod, ip))| {
            let end = pod.split_once('/').and_then(|(ns, name)| {
                Some(Endpoint::Pod {
                    id: before.pod_id(ns, name)?,
                    ip: Some(*ip),
                })
            });
            (w, end)
        })
        .collect();
    let mut unselected_workloads = Vec::new();
    for (i, (workload, mine)) in reps.iter().enumerate() {
        let (Some(mine), Some(other)) = (
            mine,
            reps.iter()
                .enumerate()
                .find(|(j, (_, e))| *j != i && e.is_some())
                .and_then(|(_, (_, e))| *e),
        ) else {
            continue;
        };
        let judge = |src, dst| {
            crate::policy::evaluate(
                before,
                &FlowQuery {
                    src,
                    dst,
                    port: 80,
                    protocol: Protocol::Tcp,
                },
            )
        };
        let out = judge(*mine, other).egress.decision;
        let into = judge(other, *mine).ingress.decision;
        if out == DirectionDecision::NotIsolated && into == DirectionDecision::NotIsolated {
            unselected_workloads.push((*workload).clone());
        }
    }
    Existing {
        unused_rules,
        unselected_workloads,
    }
}

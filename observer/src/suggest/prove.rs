//! Proof and impact: the suggested policies, together with those already declared, judged
//! against every record they were learned from (all must be allowed), and the pairs of
//! known workloads that are allowed today and would be denied (the point of the policies).
//! Pure: snapshots and records in, figures out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::learn::{Direction, Learned, Peer, WorkloadId};
use crate::flow::{FlowRecord, FlowState, IpProtocol, RecordEndpoint, ServiceBackend};
use crate::policy::check::{LineOutcome, judge_record};
use crate::policy::{DirectionDecision, PolicySnapshot};

/// The proof's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// Records judged (TCP, UDP and SCTP between known ends).
    pub checked: u64,
    /// Of those, allowed by the declared and suggested policies together.
    pub allowed: u64,
    /// Records the suggestion would deny: each a bug. Examples, at most 20.
    pub denied: Vec<String>,
    /// Records not judged (ICMP and other protocols, unresolved Services, started items).
    pub not_judged: u64,
}

/// What the suggestion changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    /// Records the declared policies deny today (violations), with the deciding policies.
    pub violations_today: Vec<String>,
    /// Pairs of known workloads (from, to, probed port) allowed today and denied with the
    /// suggestion.
    pub newly_denied_pairs: Vec<(WorkloadId, WorkloadId, u16)>,
}

/// Judges every record with `after` (declared plus suggested policies).
pub fn prove(after: &PolicySnapshot, records: &[FlowRecord]) -> Proof {
    let mut proof = Proof::default();
    for record in records {
        let judged = record.state != FlowState::Started
            && matches!(
                record.protocol,
                IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP
            )
            && record
                .service
                .as_ref()
                .is_none_or(|s| s.backend != ServiceBackend::Unresolved)
            && (is_pod(&record.src) || is_pod(&record.dst));
        if !judged {
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
    let mut serving: BTreeMap<&WorkloadId, (IpProtocol, u16)> = BTreeMap::new();
    for key in learned.edges.keys() {
        if key.direction == Direction::Ingress && matches!(key.peer, Peer::Workload(_)) {
            serving
                .entry(&key.subject)
                .or_insert((key.protocol, key.port));
        }
    }
    for (from, from_pod) in representatives {
        for (to, to_pod) in representatives {
            if from == to {
                continue;
            }
            let (protocol, port) = serving.get(to).copied().unwrap_or((IpProtocol::TCP, 80));
            let probe = probe(from_pod, to_pod, protocol, port);
            if judge_record(before, &probe) == LineOutcome::Allow
                && judge_record(after, &probe) == LineOutcome::Deny
            {
                impact
                    .newly_denied_pairs
                    .push((from.clone(), to.clone(), port));
            }
        }
    }
    impact
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

/// A record from one known pod to another, as `check` reads it.
fn probe(
    (from, from_ip): &(String, IpAddr),
    (to, to_ip): &(String, IpAddr),
    protocol: IpProtocol,
    port: u16,
) -> FlowRecord {
    let end = |pod: &str, ip: IpAddr, port: u16| {
        let (namespace, name) = pod.split_once('/').unwrap_or(("", pod));
        let mut end = RecordEndpoint {
            ip,
            port,
            identity: Default::default(),
        };
        end.identity.namespace = Some(namespace.to_string());
        end.identity.pod = Some(name.to_string());
        end
    };
    FlowRecord::between(
        end(from, *from_ip, 40_000),
        end(to, *to_ip, port),
        protocol,
        FlowState::Closed,
    )
}

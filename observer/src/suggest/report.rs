//! One suggestion run: learned edges, the pods the cluster knows and its declared policies,
//! and the records of the window in; suggestions, their YAML, the proof and the impact
//! out. `observer suggest` runs it on files, the daemon on what it learned.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::calico::{self, CalicoPlacement};
use super::generate::{GenerateConfig, KnownPod, Suggestion, generate};
use super::learn::{Learned, WorkloadId};
use super::prove::{Existing, Impact, Proof, existing, impact, prove, prove_tiered};
use super::render;
use crate::cluster::state::ClusterObjects;
use crate::cluster::tiered_view::TieredView;
use crate::cluster::view::{ClusterView, Holder};
use crate::flow::{FlowRecord, Timestamp};
use crate::policy::{PolicySnapshot, SnapshotInput, compile};

/// The pods the cluster state knows: for the selectors' check, and one pod per workload to
/// probe the impact with (`namespace/pod` and its address).
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Every pod, by workload and labels.
    pub pods: Vec<KnownPod>,
    /// Per workload, the pod whose name sorts first.
    pub representatives: BTreeMap<WorkloadId, (String, IpAddr)>,
}

impl Known {
    /// The pods of a cluster view.
    pub fn from_view(view: &ClusterView) -> Self {
        let mut known = Self::default();
        for (ip, holder) in view.holders() {
            let Holder::Pod(pod) = holder else { continue };
            let workload = WorkloadId {
                namespace: pod.info.namespace.clone(),
                kind: pod
                    .workload
                    .as_ref()
                    .map_or("Pod".into(), |w| w.kind.as_str().to_string()),
                name: pod
                    .workload
                    .as_ref()
                    .map_or_else(|| pod.info.name.clone(), |w| w.name.clone()),
            };
            let name = format!("{}/{}", pod.info.namespace, pod.info.name);
            let entry = known
                .representatives
                .entry(workload.clone())
                .or_insert((name.clone(), *ip));
            if (name.as_str(), *ip) < (entry.0.as_str(), entry.1) {
                *entry = (name, *ip);
            }
            let ports = pod
                .info
                .ports
                .iter()
                .filter_map(|p| Some((p.protocol.ip(), p.port, p.name.clone()?)))
                .collect();
            known.pods.push(KnownPod {
                workload,
                labels: pod.info.labels.clone(),
                ports,
            });
        }
        known.pods.sort_by(|a, b| {
            (&a.workload, &a.labels, &a.ports).cmp(&(&b.workload, &b.labels, &b.ports))
        });
        known.pods.dedup();
        known
    }
}

/// Everything a suggestion run produced.
#[derive(Debug)]
pub struct Report {
    /// The policies, one YAML document each, per namespace.
    pub yaml: BTreeMap<String, String>,
    /// The same policies as objects (what the YAML reads back to).
    pub objects: Vec<NetworkPolicy>,
    /// The suggestions.
    pub suggestions: Vec<Suggestion>,
    /// What was learned (and skipped).
    pub learned: Learned,
    /// The proof against the records.
    pub proof: Proof,
    /// The changes it makes.
    pub impact: Impact,
    /// The declared policies against what was observed.
    pub existing: Existing,
    /// How long each step took: learning, generation (with rendering), proof (with the
    /// snapshots), impact.
    pub timings: [std::time::Duration; 4],
}

/// Generates the suggestions for `learned`, renders them, and proves them with the
/// `declared` policies against `records`; `window_end` is when learning stopped.
pub fn report(
    learned: &Learned,
    known: &Known,
    declared: &SnapshotInput,
    records: &[FlowRecord],
    window_end: Timestamp,
    config: &GenerateConfig,
) -> Result<Report, String> {
    let generation_start = Instant::now();
    let suggestions = generate(learned, &known.pods, window_end, config);
    let mut yaml: BTreeMap<String, String> = BTreeMap::new();
    for s in &suggestions {
        yaml.entry(s.subject.namespace.clone())
            .or_default()
            .push_str(&render::kubernetes(s));
    }
    let generated_at = generation_start.elapsed();
    let proof_start = Instant::now();
    // The objects the YAML reads back to (the tests check that it does).
    let objects: Vec<NetworkPolicy> = suggestions.iter().map(render::network_policy).collect();
    let mut with_suggested = declared.clone();
    for policy in &objects {
        let compiled = compile(policy).map_err(|e| {
            format!(
                "suggested policy {}: {e} (a bug in the suggestion)",
                policy.metadata.name.as_deref().unwrap_or("?")
            )
        })?;
        with_suggested.policies.push(Arc::new(compiled));
    }
    let before = PolicySnapshot::build(declared);
    let after = PolicySnapshot::build(&with_suggested);
    let proof = prove(&after, records);
    let proved_at = proof_start.elapsed();
    let impact_start = Instant::now();
    let impact = impact(&before, &after, records, learned, &known.representatives);
    let existing = existing(declared, &before, records, &known.representatives);
    Ok(Report {
        yaml,
        objects,
        suggestions,
        learned: learned.clone(),
        proof,
        impact,
        existing,
        timings: [
            Duration::ZERO,
            generated_at,
            proved_at,
            impact_start.elapsed(),
        ],
    })
}

/// Rewrites `report` in the Calico format: its YAML, and its proof made again with the
/// tiered engine, the Calico policies read back through the manifest loader beside the
/// cluster's `objects` (its declared policies of every kind).
pub fn as_calico(
    report: &mut Report,
    objects: &ClusterObjects,
    records: &[FlowRecord],
    placement: &CalicoPlacement,
) -> Result<(), String> {
    let mut yaml: BTreeMap<String, String> = BTreeMap::new();
    for s in &report.suggestions {
        yaml.entry(s.subject.namespace.clone())
            .or_default()
            .push_str(&calico::network_policy(s, placement));
    }
    let all: String = yaml.values().map(String::as_str).collect();
    let parsed = crate::cluster::manifests::parse("suggested.yaml", &all);
    if let Some(e) = parsed.errors.first() {
        return Err(format!("the Calico policies do not load back: {e} (a bug)"));
    }
    let mut with_suggested = objects.clone();
    with_suggested
        .calico_policies
        .extend(parsed.into_objects().calico_policies);
    let (view, errors) = TieredView::build(&with_suggested);
    if let Some(e) = errors.first() {
        return Err(format!("the Calico policies do not compile: {e} (a bug)"));
    }
    let view = view.ok_or("no Calico policy to judge with")?;
    let (before, _) = TieredView::build(objects);
    report.yaml = yaml;
    report.proof = prove_tiered(&view, before.as_ref(), records, true);
    add_unused_tiered_rules(report, objects, records);
    Ok(())
}

/// When `objects` hold Calico or admin policies besides NetworkPolicies: makes the proof of
/// the Kubernetes format again with the tiered engine, so that every declared kind judges
/// with the suggested NetworkPolicies (the NetworkPolicy engine alone knows only
/// NetworkPolicies). Without such policies the proof stands as `report` made it.
pub fn prove_with_every_kind(
    report: &mut Report,
    objects: &ClusterObjects,
    records: &[FlowRecord],
) -> Result<(), String> {
    let mut with_suggested = objects.clone();
    with_suggested
        .policies
        .extend(report.objects.iter().cloned().map(Arc::new));
    let (view, errors) = TieredView::build(&with_suggested);
    if let Some(e) = errors.first() {
        return Err(format!(
            "the suggested policies do not compile: {e} (a bug)"
        ));
    }
    if let Some(view) = view {
        let (before, _) = TieredView::build(objects);
        report.proof = prove_tiered(&view, before.as_ref(), records, false);
    }
    add_unused_tiered_rules(report, objects, records);
    Ok(())
}

/// Adds the unused rules of the declared Calico and admin policies to those of the
/// NetworkPolicies.
fn add_unused_tiered_rules(report: &mut Report, objects: &ClusterObjects, records: &[FlowRecord]) {
    let unused = &mut report.existing.unused_rules;
    unused.extend(super::unused::unused_tiered_rules(objects, records));
    unused.sort();
    unused.dedup();
}

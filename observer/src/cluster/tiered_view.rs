//! The tiered engine's part of a view (`crate::policy::tiered`): built when the state holds
//! any Calico, AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy
//! object, from those and the Kubernetes NetworkPolicies (placed as Calico places them), so
//! that one walk judges every kind. Without such objects there is none, and the
//! NetworkPolicy engine alone judges flows.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::kinds::{ClusterKind, KindVisitor, visit_kinds};
use super::state::ClusterObjects;
use crate::policy::check::{AddressFlow, TieredJudge};
use crate::policy::tiered::model::{World, WorldNamespace, WorldNode, WorldPod};
use crate::policy::tiered::{End, Flow, TieredEngine, compile_objects};
use crate::policy::{Category, DirectionDecision, DirectionVerdict, ObjectError, Tier, Verdict};

/// The engine, the cluster it judges in, and who holds each address.
#[derive(Debug)]
pub struct TieredView {
    engine: TieredEngine,
    world: World,
    by_ip: HashMap<IpAddr, End>,
    /// The node each pod of `world` runs on (an index in `world.nodes`).
    pod_node: Vec<Option<usize>>,
    /// `Decided`, or `CniDependent` for the view that judges only the protocols
    /// NetworkPolicy does not name.
    category: Category,
}

impl TieredView {
    /// The view of `objects`, or `None` when they hold no object of the tiered kinds.
    /// Objects that do not compile are reported and left out.
    pub fn build(objects: &ClusterObjects) -> (Option<Self>, Vec<ObjectError>) {
        let mut collect = Collect(Vec::new(), objects);
        visit_kinds(&mut collect);
        if collect.0.is_empty() {
            return (None, Vec::new());
        }
        let (view, errors) = Self::compile(objects, collect.0, Category::Decided);
        (Some(view), errors)
    }

    /// For a state with NetworkPolicies only: the view that judges what the API leaves to
    /// the CNI (`crate::policy::CniProfile`): protocols NetworkPolicy does not name (ICMP,
    /// ICMPv6, others; a rule without ports admits every protocol) and host-networked pods
    /// (as their node's address), marked `cni-dependent`. `None` without
    /// NetworkPolicies (nothing isolates a pod).
    pub fn cni_dependent(objects: &ClusterObjects) -> Option<Self> {
        if objects.policies.is_empty() {
            return None;
        }
        Some(Self::compile(objects, Vec::new(), Category::CniDependent).0)
    }

    fn compile(
        objects: &ClusterObjects,
        mut inputs: Vec<Value>,
        category: Category,
    ) -> (Self, Vec<ObjectError>) {
        for policy in &objects.policies {
            if let Ok(mut value) = serde_json::to_value(&**policy) {
                value["apiVersion"] = "networking.k8s.io/v1".into();
                value["kind"] = "NetworkPolicy".into();
                inputs.push(value);
            }
        }
        let compiled = compile_objects(&inputs);
        let errors = compiled
            .errors
            .iter()
            .map(|e| ObjectError {
                kind: "policy",
                name: e.object.clone(),
                error: e.field_error(),
            })
            .collect();
        let mut world = world(objects);
        world.prepare();
        let mut by_ip = HashMap::new();
        for (i, node) in world.nodes.iter().enumerate() {
            for ip in &node.ips {
                by_ip.insert(ip.to_canonical(), End::Node(i, *ip));
            }
        }
        // Every address of a pod (IPv4 and IPv6) is that pod.
        let pods_in_world = objects.pods.iter().filter(|p| in_world(p));
        for (i, pod) in pods_in_world.enumerate() {
            let addresses = pod.status.iter().flat_map(|s| {
                s.pod_ips
                    .iter()
                    .flatten()
                    .map(|a| a.ip.as_str())
                    .chain(s.pod_ip.as_deref())
            });
            for ip in addresses.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                by_ip.insert(ip.to_canonical(), End::Pod(i));
            }
        }
        let node_index: HashMap<&str, usize> = world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let pod_node = objects
            .pods
            .iter()
            .filter(|p| in_world(p))
            .map(|p| {
                let name = p.spec.as_ref()?.node_name.as_deref()?;
                node_index.get(name).copied()
            })
            .collect();
        let mut engine = TieredEngine::new(compiled.policies, compiled.tiers);
        engine.index(&world);
        (
            Self {
                engine,
                world,
                by_ip,
                pod_node,
                category,
            },
            errors,
        )
    }
}

impl TieredView {
    /// The engine's flow: a pod's address is that pod, a node's that node, any other
    /// outside the cluster.
    /// The enforced policies that apply to the pod holding `ip`, for ingress and for
    /// egress, with their tiers: the policy viewer lists them whether or not they decide a
    /// flow. Empty when `ip` is not a pod's.
    pub fn applying(&self, ip: IpAddr) -> [Vec<(crate::policy::PolicyRef, String)>; 2] {
        let Some(End::Pod(pod)) = self.by_ip.get(&ip.to_canonical()).copied() else {
            return [Vec::new(), Vec::new()];
        };
        [true, false].map(|ingress| {
            self.engine
                .policies_applying(&self.world, pod, ingress)
                .into_iter()
                .map(|p| {
                    (
                        crate::policy::PolicyRef {
                            kind: p.kind.policy_kind(),
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                        },
                        p.tier.clone(),
                    )
                })
                .collect()
        })
    }

    fn flow(&self, asked: &AddressFlow) -> Flow {
        let end = |ip: IpAddr| {
            self.by_ip
                .get(&ip.to_canonical())
                .copied()
                .unwrap_or(End::Outside(ip))
        };
        Flow {
            source: end(asked.source),
            destination: end(asked.destination),
            protocol: asked.protocol,
            port: asked.port,
            icmp: asked.icmp,
        }
    }

    fn verdict(&self, flow: &Flow, staged: bool) -> Verdict {
        let mut verdict = self.engine.verdict(&self.world, flow, staged).owned();
        verdict.category = self.category;
        if let (End::Node(node, _), End::Pod(pod)) = (flow.source, flow.destination)
            && self.pod_node.get(pod).copied().flatten() == Some(node)
        {
            // A node reaches the pods it runs, whatever their policies (kubelet probes):
            // Calico, Cilium and the Kubernetes documentation agree.
            verdict.ingress = DirectionVerdict::without_tiers(DirectionDecision::Exempt);
            verdict.category = Category::NodeExempt;
            verdict.allowed = verdict.egress.permits();
        }
        if self.category == Category::CniDependent {
            // NetworkPolicies alone: named as the NetworkPolicy engine names its tier.
            for step in verdict
                .ingress
                .tiers
                .iter_mut()
                .chain(&mut verdict.egress.tiers)
            {
                step.tier = Tier::NetworkPolicy.name().to_owned();
            }
        }
        verdict
    }
}

impl TieredJudge for TieredView {
    fn judge(&self, asked: &AddressFlow) -> Verdict {
        self.verdict(&self.flow(asked), false)
    }

    fn judge_staged(&self, asked: &AddressFlow) -> Option<Verdict> {
        self.engine
            .has_staged()
            .then(|| self.verdict(&self.flow(asked), true))
    }
}

/// The tiered kinds' objects in a state, as the compiler takes them.
struct Collect<'a>(Vec<Value>, &'a ClusterObjects);

impl KindVisitor for Collect<'_> {
    fn visit<K: ClusterKind>(&mut self) {
        self.0
            .extend(K::of(self.1).iter().filter_map(|o| o.tiered_json()));
    }
}

fn labels(labels: Option<&std::collections::BTreeMap<String, String>>) -> crate::policy::Labels {
    labels.cloned().unwrap_or_default()
}

fn world(objects: &ClusterObjects) -> World {
    let mut world = World::default();
    for ns in &objects.namespaces {
        world.namespaces.push(WorldNamespace {
            name: ns.metadata.name.clone().unwrap_or_default(),
            labels: labels(ns.metadata.labels.as_ref()),
        });
    }
    world.pods.extend(
        objects
            .pods
            .iter()
            .filter(|p| in_world(p))
            .map(|p| world_pod(p)),
    );
    for node in &objects.nodes {
        world.nodes.push(WorldNode {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: labels(node.metadata.labels.as_ref()),
            ips: node
                .status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter_map(|a| a.address.parse().ok())
                .collect(),
        });
    }
    world
}

/// Whether the tiered engine sees the pod as a pod: a host-networked pod is its node's
/// address.
fn in_world(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) != Some(true)
}

/// A pod as the tiered engine sees it.
fn world_pod(pod: &Pod) -> WorldPod {
    let spec = pod.spec.as_ref();
    let ports = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let protocol =
                crate::policy::Protocol::from_api(p.protocol.as_deref().unwrap_or("TCP"))?;
            Some((
                p.name.clone()?,
                u16::try_from(p.container_port).ok()?,
                protocol.ip().0,
            ))
        })
        .collect();
    WorldPod {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: labels(pod.metadata.labels.as_ref()),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
        ports,
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
    }
}

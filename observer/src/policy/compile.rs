//! NetworkPolicy → [`CompiledPolicy`]: validation plus the API server's defaulting.
//!
//! Manifests are read as authored, so this applies what `SetDefaults_NetworkPolicy` would:
//! absent/empty `policyTypes` become `[Ingress]`, plus `Egress` only when `egress` is
//! non-empty; a port without `protocol` is TCP. A missing `spec` is an empty spec, i.e. a
//! default-deny for ingress of every pod in the namespace.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::error::{FieldError, FieldProblem};
use super::ipblock::{IpSet, IpSetBuilder, parse_ip_block};
use super::model::{DEFAULT_NAMESPACE, Labels, Protocol};
use super::selector::Selector;

/// A validated, defaulted NetworkPolicy, independent of any snapshot so it can be reused
/// across rebuilds (share it with `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) pod_selector: Selector,
    /// `None` when the policy does not list `Ingress` in its (defaulted) policyTypes.
    pub(crate) ingress: Option<Box<[Rule]>>,
    /// `None` when the policy does not list `Egress` in its (defaulted) policyTypes.
    pub(crate) egress: Option<Box<[Rule]>>,
}

impl CompiledPolicy {
    /// The policy's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the policy isolates the pods it selects for ingress.
    pub fn affects_ingress(&self) -> bool {
        self.ingress.is_some()
    }

    /// Whether the policy isolates the pods it selects for egress.
    pub fn affects_egress(&self) -> bool {
        self.egress.is_some()
    }

    /// Whether the policy selects a pod of its namespace with these labels.
    pub fn selects(&self, pod_labels: &Labels) -> bool {
        self.pod_selector.matches(pod_labels)
    }
}

/// One ingress or egress rule: it allows a flow if a peer AND a port match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) peers: Peers,
    pub(crate) ports: Ports,
}

/// The `from`/`to` list of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peers {
    /// Absent, null or empty: every endpoint, including outside IPs.
    Any,
    /// The union of selector peers and ipBlocks.
    Listed { pods: Box<[PodPeer]>, ips: IpSet },
}

/// A peer with podSelector and/or namespaceSelector (ANDed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodPeer {
    pub(crate) namespaces: NamespaceScope,
    pub(crate) pods: Selector,
}

/// Which namespaces a selector peer covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamespaceScope {
    /// No namespaceSelector: only the policy's own namespace.
    Own,
    /// Namespaces whose labels match.
    Selected(Selector),
}

/// The `ports` list of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ports {
    /// Absent or empty: every port of every protocol.
    Any,
    /// Any of these.
    Listed(Box<[PortMatch]>),
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortMatch {
    pub(crate) protocol: Protocol,
    pub(crate) port: PortSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortSpec {
    /// No `port`: every port of the protocol.
    All,
    /// `port` or `port..=endPort`.
    Range(u16, u16),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

#[derive(Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

/// Validates and compiles a policy. Errors name the offending field.
pub fn compile(np: &NetworkPolicy) -> Result<CompiledPolicy, FieldError> {
    let name = match np.metadata.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => return Err(FieldError::new("metadata.name", FieldProblem::Missing)),
    };
    if let Some(problem) = super::names::dns_subdomain_problem(&name) {
        return Err(FieldError::new(
            "metadata.name",
            FieldProblem::Name(format!("{name:?}: {problem}")),
        ));
    }
    let namespace = np
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let spec = np.spec.clone().unwrap_or_default();
    let pod_selector = Selector::compile(spec.pod_selector.as_ref(), "spec.podSelector")?;

    let (mut wants_ingress, mut wants_egress) = (false, false);
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        match t.as_str() {
            "Ingress" => wants_ingress = true,
            "Egress" => wants_egress = true,
            other => {
                return Err(FieldError::new(
                    format!("spec.policyTypes[{i}]"),
                    FieldProblem::PolicyType(other.to_owned()),
                ));
            }
        }
    }
    let egress_rules = spec.egress.as_deref().unwrap_or_default();
    if !wants_ingress && !wants_egress {
        wants_ingress = true;
        wants_egress = !egress_rules.is_empty();
    }

    // Rules are validated even when their direction is ignored, as the API server does.
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("spec.ingress[{i}]");
            rule(
                r.from.as_deref(),
                r.ports.as_deref(),
                &field,
                Direction::Ingress,
            )
        })
        .collect::<Result<Box<[Rule]>, _>>()?;
    let egress = egress_rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("spec.egress[{i}]");
            rule(
                r.to.as_deref(),
                r.ports.as_deref(),
                &field,
                Direction::Egress,
            )
        })
        .collect::<Result<Box<[Rule]>, _>>()?;

    Ok(CompiledPolicy {
        namespace,
        name,
        pod_selector,
        ingress: wants_ingress.then_some(ingress),
        egress: wants_egress.then_some(egress),
    })
}

fn rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    field: &str,
    dir: Direction,
) -> Result<Rule, FieldError> {
    let peer_field = match dir {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let peers = match peers {
        None | Some([]) => Peers::Any,
        Some(list) => {
            let mut pods = Vec::new();
            let mut ips = IpSetBuilder::default();
            for (i, p) in list.iter().enumerate() {
                let field = format!("{field}.{peer_field}[{i}]");
                match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
                    (None, None, None) => {
                        return Err(FieldError::new(field, FieldProblem::EmptyPeer));
                    }
                    (Some(block), None, None) => {
                        let (cidr, except) = parse_ip_block(block, &format!("{field}.ipBlock"))?;
                        ips.add_block(cidr, &except);
                    }
                    (Some(_), _, _) => {
                        return Err(FieldError::new(field, FieldProblem::MixedPeer));
                    }
                    (None, ns, pod) => {
                        let namespaces = match ns {
                            None => NamespaceScope::Own,
                            Some(s) => NamespaceScope::Selected(Selector::compile(
                                Some(s),
                                &format!("{field}.namespaceSelector"),
                            )?),
                        };
                        let selector =
                            Selector::compile(pod.as_ref(), &format!("{field}.podSelector"))?;
                        pods.push(PodPeer {
                            namespaces,
                            pods: selector,
                        });
                    }
                }
            }
            Peers::Listed {
                pods: pods.into(),
                ips: ips.build(),
            }
        }
    };
    let ports = match ports {
        None | Some([]) => Ports::Any,
        Some(list) => Ports::Listed(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(p, &format!("{field}.ports[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

fn port(p: &NetworkPolicyPort, field: &str) -> Result<PortMatch, FieldError> {
    let protocol = Protocol::from_field(p.protocol.as_deref(), &format!("{field}.protocol"))?;
    let end_field = format!("{field}.endPort");
    let port = match (&p.port, p.end_port) {
        (None, None) => PortSpec::All,
        (None, Some(_)) | (Some(IntOrString::String(_)), Some(_)) => {
            return Err(FieldError::new(end_field, FieldProblem::EndPortNeedsNumber));
        }
        (Some(IntOrString::Int(n)), end) => {
            let start = port_number(i64::from(*n), &format!("{field}.port"))?;
            let end = match end {
                None => start,
                Some(e) if i64::from(e) < i64::from(start) => {
                    return Err(FieldError::new(
                        end_field,
                        FieldProblem::EndPortBelowPort {
                            port: start,
                            end: e.into(),
                        },
                    ));
                }
                Some(e) => port_number(e.into(), &end_field)?,
            };
            PortSpec::Range(start, end)
        }
        (Some(IntOrString::String(name)), None) => {
            if !valid_port_name(name) {
                return Err(FieldError::new(
                    format!("{field}.port"),
                    FieldProblem::PortName(name.clone()),
                ));
            }
            PortSpec::Named(name.clone())
        }
    };
    Ok(PortMatch { protocol, port })
}

fn port_number(n: i64, field: &str) -> Result<u16, FieldError> {
    u16::try_from(n)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| FieldError::new(field, FieldProblem::PortRange(n)))
}

/// IANA service name rules, as the API server validates named ports.
fn valid_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

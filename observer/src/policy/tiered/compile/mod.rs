//! Objects of every policy kind → [`Policy`] in tiers: validation with the object and field
//! named, and each kind's defaulting (Calico `types`, Kubernetes `policyTypes`, TCP for
//! numeric ports of Kubernetes and admin policies).

mod admin;
mod calico;
mod kubernetes;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::calico_selector::CalicoSelector;
use super::model::{Policy, SourceKind, TierDef};
use super::objects::{Object, ProtocolValue, TierSpec};
use crate::policy::{IpSet, IpSetBuilder, Selector};

/// An object that could not be compiled: which, and why (field path first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct TieredError {
    /// `Kind namespace/name` or `Kind name`.
    pub object: String,
    /// `field.path: problem`.
    pub message: String,
}

impl TieredError {
    /// The problem as a field error: the field path, and what is wrong with it.
    pub fn field_error(&self) -> crate::policy::FieldError {
        let (field, message) = self
            .message
            .split_once(": ")
            .unwrap_or(("spec", self.message.as_str()));
        crate::policy::FieldError::new(
            field,
            crate::policy::FieldProblem::Invalid(message.to_owned()),
        )
    }
}

/// Policies and tiers compiled from objects, and the objects left out.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Every policy, staged ones included.
    pub policies: Vec<Policy>,
    /// Tiers: the built-in ones and those declared.
    pub tiers: Vec<TierDef>,
    /// Objects left out.
    pub errors: Vec<TieredError>,
}

/// The tier Calico puts policies without a tier, and Kubernetes NetworkPolicies, in.
pub const DEFAULT_TIER: &str = "default";

/// Tiers that exist without a Tier object: (name, order, default action Pass).
const BUILT_IN_TIERS: [(&str, f64, bool); 5] = [
    ("adminnetworkpolicy", 1_000.0, true),
    ("kube-admin", 1_000.0, true),
    (DEFAULT_TIER, 1_000_000.0, false),
    ("baselineadminnetworkpolicy", 10_000_000.0, true),
    ("kube-baseline", 10_000_000.0, true),
];

/// Compiles `objects` (JSON values of any supported kind; other kinds are errors).
pub fn compile_objects(objects: &[Value]) -> Compiled {
    let mut out = Compiled {
        tiers: BUILT_IN_TIERS
            .iter()
            .map(|&(name, order, default_pass)| TierDef {
                name: name.to_owned(),
                order: Some(order),
                default_pass,
            })
            .collect(),
        ..Compiled::default()
    };
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or("<unnamed>");
        let described = match object["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        if let Err(message) = compile_one(api_version, kind, object, &mut out) {
            out.errors.push(TieredError {
                object: described,
                message,
            });
        }
    }
    out
}

fn compile_one(api: &str, kind: &str, object: &Value, out: &mut Compiled) -> Result<(), String> {
    let group = api.split('/').next().unwrap_or_default();
    match (group, kind) {
        ("projectcalico.org", "Tier") => {
            let tier: Object<TierSpec> = decode(object)?;
            let default_pass = match tier.spec.default_action.as_deref() {
                None | Some("Deny") => false,
                Some("Pass") => true,
                Some(other) => {
                    return Err(format!("spec.defaultAction: {other:?} is not Deny or Pass"));
                }
            };
            out.tiers.retain(|t| t.name != tier.metadata.name);
            out.tiers.push(TierDef {
                name: tier.metadata.name,
                order: tier.spec.order,
                default_pass,
            });
        }
        ("projectcalico.org", "NetworkPolicy" | "StagedNetworkPolicy") => {
            let staged = kind.starts_with("Staged");
            out.policies
                .push(calico::calico(decode(object)?, false, staged)?);
        }
        ("projectcalico.org", "GlobalNetworkPolicy" | "StagedGlobalNetworkPolicy") => {
            let staged = kind.starts_with("Staged");
            out.policies
                .push(calico::calico(decode(object)?, true, staged)?);
        }
        ("projectcalico.org", "StagedKubernetesNetworkPolicy")
        | ("networking.k8s.io", "NetworkPolicy") => {
            let staged = kind.starts_with("Staged");
            out.policies
                .push(kubernetes::kubernetes(decode(object)?, staged)?);
        }
        ("policy.networking.k8s.io", "AdminNetworkPolicy") => {
            out.policies.push(admin::admin(
                decode(object)?,
                SourceKind::AdminNetworkPolicy,
            )?);
        }
        ("policy.networking.k8s.io", "BaselineAdminNetworkPolicy") => {
            out.policies.push(admin::admin(
                decode(object)?,
                SourceKind::BaselineAdminNetworkPolicy,
            )?);
        }
        ("policy.networking.k8s.io", "ClusterNetworkPolicy") => {
            out.policies.push(admin::admin(
                decode(object)?,
                SourceKind::ClusterNetworkPolicy,
            )?);
        }
        _ => {
            return Err(format!(
                "kind {kind} of {api} is not a policy kind judged here"
            ));
        }
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(object: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(object).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn selector(text: Option<&str>, field: &str) -> Result<CalicoSelector, String> {
    CalicoSelector::parse(text.unwrap_or_default())
        .map_err(|e| format!("{field}: {e} in {:?}", text.unwrap_or_default()))
}

/// A protocol name or number → its IP protocol number.
pub fn protocol_number(value: &ProtocolValue, field: &str) -> Result<u8, String> {
    match value {
        ProtocolValue::Number(0) => Err(format!("{field}: protocol 0 is not valid")),
        ProtocolValue::Number(n) => Ok(*n),
        ProtocolValue::Name(name) => match name.as_str() {
            "TCP" | "tcp" => Ok(6),
            "UDP" | "udp" => Ok(17),
            "ICMP" | "icmp" => Ok(1),
            "ICMPv6" | "icmpv6" => Ok(58),
            "SCTP" | "sctp" => Ok(132),
            "UDPLite" | "udplite" => Ok(136),
            other => other
                .parse::<u8>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{field}: unknown protocol {other:?}")),
        },
    }
}

fn networks(list: &[String], field: &str) -> Result<IpSet, String> {
    let mut set = IpSetBuilder::default();
    for (i, text) in list.iter().enumerate() {
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{field}[{i}]: {text:?} is not a CIDR"))?;
        set.add_block(net, &[]);
    }
    Ok(set.build())
}

fn labels(sel: Option<&LabelSelector>, field: &str) -> Result<Selector, String> {
    Selector::compile(sel, field).map_err(|e| e.to_string())
}

//! An end of a flow line: how a line names it (`namespace/pod`, an address, an object
//! with both), how it resolves in the snapshot, and how the output line echoes it.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::policy::model::Endpoint;
use crate::policy::snapshot::PolicySnapshot;

use super::port_value;

#[derive(Debug, Default)]
pub(super) struct EndpointSpec {
    pub(super) ip: Option<IpAddr>,
    pub(super) namespace: Option<String>,
    pub(super) pod: Option<String>,
    pub(super) node: Option<String>,
    pub(super) port: Option<u16>,
}

pub(super) fn parse_endpoint(v: Option<&Value>, field: &str) -> Result<EndpointSpec, String> {
    let expected = "expected \"namespace/pod\", an IP address, or an object with ip, \
                    namespace+pod or node";
    match v {
        None | Some(Value::Null) => Err(format!("{field}: missing")),
        Some(Value::String(s)) => {
            if let Ok(ip) = s.parse::<IpAddr>() {
                return Ok(EndpointSpec {
                    ip: Some(ip),
                    ..EndpointSpec::default()
                });
            }
            match s.split_once('/') {
                Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
                    Ok(EndpointSpec {
                        namespace: Some(ns.into()),
                        pod: Some(pod.into()),
                        ..EndpointSpec::default()
                    })
                }
                _ => Err(format!("{field}: {expected}, got {s:?}")),
            }
        }
        Some(Value::Object(o)) => {
            let text = |k: &str| -> Result<Option<String>, String> {
                match o.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                    Some(other) => Err(format!(
                        "{field}.{k}: expected a non-empty string, got {other}"
                    )),
                }
            };
            let ip = text("ip")?
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("{field}.ip: invalid IP address {s:?}"))
                })
                .transpose()?;
            let port = match o.get("port") {
                None | Some(Value::Null) => None,
                Some(p) => Some(port_value(p, &format!("{field}.port"))?),
            };
            let spec = EndpointSpec {
                ip,
                namespace: text("namespace")?,
                pod: text("pod")?,
                node: text("node")?,
                port,
            };
            // A pod's `node` (flow-log records carry it) only says where it runs.
            match (&spec.namespace, &spec.pod, &spec.node, spec.ip) {
                (Some(_), Some(_), _, _)
                | (None, None, Some(_), _)
                | (None, None, None, Some(_)) => Ok(spec),
                (None, Some(_), _, _) => Err(format!("{field}.namespace: required with pod")),
                _ => Err(format!("{field}: {expected}")),
            }
        }
        Some(other) => Err(format!("{field}: {expected}, got {other}")),
    }
}

impl EndpointSpec {
    pub(super) fn resolve(&self, snap: &PolicySnapshot) -> Result<Endpoint, String> {
        if let (Some(ns), Some(pod)) = (&self.namespace, &self.pod) {
            let id = snap
                .pod_id(ns, pod)
                .ok_or_else(|| format!("unknown pod {ns}/{pod}"))?;
            return Ok(Endpoint::Pod { id, ip: self.ip });
        }
        if let Some(node) = &self.node {
            let id = snap
                .node_id(node)
                .ok_or_else(|| format!("unknown node {node}"))?;
            return Ok(Endpoint::Node { id, ip: self.ip });
        }
        match self.ip {
            Some(ip) => Ok(snap.resolve_ip(ip)),
            None => Err("endpoint has no address".into()),
        }
    }

    /// What the endpoint resolved to, for the output line.
    pub(super) fn echo(&self, snap: &PolicySnapshot) -> EndpointOut {
        let ip = |fallback: Option<&IpAddr>| self.ip.or(fallback.copied()).map(|i| i.to_string());
        match self.resolve(snap) {
            Ok(Endpoint::Pod { id, .. }) => {
                let pod = snap.pod(id);
                EndpointOut {
                    kind: "pod",
                    namespace: pod.map(|p| p.namespace.clone()),
                    pod: pod.map(|p| p.name.clone()),
                    ip: ip(pod.and_then(|p| p.ips.first())),
                    ..EndpointOut::default()
                }
            }
            Ok(Endpoint::Node { id, .. }) => {
                let node = snap.node(id);
                EndpointOut {
                    kind: "node",
                    node: node.map(|n| n.name.clone()),
                    ip: ip(node.and_then(|n| n.ips.first())),
                    ..EndpointOut::default()
                }
            }
            Ok(Endpoint::External(addr)) => EndpointOut {
                kind: "external",
                ip: Some(addr.to_string()),
                ..EndpointOut::default()
            },
            Err(_) => EndpointOut {
                kind: "unresolved",
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                node: self.node.clone(),
                ip: ip(None),
            },
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub(super) struct EndpointOut {
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ip: Option<String>,
}

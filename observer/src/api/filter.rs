//! Which flows a subscriber gets: its allow and deny filters and its time window, checked
//! once when it subscribes (an error names the filter, the field and the value) and then
//! matched against every flow. Label selectors are `label_selector`'s. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::flow::{EndpointIdentity, FlowRecord, FlowState, IpProtocol, Timestamp};
use crate::policy::VerdictKind;
use crate::wire::proto;

/// A filter value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{list}[{index}].{field}: {value:?} {problem}")]
pub struct FilterError {
    /// `allow` or `deny`.
    pub list: &'static str,
    /// Position of the filter in its list.
    pub index: usize,
    /// The field.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

mod label_selector;
use label_selector::LabelSelector;

/// A subscriber's filters, compiled.
#[derive(Debug, Default)]
pub struct Selection {
    allow: Vec<FlowFilter>,
    deny: Vec<FlowFilter>,
    /// Flows active in this window only: last packet at or after the first bound, first
    /// packet at or before the second.
    window: (Option<Timestamp>, Option<Timestamp>),
}

impl Selection {
    /// Checks and compiles the filters of a request.
    pub fn compile(
        allow: &[proto::FlowFilter],
        deny: &[proto::FlowFilter],
    ) -> Result<Self, FilterError> {
        let compile_list = |list, filters: &[proto::FlowFilter]| {
            filters
                .iter()
                .enumerate()
                .map(|(index, f)| FlowFilter::compile(f, &Context { list, index }))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: compile_list("allow", allow)?,
            deny: compile_list("deny", deny)?,
            window: (None, None),
        })
    }

    /// Only flows active between `since` and `until` (either may be open).
    pub fn within(mut self, since: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        self.window = (since, until);
        self
    }

    /// Whether only violations can match: every allow filter selects the `deny` verdict
    /// alone. Such a stream reads the violations' own retention.
    pub fn violations_only(&self) -> bool {
        !self.allow.is_empty()
            && self
                .allow
                .iter()
                .all(|f| f.verdict == [Some(VerdictKind::Deny)])
    }

    /// True when the flow is in the window, matches any allow filter (or there is none)
    /// and no deny filter.
    pub fn matches(&self, flow: &FlowRecord) -> bool {
        self.window.0.is_none_or(|since| flow.last_seen >= since)
            && self.window.1.is_none_or(|until| flow.first_seen <= until)
            && (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(flow)))
            && !self.deny.iter().any(|f| f.matches(flow))
    }
}

/// Where a value came from, for errors.
struct Context {
    list: &'static str,
    index: usize,
}

impl Context {
    fn error(&self, field: &'static str, value: &str, problem: &'static str) -> FilterError {
        FilterError {
            list: self.list,
            index: self.index,
            field,
            value: value.to_string(),
            problem,
        }
    }
}

/// A pod, or every pod of a namespace.
#[derive(Debug)]
struct PodRef {
    namespace: String,
    name: Option<String>,
}

/// One filter: every field given must match; a field's values are alternatives.
#[derive(Debug, Default)]
struct FlowFilter {
    source_ip: Vec<IpNet>,
    destination_ip: Vec<IpNet>,
    source_pod: Vec<PodRef>,
    destination_pod: Vec<PodRef>,
    namespace: Vec<String>,
    source_label: Vec<LabelSelector>,
    destination_label: Vec<LabelSelector>,
    protocol: Vec<IpProtocol>,
    destination_port: Vec<u16>,
    /// None selects records without a verdict (`none`).
    verdict: Vec<Option<VerdictKind>>,
    state: Vec<FlowState>,
    workload: Vec<WorkloadRef>,
    pod: Vec<PodRef>,
    ip: Vec<IpNet>,
    label: Vec<LabelSelector>,
    node: Vec<String>,
    /// A Service: namespace, and its name (any when `None`).
    service: Vec<PodRef>,
    port: Vec<u16>,
    source_namespace: Vec<String>,
    destination_namespace: Vec<String>,
    source_workload: Vec<WorkloadRef>,
    destination_workload: Vec<WorkloadRef>,
    source_port: Vec<u16>,
}

/// A workload: its kind (compared without case: `deployment/web` is `Deployment/web`) and
/// name.
#[derive(Debug)]
struct WorkloadRef {
    kind: String,
    name: String,
}

impl WorkloadRef {
    fn is(&self, side: &EndpointIdentity) -> bool {
        side.workload
            .as_ref()
            .is_some_and(|w| w.kind.eq_ignore_ascii_case(&self.kind) && w.name == self.name)
    }
}

impl FlowFilter {
    fn compile(f: &proto::FlowFilter, at: &Context) -> Result<Self, FilterError> {
        let nets = |field, values: &[String]| {
            values
                .iter()
                .map(|v| {
                    parse_net(v).ok_or_else(|| at.error(field, v, "is not an address or CIDR"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let pods = |field, values: &[String]| {
            values
                .iter()
                .map(|v| match v.split_once('/') {
                    Some((ns, name)) if !ns.is_empty() && !name.contains('/') => Ok(PodRef {
                        namespace: ns.to_string(),
                        name: (!name.is_empty()).then(|| name.to_string()),
                    }),
                    _ => Err(at.error(field, v, "is not \"namespace/pod\" or \"namespace/\"")),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let labels = |field, values: &[String]| {
            values
                .iter()
                .map(|v| label_selector::parse(v).map_err(|problem| at.error(field, v, problem)))
                .collect::<Result<Vec<_>, _>>()
        };
        // 0 selects what has no port: ICMP other than echo, and non-first fragments.
        let ports = |field, values: &[u32]| {
            values
                .iter()
                .map(|&p| {
                    u16::try_from(p).map_err(|_| at.error(field, &p.to_string(), "is not a port"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let workloads = |field, values: &[String]| {
            values
                .iter()
                .map(|v| match v.split_once('/') {
                    Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(WorkloadRef {
                        kind: kind.to_string(),
                        name: name.to_string(),
                    }),
                    _ => Err(at.error(field, v, "is not \"Kind/name\"")),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let protocol = f
            .protocol
            .iter()
            .map(|p| {
                IpProtocol::parse(p).ok_or_else(|| {
                    at.error(
                        "protocol",
                        p,
                        "is not TCP, UDP, SCTP, ICMP, ICMPv6 or a number",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verdict = f
            .verdict
            .iter()
            .map(|v| {
                let lower = v.to_ascii_lowercase();
                if lower == "none" {
                    return Ok(None);
                }
                VerdictKind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == lower)
                    .map(Some)
                    .ok_or_else(|| at.error("verdict", v, "is not allow, deny, undefined or none"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state = f
            .state
            .iter()
            .map(|v| {
                FlowState::from_name(&v.to_ascii_lowercase()).ok_or_else(|| {
                    at.error(
                        "state",
                        v,
                        "is not active, closed, expired, evicted or started",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source_ip: nets("source_ip", &f.source_ip)?,
            destination_ip: nets("destination_ip", &f.destination_ip)?,
            source_pod: pods("source_pod", &f.source_pod)?,
            destination_pod: pods("destination_pod", &f.destination_pod)?,
            namespace: f.namespace.clone(),
            source_label: labels("source_label", &f.source_label)?,
            destination_label: labels("destination_label", &f.destination_label)?,
            protocol,
            destination_port: ports("destination_port", &f.destination_port)?,
            verdict,
            state,
            workload: workloads("workload", &f.workload)?,
            pod: pods("pod", &f.pod)?,
            ip: nets("ip", &f.ip)?,
            label: labels("label", &f.label)?,
            node: f.node.clone(),
            service: pods("service", &f.service)?,
            port: ports("port", &f.port)?,
            source_namespace: f.source_namespace.clone(),
            destination_namespace: f.destination_namespace.clone(),
            source_workload: workloads("source_workload", &f.source_workload)?,
            destination_workload: workloads("destination_workload", &f.destination_workload)?,
            source_port: ports("source_port", &f.source_port)?,
        })
    }

    fn matches(&self, flow: &FlowRecord) -> bool {
        let (src, dst) = (&flow.src.identity, &flow.dst.identity);
        any(&self.source_ip, |net| net.contains(&flow.src.ip))
            && any(&self.destination_ip, |net| net.contains(&flow.dst.ip))
            && any(&self.source_pod, |pod| pod_is(src, pod))
            && any(&self.destination_pod, |pod| pod_is(dst, pod))
            && any(&self.namespace, |ns| {
                src.namespace.as_ref() == Some(ns) || dst.namespace.as_ref() == Some(ns)
            })
            && any(&self.source_label, |sel| labels_match(src, sel))
            && any(&self.destination_label, |sel| labels_match(dst, sel))
            && any(&self.protocol, |p| flow.protocol == *p)
            && any(&self.destination_port, |&p| flow.dst.port == p)
            && any(&self.verdict, |v| flow.verdict_kind() == *v)
            && any(&self.state, |s| flow.state == *s)
            && any(&self.workload, |w| w.is(src) || w.is(dst))
            && any(&self.pod, |pod| pod_is(src, pod) || pod_is(dst, pod))
            && any(&self.ip, |net| {
                net.contains(&flow.src.ip) || net.contains(&flow.dst.ip)
            })
            && any(&self.label, |sel| {
                labels_match(src, sel) || labels_match(dst, sel)
            })
            && any(&self.node, |node| flow.node_name.as_ref() == Some(node))
            && any(&self.service, |svc| {
                flow.service.as_ref().is_some_and(|s| {
                    s.namespace == svc.namespace
                        && svc.name.as_ref().is_none_or(|name| s.name == *name)
                })
            })
            && any(&self.port, |&p| flow.src.port == p || flow.dst.port == p)
            && any(&self.source_namespace, |ns| {
                src.namespace.as_ref() == Some(ns)
            })
            && any(&self.destination_namespace, |ns| {
                dst.namespace.as_ref() == Some(ns)
            })
            && any(&self.source_workload, |w| w.is(src))
            && any(&self.destination_workload, |w| w.is(dst))
            && any(&self.source_port, |&p| flow.src.port == p)
    }
}

/// True when `values` is empty (the field is not set) or any value passes.
fn any<T>(values: &[T], pass: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(pass)
}

fn pod_is(side: &EndpointIdentity, pod: &PodRef) -> bool {
    side.namespace.as_deref() == Some(pod.namespace.as_str())
        && pod
            .name
            .as_ref()
            .is_none_or(|name| side.pod.as_ref() == Some(name))
}

fn labels_match(side: &EndpointIdentity, selector: &LabelSelector) -> bool {
    let empty = BTreeMap::new();
    side.pod.is_some() && label_selector::matches(selector, side.labels.as_ref().unwrap_or(&empty))
}

fn parse_net(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .ok()
        .or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests;

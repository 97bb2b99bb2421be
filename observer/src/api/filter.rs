//! Which flows a subscriber gets: its allow and deny filters, checked once when it
//! subscribes (an error names the filter, the field and the value) and then matched
//! against every flow. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::flow::{EndpointIdentity, FlowRecord, FlowState, IpProtocol};
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

/// A subscriber's filters, compiled.
#[derive(Debug, Default)]
pub struct Selection {
    allow: Vec<FlowFilter>,
    deny: Vec<FlowFilter>,
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
        })
    }

    /// True when the flow matches any allow filter (or there is none) and no deny filter.
    pub fn matches(&self, flow: &FlowRecord) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(flow)))
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

/// Label requirements that must all hold: `key=value` or `key` (present).
type LabelSelector = Vec<(String, Option<String>)>;

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
    workload: Vec<(String, String)>,
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
                .map(|v| {
                    parse_labels(v).ok_or_else(|| at.error(field, v, "is not \"key=value,key\""))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        // 0 selects what has no port: ICMP other than echo, and non-first fragments.
        let destination_port = f
            .destination_port
            .iter()
            .map(|&p| {
                u16::try_from(p)
                    .map_err(|_| at.error("destination_port", &p.to_string(), "is not a port"))
            })
            .collect::<Result<Vec<_>, _>>()?;
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
        let workload = f
            .workload
            .iter()
            .map(|v| match v.split_once('/') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    Ok((kind.to_string(), name.to_string()))
                }
                _ => Err(at.error("workload", v, "is not \"Kind/name\"")),
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
            destination_port,
            verdict,
            state,
            workload,
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
            && any(&self.workload, |(kind, name)| {
                [src, dst].iter().any(|side| {
                    side.workload
                        .as_ref()
                        .is_some_and(|w| w.kind == *kind && w.name == *name)
                })
            })
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
    let labels = side.labels.as_ref().unwrap_or(&empty);
    side.pod.is_some()
        && selector.iter().all(|(key, value)| match value {
            Some(value) => labels.get(key) == Some(value),
            None => labels.contains_key(key),
        })
}

fn parse_net(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .ok()
        .or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_labels(value: &str) -> Option<LabelSelector> {
    value
        .split(',')
        .map(|term| {
            let (key, value) = match term.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
                None => (term.trim(), None),
            };
            (!key.is_empty()).then(|| (key.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests;

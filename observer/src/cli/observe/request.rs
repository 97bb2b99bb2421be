//! `observer observe`'s flags as a `GetFlowsRequest`: where to start, the time window, and
//! the filters (either side, per side, and those `--not` negates, which go to the
//! request's deny list).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::flow::Timestamp;
use crate::wire::proto::{FlowFilter, GetFlowsRequest, get_flows_request::Start};

use super::ObserveArgs;

/// Flows shown when no start is given and the stream is not followed (as `hubble observe`).
pub const DEFAULT_LAST: u64 = 20;

/// A flag's value that cannot be used, saying why (exit status 2).
#[derive(Debug, PartialEq, Eq)]
pub struct BadValue(pub String);

/// The request the flags ask for.
pub fn request(args: &ObserveArgs, now: SystemTime) -> Result<GetFlowsRequest, BadValue> {
    let since = args
        .since
        .as_deref()
        .map(|t| when("--since", t, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| when("--until", t, now))
        .transpose()?;
    let start = if args.from_oldest {
        Some(Start::FromOldest(true))
    } else if let Some(cursor) = args.after_cursor {
        Some(Start::AfterCursor(cursor))
    } else if let Some(token) = &args.after_token {
        Some(Start::AfterToken(token.clone()))
    } else if let Some(n) = args.first {
        Some(Start::First(n))
    } else if let Some(n) = args.last {
        Some(Start::Last(n))
    } else if since.is_some() {
        // A window reads what is held from its start.
        Some(Start::FromOldest(true))
    } else if args.follow {
        None
    } else {
        Some(Start::Last(DEFAULT_LAST))
    };
    let mut allow = FlowFilter::default();
    set_filters(&mut allow, args);
    if args.violations {
        allow.verdict.push("deny".into());
    }
    // Each `--not` is a filter of its own: a flow any of them matches is left out.
    let mut deny = Vec::new();
    for pair in args.not.chunks(2) {
        let [flag, value] = pair else {
            return Err(BadValue(
                "--not needs a filter and its value: --not --namespace kube-system".into(),
            ));
        };
        let mut filter = FlowFilter::default();
        add(&mut filter, flag, value)?;
        deny.push(filter);
    }
    Ok(GetFlowsRequest {
        start,
        follow: args.follow,
        allow: if allow == FlowFilter::default() {
            Vec::new()
        } else {
            vec![allow]
        },
        deny,
        since: since.map(crate::wire::convert::timestamp),
        until: until.map(crate::wire::convert::timestamp),
        progress_interval_ms: 0,
    })
}

/// `5m` (that long before `now`) or an RFC 3339 time.
fn when(flag: &str, text: &str, now: SystemTime) -> Result<Timestamp, BadValue> {
    if let Some(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    let ago = crate::cli::parse_duration(text).map_err(|e| {
        BadValue(format!(
            "{flag} {text:?} is neither a duration (5m, 1h30m) nor an RFC 3339 time \
             (2026-12-01T10:00:00Z): {e}"
        ))
    })?;
    let at = now
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Ok(Timestamp(at.as_nanos().min(i64::MAX as u128) as i64))
}

/// The allow filter's fields from the flags (the server checks the values and names the
/// field of one it cannot use).
fn set_filters(f: &mut FlowFilter, a: &ObserveArgs) {
    f.namespace.clone_from(&a.namespace);
    f.source_namespace.clone_from(&a.from_namespace);
    f.destination_namespace.clone_from(&a.to_namespace);
    f.pod.clone_from(&a.pod);
    f.source_pod.clone_from(&a.from_pod);
    f.destination_pod.clone_from(&a.to_pod);
    f.ip.clone_from(&a.ip);
    f.source_ip.clone_from(&a.from_ip);
    f.destination_ip.clone_from(&a.to_ip);
    f.label.clone_from(&a.label);
    f.source_label.clone_from(&a.from_label);
    f.destination_label.clone_from(&a.to_label);
    f.port.clone_from(&a.port);
    f.source_port.clone_from(&a.from_port);
    f.destination_port.clone_from(&a.to_port);
    f.workload.clone_from(&a.workload);
    f.source_workload.clone_from(&a.from_workload);
    f.destination_workload.clone_from(&a.to_workload);
    f.node.clone_from(&a.node);
    f.service.clone_from(&a.service);
    f.verdict.clone_from(&a.verdict);
    f.protocol.clone_from(&a.protocol);
    f.state.clone_from(&a.state);
}

/// One negated filter: `flag` is the filter's long flag (`--namespace`).
fn add(f: &mut FlowFilter, flag: &str, value: &str) -> Result<(), BadValue> {
    let port = || {
        value
            .parse::<u32>()
            .map_err(|_| BadValue(format!("--not {flag} {value:?}: not a port")))
    };
    let name = flag.trim_start_matches('-');
    let list = match name {
        "namespace" => &mut f.namespace,
        "from-namespace" => &mut f.source_namespace,
        "to-namespace" => &mut f.destination_namespace,
        "pod" => &mut f.pod,
        "from-pod" => &mut f.source_pod,
        "to-pod" => &mut f.destination_pod,
        "ip" => &mut f.ip,
        "from-ip" => &mut f.source_ip,
        "to-ip" => &mut f.destination_ip,
        "label" => &mut f.label,
        "from-label" => &mut f.source_label,
        "to-label" => &mut f.destination_label,
        "workload" => &mut f.workload,
        "from-workload" => &mut f.source_workload,
        "to-workload" => &mut f.destination_workload,
        "node" => &mut f.node,
        "service" => &mut f.service,
        "verdict" => &mut f.verdict,
        "protocol" => &mut f.protocol,
        "state" => &mut f.state,
        "port" => {
            f.port.push(port()?);
            return Ok(());
        }
        "from-port" => {
            f.source_port.push(port()?);
            return Ok(());
        }
        "to-port" => {
            f.destination_port.push(port()?);
            return Ok(());
        }
        _ => {
            return Err(BadValue(format!(
                "--not {flag}: not a filter; --not takes a filter flag and its value, \
                 e.g. --not --namespace kube-system"
            )));
        }
    };
    list.push(value.to_string());
    Ok(())
}

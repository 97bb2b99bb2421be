//! What-if replay (`observer check`): JSON flow lines in, one JSON verdict line out each.
//!
//! Input line: `{"src": E, "dst": E, "dst_port": N, "protocol": "TCP"}` where `E` is
//! `"namespace/pod"`, an IP literal, or `{"ip", "namespace", "pod", "node", "port"}`; the
//! port may also be `dst.port`. Protocol is TCP, UDP or SCTP in any case (default TCP).
//! Flow records written by the daemon are valid input, read through the record's own type
//! (`observer_api::record::FlowRecord`): every field it writes is understood.
//!
//! Lines that cannot be evaluated get a result with an `error` field instead of a
//! verdict: pods or nodes not in the manifests, and, under the `generic` CNI profile,
//! ICMP/ICMPv6 and other protocols (NetworkPolicy v1 only covers TCP, UDP and SCTP; the
//! other profiles judge them as their CNI does, see [`super::CniProfile`]). Malformed lines stop the run with
//! [`CheckError::Line`], naming the 1-based line number. Blank lines are skipped.

use std::io::{BufRead, Read, Write};

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

mod endpoint;
mod tiered;

use endpoint::{EndpointOut, EndpointSpec, parse_endpoint};

pub use tiered::{AddressFlow, TieredJudge, TieredJudges};

use super::evaluate::evaluate;
use super::model::{Endpoint, FlowQuery, Protocol};
use super::snapshot::PolicySnapshot;
use observer_api::record::{FlowRecord, RecordEndpoint};
use observer_api::verdict::{Category, Verdict, VerdictKind};
use observer_api::vocab::IpProtocol;

/// Counts of a `check` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CheckSummary {
    /// Non-blank lines processed.
    pub lines: usize,
    /// Lines whose verdict is allow.
    pub allowed: usize,
    /// Lines whose verdict is deny.
    pub denied: usize,
    /// Lines involving hostNetwork pods ([`super::Category::Undefined`]).
    pub undefined: usize,
    /// Lines reported with an `error` field (ICMP, unknown pod or node).
    pub not_evaluable: usize,
}

/// Why a `check` run stopped.
#[derive(Debug, Error)]
pub enum CheckError {
    /// A line is not a valid flow.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading the input failed.
    #[error("line {line}: read error: {source}")]
    Read {
        /// 1-based number of the line being read.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("write error: {0}")]
    Write(#[source] std::io::Error),
}

/// The outcome class of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// hostNetwork pod involved.
    Undefined,
    /// Reported with an `error` field.
    NotEvaluable,
}

/// The longest input line read: a flow line is a few hundred bytes, a flow-log record with
/// many labels a few kilobytes. Longer input (`--flows /dev/zero`) is refused, not buffered.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Evaluates every line of `input`, writing one JSON line per non-blank input line.
pub fn check_lines(
    snapshot: &PolicySnapshot,
    input: impl BufRead,
    output: impl Write,
) -> Result<CheckSummary, CheckError> {
    check_lines_with(snapshot, TieredJudges::default(), input, output)
}

/// [`check_lines`], with the tiered judges (see [`TieredJudges`]).
pub fn check_lines_with(
    snapshot: &PolicySnapshot,
    tiered: TieredJudges<'_>,
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<CheckSummary, CheckError> {
    let mut summary = CheckSummary::default();
    let mut buf = Vec::new();
    for line_no in 1.. {
        buf.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| CheckError::Read {
                line: line_no,
                source,
            })?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(CheckError::Line {
                line: line_no,
                message: format!("longer than {MAX_LINE_BYTES} bytes: not a flow line"),
            });
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            return Err(CheckError::Line {
                line: line_no,
                message: "not UTF-8 text".into(),
            });
        };
        if text.trim().is_empty() {
            continue;
        }
        let (json, outcome) = check_line_with(snapshot, tiered, line_no, text)?;
        writeln!(output, "{json}").map_err(CheckError::Write)?;
        summary.lines += 1;
        match outcome {
            LineOutcome::Allow => summary.allowed += 1,
            LineOutcome::Deny => summary.denied += 1,
            LineOutcome::Undefined => summary.undefined += 1,
            LineOutcome::NotEvaluable => summary.not_evaluable += 1,
        }
    }
    output.flush().map_err(CheckError::Write)?;
    Ok(summary)
}

/// Evaluates one line; returns the output JSON (without newline) and its outcome.
pub fn check_line(
    snapshot: &PolicySnapshot,
    line_no: usize,
    text: &str,
) -> Result<(String, LineOutcome), CheckError> {
    check_line_with(snapshot, TieredJudges::default(), line_no, text)
}

/// Judges a flow-log record by the NetworkPolicies of `snapshot`, its ends found as
/// `check` finds them (pod by namespace and name, else node, else address).
pub fn judge_record(snapshot: &PolicySnapshot, record: &FlowRecord) -> LineOutcome {
    judge(snapshot, TieredJudges::default(), 0, record_query(record))
        .map_or(LineOutcome::NotEvaluable, |(_, outcome)| outcome)
}

fn check_line_with(
    snapshot: &PolicySnapshot,
    tiered: TieredJudges<'_>,
    line_no: usize,
    text: &str,
) -> Result<(String, LineOutcome), CheckError> {
    let bad = |message: String| CheckError::Line {
        line: line_no,
        message,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    // A flow-log record is read through the record's own type, so every field the daemon
    // writes is understood (and a record that is not one is refused, naming the field).
    if is_flow_record(obj) {
        let record: FlowRecord = serde_json::from_value(value.clone())
            .map_err(|e| bad(format!("not a flow-log record: {e}")))?;
        return judge(snapshot, tiered, line_no, record_query(&record));
    }
    let src = parse_endpoint(obj.get("src"), "src").map_err(bad)?;
    let dst = parse_endpoint(obj.get("dst"), "dst").map_err(bad)?;
    let proto = match obj.get("protocol") {
        None | Some(Value::Null) => ProtoField::Known(Protocol::Tcp),
        Some(Value::String(s)) => parse_protocol(s).ok_or_else(|| {
            bad(format!(
                "protocol: unsupported {s:?} (expected TCP, UDP, SCTP, ICMP or ICMPv6)"
            ))
        })?,
        Some(other) => return Err(bad(format!("protocol: expected a string, got {other}"))),
    };
    let port = dst_port(obj, dst.port).map_err(bad)?;
    let icmp = match obj.get("icmp") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let field = |name: &str| {
                v.get(name)
                    .and_then(Value::as_u64)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| bad(format!("icmp.{name}: expected a number 0-255")))
            };
            Some((field("type")?, field("code")?))
        }
    };
    judge(snapshot, tiered, line_no, (src, dst, proto, port, icmp))
}

/// A line the daemon wrote: it has the record's counts and state.
fn is_flow_record(obj: &Map<String, Value>) -> bool {
    ["fwd", "rev", "state", "first_seen"]
        .iter()
        .all(|k| obj.contains_key(*k))
}

/// What `check` judges of a flow-log record: its ends as identified (pod by namespace and
/// name, else node, else address), protocol and destination port.
fn record_query(r: &FlowRecord) -> LineQuery {
    let spec = |e: &RecordEndpoint| EndpointSpec {
        ip: Some(e.ip),
        namespace: e
            .identity
            .namespace
            .clone()
            .filter(|_| e.identity.pod.is_some()),
        pod: e.identity.pod.clone(),
        node: e.identity.node.clone().filter(|_| e.identity.pod.is_none()),
        port: Some(e.port),
    };
    let proto = match (Protocol::of_ip(r.protocol), r.protocol) {
        (Some(known), _) => ProtoField::Known(known),
        (None, IpProtocol::ICMPV6) => ProtoField::Icmp("ICMPv6"),
        (None, IpProtocol::ICMP) => ProtoField::Icmp("ICMP"),
        // Not a protocol NetworkPolicy names: not evaluable, as ICMP.
        (None, _) => ProtoField::Icmp("other IP protocol"),
    };
    let icmp = r.icmp.as_ref().map(|i| (i.icmp_type, i.code));
    (spec(&r.src), spec(&r.dst), proto, Some(r.dst.port), icmp)
}

/// What a line asks: both ends, protocol, destination port, ICMP type and code.
type LineQuery = (
    EndpointSpec,
    EndpointSpec,
    ProtoField,
    Option<u16>,
    Option<(u8, u8)>,
);

/// Judges resolved line parts.
fn judge(
    snapshot: &PolicySnapshot,
    judges: TieredJudges<'_>,
    line_no: usize,
    (src, dst, proto, port, icmp): LineQuery,
) -> Result<(String, LineOutcome), CheckError> {
    let bad = |message: String| CheckError::Line {
        line: line_no,
        message,
    };
    let mut out = OutLine {
        line: line_no,
        src: src.echo(snapshot),
        dst: dst.echo(snapshot),
        protocol: proto.name(),
        port,
        ..OutLine::default()
    };
    let resolved = (src.resolve(snapshot), dst.resolve(snapshot));
    let other_protocol = matches!(proto, ProtoField::Icmp(_));
    let tiered = judges.all.or(judges
        .cni_dependent
        .filter(|_| other_protocol && judges.profile.judges_other_protocols()));
    if let Some(tiered) = tiered {
        return judge_addresses(tiered, out, &resolved, proto, port, icmp, line_no);
    }
    let (protocol, port, src_ep, dst_ep) = match (proto, port, resolved) {
        (ProtoField::Icmp(name), ..) => {
            out.error = Some(format!(
                "{name} is not covered by NetworkPolicy v1 (TCP, UDP and SCTP only): not evaluable"
            ));
            return finish(&out, LineOutcome::NotEvaluable, line_no);
        }
        (ProtoField::Known(_), None, _) => {
            return Err(bad("dst_port: missing (or set dst.port)".into()));
        }
        (_, _, (Err(e), _) | (_, Err(e))) => {
            out.error = Some(e);
            return finish(&out, LineOutcome::NotEvaluable, line_no);
        }
        (ProtoField::Known(p), Some(port), (Ok(s), Ok(d))) => (p, port, s, d),
    };
    let query = FlowQuery {
        src: src_ep,
        dst: dst_ep,
        port,
        protocol,
    };
    let v = evaluate(snapshot, &query);
    if let Some(tiered) = judges
        .cni_dependent
        .filter(|_| v.category == Category::Undefined && judges.profile.host_network_is_node())
    {
        // A host-networked pod, which this CNI sees as its node's address.
        let resolved = (Ok(query.src), Ok(query.dst));
        return judge_addresses(tiered, out, &resolved, proto, Some(port), icmp, line_no);
    }
    let outcome = match v.kind() {
        VerdictKind::Undefined => LineOutcome::Undefined,
        VerdictKind::Allow => LineOutcome::Allow,
        VerdictKind::Deny => LineOutcome::Deny,
    };
    out.report = Some(v.owned());
    finish(&out, outcome, line_no)
}

/// Judges a line by its addresses, with a tiered judge.
fn judge_addresses(
    tiered: &dyn TieredJudge,
    mut out: OutLine,
    resolved: &(Result<Endpoint, String>, Result<Endpoint, String>),
    proto: ProtoField,
    port: Option<u16>,
    icmp: Option<(u8, u8)>,
    line_no: usize,
) -> Result<(String, LineOutcome), CheckError> {
    let address = |e: &EndpointOut| e.ip.as_deref().and_then(|ip| ip.parse().ok());
    let number = match proto {
        ProtoField::Known(p) => Some(p.ip().0),
        ProtoField::Icmp("ICMP") => Some(1),
        ProtoField::Icmp("ICMPv6") => Some(58),
        ProtoField::Icmp(_) => None,
    };
    match (address(&out.src), address(&out.dst), number, resolved) {
        (_, _, _, (Err(e), _) | (_, Err(e))) => out.error = Some(e.clone()),
        (Some(s), Some(d), Some(n), _) => {
            // An ICMP record's "port" is its identifier, not a port.
            let port = port.filter(|_| matches!(proto, ProtoField::Known(_)));
            let asked = AddressFlow {
                source: s,
                destination: d,
                protocol: n,
                port,
                icmp,
            };
            let v = tiered.judge(&asked);
            out.staged = tiered.judge_staged(&asked);
            let outcome = if v.allowed {
                LineOutcome::Allow
            } else {
                LineOutcome::Deny
            };
            out.report = Some(v);
            return finish(&out, outcome, line_no);
        }
        _ => out.error = Some("an end without an address, or an unknown protocol".into()),
    }
    finish(&out, LineOutcome::NotEvaluable, line_no)
}

fn finish(
    out: &OutLine,
    outcome: LineOutcome,
    line_no: usize,
) -> Result<(String, LineOutcome), CheckError> {
    serde_json::to_string(out)
        .map(|s| (s, outcome))
        .map_err(|e| CheckError::Line {
            line: line_no,
            message: format!("cannot render output: {e}"),
        })
}

#[derive(Debug, Clone, Copy)]
enum ProtoField {
    Known(Protocol),
    Icmp(&'static str),
}

impl ProtoField {
    fn name(self) -> &'static str {
        match self {
            Self::Known(p) => p.as_str(),
            Self::Icmp(n) => n,
        }
    }
}

fn parse_protocol(s: &str) -> Option<ProtoField> {
    if let Some(p) = Protocol::from_any_case(s) {
        return Some(ProtoField::Known(p));
    }
    match s.to_ascii_uppercase().as_str() {
        "ICMP" => Some(ProtoField::Icmp("ICMP")),
        "ICMPV6" | "ICMP6" | "IPV6-ICMP" => Some(ProtoField::Icmp("ICMPv6")),
        _ => None,
    }
}

fn dst_port(obj: &Map<String, Value>, from_dst: Option<u16>) -> Result<Option<u16>, String> {
    let top = match obj.get("dst_port") {
        None | Some(Value::Null) => None,
        Some(v) => Some(port_value(v, "dst_port")?),
    };
    match (top, from_dst) {
        (Some(a), Some(b)) if a != b => Err(format!("dst_port {a} disagrees with dst.port {b}")),
        (a, b) => Ok(a.or(b)),
    }
}

fn port_value(v: &Value, field: &str) -> Result<u16, String> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("{field}: expected a port number 0-65535, got {v}"))
}

/// A parsed endpoint before lookup.
#[derive(Debug, Default, Serialize)]
struct OutLine {
    line: usize,
    src: EndpointOut,
    dst: EndpointOut,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(flatten)]
    report: Option<Verdict>,
    /// The verdict with the staged policies enforced, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    staged: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

//! How `observer observe` prints: an aligned `table` or one-line `compact` for people (the
//! default on a terminal), `jsonl` (one JSON object a line, the default when piped) or
//! indented `json` for programs. Colour only on a terminal, or when asked. The JSON is the
//! flow log's (`FlowRecord`'s serde), with the flow's cursor.

use std::io::{self, Write};

use serde_json::json;

use crate::flow::{FlowRecord, RecordEndpoint};
use crate::policy::VerdictKind;
use crate::wire::proto::LostFlows;
use crate::wire::proto::lost_flows::Reason;

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header.
    Table,
    /// One line a flow: `time node source -> destination protocol state verdict`.
    Compact,
    /// One JSON object a flow, indented.
    Json,
    /// JSON Lines: one JSON object a line.
    Jsonl,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The table's columns.
const COLUMNS: [&str; 9] = [
    "TIME",
    "NODE",
    "SOURCE",
    "DESTINATION",
    "PROTO",
    "STATE",
    "VERDICT",
    "POLICY",
    "PACKETS/BYTES",
];

/// Prints flows and gaps in one format.
pub struct Printer<W: Write> {
    out: W,
    format: Format,
    color: bool,
    /// The table's column widths so far: they only grow, so a followed table stays
    /// aligned from the first row on as long as values fit.
    widths: [usize; COLUMNS.len()],
    header_written: bool,
    /// Table rows not printed yet (without --follow the whole table is aligned at once).
    pending: Vec<[String; COLUMNS.len()]>,
    /// Print each row at once (followed streams).
    immediate: bool,
}

impl<W: Write> Printer<W> {
    /// A printer writing to `out`.
    pub fn new(out: W, format: Format, color: bool, immediate: bool) -> Self {
        Self {
            out,
            format,
            color,
            widths: COLUMNS.map(str::len),
            header_written: false,
            pending: Vec::new(),
            immediate,
        }
    }

    /// One flow.
    /// `token`: a relay's, to resume after this flow (empty from a node).
    pub fn flow(&mut self, cursor: u64, token: &str, record: &FlowRecord) -> io::Result<()> {
        let value = || {
            let mut value = json!({ "cursor": cursor, "flow": record });
            if !token.is_empty() {
                value["token"] = json!(token);
            }
            value
        };
        match self.format {
            Format::Jsonl => writeln!(self.out, "{}", value())?,
            Format::Json => {
                let value = value();
                let text = serde_json::to_string_pretty(&value).map_err(io::Error::other)?;
                writeln!(self.out, "{text}")?;
            }
            Format::Compact => {
                let [time, node, src, dst, proto, state, verdict, policy, counts] = row(record);
                let verdict = self.paint(record.verdict_kind(), &verdict, verdict.len());
                let by = if policy.is_empty() {
                    String::new()
                } else {
                    format!(" by {policy}")
                };
                writeln!(
                    self.out,
                    "{time} [{node}] {src} -> {dst} {proto} {state} {verdict}{by} {counts}"
                )?;
            }
            Format::Table => {
                let cells = row(record);
                for (width, cell) in self.widths.iter_mut().zip(&cells) {
                    *width = (*width).max(cell.chars().count());
                }
                self.pending.push(cells);
                if self.immediate {
                    self.flush_table()?;
                }
            }
        }
        if self.immediate {
            self.out.flush()?;
        }
        Ok(())
    }

    /// A gap: flows the server no longer held.
    pub fn lost(&mut self, lost: &LostFlows) -> io::Result<()> {
        match self.format {
            Format::Jsonl | Format::Json => {
                let mut value = json!({ "lost": {
                    "first_cursor": lost.first_cursor,
                    "last_cursor": lost.last_cursor,
                    "reason": reason(lost),
                }});
                if let Some(n) = lost.matching_flows {
                    value["lost"]["violations"] = json!(n);
                }
                if !lost.node.is_empty() {
                    value["lost"]["node"] = json!(lost.node);
                }
                writeln!(self.out, "{value}")?;
            }
            Format::Compact | Format::Table => {
                self.flush_table()?;
                let text = format!("-- {} --", describe_lost(lost));
                let text = if self.color {
                    format!("\x1b[33m{text}\x1b[0m")
                } else {
                    text
                };
                writeln!(self.out, "{text}")?;
            }
        }
        self.out.flush()
    }

    /// Prints what is pending (the aligned table) and flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush_table()?;
        self.out.flush()
    }

    fn flush_table(&mut self) -> io::Result<()> {
        if self.format != Format::Table || self.pending.is_empty() {
            return Ok(());
        }
        if !self.header_written {
            let header = COLUMNS.map(String::from);
            let line = self.line(&header, None);
            let line = if self.color {
                format!("\x1b[1m{line}\x1b[0m")
            } else {
                line
            };
            writeln!(self.out, "{line}")?;
            self.header_written = true;
        }
        for cells in std::mem::take(&mut self.pending) {
            let kind = VerdictKind::ALL
                .into_iter()
                .find(|k| k.name().eq_ignore_ascii_case(&cells[6]));
            let line = self.line(&cells, kind);
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    /// The cells padded to the widths, two spaces apart; the verdict coloured.
    fn line(&self, cells: &[String; COLUMNS.len()], kind: Option<VerdictKind>) -> String {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(self.widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let last = i == COLUMNS.len() - 1;
            if i == 6 {
                line.push_str(&self.paint(kind, cell, width));
            } else if last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        line.trim_end().to_string()
    }

    /// `text` padded to `width`, in the verdict's colour when colour is on.
    fn paint(&self, kind: Option<VerdictKind>, text: &str, width: usize) -> String {
        let padded = format!("{text:<width$}");
        if !self.color {
            return padded;
        }
        let code = match kind {
            Some(VerdictKind::Allow) => "32",
            Some(VerdictKind::Deny) => "1;31",
            Some(VerdictKind::Undefined) => "33",
            None => "2",
        };
        format!("\x1b[{code}m{padded}\x1b[0m")
    }
}

/// A record's cells, in [`COLUMNS`] order.
fn row(r: &FlowRecord) -> [String; COLUMNS.len()] {
    let verdict = r
        .verdict_kind()
        .map_or("NONE".to_string(), |k| k.name().to_ascii_uppercase());
    [
        short_time(&r.last_seen.to_string()),
        r.node_name.clone().unwrap_or_else(|| "-".into()),
        end(&r.src),
        end(&r.dst),
        r.protocol.to_string(),
        r.state.name().to_string(),
        verdict,
        deciding(r),
        format!(
            "{}/{}",
            r.fwd.packets + r.rev.packets,
            r.fwd.bytes + r.rev.bytes
        ),
    ]
}

/// `2026-12-01T05:30:12.123456789Z` as `Dec 01 05:30:12.123` (UTC).
fn short_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (Some(month), Some(day), Some(time)) = (
        rfc3339.get(5..7).and_then(|m| m.parse::<usize>().ok()),
        rfc3339.get(8..10),
        rfc3339.get(11..19),
    ) else {
        return rfc3339.to_string();
    };
    let millis = rfc3339
        .get(19..)
        .and_then(|f| f.strip_prefix('.'))
        .map(|f| f.trim_end_matches('Z'))
        .map_or("000".to_string(), |f| format!("{f:0<3}")[..3].to_string());
    let month = MONTHS.get(month.wrapping_sub(1)).copied().unwrap_or("???");
    format!("{month} {day} {time}.{millis}")
}

/// `ns/pod:port (Kind/name)`, or `node NAME:port`, or `address:port`.
fn end(e: &RecordEndpoint) -> String {
    let name = e.display_name();
    let host = if name.contains(':') && e.identity.pod.is_none() {
        format!("[{name}]")
    } else {
        name
    };
    match &e.identity.workload {
        Some(w) => format!("{host}:{} ({}/{})", e.port, w.kind, w.name),
        None => format!("{host}:{}", e.port),
    }
}

/// The deciding policy and rule (`Verdict::deciding_step`), `namespace/name[rule]`.
fn deciding(r: &FlowRecord) -> String {
    let step = r.policy.as_ref().and_then(|v| v.deciding_step());
    step.map_or(String::new(), |t| match t.rule_index {
        Some(rule) => format!("{}[{rule}]", t.policy),
        None => t.policy.to_string(),
    })
}

/// A `LostFlows` reason, as JSON output spells it.
fn reason(lost: &LostFlows) -> &'static str {
    match Reason::try_from(lost.reason) {
        Ok(Reason::Overwritten) => "overwritten",
        Ok(Reason::EarlierRun) => "earlier-run",
        Ok(Reason::NodeUnreachable) => "node-unreachable",
        _ => "unspecified",
    }
}

/// A gap in words: which flows, of which node, why.
pub fn describe_lost(lost: &LostFlows) -> String {
    let violations = lost
        .matching_flows
        .map(|n| format!(", {n} violations among them"))
        .unwrap_or_default();
    let node = if lost.node.is_empty() {
        String::new()
    } else {
        format!("node {}: ", lost.node)
    };
    if Reason::try_from(lost.reason) == Ok(Reason::NodeUnreachable) {
        return format!("{node}lost flows: its observer could not be reached");
    }
    format!(
        "{node}lost flows {}..={} ({}{violations}): the server no longer held them",
        lost.first_cursor,
        lost.last_cursor,
        reason(lost)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_short_and_utc() {
        assert_eq!(
            short_time("2026-12-01T05:30:12.123456789Z"),
            "Dec 01 05:30:12.123"
        );
        assert_eq!(short_time("2026-01-09T00:00:01Z"), "Jan 09 00:00:01.000");
        assert_eq!(short_time("2026-01-09T00:00:01.5Z"), "Jan 09 00:00:01.500");
    }
}

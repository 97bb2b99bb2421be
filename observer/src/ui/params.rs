//! The console API's query parameters: decoded, taken by name, and refused with a message
//! naming the parameter when a value is wrong or a name unknown. Pure.

use super::edge::EdgeQuery;
use super::service_map::{EdgeVerdict, Level, MapQuery};
use crate::flow::{IpProtocol, Timestamp};

/// Edges a map may ask for at most.
pub const MAX_EDGES: usize = 20_000;
/// Flows behind an edge answered at most.
pub const MAX_EDGE_FLOWS: usize = 1_000;
/// Values a repeatable filter takes at most (each is checked against every record).
pub const MAX_VALUES: usize = 64;

/// A query string's parameters, in order, percent-decoded.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `query` (the part after `?`).
    pub fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of `name`, taken out.
    pub fn all(&mut self, name: &str) -> Vec<String> {
        let mut taken = Vec::new();
        self.0.retain(|(k, v)| {
            if k == name {
                taken.push(v.clone());
                false
            } else {
                true
            }
        });
        taken
    }

    /// Every distinct value of a repeatable filter `name`, taken out, empty ones left out;
    /// more than [`MAX_VALUES`] are refused.
    pub fn filter(&mut self, name: &str) -> Result<Vec<String>, String> {
        let mut values = self.all(name);
        values.retain(|v| !v.is_empty());
        values.sort();
        values.dedup();
        if values.len() > MAX_VALUES {
            return Err(format!("{name}: at most {MAX_VALUES} values"));
        }
        Ok(values)
    }

    /// The value of `name`, taken out; two values are refused.
    pub fn one(&mut self, name: &str) -> Result<Option<String>, String> {
        let mut values = self.all(name);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(format!("{name}: given more than once")),
        }
    }

    /// The value of `name`, required.
    pub fn required(&mut self, name: &str) -> Result<String, String> {
        self.one(name)?.ok_or_else(|| format!("{name}: required"))
    }

    /// Refuses what is left: names this answer does not take.
    pub fn finish(self) -> Result<(), String> {
        match self.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(format!("unknown parameter {name:?}")),
        }
    }
}

/// The map's parameters: `level`, `max_edges`, `namespace`, `workload`, `verdict`,
/// `protocol`, `window` (seconds before `now`).
pub fn map_query(params: &mut Params, now: Timestamp) -> Result<MapQuery, String> {
    let mut map = MapQuery::default();
    if let Some(level) = params.one("level")? {
        map.level = match level.as_str() {
            "workload" => Level::Workload,
            "namespace" => Level::Namespace,
            other => return Err(format!("level {other:?}: workload or namespace")),
        };
    }
    if let Some(max) = params.one("max_edges")? {
        map.max_edges = max
            .parse()
            .ok()
            .filter(|n| (1..=MAX_EDGES).contains(n))
            .ok_or_else(|| format!("max_edges {max:?}: a number from 1 to {MAX_EDGES}"))?;
    }
    map.namespaces = params.filter("namespace")?;
    map.workloads = params.filter("workload")?;
    for verdict in params.filter("verdict")? {
        map.verdicts.push(verdict_named(&verdict)?);
    }
    for protocol in params.filter("protocol")? {
        map.protocols
            .push(IpProtocol::parse(&protocol).ok_or_else(|| {
                format!("protocol {protocol:?}: TCP, UDP, SCTP, ICMP, ICMPv6 or a number 0-255")
            })?);
    }
    if let Some(window) = params.one("window")? {
        let seconds: i64 = window
            .parse()
            .ok()
            .filter(|s| (1..=366 * 86_400).contains(s))
            .ok_or_else(|| format!("window {window:?}: seconds, from 1 to a year"))?;
        map.since = Some(Timestamp(now.0.saturating_sub(seconds * 1_000_000_000)));
    }
    Ok(map)
}

/// An edge's parameters: the map's, and `source`, `target`, `protocol`, `port`, `limit`.
pub fn edge_query(params: &mut Params, now: Timestamp) -> Result<EdgeQuery, String> {
    let source = params.required("source")?;
    let target = params.required("target")?;
    let protocol = params.required("protocol")?;
    let protocol = IpProtocol::parse(&protocol).ok_or_else(|| {
        format!("protocol {protocol:?}: TCP, UDP, SCTP, ICMP, ICMPv6 or a number")
    })?;
    let port = params.required("port")?;
    let port = port
        .parse()
        .map_err(|_| format!("port {port:?}: a number from 0 to 65535"))?;
    let limit = match params.one("limit")? {
        None => 200,
        Some(limit) => limit
            .parse()
            .ok()
            .filter(|n| (1..=MAX_EDGE_FLOWS).contains(n))
            .ok_or_else(|| format!("limit {limit:?}: a number from 1 to {MAX_EDGE_FLOWS}"))?,
    };
    let map = map_query(params, now)?;
    Ok(EdgeQuery {
        map,
        source,
        target,
        protocol,
        port,
        limit,
    })
}

fn verdict_named(name: &str) -> Result<EdgeVerdict, String> {
    Ok(match name {
        "denied" => EdgeVerdict::Denied,
        "undefined" => EdgeVerdict::Undefined,
        "allowed" => EdgeVerdict::Allowed,
        "not_isolated" => EdgeVerdict::NotIsolated,
        "none" => EdgeVerdict::None,
        other => {
            return Err(format!(
                "verdict {other:?}: denied, undefined, allowed, not_isolated or none"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_wrong_ones_named() {
        let now = Timestamp(100_000_000_000);
        let mut params = Params::parse("level=namespace&namespace=a%2Fb&verdict=denied&window=10");
        let map = map_query(&mut params, now).expect("map");
        params.finish().expect("all taken");
        assert_eq!(map.level, Level::Namespace);
        assert_eq!(map.namespaces, ["a/b"]);
        assert_eq!(map.since, Some(Timestamp(90_000_000_000)));
        for (query, message) in [
            ("level=pods", "level \"pods\""),
            ("max_edges=0", "max_edges"),
            ("verdict=maybe", "verdict \"maybe\""),
            ("protocol=HTTP", "protocol \"HTTP\""),
            ("window=-1", "window"),
            ("level=workload&level=namespace", "given more than once"),
        ] {
            let error = map_query(&mut Params::parse(query), now).expect_err(query);
            assert!(error.contains(message), "{query}: {error}");
        }
        let many: String = (0..=MAX_VALUES)
            .map(|i| format!("namespace=n{i}&"))
            .collect();
        let error = map_query(&mut Params::parse(&many), now).expect_err("too many");
        assert_eq!(error, format!("namespace: at most {MAX_VALUES} values"));
        let same = "namespace=a&".repeat(1_000);
        let map = map_query(&mut Params::parse(&same), now).expect("one value, repeated");
        assert_eq!(map.namespaces, ["a"]);
        let mut extra = Params::parse("colour=red");
        map_query(&mut extra, now).expect("map");
        assert!(extra.finish().expect_err("unknown").contains("colour"));
        let edge = edge_query(
            &mut Params::parse("source=wl%3Aa%2FPod%2Fx&target=ns%3Ab&protocol=TCP&port=80"),
            now,
        )
        .expect("edge");
        assert_eq!((edge.source.as_str(), edge.port), ("wl:a/Pod/x", 80));
        let error = edge_query(&mut Params::parse("source=a&target=b&protocol=TCP"), now)
            .expect_err("no port");
        assert_eq!(error, "port: required");
    }
}

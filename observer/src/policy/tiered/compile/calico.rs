//! Calico `NetworkPolicy` / `GlobalNetworkPolicy` (and staged forms) → [`Policy`]: selectors
//! parsed with positions in errors, `types` defaulted as Calico does, rule ends scoped to
//! the policy's namespace unless a namespace selector replaces the scope.

use super::super::calico_selector::CalicoSelector;
use super::super::model::{
    Action, CalicoEnd, EndMatch, NamespaceScope, Policy, PortMatch, Rule, SourceKind, Subject,
};
use super::super::objects::{
    CalicoPolicySpec, CalicoRule, EntityRule, IcmpMatch, Object, PortValue,
};
use super::{DEFAULT_TIER, networks, protocol_number, selector};
use crate::policy::IpSet;

pub(super) fn calico(
    object: Object<CalicoPolicySpec>,
    global: bool,
    staged: bool,
) -> Result<Policy, String> {
    let spec = object.spec;
    let namespace = if global {
        None
    } else {
        Some(
            object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        )
    };
    let subject_namespaces = match (&namespace, spec.namespace_selector.as_deref()) {
        (Some(ns), _) => NamespaceScope::Only(ns.clone()),
        (None, None) => NamespaceScope::All,
        (None, Some(text)) => calico_scope(selector(Some(text), "spec.namespaceSelector")?),
    };
    let subject = Subject::Calico {
        selector: selector(spec.selector.as_deref(), "spec.selector")?,
        namespaces: subject_namespaces,
        service_accounts: spec
            .service_account_selector
            .as_deref()
            .map(|s| selector(Some(s), "spec.serviceAccountSelector"))
            .transpose()?,
    };
    let ingress_rules = spec.ingress.unwrap_or_default();
    let egress_rules = spec.egress.unwrap_or_default();
    // An empty list is defaulted like an absent one, as Calico's API server does.
    let (ingress_type, egress_type) = match spec.types.as_ref().filter(|t| !t.is_empty()) {
        Some(types) => {
            for (i, t) in types.iter().enumerate() {
                if t != "Ingress" && t != "Egress" {
                    return Err(format!("spec.types[{i}]: {t:?} is not Ingress or Egress"));
                }
            }
            (
                types.iter().any(|t| t == "Ingress"),
                types.iter().any(|t| t == "Egress"),
            )
        }
        // Calico's defaulting: egress rules only → Egress; otherwise Ingress, plus Egress
        // when there are egress rules too.
        None => (
            !ingress_rules.is_empty() || egress_rules.is_empty(),
            !egress_rules.is_empty(),
        ),
    };
    let scope_ns = namespace.clone();
    let rules = |list: Vec<CalicoRule>, field: &str| -> Result<Vec<Rule>, String> {
        list.into_iter()
            .enumerate()
            .map(|(i, r)| calico_rule(r, i, scope_ns.as_deref(), &format!("spec.{field}[{i}]")))
            .collect()
    };
    let tier = spec.tier.clone().unwrap_or_else(|| DEFAULT_TIER.into());
    Ok(Policy {
        kind: if global {
            SourceKind::CalicoGlobalNetworkPolicy
        } else {
            SourceKind::CalicoNetworkPolicy
        },
        staged,
        namespace,
        sort_name: object.metadata.name.clone(),
        name: object.metadata.name,
        tier,
        order: spec.order,
        subject,
        ingress_type,
        egress_type,
        ingress: rules(ingress_rules, "ingress")?,
        egress: rules(egress_rules, "egress")?,
    })
}

fn calico_scope(selector: CalicoSelector) -> NamespaceScope {
    if selector.is_global() {
        NamespaceScope::Nothing
    } else if selector.is_all() {
        NamespaceScope::All
    } else {
        NamespaceScope::Calico(selector)
    }
}

fn calico_rule(
    rule: CalicoRule,
    index: usize,
    namespace: Option<&str>,
    field: &str,
) -> Result<Rule, String> {
    let action = match rule.action.as_str() {
        "Allow" => Action::Allow,
        "Deny" => Action::Deny,
        "Pass" => Action::Pass,
        "Log" => Action::Log,
        other => {
            return Err(format!(
                "{field}.action: {other:?} is not Allow, Deny, Pass or Log"
            ));
        }
    };
    let protocol = rule
        .protocol
        .as_ref()
        .map(|p| protocol_number(p, &format!("{field}.protocol")))
        .transpose()?;
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .map(|p| protocol_number(p, &format!("{field}.notProtocol")))
        .transpose()?;
    let icmp_of = |m: Option<IcmpMatch>, at: &str| -> Result<_, String> {
        match m {
            None => Ok(None),
            Some(m) => match m.kind {
                Some(kind) => Ok(Some((kind, m.code))),
                None if m.code.is_some() => Err(format!("{field}.{at}.code needs a type")),
                None => Ok(None),
            },
        }
    };
    Ok(Rule {
        index,
        action,
        protocol,
        not_protocol,
        icmp: icmp_of(rule.icmp, "icmp")?,
        not_icmp: icmp_of(rule.not_icmp, "notICMP")?,
        source: calico_end(rule.source, namespace, &format!("{field}.source"))?,
        destination: calico_end(rule.destination, namespace, &format!("{field}.destination"))?,
    })
}

fn calico_end(
    end: Option<EntityRule>,
    namespace: Option<&str>,
    field: &str,
) -> Result<EndMatch, String> {
    let Some(end) = end else {
        return Ok(EndMatch::default());
    };
    let nets = |list: Option<Vec<String>>, at: &str| -> Result<Option<IpSet>, String> {
        list.map(|l| networks(&l, &format!("{field}.{at}")))
            .transpose()
    };
    let scope = match end.namespace_selector.as_deref() {
        Some(text) => calico_scope(selector(Some(text), &format!("{field}.namespaceSelector"))?),
        None => match namespace {
            Some(ns) => NamespaceScope::Only(ns.to_owned()),
            None => NamespaceScope::All,
        },
    };
    let (sa_names, sa_selector) = match end.service_accounts {
        Some(sa) => (
            sa.names,
            sa.selector
                .as_deref()
                .map(|s| selector(Some(s), &format!("{field}.serviceAccounts.selector")))
                .transpose()?,
        ),
        None => (None, None),
    };
    let pods_only = end.selector.is_some()
        || end.namespace_selector.is_some()
        || sa_names.is_some()
        || sa_selector.is_some();
    let calico = CalicoEnd {
        nets: nets(end.nets, "nets")?,
        not_nets: nets(end.not_nets, "notNets")?,
        selector: end
            .selector
            .as_deref()
            .map(|s| selector(Some(s), &format!("{field}.selector")))
            .transpose()?,
        pods_only,
        scope: Some(scope),
        not_selector: end
            .not_selector
            .as_deref()
            .map(|s| selector(Some(s), &format!("{field}.notSelector")))
            .transpose()?,
        service_account_names: sa_names,
        service_account_selector: sa_selector,
    };
    let ports =
        |list: Option<Vec<PortValue>>, at: &str| -> Result<Option<Vec<PortMatch>>, String> {
            list.map(|l| {
                l.iter()
                    .enumerate()
                    .map(|(i, p)| calico_port(p, &format!("{field}.{at}[{i}]")))
                    .collect()
            })
            .transpose()
        };
    Ok(EndMatch {
        peers: None,
        calico: Some(calico),
        ports: ports(end.ports, "ports")?,
        not_ports: ports(end.not_ports, "notPorts")?,
    })
}

fn calico_port(port: &PortValue, field: &str) -> Result<PortMatch, String> {
    let range = |first: u16, last: u16| PortMatch::Range {
        protocol: None,
        first,
        last,
    };
    match port {
        PortValue::Number(n) => Ok(range(*n, *n)),
        PortValue::Text(text) => {
            if let Some((a, b)) = text.split_once(':') {
                let (a, b) = (a.trim().parse::<u16>(), b.trim().parse::<u16>());
                match (a, b) {
                    (Ok(a), Ok(b)) if a <= b => Ok(range(a, b)),
                    _ => Err(format!("{field}: {text:?} is not a port range first:last")),
                }
            } else if let Ok(n) = text.parse::<u16>() {
                Ok(range(n, n))
            } else if text.is_empty() {
                Err(format!("{field}: empty port"))
            } else {
                Ok(PortMatch::Named {
                    protocol: None,
                    name: text.clone(),
                })
            }
        }
    }
}

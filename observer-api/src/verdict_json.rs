//! The JSON shape of a verdict, defined once: `observer check` lines and flow records
//! both carry it, and both are read back through it.
//!
//! ```json
//! "verdict":"allow","category":"decided",
//! "ingress":{"decision":"allowed","policies":["shop/api"],"rules":[{"policy":"shop/api","rule_index":0}],
//!            "tiers":[{"tier":"networkpolicy","policy":{"kind":"NetworkPolicy","namespace":"shop","name":"api"},"rule_index":0,"action":"allow"}]},
//! "egress":{"decision":"not-isolated","policies":[]}
//! ```
//!
//! `tiers` is the verdict itself; `policies` and `rules` are the summary earlier readers
//! know (derived from `tiers` when written; a line without `tiers` is read from them as
//! NetworkPolicy decisions).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::verdict::{
    Category, DirectionDecision, DirectionVerdict, PolicyKind, PolicyRef, RuleAction, Tier,
    TierDecision, Verdict, VerdictKind,
};

#[derive(Serialize, Deserialize)]
struct VerdictJson {
    verdict: VerdictKind,
    category: Category,
    ingress: DirectionJson,
    egress: DirectionJson,
}

#[derive(Serialize, Deserialize)]
struct DirectionJson {
    decision: DirectionDecision,
    /// Allowing policies when allowed, denying (isolating) ones when denied.
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tiers: Vec<TierDecision>,
}

#[derive(Serialize, Deserialize)]
struct RuleJson {
    policy: String,
    rule_index: usize,
}

impl From<&DirectionVerdict> for DirectionJson {
    fn from(d: &DirectionVerdict) -> Self {
        let deciding = match d.decision {
            DirectionDecision::Allowed => Some(RuleAction::Allow),
            DirectionDecision::Denied => Some(RuleAction::Deny),
            _ => None,
        };
        let mut policies: Vec<String> = Vec::new();
        for t in d.tiers.iter().filter(|t| Some(t.action) == deciding) {
            let name = t.policy.to_string();
            if !policies.contains(&name) {
                policies.push(name);
            }
        }
        let rules = d
            .allowing_rules()
            .filter_map(|t| {
                Some(RuleJson {
                    policy: t.policy.to_string(),
                    rule_index: t.rule_index?,
                })
            })
            .collect();
        Self {
            decision: d.decision,
            policies,
            rules,
            tiers: d.tiers.clone(),
        }
    }
}

impl From<DirectionJson> for DirectionVerdict {
    fn from(d: DirectionJson) -> Self {
        if !d.tiers.is_empty() {
            return Self {
                decision: d.decision,
                tiers: d.tiers,
            };
        }
        // A line written before tiers existed: NetworkPolicy was the only kind.
        let tiers = match d.decision {
            DirectionDecision::Allowed => d
                .rules
                .iter()
                .map(|r| network_policy(&r.policy, Some(r.rule_index), RuleAction::Allow))
                .collect(),
            DirectionDecision::Denied => d
                .policies
                .iter()
                .map(|p| network_policy(p, None, RuleAction::Deny))
                .collect(),
            _ => Vec::new(),
        };
        Self {
            decision: d.decision,
            tiers,
        }
    }
}

fn network_policy(name: &str, rule_index: Option<usize>, action: RuleAction) -> TierDecision {
    let (namespace, name) = match name.split_once('/') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, name.to_owned()),
    };
    TierDecision {
        tier: Tier::NetworkPolicy.name().to_owned(),
        policy: PolicyRef {
            kind: PolicyKind::NetworkPolicy,
            namespace,
            name,
        },
        rule_index,
        action,
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        VerdictJson {
            verdict: self.kind(),
            category: self.category,
            ingress: DirectionJson::from(&self.ingress),
            egress: DirectionJson::from(&self.egress),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = VerdictJson::deserialize(d)?;
        Ok(Self {
            allowed: json.verdict == VerdictKind::Allow,
            category: json.category,
            ingress: json.ingress.into(),
            egress: json.egress.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_tiers_read_as_network_policy_decisions() {
        let line = r#"{"verdict":"deny","category":"decided",
            "ingress":{"decision":"denied","policies":["db/default-deny"]},
            "egress":{"decision":"allowed","policies":["shop/out"],"rules":[{"policy":"shop/out","rule_index":2}]}}"#;
        let v: Verdict = serde_json::from_str(line).expect("reads");
        assert_eq!(v.kind(), VerdictKind::Deny);
        assert_eq!(
            v.ingress.tiers,
            vec![network_policy("db/default-deny", None, RuleAction::Deny)]
        );
        assert_eq!(
            v.egress.tiers,
            vec![network_policy("shop/out", Some(2), RuleAction::Allow)]
        );
        // Written again, the summary is unchanged and the tiers are added.
        let json = serde_json::to_value(&v).expect("writes");
        assert_eq!(json["ingress"]["policies"][0], "db/default-deny");
        assert_eq!(json["egress"]["rules"][0]["rule_index"], 2);
        assert_eq!(json["egress"]["tiers"][0]["policy"]["namespace"], "shop");
        assert_eq!(json["egress"]["tiers"][0]["action"], "allow");
        let back: Verdict = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, v);
    }

    #[test]
    fn cluster_scoped_policies_are_named_without_a_slash() {
        let t = network_policy("deny-all", None, RuleAction::Deny);
        assert_eq!(t.policy.namespace, None);
        assert_eq!(t.policy.to_string(), "deny-all");
    }
}

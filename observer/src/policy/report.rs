//! The JSON shape of a verdict, defined once: `observer check` lines and flow records
//! both carry it.

use serde::{Deserialize, Serialize};

use super::verdict::{Category, DirectionVerdict, Verdict};

/// A verdict as JSON: `verdict`, `category`, `ingress`, `egress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictReport {
    /// `allow`, `deny`, or `undefined` (hostNetwork pods: CNIs differ).
    pub verdict: String,
    /// `decided`, `node-exempt` or `undefined`.
    pub category: String,
    /// The destination side's decision.
    pub ingress: DirectionReport,
    /// The source side's decision.
    pub egress: DirectionReport,
}

/// One direction's decision and the policies behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionReport {
    /// `not-applicable`, `not-isolated`, `exempt`, `allowed` or `denied`.
    pub decision: String,
    /// Allowing policies when allowed, isolating policies when denied (`namespace/name`).
    pub policies: Vec<String>,
    /// Each allowing rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleReport>,
}

/// One allowing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// 0-based index of the rule in its direction's list.
    pub rule_index: usize,
}

impl From<&Verdict<'_>> for VerdictReport {
    fn from(v: &Verdict<'_>) -> Self {
        let verdict = match (v.category, v.allowed) {
            (Category::Undefined, _) => "undefined",
            (_, true) => "allow",
            (_, false) => "deny",
        };
        Self {
            verdict: verdict.to_owned(),
            category: v.category.as_str().to_owned(),
            ingress: DirectionReport::from(&v.ingress),
            egress: DirectionReport::from(&v.egress),
        }
    }
}

impl From<&DirectionVerdict<'_>> for DirectionReport {
    fn from(v: &DirectionVerdict<'_>) -> Self {
        let mut policies: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        match v {
            DirectionVerdict::AllowedBy(refs) => {
                for r in refs {
                    let name = r.policy_ref().to_string();
                    if !policies.contains(&name) {
                        policies.push(name.clone());
                    }
                    rules.push(RuleReport {
                        policy: name,
                        rule_index: r.rule_index,
                    });
                }
            }
            DirectionVerdict::Denied { isolated_by } => {
                policies = isolated_by.iter().map(ToString::to_string).collect();
            }
            _ => {}
        }
        Self {
            decision: v.decision().to_owned(),
            policies,
            rules,
        }
    }
}

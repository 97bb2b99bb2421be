//! A verdict in words, for the console: one sentence saying why a flow was allowed or
//! denied (the rule that allowed it, or the policies that isolate the pod with no rule
//! allowing it), and each step of each direction with the policy it names, so the page
//! can link to it. Pure.

use serde::Serialize;

use crate::policy::{Category, DirectionDecision, RuleAction, TierDecision, Verdict};
use observer_api::verdict::{DirectionVerdict, PolicyKind};

/// Why a flow got its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// One sentence.
    pub summary: String,
    /// Every step of both directions, egress first (as a packet meets them).
    pub steps: Vec<Step>,
}

/// One step of a direction's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// The tier's name.
    pub tier: String,
    /// The policy.
    pub policy: PolicyName,
    /// The rule's index in the policy's list for the direction; None for the policy's
    /// default (isolation, or the end of a tier).
    pub rule_index: Option<usize>,
    /// `allow`, `deny` or `pass`.
    pub action: &'static str,
    /// The step in words.
    pub text: String,
}

/// A policy as a link names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyName {
    /// The kind as verdicts write it (`NetworkPolicy`, `GlobalNetworkPolicy`, ...).
    pub kind: &'static str,
    /// Its namespace; None for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// Explains `verdict`; None means the flow was not judged.
pub fn explain(verdict: Option<&Verdict>) -> Explanation {
    let Some(verdict) = verdict else {
        return Explanation {
            summary: "Not judged: no cluster state yet, or a Service whose backend is not \
                      known."
                .to_owned(),
            steps: Vec::new(),
        };
    };
    let mut steps = Vec::new();
    for (direction, decided) in [("egress", &verdict.egress), ("ingress", &verdict.ingress)] {
        steps.extend(decided.tiers.iter().map(|step| describe(direction, step)));
    }
    Explanation {
        summary: summary(verdict),
        steps,
    }
}

fn summary(verdict: &Verdict) -> String {
    if verdict.category == Category::Undefined {
        return "Undefined: a hostNetwork pod is involved, and CNIs differ on whether policy \
                applies to it."
            .to_owned();
    }
    if !verdict.allowed {
        for (direction, side, decided) in [
            ("Egress", "source", &verdict.egress),
            ("Ingress", "destination", &verdict.ingress),
        ] {
            if decided.permits() {
                continue;
            }
            return denied(direction, side, decided);
        }
        return "Denied.".to_owned();
    }
    if let Some(step) = verdict.deciding_step() {
        let direction = if verdict.egress.allowing_rules().any(|s| s == step) {
            "egress"
        } else {
            "ingress"
        };
        let mut text = format!(
            "Allowed by {direction} {} of {}",
            rule_words(step.rule_index),
            policy_words(step)
        );
        let other = if direction == "egress" {
            &verdict.ingress
        } else {
            &verdict.egress
        };
        text.push_str(match other.decision {
            DirectionDecision::NotIsolated => "; the other side is not isolated.",
            DirectionDecision::NotApplicable => "; the other side is not a pod.",
            DirectionDecision::Exempt => "; ingress from the pod's own node is always allowed.",
            _ => ".",
        });
        return text;
    }
    match (verdict.ingress.decision, verdict.egress.decision) {
        (DirectionDecision::Exempt, _) => {
            "Allowed: ingress from the pod's own node is always allowed.".to_owned()
        }
        _ => "Allowed: no policy selects either side (not isolated).".to_owned(),
    }
}

/// A denied direction in words: a Deny rule, or isolation with no rule allowing.
fn denied(direction: &str, side: &str, decided: &DirectionVerdict) -> String {
    if let Some(step) = decided
        .tiers
        .iter()
        .find(|s| s.action == RuleAction::Deny && s.rule_index.is_some())
    {
        return format!(
            "{direction} denied by {} of {}.",
            rule_words(step.rule_index),
            policy_words(step)
        );
    }
    let isolating: Vec<String> = decided
        .tiers
        .iter()
        .filter(|s| s.rule_index.is_none())
        .map(policy_words)
        .collect();
    match isolating.as_slice() {
        [] => format!("{direction} denied."),
        [one] => format!(
            "{direction} denied: {one} selects the {side} pod and none of its rules allows \
             this flow."
        ),
        many => format!(
            "{direction} denied: {} select the {side} pod and no rule of them allows this \
             flow.",
            many.join(", ")
        ),
    }
}

fn describe(direction: &'static str, step: &TierDecision) -> Step {
    let action = match step.action {
        RuleAction::Allow => "allow",
        RuleAction::Deny => "deny",
        RuleAction::Pass => "pass",
    };
    let text = match (step.rule_index, step.action) {
        (Some(_), _) => format!(
            "{direction}: {} of {} ({}) says {action}",
            rule_words(step.rule_index),
            policy_words(step),
            step.tier
        ),
        (None, RuleAction::Deny) => format!(
            "{direction}: {} ({}) selects the pod and no rule of it matches: deny",
            policy_words(step),
            step.tier
        ),
        (None, _) => format!(
            "{direction}: {} ({}) without a matching rule: {action}",
            policy_words(step),
            step.tier
        ),
    };
    Step {
        direction,
        tier: step.tier.clone(),
        policy: PolicyName {
            kind: step.policy.kind.name(),
            namespace: step.policy.namespace.clone(),
            name: step.policy.name.clone(),
        },
        rule_index: step.rule_index,
        action,
        text,
    }
}

fn rule_words(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("rule {i}"),
        None => "the default".to_owned(),
    }
}

fn policy_words(step: &TierDecision) -> String {
    let kind = match step.policy.kind {
        PolicyKind::CalicoNetworkPolicy => "Calico NetworkPolicy",
        other => other.name(),
    };
    format!("{kind} {}", step.policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<crate::flow::FlowRecord> {
        include_str!("../../tests/data/api/flows.jsonl")
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture"))
            .collect()
    }

    #[test]
    fn an_allowed_flow_names_its_rule_and_a_denied_one_the_isolating_policy() {
        let records = fixtures();
        let allowed = explain(records[0].policy.as_ref());
        assert!(
            allowed
                .summary
                .starts_with("Allowed by ingress rule 0 of NetworkPolicy shop/"),
            "{allowed:?}"
        );
        assert!(allowed.steps.iter().any(|s| s.rule_index == Some(0)));
        let denied = explain(records[1].policy.as_ref());
        assert_eq!(
            denied.summary,
            "Ingress denied: NetworkPolicy db/default-deny selects the destination pod and \
             none of its rules allows this flow.",
        );
        assert_eq!(denied.steps.len(), 1, "{denied:?}");
        assert_eq!(denied.steps[0].policy.name, "default-deny");
        assert_eq!(denied.steps[0].action, "deny");
        assert!(explain(None).summary.starts_with("Not judged"));
    }
}

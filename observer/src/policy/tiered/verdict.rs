//! The tiered engine's outcome in the verdict shape records and the API carry: per
//! direction, every Pass on the way and then the deciding rule, or, at a tier's end, each
//! policy of that tier that took part (no rule, action deny), as NetworkPolicy isolation
//! is shown.

use observer_api::verdict::{
    Category, DirectionDecision, DirectionVerdict, PolicyKind, PolicyRef, RuleAction, TierDecision,
    Verdict,
};

use super::evaluate::{DirectionOutcome, Flow, Reason, TieredEngine};
use super::model::{Action, SourceKind, World};

impl SourceKind {
    /// The verdict vocabulary's name for the kind.
    pub fn policy_kind(self) -> PolicyKind {
        match self {
            Self::KubernetesNetworkPolicy => PolicyKind::NetworkPolicy,
            Self::CalicoNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
            Self::CalicoGlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
            Self::AdminNetworkPolicy => PolicyKind::AdminNetworkPolicy,
            Self::BaselineAdminNetworkPolicy => PolicyKind::BaselineAdminNetworkPolicy,
            Self::ClusterNetworkPolicy => PolicyKind::ClusterNetworkPolicy,
        }
    }
}

impl TieredEngine {
    /// Judges `flow` and explains it in the verdict shape, names borrowed from the engine.
    pub fn verdict<'s>(&'s self, world: &World, flow: &Flow, staged: bool) -> Verdict<&'s str> {
        let [egress, ingress] = self.judge(world, flow, staged);
        let (egress, ingress) = (self.direction(&egress), self.direction(&ingress));
        Verdict {
            allowed: egress.permits() && ingress.permits(),
            category: Category::Decided,
            ingress,
            egress,
        }
    }

    fn decision(
        &self,
        policy: usize,
        rule: Option<usize>,
        action: RuleAction,
    ) -> TierDecision<&str> {
        let p = &self.policies[policy];
        TierDecision {
            tier: p.tier.as_str(),
            policy: PolicyRef {
                kind: p.kind.policy_kind(),
                namespace: p.namespace.as_deref(),
                name: p.name.as_str(),
            },
            rule_index: rule,
            action,
        }
    }

    fn direction(&self, outcome: &DirectionOutcome) -> DirectionVerdict<&str> {
        let mut tiers: Vec<TierDecision<&str>> = outcome
            .passes
            .iter()
            .map(|&(policy, rule)| self.decision(policy, Some(rule), RuleAction::Pass))
            .collect();
        let decision = match &outcome.reason {
            Reason::NotApplicable => DirectionDecision::NotApplicable,
            Reason::Profile => DirectionDecision::NotIsolated,
            Reason::Rule {
                policy,
                rule,
                action,
            } => {
                let allow = *action == Action::Allow;
                let action = if allow {
                    RuleAction::Allow
                } else {
                    RuleAction::Deny
                };
                tiers.push(self.decision(*policy, Some(*rule), action));
                if allow {
                    DirectionDecision::Allowed
                } else {
                    DirectionDecision::Denied
                }
            }
            Reason::EndOfTier(_) => {
                tiers.extend(
                    outcome
                        .tier_policies
                        .iter()
                        .map(|&p| self.decision(p, None, RuleAction::Deny)),
                );
                DirectionDecision::Denied
            }
        };
        DirectionVerdict { decision, tiers }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::compile_objects;
    use super::super::evaluate::End;
    use super::super::model::{WorldNamespace, WorldPod};
    use super::*;

    fn pod(namespace: &str, name: &str, ip: &str) -> WorldPod {
        WorldPod {
            namespace: namespace.into(),
            name: name.into(),
            labels: [("app".to_string(), name.to_string())].into(),
            ip: ip.parse().ok(),
            ports: Vec::new(),
            service_account: "default".into(),
        }
    }

    #[test]
    fn a_pass_then_an_end_of_tier_deny_are_both_shown() {
        let objects = [
            json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
                "metadata": {"name": "pass-shop"},
                "spec": {"priority": 10, "subject": {"namespaces": {}},
                    "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}}),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": "db-from-api", "namespace": "shop"},
                "spec": {"order": 100, "selector": "app == 'db'",
                    "ingress": [{"action": "Allow", "source": {"selector": "app == 'api'"}}]}}),
        ];
        let compiled = compile_objects(&objects);
        assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
        let engine = TieredEngine::new(compiled.policies, compiled.tiers);
        let world = World {
            namespaces: vec![WorldNamespace {
                name: "shop".into(),
                labels: Default::default(),
            }],
            pods: vec![
                pod("shop", "api", "10.0.0.1"),
                pod("shop", "db", "10.0.0.2"),
                pod("shop", "web", "10.0.0.3"),
            ],
            ..World::default()
        };
        let flow = |from: usize| Flow {
            source: End::Pod(from),
            destination: End::Pod(1),
            protocol: 6,
            port: Some(5432),
            icmp: None,
        };
        let allowed = engine.verdict(&world, &flow(0), false);
        assert!(allowed.allowed);
        let steps: Vec<_> = allowed
            .ingress
            .tiers
            .iter()
            .map(|t| (t.tier, t.policy.name, t.rule_index, t.action))
            .collect();
        assert_eq!(
            steps,
            [
                ("adminnetworkpolicy", "pass-shop", Some(0), RuleAction::Pass),
                ("default", "db-from-api", Some(0), RuleAction::Allow),
            ]
        );
        let denied = engine.verdict(&world, &flow(2), false);
        assert!(!denied.allowed);
        assert_eq!(denied.ingress.decision, DirectionDecision::Denied);
        let last = denied
            .ingress
            .tiers
            .last()
            .map(|t| (t.tier, t.rule_index, t.action));
        assert_eq!(last, Some(("default", None, RuleAction::Deny)));
        assert_eq!(
            denied.ingress.tiers[1].policy.kind,
            PolicyKind::CalicoNetworkPolicy
        );
        // The source is not isolated: its egress is the profile's.
        assert_eq!(denied.egress.decision, DirectionDecision::NotIsolated);
        // Neighbour solicitation is never judged (Felix always admits it).
        let solicitation = Flow {
            protocol: 58,
            port: None,
            icmp: Some((135, 0)),
            ..flow(2)
        };
        let v = engine.verdict(&world, &solicitation, false);
        assert!(v.allowed);
        assert_eq!(v.ingress.decision, DirectionDecision::NotApplicable);
        let ping = Flow {
            protocol: 58,
            port: None,
            icmp: Some((128, 0)),
            ..flow(2)
        };
        assert!(!engine.verdict(&world, &ping, false).allowed);
    }
}

//! Human approval: which decisions wait for a person's verdict (the role's
//! `approvals:` rules, matched here, deterministically), and the files a
//! request and its one verdict live in ([`store`]). The records that make a
//! verdict part of the log, and the parking of a job, belong to the job
//! runner and the node; this module owns the rules and the files.
//!
//! See `docs/approval.md` for the contract.

pub mod rule;
pub mod store;

use crate::decision::Decision;
use crate::gate::{glob_match, normalize_path};
use crate::plan::{ApprovalRule, Plan, ScopeKind};

/// The longest a request may live, in ms (30 days): a parked job is not a
/// queue to forget about.
pub const MAX_EXPIRY_MS: u64 = 30 * 24 * 3600 * 1000;

/// The shortest a request may live, in ms.
pub const MIN_EXPIRY_MS: u64 = 1000;

/// The name a verdict the runtime gives itself carries (an expired request).
pub const RUNTIME_APPROVER: &str = "jaros";

/// The reason of the verdict an expired request gets.
pub const EXPIRED_REASON: &str = "expired";

/// The check a denied decision's `rejected` record names.
pub const DENIED_CHECK: &str = "approval";

/// The first rule of the agent's role that applies to `decision`, with its
/// position in the role's list; `None` when the decision needs no verdict.
/// Called only for a decision the gate accepted, so its payload is valid
/// against its type's schema and its scopes inside the grant.
pub fn rule_for<'p>(plan: &'p Plan, decision: &Decision) -> Option<(usize, &'p ApprovalRule)> {
    let grant = plan.grant_of(decision.source.as_str())?;
    let spec = plan.types.get(&decision.kind);
    grant
        .approvals
        .iter()
        .enumerate()
        .find(|(_, rule)| applies(rule, spec.map(|s| s.scopes.as_slice()), decision))
}

fn applies(
    rule: &ApprovalRule,
    scopes: Option<&[crate::plan::Scope]>,
    decision: &Decision,
) -> bool {
    if rule.decision_type != decision.kind {
        return false;
    }
    let scoped = |kind: ScopeKind| -> Vec<&str> {
        scopes
            .unwrap_or_default()
            .iter()
            .filter(|s| s.kind == kind)
            .filter_map(|s| decision.payload.pointer(&s.pointer))
            .filter_map(|v| v.as_str())
            .collect()
    };
    if !rule.paths.is_empty() {
        let paths = scoped(ScopeKind::Write);
        let hit = paths.iter().any(|p| match normalize_path(p) {
            Ok(p) => rule.paths.iter().any(|g| glob_match(g, &p)),
            // A path that does not normalize never passed the gate; fail closed.
            Err(_) => true,
        });
        if !hit {
            return false;
        }
    }
    if !rule.targets.is_empty() {
        let targets = scoped(ScopeKind::Handoff);
        if !targets.iter().any(|t| rule.targets.iter().any(|r| r == t)) {
            return false;
        }
    }
    match &rule.when {
        None => true,
        // A rule that no longer parses cannot come from a validated plan;
        // fail closed all the same.
        Some(text) => rule::Rule::parse(text).map_or(true, |r| r.applies(&decision.payload)),
    }
}

/// The reason a denied decision's `rejected` record carries: `expired`
/// for a request that lived out its time, else `denied by NAME: REASON`.
pub fn denial_reason(by: &str, reason: Option<&str>) -> String {
    match (by, reason) {
        (RUNTIME_APPROVER, Some(EXPIRED_REASON)) => EXPIRED_REASON.to_string(),
        (by, Some(reason)) => format!("denied by {by}: {reason}"),
        (by, None) => format!("denied by {by}"),
    }
}

/// Gives a verdict the way every front end does (CLI and console): checked
/// against the request's approvers, claimed by exclusive creation, then the
/// job's ticket moved back to the inbox so any node resumes it.
pub fn give_verdict(
    data: &crate::datadir::DataDir,
    verdict: &store::Verdict,
) -> Result<store::Given, store::VerdictError> {
    let store = store::Store::new(data);
    let given = store.give(verdict)?;
    // The node's periodic scan unparks the job if this process dies here.
    store.unpark(data, &verdict.job)?;
    Ok(given)
}

/// Whether `name` is a valid approver name: the characters of a manifest
/// name, so it is safe in a file and a log line.
pub fn valid_name(name: &str) -> bool {
    crate::decision::AgentName::new(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{AgentName, DecisionId, JobId};
    use crate::plan::{AgentKind, AgentSpec, Grant};
    use serde_json::json;

    fn plan(rules: Vec<ApprovalRule>) -> Plan {
        let mut plan = Plan::builtin();
        plan.roles.insert(
            "clerk".into(),
            Grant {
                types: ["fs.write".to_string(), "handoff".to_string()].into(),
                write: vec!["**".into()],
                handoff: ["billing".to_string(), "advance".to_string()].into(),
                approvals: rules,
                ..Grant::default()
            },
        );
        plan.agents.insert(
            "clerk".into(),
            AgentSpec {
                role: "clerk".into(),
                max_steps: 1,
                kind: AgentKind::Template {
                    template: "agents/x.j2".into(),
                },
                description: String::new(),
            },
        );
        plan
    }

    fn rule(ty: &str) -> ApprovalRule {
        ApprovalRule {
            decision_type: ty.into(),
            paths: vec![],
            targets: vec![],
            when: None,
            approvers: vec!["ops".into()],
            expires_ms: 60_000,
            notify: None,
        }
    }

    fn decision(ty: &str, payload: serde_json::Value) -> Decision {
        Decision {
            id: DecisionId::new(&JobId::new("j").unwrap(), 1, 0),
            source: AgentName::new("clerk").unwrap(),
            kind: ty.into(),
            payload,
        }
    }

    #[test]
    fn paths_targets_and_payload_rules_narrow_a_rule() {
        let mut by_path = rule("fs.write");
        by_path.paths = vec!["reports/shared/**".into()];
        let mut by_target = rule("handoff");
        by_target.targets = vec!["billing".into()];
        let plan = plan(vec![by_path, by_target]);
        let write = |p: &str| decision("fs.write", json!({"path": p, "content": "x"}));
        assert_eq!(
            rule_for(&plan, &write("reports/shared/a.md")).map(|r| r.0),
            Some(0)
        );
        assert!(rule_for(&plan, &write("./reports/shared/a.md")).is_some());
        assert!(rule_for(&plan, &write("reports/mine.md")).is_none());
        let hand = |t: &str| decision("handoff", json!({"agent": t, "input": {}}));
        assert_eq!(rule_for(&plan, &hand("billing")).map(|r| r.0), Some(1));
        assert!(rule_for(&plan, &hand("advance")).is_none());
    }

    #[test]
    fn the_first_applying_rule_decides() {
        let mut big = rule("handoff");
        big.when = Some("input.amount > 100".into());
        big.approvers = vec!["finance".into()];
        let plan = plan(vec![big, rule("handoff")]);
        let hand = |n: i64| {
            decision(
                "handoff",
                json!({"agent": "billing", "input": {"amount": n}}),
            )
        };
        let (i, r) = rule_for(&plan, &hand(500)).unwrap();
        assert_eq!((i, r.approvers[0].as_str()), (0, "finance"));
        assert_eq!(rule_for(&plan, &hand(5)).unwrap().0, 1);
        assert!(rule_for(&plan, &decision("advance", json!({}))).is_none());
    }
}

//! An approval rule's notifier: when a request is made, the executable tool
//! the rule names runs through the harness (confined as the waiting job's
//! agent's tools are) with the request as its payload, so a team can post it
//! to their chat. Its outcome is audited and logged and is never the job's:
//! a failing notifier neither holds up nor fails the job, which waits for
//! its verdict either way. A node runs it on a thread of its own; `jaros
//! run`, which parks its job and exits, runs it before it exits.

use super::shared::Shared;
use crate::decision::{Decision, JobId};
use crate::exec::{AuditEntry, Executor, LiveIo, Verdict};
use crate::fold::Waiting;
use crate::jobstate::JobState;
use crate::plan::Plan;
use serde_json::json;
use std::sync::Arc;

/// How much of a notifier's result its audit entry keeps.
const MAX_SHOWN: usize = 400;

/// Starts the notifier of the rule that holds `waiting` on a thread of its
/// own, if the rule names one.
pub(super) fn notify(shared: &Arc<Shared>, job: &JobId, waiting: &Waiting) {
    let plan = shared.rt.plan();
    if notifier_of(&plan, waiting).is_none() {
        return;
    }
    let (shared, job, waiting) = (shared.clone(), job.clone(), waiting.clone());
    let spawned = std::thread::Builder::new()
        .name("notifier".into())
        .spawn(move || {
            let live = shared.rt.live_io();
            run(&plan, &shared.executor, &live, &job, &waiting);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the notifier: {e}");
    }
}

/// The decision type of the notifier of the rule that holds `waiting`.
fn notifier_of(plan: &Plan, waiting: &Waiting) -> Option<String> {
    crate::approval::rule_for(plan, &waiting.decision).and_then(|(_, rule)| rule.notify.clone())
}

/// Runs the notifier of the rule that holds `waiting` (if it names one),
/// audits and logs its outcome; returns whether it ran and succeeded.
pub fn run(
    plan: &Plan,
    executor: &Executor,
    live: &dyn LiveIo,
    job: &JobId,
    waiting: &Waiting,
) -> Option<bool> {
    let notifier = notifier_of(plan, waiting)?;
    let decision = &waiting.decision;
    let request = Decision {
        id: decision.id.clone(),
        source: decision.source.clone(),
        kind: notifier.clone(),
        payload: json!({
            "job": job.as_str(),
            "agent": decision.source.as_str(),
            "decision": {"id": decision.id.as_str(), "type": decision.kind, "payload": decision.payload},
            "approvers": waiting.approvers,
            "expires_ms": waiting.expires_ms,
        }),
    };
    let mut state = JobState::new(job.clone(), request.source.clone());
    let effect = executor.execute(plan, &mut state, &request, None, Some(live));
    let (verdict, reason) = match &effect.error {
        None => (
            Verdict::Allowed,
            crate::decision::excerpt(
                &crate::canon::to_string(&effect.result).unwrap_or_default(),
                MAX_SHOWN,
            ),
        ),
        Some(e) => (Verdict::Refused, format!("the notifier failed: {e}")),
    };
    let entry = AuditEntry {
        job: job.clone(),
        agent: request.source.clone(),
        decision: request.id.clone(),
        action: format!("notify {notifier}"),
        verdict,
        reason: reason.clone(),
    };
    if let Err(e) = live.audit(&entry) {
        tracing::error!("cannot audit the notifier of {}: {e}", request.id);
    }
    match verdict {
        Verdict::Allowed => tracing::info!("notified '{notifier}' of {}", request.id),
        Verdict::Refused => tracing::warn!("{}: {reason}", request.id),
    }
    Some(verdict == Verdict::Allowed)
}

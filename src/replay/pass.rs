//! What a replay pass folds a job under (its recorded plan) and keeps of
//! the folded job.

use crate::canon::Digest;
use crate::decision::AgentName;
use crate::exec::Executor;
use crate::fold::{fold_records, Checks, Divergence, FoldCounts, Folded};
use crate::jobstate::JobEnd;
use crate::log::Body;
use crate::plan::Plan;
use std::collections::HashMap;

/// What the report reads of a folded job: a 100,000-job log keeps one per
/// job, so the state and the end's result are not kept.
pub(super) struct Outcome {
    pub(super) counts: FoldCounts,
    /// The end, without its result.
    pub(super) ended: Option<JobEnd>,
}

/// The plan a job's records (starting with its `job` record) were made under.
pub(super) fn recorded_plan<'l>(
    plans: &'l HashMap<Digest, Result<Plan, String>>,
    bodies: &[&Body],
) -> Result<&'l Plan, Divergence> {
    let cannot = |what: String| Divergence {
        index: 0,
        decision: None,
        what,
    };
    match bodies.first() {
        Some(Body::Job { plan, .. }) => match plans.get(plan) {
            Some(Ok(plan)) => Ok(plan),
            Some(Err(e)) => Err(cannot(format!("its plan cannot be loaded: {e}"))),
            None => Err(cannot(format!(
                "its plan {} is not recorded in any log",
                plan.short()
            ))),
        },
        _ => Err(cannot("its job record is missing".into())),
    }
}

/// Replay's two passes over one job: its records folded twice under its
/// recorded plan. The first fold, and whether the second reached the same
/// final state (or diverged at the same record, for the same reason).
pub(super) fn fold_twice(
    plans: &HashMap<Digest, Result<Plan, String>>,
    executor: &Executor,
    bodies: &[&Body],
) -> (Result<Folded, Divergence>, bool) {
    let fold_once = || {
        recorded_plan(plans, bodies)
            .and_then(|plan| fold_records(plan, executor, bodies, Checks::All, false, None))
    };
    let first = fold_once();
    let second = fold_once();
    let digest = |r: &Result<Folded, Divergence>| match r {
        Ok(f) => Ok(f.state.digest()),
        Err(d) => Err((d.index, d.what.clone())),
    };
    let deterministic = digest(&first) == digest(&second);
    (first, deterministic)
}

/// The agent a job's records (starting with its `job` record) name.
pub(super) fn agent_of(bodies: &[&Body]) -> AgentName {
    match bodies.first() {
        Some(Body::Job { agent, .. }) => agent.clone(),
        _ => AgentName::new("unknown").expect("valid name"),
    }
}

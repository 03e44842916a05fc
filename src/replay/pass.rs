//! What a replay pass folds a job under (its recorded plan) and keeps of
//! the folded job.

use crate::canon::Digest;
use crate::fold::{Divergence, FoldCounts};
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

//! One replay pass: every job folded under its recorded plan. Replay runs
//! two side by side and compares their digests.

use super::load::Loaded;
use crate::canon::Digest;
use crate::exec::Executor;
use crate::fold::{fold_records, Checks, Divergence, FoldCounts};
use crate::jobstate::JobEnd;
use crate::log::Body;
use crate::plan::Plan;
use std::collections::HashMap;

/// Per job, in the order of `Loaded::jobs` (lists, not maps keyed by a
/// copy of each job's id, which cost an allocation and a tree insert a
/// job, twice).
pub(super) struct Pass {
    /// The final state digest, or where and how the fold diverged.
    pub(super) digests: Vec<Result<Digest, (usize, String)>>,
    /// What the report reads of the folded job, when the pass keeps it.
    pub(super) folded: Vec<Result<Outcome, Divergence>>,
}

/// What the report reads of a folded job: a 100,000-job log keeps one per
/// job, so the state and the end's result are not kept.
pub(super) struct Outcome {
    pub(super) counts: FoldCounts,
    /// The end, without its result.
    pub(super) ended: Option<JobEnd>,
}

/// Folds every job; `keep` keeps the folded jobs (the report reads the
/// first pass's; the second is compared by digests alone).
pub(super) fn pass(loaded: &Loaded, executor: &Executor, keep: bool) -> Pass {
    let mut out = Pass {
        digests: Vec::with_capacity(loaded.jobs.len()),
        folded: Vec::with_capacity(if keep { loaded.jobs.len() } else { 0 }),
    };
    for places in loaded.jobs.values() {
        let bodies: Vec<&Body> = loaded.bodies(places).collect();
        let result = recorded_plan(loaded, &bodies)
            .and_then(|plan| fold_records(plan, executor, &bodies, Checks::All, false, None));
        let outcome = match &result {
            Ok(f) => Ok(f.state.digest()),
            Err(d) => Err((d.index, d.what.clone())),
        };
        out.digests.push(outcome);
        if keep {
            out.folded.push(result.map(|f| Outcome {
                counts: f.counts,
                ended: f.ended,
            }));
        }
    }
    out
}

/// The plan a job's records (starting with its `job` record) were made under.
pub(super) fn recorded_plan<'l>(
    loaded: &'l Loaded,
    bodies: &[&Body],
) -> Result<&'l Plan, Divergence> {
    plan_in(&loaded.plans, bodies)
}

/// The same, among `plans` (the recorded plans read, by digest).
pub(super) fn plan_in<'l>(
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

//! `jaros blame`: one failed job walked back through its chain of
//! hand-offs, with a counterfactual for the blamed decision.
//!
//! It reads only the job's records and those of the jobs up its chain,
//! through the job indexes ([`super::one`]); only the counterfactual of a
//! failed non-deterministic decision (a tool that errored), which looks for
//! a successful sibling in every job, reads the logs, as streams (memory:
//! the ids of that type's decisions met), until it finds one.

use super::attribution::{attribute, JobRecords};
use super::census::{record_chain, record_line};
use super::one::Jobs;
use super::ReplayError;
use crate::canon::JsonText;
use crate::datadir::DataDir;
use crate::decision::{AgentName, DecisionId, JobId};
use crate::exec::Executor;
use crate::fold::{fold, fold_lenient};
use crate::jobstate::JobEnd;
use crate::log::stream::stream_log;
use crate::log::Body;
use crate::plan::Plan;
use crate::state::State;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;

/// One link of `jaros blame`'s chain, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlameLink {
    pub job: JobId,
    pub agent: AgentName,
    pub decision: Option<DecisionId>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// What the decision did: the hand-off it made, or why it failed.
    pub outcome: String,
    /// The person who approved the decision, when an approval rule held it
    /// (see docs/approval.md): a link of the chain too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// What happens to a failed job when its blamed decision is taken away.
///
/// The check claims only this: replaying the job's own records with the
/// blamed decision removed (or, for a tool decision that errored, given the
/// recorded successful result of a sibling decision of the same type) ends the
/// job in `state_without`. It does not claim the agent would have proposed the
/// same later decisions, nor anything about other jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterfactual {
    pub decision: DecisionId,
    /// `removed` or `sibling result from <decision>`.
    pub method: String,
    pub state_without: State,
    pub failure_disappears: bool,
}

/// `jaros blame`: who and what made a job end as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blame {
    pub job: JobId,
    pub agent: AgentName,
    pub state: Option<State>,
    pub reason: Option<String>,
    pub chain: Vec<BlameLink>,
    pub counterfactual: Option<Counterfactual>,
}

/// Explains one job: its chain of hand-offs and, for a failure, the
/// counterfactual check.
pub fn blame(dir: &DataDir, executor: &Executor, job: &JobId) -> Result<Blame, ReplayError> {
    let mut loaded = Jobs::open(dir, None)?;
    loaded.read_lineage(job);
    loaded.close();
    let Some(bodies) = loaded.bodies(job) else {
        return Err(ReplayError::UnknownJob {
            job: job.clone(),
            dir: dir.root().to_path_buf(),
        });
    };
    let plan = match bodies.first() {
        Some(Body::Job { plan, .. }) => loaded.plans.get(plan).and_then(|p| p.as_ref().ok()),
        _ => None,
    };
    let folded = plan.and_then(|p| fold(p, executor, &bodies).ok());
    let end = folded.as_ref().and_then(|f| f.ended.clone());
    let agent = match bodies.first() {
        Some(Body::Job { agent, .. }) => agent.clone(),
        _ => AgentName::new("unknown").expect("valid name"),
    };
    let attribution = match &end {
        Some(end) => attribute(&loaded, job, end),
        None => attribute(
            &loaded,
            job,
            &JobEnd {
                job: job.clone(),
                agent: agent.clone(),
                state: State::Running,
                result: Value::Null,
                reason: None,
                blame: None,
                seq: 0,
            },
        ),
    };
    let chain = attribution
        .chain
        .iter()
        .enumerate()
        .map(|(i, link)| {
            let last = i + 1 == attribution.chain.len();
            let outcome = match (&link.decision, last) {
                (Some(d), false) => format!(
                    "handed off to {} ({})",
                    attribution.chain[i + 1].agent,
                    attribution.chain[i + 1].job
                )
                .replace(&format!(" via {d}"), ""),
                (_, true) => match &end {
                    Some(e) if e.state == State::Failed => {
                        e.reason.clone().unwrap_or_else(|| "failed".into())
                    }
                    Some(e) => format!("ended {}", e.state),
                    None => "unfinished".into(),
                },
                (None, false) => "created the next job".into(),
            };
            let approved_by = link.decision.as_ref().and_then(|d| {
                loaded
                    .records_of(&link.job)?
                    .into_iter()
                    .find_map(|body| match body {
                        Body::Verdict {
                            decision,
                            verdict,
                            by,
                            ..
                        } if decision == d && verdict == "approve" => Some(by.clone()),
                        _ => None,
                    })
            });
            BlameLink {
                job: link.job.clone(),
                agent: link.agent.clone(),
                decision: link.decision.clone(),
                kind: link.kind.clone(),
                outcome,
                approved_by,
            }
        })
        .collect();
    let counterfactual = match (&end, plan) {
        (Some(e), Some(plan)) if e.state == State::Failed => e.blame.as_ref().and_then(|b| {
            counterfactual(plan, executor, &bodies, b, |blamed, kind| {
                sibling(dir, blamed, kind)
            })
        }),
        _ => None,
    };
    Ok(Blame {
        job: job.clone(),
        agent,
        state: end.as_ref().map(|e| e.state),
        reason: end.and_then(|e| e.reason),
        chain,
        counterfactual,
    })
}

/// Replays `bodies` with the blamed decision taken away (see
/// [`Counterfactual`]); `find_sibling` finds a successful sibling of a
/// failed non-deterministic decision (its id and result), given the
/// decision and its type.
pub(super) fn counterfactual(
    plan: &Plan,
    executor: &Executor,
    bodies: &[&Body],
    blamed: &DecisionId,
    find_sibling: impl FnOnce(&DecisionId, &str) -> Option<(DecisionId, JsonText)>,
) -> Option<Counterfactual> {
    let involves = |b: &Body| match b {
        Body::Decision { decision, .. } | Body::Rejected { decision, .. } => decision.id == *blamed,
        Body::Effect { decision, .. } => decision == blamed,
        _ => false,
    };
    let blamed_kind = bodies.iter().find_map(|b| match b {
        Body::Decision { decision, .. } if decision.id == *blamed => Some(decision.kind.clone()),
        _ => None,
    });
    let errored = bodies
        .iter()
        .any(|b| matches!(b, Body::Effect { decision, error: Some(_), .. } if decision == blamed));
    let deterministic = blamed_kind
        .as_ref()
        .and_then(|k| plan.types.get(k))
        .is_some_and(|t| t.deterministic);
    // A successful sibling: the same type, executed without error, elsewhere.
    let sibling = (errored && !deterministic)
        .then(|| find_sibling(blamed, blamed_kind.as_ref()?))
        .flatten();
    let mut edited: Vec<Body> = Vec::new();
    for body in bodies.iter().take_while(|b| !matches!(b, Body::End { .. })) {
        if involves(body) {
            match (&sibling, body) {
                (
                    Some((_, result)),
                    Body::Effect {
                        job,
                        at,
                        decision,
                        state,
                        ..
                    },
                ) => edited.push(Body::Effect {
                    job: job.clone(),
                    at: *at,
                    decision: decision.clone(),
                    result: result.clone(),
                    error: None,
                    state: *state,
                }),
                (Some(_), Body::Decision { .. }) => edited.push((*body).clone()),
                _ => {}
            }
        } else {
            edited.push((*body).clone());
        }
    }
    for (i, body) in edited.iter_mut().enumerate() {
        set_at(body, i as u32);
    }
    let refs: Vec<&Body> = edited.iter().collect();
    // State digests no longer match the record after an edit: fold up to the
    // first mismatch is not wanted here, so re-derive the state step by step.
    let mut state = fold_lenient(plan, executor, &refs)?;
    state.conclude();
    Some(Counterfactual {
        decision: blamed.clone(),
        method: sibling.map_or("removed".into(), |(d, _)| {
            format!("sibling result from {d}")
        }),
        state_without: state.state,
        failure_disappears: state.state != State::Failed,
    })
}

/// The first successful effect, in the whole data dir, of another decision
/// of type `kind` than `blamed`: its decision and result.
/// A successful sibling of `blamed`: the result of another decision of
/// type `kind` that executed without error, the first in the logs' order
/// (logs by name, records in file order). Read as streams, stopping at the
/// first log that holds one; a log that cannot be read is passed over (the
/// counterfactual is a hint; `jaros verify` names a broken log).
fn sibling(dir: &DataDir, blamed: &DecisionId, kind: &str) -> Option<(DecisionId, JsonText)> {
    // Decision records of the type, across logs: a job taken over may
    // have its decision in one node's log and its effect in another's.
    let mut of_kind: HashSet<DecisionId> = HashSet::new();
    for path in dir.log_files().ok()? {
        let mut found = None;
        let _ = stream_log(&path, record_line, record_chain, None, None, |batch| {
            for record in batch {
                if found.is_some() {
                    return;
                }
                match record.body {
                    Body::Decision { decision, .. }
                        if decision.kind == kind && decision.id != *blamed =>
                    {
                        of_kind.insert(decision.id);
                    }
                    Body::Effect {
                        decision,
                        result,
                        error: None,
                        ..
                    } if of_kind.contains(&decision) => found = Some((decision, result)),
                    _ => {}
                }
            }
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

pub(super) fn set_at(body: &mut Body, new_at: u32) {
    match body {
        Body::Plan { .. } | Body::Audit { .. } => {}
        Body::Job { at, .. }
        | Body::Model { at, .. }
        | Body::Decision { at, .. }
        | Body::Rejected { at, .. }
        | Body::Waiting { at, .. }
        | Body::Verdict { at, .. }
        | Body::Effect { at, .. }
        | Body::End { at, .. } => *at = new_at,
    }
}

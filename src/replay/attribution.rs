//! Attribution: the agent and decision behind a failed job, and the chain
//! of hand-offs that led to it.

use super::load::Loaded;
use super::{Attribution, Link};
use crate::decision::{AgentName, DecisionId, JobId};
use crate::jobstate::JobEnd;
use crate::log::Body;

/// What attribution reads: one job's records in `at` order, `None` for a
/// job none holds (the whole data dir loaded, or one job's lineage read
/// through the job index).
pub(super) trait JobRecords {
    fn records_of(&self, job: &JobId) -> Option<Vec<&Body>>;
}

impl JobRecords for Loaded {
    fn records_of(&self, job: &JobId) -> Option<Vec<&Body>> {
        self.job(job).map(|r| r.collect())
    }
}

pub(super) fn decision_kind(
    loaded: &impl JobRecords,
    job: &JobId,
    id: &DecisionId,
) -> Option<String> {
    loaded.records_of(job)?.into_iter().find_map(|b| match b {
        Body::Decision { decision, .. } | Body::Rejected { decision, .. } if decision.id == *id => {
            Some(decision.kind.clone())
        }
        _ => None,
    })
}

/// Names the agent and decision behind a failed job and walks its parents.
pub(super) fn attribute(loaded: &impl JobRecords, job: &JobId, end: &JobEnd) -> Attribution {
    const MAX_CHAIN: usize = 64;
    let mut chain = Vec::new();
    let mut current = Some((job.clone(), end.blame.clone()));
    while let Some((id, decision)) = current.take() {
        if chain.len() >= MAX_CHAIN {
            break;
        }
        let records = loaded.records_of(&id);
        let (agent, parent, via) = match records.as_ref().and_then(|r| r.first().copied()) {
            Some(Body::Job {
                agent, parent, via, ..
            }) => (agent.clone(), parent.clone(), via.clone()),
            _ => (AgentName::new("unknown").expect("valid name"), None, None),
        };
        let state = records.as_ref().and_then(|r| {
            r.iter().rev().find_map(|b| match b {
                Body::End { state, .. } => Some(*state),
                _ => None,
            })
        });
        let kind = decision
            .as_ref()
            .and_then(|d| decision_kind(loaded, &id, d));
        chain.push(Link {
            job: id,
            agent,
            decision,
            kind,
            state,
        });
        current = parent.map(|p| (p, via));
    }
    chain.reverse();
    Attribution {
        job: job.clone(),
        agent: end.agent.clone(),
        kind: end
            .blame
            .as_ref()
            .and_then(|d| decision_kind(loaded, job, d)),
        decision: end.blame.clone(),
        reason: end.reason.clone().unwrap_or_else(|| "failed".into()),
        chain,
    }
}

//! Attribution: the agent and decision behind a failed job, and the chain
//! of hand-offs that led to it.

use super::load::Loaded;
use super::{Attribution, Link};
use crate::decision::{AgentName, DecisionId, JobId};
use crate::jobstate::JobEnd;
use crate::log::Body;

pub(super) fn decision_kind(loaded: &Loaded, job: &JobId, id: &DecisionId) -> Option<String> {
    loaded.job(job)?.find_map(|b| match b {
        Body::Decision { decision, .. } | Body::Rejected { decision, .. } if decision.id == *id => {
            Some(decision.kind.clone())
        }
        _ => None,
    })
}

/// Names the agent and decision behind a failed job and walks its parents.
pub(super) fn attribute(loaded: &Loaded, job: &JobId, end: &JobEnd) -> Attribution {
    const MAX_CHAIN: usize = 64;
    let mut chain = Vec::new();
    let mut current = Some((job.clone(), end.blame.clone()));
    while let Some((id, decision)) = current.take() {
        if chain.len() >= MAX_CHAIN {
            break;
        }
        let (agent, parent, via) = match loaded.job(&id).and_then(|mut r| r.next()) {
            Some(Body::Job {
                agent, parent, via, ..
            }) => (agent.clone(), parent.clone(), via.clone()),
            _ => (AgentName::new("unknown").expect("valid name"), None, None),
        };
        let state = loaded.job(&id).and_then(|r| {
            r.rev().find_map(|b| match b {
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

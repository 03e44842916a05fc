//! Parking a job whose decision waits for a person, and waking it: the
//! request file is written, the claim moves to `approvals/parked/` and its
//! leases go, so no worker thread and no lease is held while it waits. The
//! node's scan moves a parked job back to the inbox once its verdict exists
//! or its request expired (see docs/approval.md).

use super::inbox::JobFile;
use crate::approval::store::{Link, Request, Store};
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::fold::Waiting;
use crate::log::Body;

/// Deepest hand-off chain a request lists (the plan's `max_depth` is lower).
const MAX_CHAIN_LINKS: usize = 64;

/// The hand-off chain that led to `job`, root first, read from the jobs'
/// own `job` records.
pub fn chain(data: &DataDir, job: &JobFile) -> Vec<Link> {
    let mut links = vec![Link {
        job: job.id.clone(),
        agent: job.agent.to_string(),
        via: None,
    }];
    let (mut parent, mut via) = (job.parent.clone(), job.via.clone());
    while let Some(id) = parent.take() {
        if links.len() >= MAX_CHAIN_LINKS {
            break;
        }
        let history = crate::replay::job_history(data, &id).unwrap_or_default();
        let Some(Body::Job {
            agent,
            parent: up,
            via: up_via,
            ..
        }) = history.into_iter().next()
        else {
            links.push(Link {
                job: id,
                agent: "?".into(),
                via: via.take(),
            });
            break;
        };
        links.push(Link {
            job: id,
            agent: agent.to_string(),
            via: via.take(),
        });
        parent = up;
        via = up_via;
    }
    links.reverse();
    links
}

/// Parks `job`: the request file, then the claim (marked to resume) moved
/// out of `claimed/`, then its leases removed.
pub fn park(
    data: &DataDir,
    node: &str,
    job: &JobFile,
    waiting: &Waiting,
    epoch: u64,
    now_ms: u64,
) -> Result<(), crate::fsx::IoError> {
    let store = Store::new(data);
    let request = Request {
        job: job.id.clone(),
        agent: job.agent.to_string(),
        decision: waiting.decision.clone(),
        approvers: waiting.approvers.clone(),
        requested_ms: now_ms,
        expires_ms: waiting.expires_ms,
        chain: chain(data, job),
        node: node.to_string(),
    };
    store.write_request(&request)?;
    let mut back = job.clone();
    back.resume = true;
    let claimed = data.claimed().join(format!("{}.json", job.id));
    crate::fsx::write_durable(&claimed, back.to_json().to_string().as_bytes())?;
    store.park(&claimed, &job.id)?;
    super::lease::remove_all(data, job.id.as_str(), epoch);
    Ok(())
}

/// Moves every parked job whose verdict exists or whose request expired
/// back to the inbox; returns how many.
pub fn wake_due(data: &DataDir, now_ms: u64) -> usize {
    let store = Store::new(data);
    let Ok(due) = store.due(now_ms) else {
        return 0;
    };
    due.iter()
        .filter(|job: &&JobId| store.unpark(data, job).unwrap_or(false))
        .count()
}

/// Removes the request of a job that no longer waits.
pub fn close(data: &DataDir, job: &JobId) {
    let _ = Store::new(data).close(job);
}

//! Finishing jobs: the result file, then the claim retired. Workers hand
//! ended jobs to one finisher thread and go on to the next job; the finisher
//! takes whatever has ended since its last round and makes it final
//! together: one log sync for all their end records, one sync for all their
//! result files, one sync of each result directory. Each result is durable
//! before it is visible, and visible before its claim goes, as when jobs
//! are finished one by one; the syncs are shared instead of paid per job.

use super::fence::{fence_holds, held_epoch};
use super::shared::{Shared, QUICK_JOB_MS, RECENT_JOBS};
use super::{fault, inbox::JobFile, lease, status};
use crate::job::JobEnd;
use crate::runtime;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

/// A job that has ended, on its way to its result file.
pub(super) struct Ended {
    pub job: JobFile,
    pub end: JobEnd,
}

/// Most jobs finished in one round, and most waiting for the finisher.
pub(super) const MAX_ROUND: usize = 256;

/// New files a round may create when spares run short: the rest of the
/// round waits for the spares it retires. Each new file is an inode
/// allocation, which on ext4 without a journal can cost milliseconds after
/// many deletions; unbounded, a slow round would make the next one larger
/// and slower still.
const NEW_FILES_PER_ROUND: usize = 16;

/// Finishes what the workers send until they are all gone.
pub(super) fn finisher(shared: &Arc<Shared>, ended: &mpsc::Receiver<Ended>) {
    let mut carried: Vec<Ended> = Vec::new();
    loop {
        let mut round = std::mem::take(&mut carried);
        if round.is_empty() {
            match ended.recv() {
                Ok(first) => round.push(first),
                Err(_) => return,
            }
        }
        while round.len() < MAX_ROUND {
            match ended.try_recv() {
                Ok(next) => round.push(next),
                Err(_) => break,
            }
        }
        let room = shared.spares.count() + NEW_FILES_PER_ROUND;
        if round.len() > room {
            carried = round.split_off(room);
        }
        finish_round(shared, round);
    }
}

fn finish_round(shared: &Arc<Shared>, round: Vec<Ended>) {
    let node = &shared.cfg.node_id;
    let through = round.iter().map(|e| e.end.seq).max().unwrap_or(0);
    if let Err(e) = shared.rt.log.sync_through(through) {
        // The node stops; the jobs stay claimed and are resumed.
        *shared.fatal.lock().expect("fatal lock") = Some(e.to_string());
        round
            .iter()
            .for_each(|e| give_up(shared, e.job.id.as_str()));
        return;
    }
    // A result is published only by the job's owner: one that lost the
    // lease while its end was on its way (a pause) leaves the job to the
    // node that took it over.
    if let Some(first) = round.first() {
        fault::reached(fault::Point::BeforePublish, first.job.id.as_str());
    }
    let (round, lost): (Vec<Ended>, Vec<Ended>) = round
        .into_iter()
        .partition(|e| still_owned(shared, e.job.id.as_str()));
    for e in &lost {
        let _job =
            crate::logging::job_span(e.job.id.as_str(), e.job.agent.as_str(), node).entered();
        tracing::warn!(
            "node {node}: lost the lease on {} before publishing its result; another node resumes it",
            e.job.id
        );
        give_up(shared, e.job.id.as_str());
    }
    let mut staged = Vec::with_capacity(round.len());
    let mut ready = Vec::with_capacity(round.len());
    for e in round {
        let result = runtime::result_file(&e.end, node);
        let spare = shared.spares.take();
        match runtime::stage_result(&shared.rt.data, &e.end, &result, spare.as_deref()) {
            Ok(s) => {
                staged.push(s);
                ready.push(e);
            }
            Err(err) => {
                tracing::error!("node {node}: {err}");
                give_up(shared, e.job.id.as_str());
            }
        }
    }
    if let Err(err) = crate::fsx::publish(staged) {
        // Left claimed: resumed from the log by the next boot or takeover.
        tracing::error!("node {node}: {err}");
        ready
            .iter()
            .for_each(|e| give_up(shared, e.job.id.as_str()));
        return;
    }
    for e in &ready {
        settle(shared, &e.job, &e.end);
        let_go(shared, e.job.id.as_str());
    }
}

/// Finishes one job now, in the calling thread: for the rare ends that do
/// not come from a clean run (a failure to record, a panic).
pub(super) fn finish(shared: &Arc<Shared>, job: &JobFile, end: &JobEnd) {
    if let Err(e) = shared.rt.log.sync_through(end.seq) {
        *shared.fatal.lock().expect("fatal lock") = Some(e.to_string());
        return;
    }
    if !still_owned(shared, job.id.as_str()) {
        tracing::warn!(
            "node {}: lost the lease on {} before publishing its result; another node resumes it",
            shared.cfg.node_id,
            job.id
        );
        return;
    }
    let result = runtime::result_file(end, &shared.cfg.node_id);
    if let Err(e) = runtime::write_result(&shared.rt.data, end, &result) {
        tracing::error!("node {}: {e}", shared.cfg.node_id);
        return;
    }
    settle(shared, job, end);
}

/// Whether this node still owns job `id` as a result is about to be
/// published: the fence holds and no later epoch of its lease is on disk.
fn still_owned(shared: &Shared, id: &str) -> bool {
    fence_holds(shared, id, false)
        && shared
            .running
            .lock()
            .expect("running lock")
            .get(id)
            .is_some_and(|r| lease::still_held(&shared.rt.data, &r.lease))
}

/// After the result file: retires the claim and its leases, counts the job.
fn settle(shared: &Shared, job: &JobFile, end: &JobEnd) {
    let data = &shared.rt.data;
    shared
        .spares
        .retire(&data.claimed().join(format!("{}.json", job.id)));
    lease::remove_all(data, job.id.as_str(), held_epoch(shared, job.id.as_str()));
    let counter = if end.state == crate::state::State::Done {
        &shared.counters.done
    } else {
        &shared.counters.failed
    };
    counter.fetch_add(1, Ordering::SeqCst);
    crate::live_trace::job_ended(&job.id);
    let took_ms = shared
        .running
        .lock()
        .expect("running lock")
        .get(job.id.as_str())
        .map_or(0, |r| r.started.elapsed().as_millis() as u64);
    shared.quick.store(took_ms < QUICK_JOB_MS, Ordering::SeqCst);
    if shared.cfg.verbose {
        let _job =
            crate::logging::job_span(job.id.as_str(), job.agent.as_str(), &shared.cfg.node_id)
                .entered();
        tracing::info!(
            "node {}: {} {} ({}, {took_ms} ms)",
            shared.cfg.node_id,
            job.id,
            end.state,
            job.agent
        );
    }
    let mut recent = shared.recent.lock().expect("recent lock");
    if recent.len() >= RECENT_JOBS {
        recent.pop_front();
    }
    recent.push_back(status::RecentJob {
        job: job.id.to_string(),
        agent: job.agent.to_string(),
        state: end.state.to_string(),
        took_ms,
    });
}

/// Job `id`, claimed but not ended, is no longer this node's to run: its
/// slot is free for the next claim.
pub(super) fn free_slot(shared: &Shared, id: &str) {
    drop_hold(shared, id);
    shared.active.fetch_sub(1, Ordering::SeqCst);
    let _ = shared.wake.send(());
}

/// Job `id`, ended and handed to the finisher, is finished.
fn let_go(shared: &Shared, id: &str) {
    drop(shared.running.lock().expect("running lock").remove(id));
    shared.finishing.fetch_sub(1, Ordering::SeqCst);
}

/// Job `id`, ended and handed to the finisher, could not be finished: it is
/// left claimed, to be resumed from its records.
fn give_up(shared: &Shared, id: &str) {
    drop_hold(shared, id);
    shared.finishing.fetch_sub(1, Ordering::SeqCst);
}

/// Stops holding job `id` and drops this node's lease on it, if it is still
/// there. A lease lives as long as its node beats, so a job this node lets go
/// of unfinished (a failure to record or to write its result, a fence that
/// failed) would otherwise wait for the node to stop; without it, the claim
/// is taken over like an abandoned one, and resumed.
fn drop_hold(shared: &Shared, id: &str) {
    let held = shared.running.lock().expect("running lock").remove(id);
    if let Some(held) = held {
        shared.beat.drop_own(&shared.rt.data, &held.lease);
    }
}

/// Moves ended job `id` from its slot to the finisher's care, so the slot
/// takes the next claim while the result is made durable.
pub(super) fn hand_over(shared: &Shared) {
    shared.finishing.fetch_add(1, Ordering::SeqCst);
    shared.active.fetch_sub(1, Ordering::SeqCst);
    let _ = shared.wake.send(());
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_busy_node_keeps_a_spare_for_every_result_of_two_rounds() {
        assert_eq!(super::super::spares::MAX_SPARES, 2 * super::MAX_ROUND);
    }
}

//! A worker: runs the claims queued for it, one job at a time, resuming
//! from recorded history, and hands each end to the finisher; a panic in a
//! job fails that job only.

use super::claims::{claim_still_ours, Task};
use super::fence::{fence_holds, fence_would_hold, held_epoch};
use super::inbox::{self, JobFile};
use super::shared::*;
use super::{admit, fault, finish, retry};
use crate::decision::JobId;
use crate::job::{JobEnd, RunError, Runner, Ticket};
use crate::runtime::{self};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

pub(super) fn worker(
    shared: &Arc<Shared>,
    tasks: &Arc<Mutex<mpsc::Receiver<Task>>>,
    ended: &mpsc::SyncSender<finish::Ended>,
) {
    loop {
        let task = tasks.lock().expect("task lock").recv();
        let (job, resume) = match task {
            Err(_) => return,
            Ok(Task::Run { job, resume }) => (job, resume),
            Ok(Task::Claimed { path }) if !claim_still_ours(shared, &path) => {
                // Queued while the node was paused past its lease: another
                // node has it now (or has finished it).
                finish::free_slot(shared, &inbox::id_of(&path).unwrap_or_default());
                continue;
            }
            Ok(Task::Claimed { path }) => match admit::claimed(shared, &path) {
                Some(job) => {
                    let resume = job.resume;
                    (job, resume)
                }
                None => continue,
            },
        };
        let id = job.id.to_string();
        // Whatever the run logs is logged in the job's span.
        let _span =
            crate::logging::job_span(&id, job.agent.as_str(), &shared.cfg.node_id).entered();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            retry::run_held(shared, &job, resume, run_job)
        }));
        match outcome {
            // The finisher writes its result; the slot is free now.
            Ok(Some(end)) => {
                finish::hand_over(shared);
                if let Err(mpsc::SendError(e)) = ended.send(finish::Ended { job, end }) {
                    shared.finishing.fetch_sub(1, Ordering::SeqCst);
                    finish::finish(shared, &e.job, &e.end);
                    drop(shared.running.lock().expect("running lock").remove(&id));
                }
                continue;
            }
            Ok(None) => {}
            Err(panic) => {
                let reason = format!(
                    "the job's run panicked: {}",
                    crate::exec::panic_text(&panic)
                );
                fail_after_panic(shared, &job, reason);
            }
        }
        finish::free_slot(shared, &id);
    }
}

/// A job fails only itself: a panic outside the handlers is recorded as the
/// job's failure (through the fence, as every record) and its result
/// written. When no `end` can be recorded (the lease is lost, the history
/// cannot be read or ends in a decision without its effect), no result is
/// written either: the job stays claimed, to be resumed.
pub(super) fn fail_after_panic(shared: &Arc<Shared>, job: &JobFile, reason: String) {
    let node = &shared.cfg.node_id;
    let history = match job_history(shared, &job.id) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("node {node}: {reason}; its history cannot be read ({e}); left claimed to be resumed");
            return;
        }
    };
    let live = shared.rt.live_io();
    let id = job.id.to_string();
    let fence = || fence_holds(shared, &id, false);
    let runner = Runner {
        fence: &fence,
        ..runner_for(shared, &live, &job.id)
    };
    match runner.abort(&history, reason.clone()) {
        Ok(Some(end)) => finish::finish(shared, job, &end),
        Ok(None) => tracing::warn!(
            "node {node}: {} {reason}; its last decision has no effect yet: left claimed to be resumed",
            job.id
        ),
        Err(RunError::Log(e)) => *shared.fatal.lock().expect("fatal lock") = Some(e.to_string()),
        Err(e) => tracing::error!("node {node}: {} {reason}; {e}", job.id),
    }
}

/// A job's history from every node's log. This node's own records may still
/// be on their way to its file (another thread writes them), so they are
/// flushed first.
pub(super) fn job_history(shared: &Shared, id: &JobId) -> Result<Vec<crate::log::Body>, String> {
    shared.rt.log.flush().map_err(|e| e.to_string())?;
    crate::replay::job_history(&shared.rt.data, id).map_err(|e| e.to_string())
}

/// A runner for `_job` with no fence yet: the caller sets its fence
/// ([`fence_holds`]) before it records anything.
pub(super) fn runner_for<'a>(
    shared: &'a Shared,
    live: &'a runtime::HiveIo,
    _job: &JobId,
) -> Runner<'a> {
    shared
        .rt
        .runner(&shared.executor, &*shared.proposer, live, &NO_FENCE)
}

static NO_FENCE: fn() -> bool = || false;

/// Runs a job to its end; the end, when there is one, is for the finisher
/// (its record not yet durable). Every other outcome is dealt with here.
pub(super) fn run_job(shared: &Arc<Shared>, job: &JobFile, resume: bool) -> Option<JobEnd> {
    let id = job.id.to_string();
    let history = if resume {
        match job_history(shared, &job.id) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(
                    "node {}: cannot read the history of {id}: {e}",
                    shared.cfg.node_id
                );
                return None;
            }
        }
    } else {
        Vec::new()
    };
    let live = runtime::HiveIo {
        epoch: held_epoch(shared, &id),
        ..shared.rt.live_io()
    };
    // Giving jobs back at shutdown stops them at their next record, unless
    // that record is of an effect that has already run (a tool that
    // outlived the grace): thrown away, it would run again.
    let fence = || {
        let holds = fence_holds(shared, &id, live.take_effect_ran());
        if holds {
            fault::reached(fault::Point::AfterFence, &id);
        }
        holds
    };
    let runner = Runner {
        fence: &fence,
        defer_end: true,
        ..runner_for(shared, &live, &job.id)
    };
    let ticket = Ticket {
        job: job.id.clone(),
        agent: job.agent.clone(),
        input: job.input.clone(),
        parent: job.parent.clone(),
        via: job.via.clone(),
    };
    match runner.run_in_tree(&ticket, job.tree, &history) {
        Ok(end) => {
            super::park::close(&shared.rt.data, &job.id);
            return Some(end);
        }
        Err(RunError::Fenced(_)) => {
            if shared.releasing.load(Ordering::SeqCst) && fence_would_hold(shared, &id) {
                // Shutting down: give the job back for another node to resume.
                let _ = inbox::release(&shared.rt.data, job, held_epoch(shared, &id));
                tracing::info!(
                    "node {}: released {id} to the inbox (shutdown grace expired)",
                    shared.cfg.node_id
                );
            } else {
                tracing::warn!(
                    "node {}: lost the lease on {id}; another node resumes it",
                    shared.cfg.node_id
                );
            }
        }
        Err(RunError::Held { reason, .. }) => {
            tracing::warn!(
                "node {}: holding {id} for retry: {reason}",
                shared.cfg.node_id
            );
            shared.held.hold(&id, &reason);
            if shared.rt.audit.broken() {
                // A poisoned audit log does not recover: stop, and let the
                // job be resumed after a restart.
                *shared.fatal.lock().expect("fatal lock") = Some(format!(
                    "the audit log {} failed ({reason}); restart the node once the cause is fixed",
                    shared.rt.audit.path().display()
                ));
            }
        }
        Err(RunError::Parked { waiting, .. }) => {
            let epoch = held_epoch(shared, &id);
            match super::park::park(
                &shared.rt.data,
                &shared.cfg.node_id,
                job,
                &waiting,
                epoch,
                super::lease::now_ms(),
            ) {
                Ok(()) => {
                    tracing::info!(
                        "node {}: {id} waits for a verdict on {} (`jaros approvals`)",
                        shared.cfg.node_id,
                        waiting.decision.id
                    );
                    super::notify::notify(shared, &job.id, &waiting);
                }
                // The job stays claimed: its lease lapses and a node that
                // takes it over parks it again from its `waiting` record.
                Err(e) => tracing::error!("node {}: cannot park {id}: {e}", shared.cfg.node_id),
            }
        }
        Err(RunError::Log(e)) => {
            *shared.fatal.lock().expect("fatal lock") = Some(e.to_string());
        }
    }
    None
}

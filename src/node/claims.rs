//! Claiming work: inbox files renamed into `claimed/` and leased, this
//! node's own unfinished jobs resumed at boot, and jobs whose lease expired
//! on another node taken over with the next epoch.

use super::fence::fence_holds;
use super::inbox::{self, JobFile};
use super::lease::{self, Lease};
use super::shared::*;
use super::{admit, fault, finish, seen};
use crate::decision::JobId;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

pub(super) enum Task {
    /// Read and run a job file this node has just claimed and leased.
    Claimed { path: PathBuf },
    /// Run a job this node already holds the lease of (resumed or reclaimed).
    Run { job: JobFile, resume: bool },
}

/// Claims inbox files by renaming them into `claimed/`, makes the renames
/// durable with one directory sync (before any of their jobs can record),
/// leases each and queues it for a worker. A name another node claimed
/// first is skipped.
pub(super) fn claim_batch(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>, names: &[String]) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let data = &shared.rt.data;
    let node = &shared.cfg.node_id;
    let claimed: Vec<PathBuf> = names
        .iter()
        .filter_map(|name| match inbox::claim(data, name) {
            Ok(path) => path,
            Err(e) => {
                tracing::error!("node {node}: {e}");
                None
            }
        })
        .collect();
    if claimed.is_empty() {
        return;
    }
    if let Err(e) = crate::fsx::sync_dir(&data.claimed()) {
        // Unleased, the claims are taken over a lease's time from now.
        tracing::error!("node {node}: {e}");
        return;
    }
    let mut leased = None;
    for path in claimed {
        shared.counters.claimed.fetch_add(1, Ordering::SeqCst);
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        // A name that is no job id (one too long for its lease's name) is
        // refused now, unleased: no other node takes it over meanwhile.
        if let Err(reason) = inbox::job_id_of(&path) {
            admit::refuse(shared, &path, &reason);
            continue;
        }
        // Only the first epoch: a lease here means another node took this
        // claim over in the moment before ours (or a crash left one); that
        // node runs it, or its lease expires and the job is reclaimed.
        match shared.beat.take(data, &id, 1) {
            Ok(Some(lease)) => {
                shared.active.fetch_add(1, Ordering::SeqCst);
                hold(shared, &id, lease);
                leased.get_or_insert(id.clone());
                if tasks.send(Task::Claimed { path }).is_err() {
                    finish::free_slot(shared, &id);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("node {node}: {e}"),
        }
    }
    if let Some(id) = leased {
        fault::reached(fault::Point::HoldingClaims, &id);
    }
}

pub(super) fn start(
    shared: &Arc<Shared>,
    tasks: &mpsc::Sender<Task>,
    job: JobFile,
    lease: Lease,
    resume: bool,
) {
    shared.active.fetch_add(1, Ordering::SeqCst);
    hold(shared, job.id.as_str(), lease);
    if tasks.send(Task::Run { job, resume }).is_err() {
        shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts job `id` as running under `lease` (the heartbeat renews it).
pub(super) fn hold(shared: &Shared, id: &str, lease: Lease) {
    shared.running.lock().expect("running lock").insert(
        id.to_string(),
        Running {
            lease,
            lost: false,
            started: Instant::now(),
        },
    );
}

/// At boot: jobs whose lease names this node were ours before a crash or a
/// restart; the log lock proves no other process of this node id runs.
pub(super) fn resume_own_jobs(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>) {
    let data = &shared.rt.data;
    for path in crate::fsx::list_dir(&data.claimed()).unwrap_or_default() {
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        let Some(current) = lease::current(data, &id, shared.cfg.lease_ms) else {
            continue;
        };
        if current.node != shared.cfg.node_id {
            continue;
        }
        take_over(shared, tasks, &path, &id, current.epoch + 1);
    }
}

/// Takes over claimed jobs whose lease expired (their node died or hung).
pub(super) fn reclaim_expired(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>) {
    let data = &shared.rt.data;
    // Leases carry the file system's time; so must the time they are
    // compared with (hosts' clocks may disagree with it and each other).
    let now = match shared.probe.now_ms() {
        Ok(now) => now,
        Err(e) => {
            tracing::error!(
                "node {}: {e}; no takeovers until it can",
                shared.cfg.node_id
            );
            return;
        }
    };
    for path in crate::fsx::list_dir(&data.claimed()).unwrap_or_default() {
        if shared.stopping.load(Ordering::SeqCst)
            || shared.active.load(Ordering::SeqCst) >= shared.cfg.pool_size
        {
            return;
        }
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        if shared
            .running
            .lock()
            .expect("running lock")
            .contains_key(&id)
        {
            continue;
        }
        // No lease yet: a claim in progress; give it a lease's time from
        // the moment of the claim.
        let (expired, next) = match lease::current(data, &id, shared.cfg.lease_ms) {
            Some(l) => (l.expires_ms < now, l.epoch + 1),
            None => (
                inbox::claim_age(&path).is_some_and(|a| a.as_millis() as u64 > shared.cfg.lease_ms),
                1,
            ),
        };
        if expired {
            take_over(shared, tasks, &path, &id, next);
        }
    }
}

pub(super) fn take_over(
    shared: &Arc<Shared>,
    tasks: &mpsc::Sender<Task>,
    path: &Path,
    id: &str,
    epoch: u64,
) {
    let data = &shared.rt.data;
    let Ok(job_id) = JobId::new(id) else {
        // No lease can be named for it: left by a crash between its claim
        // and its refusal.
        admit::refuse(
            shared,
            path,
            &inbox::job_id_of(path).err().unwrap_or_default(),
        );
        return;
    };
    let lease = match shared.beat.take(data, id, epoch) {
        Ok(Some(lease)) => lease,
        _ => return,
    };
    let job = match inbox::read_job(path, &shared.rt.plan()) {
        Ok(job) => job,
        Err(inbox::Unread::Gone) => {
            // Its holder finished it between our look and our lease.
            lease::remove(data, &lease);
            return;
        }
        // Finished meanwhile, seen through a cached listing or cached
        // attributes (a network file system): not a bad file.
        Err(inbox::Unread::Bad(_)) if !claim_present(path) => {
            lease::remove(data, &lease);
            return;
        }
        Err(inbox::Unread::Bad(reason)) => {
            admit::fail(shared, path, &job_id, &reason);
            lease::remove_all(data, id, lease.epoch);
            return;
        }
    };
    // A claim whose job has no record yet is as fresh as one from the inbox.
    match admit::history_for(shared, &job) {
        Ok((seen::Known::New, handoff)) => {
            if let Err(reason) = admit::lineage_recorded(&job, handoff.as_ref()) {
                admit::fail(shared, path, &job_id, &reason);
                lease::remove_all(data, id, lease.epoch);
                return;
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("node {}: cannot take {id} over: {e}", shared.cfg.node_id);
            lease::remove(data, &lease);
            return;
        }
    }
    shared.counters.resumed.fetch_add(1, Ordering::SeqCst);
    start(shared, tasks, job, lease, true);
}

/// Whether a claim file is there, asked of the file server itself: an open
/// is never answered from a cache, where a listing or a `stat` may be (an
/// sshfs or NFS client caches both).
pub(super) fn claim_present(path: &Path) -> bool {
    !matches!(std::fs::File::open(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Whether a claim queued for a worker is still this node's to run: the
/// fence holds for it (after a pause, once the heartbeat has looked).
pub(super) fn claim_still_ours(shared: &Shared, path: &Path) -> bool {
    let id = inbox::id_of(path).unwrap_or_default();
    let ours = fence_holds(shared, &id, false);
    if !ours {
        tracing::info!(
            "node {}: dropped its claim on {id}: lost the lease before running it; another node has it",
            shared.cfg.node_id
        );
    }
    ours
}
